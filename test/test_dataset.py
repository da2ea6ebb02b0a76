"""taaf_dataset: recordings and a labels CSV -> a dataset whose samples are the node's windows."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from recordings import (
    T0_NS,
    bag_messages,
    offline_evaluation,
    timeline,
    write_camera_files,
    write_labels,
)

from taaf_ros.apps.dataset import main
from taaf_ros.data.bags import read_bag, write_bag
from taaf_ros.data.labels import LabelError, read_labels
from taaf_ros.data.readers import EadDataset, EventFileError, read_raw_evt3
from taaf_ros.data.span_cutter import span_windows
from taaf_ros.frontend import sample_tensors
from taaf_ros.inference.classifier import Classifier
from taaf_ros.model.bundled import find_bundled_model
from taaf_ros.stream.inputs import AudioInput, EventInput
from taaf_ros.stream.live_frontend import LiveFrontEnd, LiveSettings
from taaf_ros.stream.scheduler import WindowCut

NAMES = {"0": "zero", "1": "one", "2": "two"}


@pytest.fixture(scope="module")
def tl(avdigits: Path):
    """Nine spoken-and-shown digits of three classes on one timeline."""
    ds = EadDataset(avdigits, "train")
    picked = [(ds[i], NAMES[ds.classes[ds.samples[i][2]]]) for i in range(len(ds))
              if ds.classes[ds.samples[i][2]] in NAMES]
    return timeline(picked)


@pytest.fixture(scope="module")
def robot(tl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bag as a robot records it (EventPacket evt3, AudioDataStamped + AudioInfo) and its
    labels, with a group per take so that whole takes go to test."""
    root = tmp_path_factory.mktemp("robot")
    write_bag(root / "kitchen", bag_messages(tl))
    labels = root / "labels.csv"
    rows = [f"kitchen,{a},{b},{lab},take{i % 3}" for i, (a, b, lab) in enumerate(tl.spans)]
    labels.write_text("recording,start,end,label,group\n" + "\n".join(rows) + "\n")
    return labels


def build(*args: str) -> int:
    return main([*map(str, args), "--quiet"])


def samples(root: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((root / "samples.csv").read_text().splitlines()))


def test_span_windows_sit_on_the_grid_inside_or_centred_on_the_span():
    assert span_windows(1_020_000, 1_400_000, 600_000, 50_000, 600_000) == [900_000]
    assert span_windows(0, 2_000_000, 600_000, 50_000, 600_000) == [0, 600_000, 1_200_000]


def test_a_bag_becomes_a_dataset_with_whole_groups_in_test(robot, tmp_path, capsys):
    out = tmp_path / "ds"
    assert build("bag", robot, "--out-dir", out) == 0
    report = capsys.readouterr().out
    assert "| train | zero | 2 |" in report and "M events/s" in report
    ds = EadDataset(out, "train")
    assert ds.classes == ["one", "two", "zero"] and ds.sensor_size == (34, 34)
    assert ds.meta["audio_rate"] == 8000 and ds.meta["layout_version"] == 2
    rows = samples(out)
    assert len(rows) == 9
    split_of_group = {}
    for r in rows:
        assert split_of_group.setdefault(r["group"], r["split"]) == r["split"]
    assert set(split_of_group.values()) == {"train", "test"}
    assert all(float(r["audio_coverage"]) == 1.0 and int(r["events"]) > 1000 for r in rows)


def test_the_live_session_computes_the_training_samples_bit_for_bit(robot, tmp_path):
    """The bag's messages through the node's inputs and live front ends, windows cut as they
    become ready: each labelled window's tensors equal sample_tensors of its stored sample."""
    out = tmp_path / "ds"
    assert build("bag", robot, "--out-dir", out) == 0
    classifier = Classifier(find_bundled_model(), "cpu")
    fe = classifier.frontend
    live = LiveFrontEnd(classifier.frontend, (34, 34), LiveSettings(hop_us=50_000,
                                                           history_us=3_000_000))
    assert live.streaming  # the front end the node runs by default
    events_in = EventInput("event_packet", (34, 34), 5_000_000)
    audio_in = AudioInput("audio_data_stamped", 16000, 1, 5_000_000)
    rows = samples(out)
    pending = sorted(int(r["start_ns"]) // 1000 for r in rows)
    computed: dict[int, tuple] = {}
    reach = {"events": 0, "audio": 0}
    for m in read_bag(robot.parent / "kitchen"):
        now = m.log_time_ns // 1000
        if m.topic.endswith("audio_info"):
            audio_in.set_info(m.msg, now)
            continue
        if m.topic.endswith("events"):
            piece = events_in.decode(m.msg, now, now)
            live.push_events(piece.events, piece.sensor_size)
            reach["events"] = max(reach["events"], piece.reach_us)
        else:
            a = audio_in.decode(m.msg, now, now)
            reach["audio"] = live.push_audio(a.samples, a.start_us, a.sample_rate) or 0
        while pending and pending[0] + fe.window_us <= min(reach.values()):
            s = pending.pop(0)
            ev, _, au, _ = live.window_tensors(WindowCut(s, s + fe.window_us, (True, True),
                                                         (False, False)))
            computed[s] = (ev, au)
    assert not pending
    by_id = {r["id"]: int(r["start_ns"]) // 1000 for r in rows}
    n = 0
    for split in ("train", "test"):
        ds = EadDataset(out, split)
        for i in range(len(ds)):
            s = ds[i]
            ev, au = sample_tensors(s.events, ds.sensor_size, s.pcm, s.sample_rate, fe)
            live_ev, live_au = computed[by_id[s.id]]
            assert np.array_equal(ev, live_ev), s.id
            assert np.array_equal(au, live_au), s.id
            assert ev.sum() > 0 and au.sum() > 0
            n += 1
    assert n == 9


def test_files_give_the_samples_the_bag_gives(robot, tl, tmp_path):
    """A .raw EVT 3.0 file and a WAV of the same timeline: the same windows, the same events."""
    folder = tmp_path / "camera"
    raw = write_camera_files(folder, "kitchen", tl)
    ev, size = read_raw_evt3(raw)
    order = lambda e: e[np.lexsort((e["x"], e["p"], e["y"], e["t"]))]  # noqa: E731 - EVT 3.0's
    assert size == (34, 34) and np.array_equal(order(ev), order(tl.events))
    labels = write_labels(folder / "labels.csv", "kitchen.raw", tl.spans, ",train")
    assert build("bag", robot, "--out-dir", tmp_path / "a") == 0
    assert build("files", labels, "--out-dir", tmp_path / "b") == 0
    a = {int(r["start_ns"]) - T0_NS: r for r in samples(tmp_path / "a")}
    b = {int(r["start_ns"]): r for r in samples(tmp_path / "b")}
    assert a.keys() == b.keys()
    assert all(a[k]["events"] == b[k]["events"] for k in a)


def test_background_windows_avoid_every_labelled_span(robot, tmp_path):
    out = tmp_path / "ds"
    assert build("bag", robot, "--out-dir", out, "--background",
                 "--background-stride-s", "0.3") == 0
    rows = samples(out)
    spans = [(int(r["start_ns"]), int(r["start_ns"]) + 600_000_000) for r in rows
             if r["label"] != "background"]
    bg = [int(r["start_ns"]) for r in rows if r["label"] == "background"]
    assert len(bg) >= 9 and "background" in EadDataset(out, "train").classes
    assert not any(a < s + 600_000_000 and s < b for s in bg for a, b in spans)
    assert all(int(r["events"]) > 0 for r in rows)


def test_a_dry_run_writes_nothing(robot, tmp_path, capsys):
    assert build("bag", robot, "--out-dir", tmp_path / "ds", "--dry-run") == 0
    assert not (tmp_path / "ds").exists()
    assert "dry run: nothing written" in capsys.readouterr().out


# ------------------------------------------------------------------------ bad data
def _labels(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "labels.csv"
    p.write_text("recording,start,end,label,group\n" + body)
    return p


def test_labels_files_are_checked_row_by_row(tmp_path):
    cases = {
        "a,1.0,1.6,x,g\na,1.5,2.0,y,g\n": "lines 2 and 3 overlap",
        "a,1.0,0.5,x,g\n": "line 2: start 1.0 s is not before end 0.5 s",
        "a,one,2,x,g\n": "line 2: start 'one' is not a number",
        "a,1,2,,g\n": "line 2: no label",
        "a,nan,2,x,g\n": "not finite",
    }
    for body, message in cases.items():
        with pytest.raises(LabelError, match=message):
            read_labels(_labels(tmp_path, body))
    with pytest.raises(LabelError, match="line 2: label 'cat' is not one of the classes"):
        read_labels(_labels(tmp_path, "a,1,2,cat,g\n"), classes=["dog"])
    (tmp_path / "bad.csv").write_text("rec,begin\n")
    with pytest.raises(LabelError, match="missing recording, start, end, label"):
        read_labels(tmp_path / "bad.csv")


def _bad(tmp_path: Path, capsys, *args: str) -> str:
    assert build(*args) == 2
    return capsys.readouterr().err


def test_bad_recordings_are_refused_naming_the_row_or_the_bag(robot, tl, tmp_path, capsys):
    bag = robot.parent / "kitchen"
    # A span past the bag's end.
    labels = _labels(tmp_path, f"{bag},0.5,1.1,zero,a\n{bag},30.0,30.6,one,b\n")
    early = _labels(tmp_path, f"{bag},0.0,0.2,zero,a\n{bag},2.0,2.6,one,b\n")
    err = _bad(tmp_path, capsys, "bag", early, "--out-dir", tmp_path / "x")
    assert "line 2" in err and "not inside the event stream" in err  # centred: before 0
    assert "the window at -0.200 s" in err, err  # in the CSV's own (relative) seconds
    labels = _labels(tmp_path, f"{bag},0.5,1.1,zero,a\n{bag},30.0,30.6,one,b\n")
    err = _bad(tmp_path, capsys, "bag", labels, "--out-dir", tmp_path / "x")
    assert "line 3: the span 30-30.6 s is not inside kitchen, which lasts" in err, err
    assert not (tmp_path / "x").exists()
    # ... or, with --on-bad report, skipped and counted.
    assert build("bag", labels, "--out-dir", tmp_path / "x", "--on-bad", "report") == 0
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "line 3" in out
    # An unknown label, a missing topic, a missing recording.
    err = _bad(tmp_path, capsys, "bag", labels, "--out-dir", tmp_path / "y", "--classes", "zero")
    assert "line 3: label 'one' is not one of the classes" in err
    err = _bad(tmp_path, capsys, "bag", labels, "--out-dir", tmp_path / "y", "--events-topic",
               "/dvs/events")
    assert "line 2" in err and "no topic /dvs/events" in err and "/event_camera/events" in err
    err = _bad(tmp_path, capsys, "bag", _labels(tmp_path, "nowhere,1,2,x,a\nnowhere,3,4,y,b\n"),
               "--out-dir", tmp_path / "y")
    assert "line 2" in err and "no bag at" in err
    # One recording in two splits.
    two = tmp_path / "two.csv"
    two.write_text(f"recording,start,end,label,split\n{bag},0.5,1.1,zero,train\n"
                   f"{bag},2.0,2.6,zero,test\n")
    assert "kitchen is in splits ['test', 'train']" in _bad(tmp_path, capsys, "bag", two,
                                                            "--out-dir", tmp_path / "y")


def test_a_span_without_audio_and_a_jumping_clock_are_named(tl, tmp_path, capsys):
    msgs = bag_messages(tl)
    gap = (T0_NS + 2_000_000_000, T0_NS + 2_700_000_000)  # no audio over the second span
    quiet = [m for m in msgs if not (m[0].endswith("audio_stamped") and gap[0] <= m[2] < gap[1])]
    write_bag(tmp_path / "quiet", quiet)
    labels = _labels(tmp_path, "quiet,0.5,1.1,zero,a\nquiet,2.0,2.6,zero,b\n")
    err = _bad(tmp_path, capsys, "bag", labels, "--out-dir", tmp_path / "x")
    assert "line 3" in err and "has audio for" in err and "a gap in the audio" in err
    jumped = []
    for topic, ty, log, msg in msgs:  # the camera's stamps jump 30 s forward after 5 s
        if topic.endswith("events") and log > T0_NS + 5_000_000_000:
            s = msg.header.stamp
            s.sec += 30
        jumped.append((topic, ty, log, msg))
    write_bag(tmp_path / "jumped", jumped)
    labels = _labels(tmp_path, "jumped,0.5,1.1,zero,a\njumped,2.0,2.6,zero,b\n")
    err = _bad(tmp_path, capsys, "bag", labels, "--out-dir", tmp_path / "x")
    assert "jumped: the stamps jump" in err and "/event_camera/events at log time" in err


def test_a_truncated_raw_file_is_refused(tl, tmp_path, capsys):
    raw = write_camera_files(tmp_path, "cut", tl)
    raw.write_bytes(raw.read_bytes()[:-1])
    with pytest.raises(EventFileError, match="truncated"):
        read_raw_evt3(raw)
    labels = _labels(tmp_path, "cut.raw,0.5,1.1,zero,a\ncut.raw,2.0,2.6,zero,b\n")
    assert "truncated" in _bad(tmp_path, capsys, "files", labels, "--out-dir", tmp_path / "x")
    raw.write_bytes(b"% evt 2.0\n% end\n\x00\x00")
    assert "not an EVT 3.0 .raw file" in _bad(tmp_path, capsys, "files", labels, "--out-dir",
                                              tmp_path / "x")
    shutil.rmtree(tmp_path / "x", ignore_errors=True)


def test_own_files_to_a_model_whose_live_windows_equal_its_evaluation(tl, tmp_path):
    """With no ROS at all: a .raw EVT 3.0 recording and a WAV -> taaf_dataset files ->
    train_ead.py --init-from the bundled model (two epochs) -> the ROS-free live session fed
    the same files: its prediction of every labelled window equals the offline evaluation of
    that window's sample."""
    from taaf_ros.apps.train import main as train
    from taaf_ros.data.recording import open_files
    from taaf_ros.inference.session import LiveSession

    raw = write_camera_files(tmp_path / "rec", "desk", tl)
    labels = tmp_path / "rec" / "labels.csv"
    labels.write_text("recording,start,end,label,group\n" + "\n".join(
        f"desk.raw,{a},{b},{lab},take{i % 3}" for i, (a, b, lab) in enumerate(tl.spans)) + "\n")
    assert build("files", labels, "--out-dir", tmp_path / "ds") == 0
    assert train(["--data-root", str(tmp_path / "ds"), "--init-from", str(find_bundled_model()),
                  "--epochs", "2", "--out-dir", str(tmp_path / "run"), "--no-progress",
                  "--num-threads", "1"]) == 0
    model = tmp_path / "run" / "model.pt"
    classifier = Classifier(model, "cpu")
    session = LiveSession(classifier, (34, 34), hop_us=50_000, max_wait_us=1_000_000,
                          timeout_us=5_000_000, now_us=0)
    got: dict[int, dict] = {}
    src, pieces = open_files(raw, raw.with_suffix(".wav"))
    now = 0
    for piece in pieces:
        now = piece.received_us
        if piece.events is not None:
            e = piece.events
            session.push_events(e.events, e.reach_us, e.sensor_size, now)
        else:
            a = piece.audio
            session.push_audio(a.samples, a.start_us, a.sample_rate, now)
        assert session.run_once(lambda t=now: t, lambda w, p: got.__setitem__(
            p["window"]["start_ns"], p)) is None
    rows = samples(tmp_path / "ds")
    n = 0
    for start_ns, _, probs in offline_evaluation(tmp_path / "ds", classifier):
        p = got[start_ns]
        assert p["present"] == ["events", "audio"] and not p["degraded"]
        assert p["label"] == classifier.classes[int(np.argmax(probs))]
        for c in p["top_k"]:
            assert c["score"] == pytest.approx(float(probs[c["class_id"]]), abs=1e-6)
        n += 1
    assert n == len(rows) == 9
    import torch

    card = torch.load(model, weights_only=True)["model_card"]
    assert card["init_from"]["classes"] == [str(d) for d in range(10)]
    assert card["classes"] == ["one", "two", "zero"] and "head.read" in card["init_from"]["rebuilt"]


def test_one_modality_recordings_train_with_the_matching_method(tl, tmp_path):
    """A .raw without a WAV gives an events-only dataset, a WAV alone an audio-only one; each
    trains with its method, and a two-modality method is refused with the fix."""
    from taaf_ros.apps.train import main as train

    raw = write_camera_files(tmp_path / "rec", "desk", tl)
    wav = raw.with_suffix(".wav")
    (tmp_path / "audio").mkdir()
    wav.rename(tmp_path / "audio" / "desk.wav")
    rows = "\n".join(f"{{rec}},{a},{b},{lab},take{i % 3}" for i, (a, b, lab) in
                     enumerate(tl.spans))
    for name, rec, method in (("events", raw, "events-only"),
                              ("audio", tmp_path / "audio" / "desk.wav", "audio-only")):
        labels = tmp_path / f"{name}.csv"
        labels.write_text("recording,start,end,label,group\n" + rows.format(rec=rec) + "\n")
        out = tmp_path / f"ds-{name}"
        assert build("files", labels, "--out-dir", out) == 0
        ds = EadDataset(out, "train")
        assert ds.modalities == (name,) and len(ds) == 6
        assert not list(out.glob("*/*/*.wav" if name == "events" else "*/*/*.npy"))
        args = ["--data-root", str(out), "--epochs", "1", "--no-progress", "--num-threads", "1",
                "--out-dir", str(tmp_path / f"run-{name}")]
        assert train([*args, "--method", method]) == 0
        with pytest.raises(SystemExit, match=f"has no {'audio' if name == 'events' else 'events'}"
                           f".*train it with --method {method}"):
            train(args)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_stock_messages_give_the_samples_the_drivers_messages_give(tl, robot, tmp_path,
                                                                  storage):
    """The same recording as PointCloud2 events and Int16MultiArray audio (t_ns layout
    stamp), serialised by rclpy: the same windows with the same events and audio."""
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Int16MultiArray, MultiArrayDimension

    from taaf_ros.audio.multiarray_stamp import stamped_layout_dims
    from taaf_ros.events import events_to_pointcloud2

    t0_us = T0_NS // 1000
    msgs = []
    t = tl.events["t"]
    for a in range(0, int(t[-1]) + 1, 10_000):
        lo, hi = np.searchsorted(t, [a, a + 10_000])
        ev = tl.events[lo:hi].copy()
        ev["t"] += t0_us
        cloud = events_to_pointcloud2(ev)
        stamp = int(ev["t"][0]) if len(ev) else t0_us + a + 10_000
        cloud.header.stamp.sec, cloud.header.stamp.nanosec = divmod(stamp * 1000, 10**9)
        msgs.append(("/cloud", "sensor_msgs/msg/PointCloud2", (t0_us + a + 12_000) * 1000,
                     serialize_message(cloud)))
    s16 = (tl.audio * 32767).astype(np.int16)
    for i in range(0, len(s16), 320):
        chunk = Int16MultiArray(data=s16[i:i + 320].tolist())
        start_ns = T0_NS + i * 10**9 // tl.rate
        chunk.layout.dim = [MultiArrayDimension(label=a, size=b, stride=c)
                            for a, b, c in stamped_layout_dims(len(chunk.data), start_ns)]
        msgs.append(("/mic", "std_msgs/msg/Int16MultiArray", start_ns + 23_000_000,
                     serialize_message(chunk)))
    msgs.sort(key=lambda m: m[2])
    write_bag(tmp_path / "stock", msgs, storage)
    labels = tmp_path / "labels.csv"
    labels.write_text(robot.read_text().replace("kitchen,", "stock,"))
    assert build("bag", labels, "--out-dir", tmp_path / "b", "--sensor-size", "34", "34",
                 "--audio-rate", "16000") == 0
    assert build("bag", robot, "--out-dir", tmp_path / "a") == 0
    a = {r["start_ns"]: r for r in samples(tmp_path / "a")}
    b = {r["start_ns"]: r for r in samples(tmp_path / "b")}
    assert a.keys() == b.keys()
    assert all(a[k]["events"] == b[k]["events"] and b[k]["audio_coverage"] == "1.0" for k in a)
    da, db = EadDataset(tmp_path / "a", "test"), EadDataset(tmp_path / "b", "test")
    for i in range(len(da)):
        assert da.samples[i][3] == db.samples[i][3]
        assert np.array_equal(da[i].pcm, db[i].pcm)  # the same int16 samples, either way
        assert np.array_equal(np.sort(da[i].events, order=["t", "x", "y", "p"]),
                              np.sort(db[i].events, order=["t", "x", "y", "p"]))


def test_spans_from_a_label_topic_of_the_bag(tl, robot, tmp_path):
    """A bag that carries its labels (the replay node's ground truth JSON on a String topic)
    gives the samples its CSV gives."""
    from taaf_ros.data.bags import typestore
    from taaf_ros.inference.scoring import GroundTruth

    String = typestore().types["std_msgs/msg/String"]
    truth = [("/ground_truth", "std_msgs/msg/String", T0_NS + round(b * 1e9),
              String(data=GroundTruth(f"s{i}", lab, 0, T0_NS + round(a * 1e9),
                                      T0_NS + round(b * 1e9)).to_json()))
             for i, (a, b, lab) in enumerate(tl.spans)]
    msgs = sorted(bag_messages(tl) + truth, key=lambda m: m[2])
    write_bag(tmp_path / "labelled", msgs)
    assert build("bag", tmp_path / "labelled", "--label-topic", "/ground_truth", "--out-dir",
                 tmp_path / "b", "--test-ratio", "0.3") == 2  # one bag: one group
    write_bag(tmp_path / "labelled2", msgs)
    assert build("bag", tmp_path / "labelled", tmp_path / "labelled2", "--label-topic",
                 "/ground_truth", "--out-dir", tmp_path / "b") == 0
    assert build("bag", robot, "--out-dir", tmp_path / "a") == 0
    a = {r["start_ns"]: r["events"] for r in samples(tmp_path / "a")}
    b = samples(tmp_path / "b")
    assert len(b) == 18 and all(a[r["start_ns"]] == r["events"] for r in b)
    assert {r["group"] for r in b} == {"labelled", "labelled2"}
    bad = [m if m[0] != "/ground_truth" else (m[0], m[1], m[2], String(data="{}"))
           for m in msgs]
    write_bag(tmp_path / "broken", bad)
    with pytest.raises(LabelError, match="broken: /ground_truth at log time .* not a label"):
        from taaf_ros.data.labels import spans_from_label_topic

        spans_from_label_topic([tmp_path / "broken"], "/ground_truth")


def test_stream_eval_scores_a_labelled_bag_as_the_node_runs(robot, tmp_path, capsys):
    """taaf_stream_eval: the bundled model over the robot bag, every window on the hop grid:
    no rule names a digit between samples; the node's rule abstains there."""
    from taaf_ros.apps.stream_eval import main as stream_eval

    digits = tmp_path / "digits.csv"
    digits.write_text(robot.read_text().replace(",zero,", ",0,").replace(",one,", ",1,")
                      .replace(",two,", ",2,").replace("kitchen,", f"{robot.parent}/kitchen,"))
    assert stream_eval([str(robot)]) == 2
    assert "label 'zero' is not one of the classes" in capsys.readouterr().err
    assert stream_eval([str(digits)]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    none, rule = ({"aligned": float(r[2]), "background": float(r[4])} for r in rows)
    assert none["background"] == 0.0 and rule["background"] >= 0.8  # lag: 0.9 s gaps here
    assert none["aligned"] >= 2 / 3


# ------------------------------------------------------------------ what users really export
@pytest.mark.slow
def test_a_labels_csv_in_nanoseconds_is_refused_before_anything_is_allocated(robot, tl,
                                                                              tmp_path, capsys):
    """A spreadsheet's nanoseconds given as seconds once asked for billions of windows (23 GB
    until the kernel killed the build, --dry-run too): refused at once, naming the unit and
    the flag, in the CSV's own numbers; with --time-unit ns it builds."""
    import subprocess
    import sys

    bag = robot.parent / "kitchen"
    ns = tmp_path / "ns.csv"
    ns.write_text("recording,start,end,label,group\n" + "\n".join(
        f"{bag},{round(a * 1e9)},{round(b * 1e9)},{lab},take{i % 3}"
        for i, (a, b, lab) in enumerate(tl.spans)) + "\n")
    a0, b0 = tl.spans[0][:2]
    for extra in ([], ["--dry-run"]):
        args = [str(x) for x in ("bag", ns, "--out-dir", tmp_path / "ds", "--quiet", *extra)]
        code = ("import resource, sys; from taaf_ros.apps.dataset import main; "
                f"rc = main({args}); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024); sys.exit(rc)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2, r.stderr
        assert (f"line 2: the span {round(a0 * 1e9)}-{round(b0 * 1e9)} s is not inside "
                f"kitchen, which lasts") in r.stderr, r.stderr
        assert "its times look like ns (--time-unit ns)" in r.stderr
        assert int(r.stdout.split()[-1]) < 1500  # MB: the process itself, no windows
    assert not list(tmp_path.glob(".ds.*.partial")) and not (tmp_path / "ds").exists()
    assert build("bag", ns, "--out-dir", tmp_path / "ds", "--time-unit", "ns") == 0
    assert len(samples(tmp_path / "ds")) == len(tl.spans)


def test_a_label_typo_is_an_error_naming_both_labels(robot, tl, tmp_path, capsys):
    bag = robot.parent / "kitchen"
    first_two = next(i for i, (_, _, lab) in enumerate(tl.spans) if lab == "two")
    rows = [f"{bag},{a},{b},{'tow' if i == first_two else lab},take{i % 3}"
            for i, (a, b, lab) in enumerate(tl.spans)]
    assert any(",tow," in r for r in rows)
    typo = _labels(tmp_path, "\n".join(rows) + "\n")
    err = _bad(tmp_path, capsys, "bag", typo, "--out-dir", tmp_path / "x")
    assert "label 'tow' (1 span(s)) is an edit or two from 'two'" in err and \
        "--classes" in err, err
    # named in --classes, it is a class of its own
    assert build("bag", typo, "--out-dir", tmp_path / "x", "--classes", "one,tow,two,zero") == 0


def test_a_bag_without_its_audio_info_is_told_the_format(robot, tl, tmp_path, capsys):
    """A bag recorded without /audio/audio_info: the error says what to give; given, the
    samples are those of the bag with it."""
    msgs = [m for m in bag_messages(tl) if not m[1].endswith("AudioInfo")]
    write_bag(tmp_path / "kitchen", msgs)
    labels = robot.read_text().replace("kitchen,", f"{tmp_path / 'kitchen'},")
    (tmp_path / "labels.csv").write_text(labels)
    err = _bad(tmp_path, capsys, "bag", tmp_path / "labels.csv", "--out-dir", tmp_path / "x")
    assert "without an AudioInfo topic" in err and "--audio-format wave or mp3" in err
    assert build("bag", tmp_path / "labels.csv", "--out-dir", tmp_path / "x", "--audio-format",
                 "wave", "--audio-rate", str(tl.rate)) == 0
    assert build("bag", robot, "--out-dir", tmp_path / "y") == 0
    a, b = EadDataset(tmp_path / "x", "train"), EadDataset(tmp_path / "y", "train")
    assert len(a) == len(b) > 0
    for i in range(len(a)):
        assert np.array_equal(a[i].pcm, b[i].pcm) and np.array_equal(a[i].events, b[i].events)


def test_a_build_stopped_or_killed_leaves_no_partial_folder(robot, tmp_path):
    """SIGTERM in the middle: the half-built folder goes; one left by a build that was
    killed outright (SIGKILL, out of memory) goes at the next build."""
    import signal
    import subprocess
    import sys
    import time

    stale = tmp_path / ".ds.999999999.partial"  # no such process
    stale.mkdir()
    (stale / "junk").write_text("x")
    cmd = [sys.executable, "-m", "taaf_ros.apps.dataset", "bag", str(robot), "--out-dir",
           str(tmp_path / "ds")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not any(p != stale for p in tmp_path.glob(".ds.*.partial")):
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.02)
    assert not stale.exists()  # removed by this build as it started
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; nothing written" in err, err
    assert not list(tmp_path.glob(".ds.*")) and not (tmp_path / "ds").exists()


@pytest.mark.slow
def test_stream_eval_aligned_is_the_datasets_accuracy_on_the_chosen_split(robot, tmp_path,
                                                                          capsys):
    """taaf_stream_eval --dataset DIR --split test: the aligned windows are exactly the test
    samples taaf_dataset cut, so aligned accuracy (no rule) is offline test accuracy; a model
    that trained on a scored recording is named in a warning."""
    import torch

    from taaf_ros.apps.stream_eval import main as stream_eval

    digits = tmp_path / "digits.csv"
    digits.write_text(robot.read_text().replace(",zero,", ",0,").replace(",one,", ",1,")
                      .replace(",two,", ",2,").replace("kitchen,", f"{robot.parent}/kitchen,"))
    assert build("bag", digits, "--out-dir", tmp_path / "ds") == 0
    capsys.readouterr()
    assert stream_eval([str(digits), "--dataset", str(tmp_path / "ds"), "--split", "test"]) == 0
    out = capsys.readouterr()
    row = out.out.splitlines()[2].split("|")
    aligned, n_aligned = float(row[2]), int(row[7])
    test = [r for r in samples(tmp_path / "ds") if r["split"] == "test"]
    offline = {start: probs for start, _, probs in
               offline_evaluation(tmp_path / "ds", Classifier(find_bundled_model(), "cpu"))}
    right = [str(int(np.argmax(offline[int(r["start_ns"])]))) == r["label"] for r in test]
    assert n_aligned == len(test) > 0
    assert aligned == pytest.approx(np.mean(right), abs=5e-4)  # printed with 3 decimals
    assert "warning" not in out.err
    # a model whose card says it trained on this recording: named
    obj = torch.load(find_bundled_model(), weights_only=True)
    obj["model_card"]["metrics"]["train_recordings"] = [str(robot.parent / "kitchen")]
    torch.save(obj, tmp_path / "mine.pt")
    assert stream_eval([str(digits), "--model", str(tmp_path / "mine.pt")]) == 0
    assert "warning: the model trained on kitchen" in capsys.readouterr().err
    assert stream_eval([str(digits), "--split", "test"]) == 2
    assert "--split needs --dataset" in capsys.readouterr().err


def test_few_recordings_validate_on_a_time_block_of_each_so_all_train(tmp_path):
    """With fewer than three training groups, validation is the last fifth of each
    recording's windows; training windows that reach into the block are dropped (no event or
    audio of a validation window is trained on), and every recording still trains."""
    from taaf_ros.training.data import TensorSet, split_time_blocks

    window = 600_000_000
    places, ids = {}, []
    for rec, n in (("a", 20), ("b", 10)):
        for k in range(n):
            sid = f"{rec}{k}"
            ids.append(sid)
            places[sid] = (rec, k * 300_000_000)  # windows overlap by half
    ts = TensorSet(np.zeros((30, 1)), np.zeros((30, 1)), np.zeros(30, np.int64), ids)
    train, val, what = split_time_blocks(ts, places, window)
    assert sorted(val.ids) == ["a16", "a17", "a18", "a19", "b8", "b9"]
    for v in val.ids:
        rec, start = places[v]
        for t in train.ids:
            r, s = places[t]
            assert r != rec or s + window <= start or s >= start + window, (t, v)
    assert {places[t][0] for t in train.ids} == {"a", "b"}  # every recording trains
    assert "a15" not in train.ids and "a14" in train.ids  # a15 reaches into a's block
    assert "time blocks; 2 training windows across a block's edge dropped" in what


def test_a_dataset_of_few_recordings_trains_with_time_block_validation(robot, tmp_path,
                                                                        capsys):
    from taaf_ros.apps import train as cli

    assert build("bag", robot, "--out-dir", tmp_path / "ds", "--dry-run") == 0
    assert ("validation (train_ead.py, --val-speaker auto): 2 training group(s): the last 20% "
            "of each of the 1 training recordings' windows") in capsys.readouterr().out
    assert build("bag", robot, "--out-dir", tmp_path / "ds", "--classes", "zero,one,two") == 0
    assert len({r["group"] for r in samples(tmp_path / "ds") if r["split"] == "train"}) < 3
    assert cli.main(["--data-root", str(tmp_path / "ds"), "--out-dir", str(tmp_path / "run"),
                     "--epochs", "1", "--no-progress", "--init-from",
                     str(find_bundled_model())]) == 0
    import json

    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["dataset"]["val_speaker"] == "block" and m["dataset"]["n_val"] > 0
    assert m["selected_by"].startswith("validation the last 20% of each of 1 recordings")


def test_own_samples_go_back_where_they_were_recorded_for_the_rule(robot, tmp_path):
    """The decision rule of a model trained on one's own recordings is chosen on windows slid
    along them: the samples put back at their recorded times give every window of the hop grid
    from the first to the last, each sample's own window classified exactly as the sample is
    offline, and the windows between samples scored against the spans."""
    from taaf_ros.inference.stream_eval import placed_windows

    # spans 0.2 s longer than a window, cut 0.2 s apart: samples overlap, their data goes in once
    rows = [r.split(",") for r in robot.read_text().splitlines()[1:]]
    wide = tmp_path / "wide.csv"
    wide.write_text("recording,start,end,label,group\n" + "".join(
        f"{robot.parent / rec},{float(a) - 0.1:.3f},{float(b) + 0.1:.3f},{lab},{g}\n"
        for rec, a, b, lab, g in rows))
    assert build("bag", wide, "--out-dir", tmp_path / "ds", "--background",
                 "--stride-s", "0.2") == 0
    clf = Classifier(find_bundled_model(), "cpu")
    ds = EadDataset(tmp_path / "ds", "train")
    w = placed_windows(clf, ds, list(range(len(ds)))[::-1], ds.places)  # any order given
    starts = w.start_us * 1000
    # the windows of the hop grid that lie whole in the samples' data, and no other
    window_ns, hop_ns = clf.frontend.window_us * 1000, w.hop_us * 1000
    stretches: list[list[int]] = []
    for a in sorted(ds.places[s[3]][1] for s in ds.samples):
        if stretches and a <= stretches[-1][1]:
            stretches[-1][1] = max(stretches[-1][1], a + window_ns)
        else:
            stretches.append([a, a + window_ns])
    inside = [g for a, b in stretches for g in range(a, b - window_ns + 1, hop_ns)]
    assert starts.tolist() == inside and len(stretches) < len(ds)  # samples overlap
    assert w.aligned.sum() == len(ds)
    offline = {start: probs for start, _, probs in offline_evaluation(tmp_path / "ds", clf)}
    for start, probs in zip(starts[w.aligned], w.probs[w.aligned], strict=True):
        np.testing.assert_allclose(probs, offline[int(start)], atol=1e-5)
    background = ds.classes.index("background")
    assert (w.truth == background).any() and (w.truth >= 0).mean() > 0.5

