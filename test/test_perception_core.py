"""ROS-free tests of the live perception logic: parameters, windows, time, schema, scoring."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from taaf_ros.nodes import params
from taaf_ros.nodes import perception_core as core
from taaf_ros.nodes.params import PERCEPTION_PARAMS, REPLAY_PARAMS, TABLES

REPO_ROOT = Path(__file__).resolve().parent.parent

MS = 1000  # µs per ms


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("table", [PERCEPTION_PARAMS, REPLAY_PARAMS])
def test_defaults_are_valid_and_unique(table):
    names = [s.name for s in table]
    assert len(names) == len(set(names))
    assert params.validate(table, params.defaults(table)) == []
    for s in table:
        assert s.description and s.check(s.default) is None


@pytest.mark.parametrize("name, value, reason", [
    ("hop_s", 0.0, ">= 0.005"),
    ("hop_s", "0.05", "must be a float"),
    ("top_k", True, "must be a int"),
    ("device", "tpu", "must be one of"),
    ("events_type", "evt3", "must be one of"),
    ("audio_sample_rate", 10, ">= 1000"),
    ("nonsense", 1, "unknown parameter"),
])
def test_bad_values_are_refused_with_reason(name, value, reason):
    errors = params.validate(PERCEPTION_PARAMS, {name: value})
    assert len(errors) == 1 and reason in errors[0], errors


def test_cross_rules_and_accepted_forms():
    assert params.validate(PERCEPTION_PARAMS, {"device": "cuda:1"}) == []
    assert params.validate(PERCEPTION_PARAMS, {"window_s": 1}) == []  # int for a float is ok
    assert "must not exceed" in params.validate(
        PERCEPTION_PARAMS, {"window_s": 0.2, "hop_s": 0.5})[0]
    # window_s 0 means "from the model card": no cross check then.
    assert params.validate(PERCEPTION_PARAMS, {"window_s": 0.0, "hop_s": 0.5}) == []


def test_config_yaml_is_generated_from_the_table():
    path = REPO_ROOT / "config" / "perception.yaml"
    assert path.read_text() == params.render_yaml()
    doc = yaml.safe_load(path.read_text())
    for node, table in TABLES.items():
        assert doc[node]["ros__parameters"] == params.defaults(table)


def _doc_rows(text: str, heading: str) -> dict[str, tuple[str, str]]:
    """Rows `| name | default | description |` of the table under ``heading``."""
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


@pytest.mark.parametrize("node", list(TABLES))
def test_docs_parameter_table_matches_params(node):
    text = (REPO_ROOT / "docs" / "ros.md").read_text()
    rows = _doc_rows(text, f"### Parameters of `{node}`")
    table = TABLES[node]
    assert set(rows) == {s.name for s in table}
    for s in table:
        default, desc = rows[s.name]
        assert default == f"`{json.dumps(s.default)}`", s.name
        assert desc == params.describe(s), s.name


# ----------------------------------------------------------------------------- time helpers
def test_event_times_follow_the_header_stamp():
    t = np.array([5_000_000, 5_000_010, 5_000_500], np.int64)  # sensor clock
    assert core.event_times_to_ros(t, 1_700_000_000_000_000).tolist() == [
        1_700_000_000_000_000, 1_700_000_000_000_010, 1_700_000_000_000_500]
    assert core.event_times_to_ros(t[:0], 7).size == 0


def test_stampless_clock_continues_by_sample_count_and_resyncs():
    clk = core.StamplessClock(resync_us=100 * MS, early_us=5 * MS)
    assert clk.place(1_010 * MS, 80, 8000) == (1_000 * MS, 0)  # chunk ends at receipt
    # Jittered receipt (13 ms late): placed back to back anyway.
    assert clk.place(1_033 * MS, 80, 8000) == (1_010 * MS, 0)
    # 2 ms earlier than the clock predicts: within early_us, still back to back.
    assert clk.place(1_028 * MS, 80, 8000) == (1_020 * MS, 0)
    assert clk.next_us == 1_030 * MS and (clk.resyncs, clk.corrections) == (0, 0)
    # A pause of 1 s: restart from the receipt time, forward.
    assert clk.place(2_100 * MS, 80, 8000) == (2_090 * MS, 0)
    assert clk.resyncs == 1


def test_stampless_clock_never_moves_back_over_placed_audio():
    clk = core.StamplessClock(resync_us=100 * MS, early_us=5 * MS)
    # The first chunk came 40 ms late (discovery, a loaded publisher): placed 40 ms late.
    assert clk.place(1_050 * MS, 80, 8000) == (1_040 * MS, 0)
    # The next one arrives on time: all of it lies in time already placed: dropped whole.
    assert clk.place(1_020 * MS, 80, 8000) == (1_050 * MS, 80)
    # A chunk whose start is 20 ms inside placed time: 160 of 400 samples dropped, the rest
    # continues exactly where the placed audio ends, and the clock is now on the receipt.
    assert clk.place(1_080 * MS, 400, 8000) == (1_050 * MS, 160)
    assert clk.next_us == 1_080 * MS
    assert clk.corrections == 2 and clk.dropped_samples == 240 and clk.resyncs == 0


def test_stampless_clock_moves_forward_after_lost_chunks_not_on_jitter():
    clk = core.StamplessClock(resync_us=100 * MS, early_us=5 * MS, window=4)
    t = 1_000 * MS
    assert clk.place(t + 10 * MS, 80, 8000) == (t, 0)
    # A burst: three chunks delivered together 30 ms late. The last one is on time, so no
    # chunk proves the clock early: back to back.
    for k in (1, 2, 3):
        assert clk.place(t + 40 * MS, 80, 8000) == (t + k * 10 * MS, 0)
    # Two chunks lost (20 ms): every later chunk arrives >= 20 ms after the clock expects it;
    # after `window` such chunks the clock jumps forward by the smallest lead, 20 ms.
    got = [clk.place(t + (k + 1) * 10 * MS + 20 * MS + j * MS, 80, 8000)
           for k, j in zip(range(4, 8), (3, 0, 7, 1), strict=True)]
    assert [g[0] for g in got] == [t + 40 * MS, t + 50 * MS, t + 60 * MS, t + 90 * MS]
    assert clk.corrections == 1 and clk.resyncs == 0 and clk.next_us == t + 100 * MS


def test_stampless_clock_is_monotonic_and_close_under_random_delays():
    """Random delays, bursts, lost chunks and pauses: placed chunks never overlap, and once
    the clock has had a few chunks to settle, placement is within a few ms of the truth."""
    rng = np.random.default_rng(1)
    clk = core.StamplessClock()
    end, t, errors = None, 1_000 * MS, []
    for _ in range(3000):
        n = 80
        t += n * 125  # true end of this chunk
        u = rng.random()
        if u < 0.005:
            t += int(rng.integers(150, 400)) * MS  # a pause (the stream stopped)
        elif u < 0.01:
            continue  # lost in transport
        delay = int(rng.exponential(2 * MS)) + (50 * MS if rng.random() < 0.01 else 0)
        start, skip = clk.place(t + delay, n, 8000)
        assert 0 <= skip <= n
        if end is not None:
            assert start >= end  # never back over placed audio
        end = start + (n - skip) * 125
        if skip < n:
            errors.append(start - (t - n * 125 + skip * 125))
    errors = np.abs(np.asarray(errors))
    assert clk.resyncs > 0 and clk.corrections > 0
    # Lost chunks leave the clock early by their length until `window` chunks prove it.
    assert np.mean(errors <= 6 * MS) > 0.9 and errors.max() <= 60 * MS


def test_multiarray_stamp_convention_round_trip():
    from types import SimpleNamespace as D

    dims = [D(label=a, size=b, stride=c) for a, b, c in core.stamped_layout_dims(80, 17 * 10**17)]
    assert dims[0].label == "samples" and dims[0].size * dims[1].size == 80
    assert core.multiarray_stamp_ns(dims) == 17 * 10**17
    assert core.multiarray_stamp_ns([]) is None
    assert core.multiarray_stamp_ns([D(label="samples", size=80)]) is None
    assert core.multiarray_stamp_ns([D(label="t_ns=-5", size=1)]) is None
    assert core.multiarray_stamp_ns([D(label="t_ns=12", size=2)]) is None


def test_multiarray_stamp_on_real_messages():
    std_msgs = pytest.importorskip("std_msgs.msg")
    msg = std_msgs.Int16MultiArray(data=list(range(80)))
    msg.layout.dim = [std_msgs.MultiArrayDimension(label=a, size=b, stride=c)
                      for a, b, c in core.stamped_layout_dims(80, 1_795_000_000_123_456_789)]
    assert core.multiarray_stamp_ns(msg.layout.dim) == 1_795_000_000_123_456_789
    assert core.multiarray_stamp_ns(std_msgs.Int16MultiArray().layout.dim) is None


def test_doctests():
    import doctest

    assert doctest.testmod(core).failed == 0


def test_seq_gaps_count_lost_packets():
    s = core.SeqTracker()
    for q in (1, 2, 5, 6, 3):
        s.update(q)
    assert s.lost == 2 and s.resets == 1


# ----------------------------------------------------------------------------- scheduler
def _sched(**kw):
    args = dict(window_us=600 * MS, hop_us=50 * MS, max_wait_us=100 * MS,
                timeout_us=500 * MS, now_us=0)
    args.update(kw)
    return core.WindowScheduler(**args)


def test_windows_end_on_the_hop_grid_and_cover_the_first_data():
    s = _sched()
    s.note("events", 1_000 * MS, 1_700 * MS, 1_700 * MS)
    s.note("audio", 1_002 * MS, 1_700 * MS, 1_700 * MS)
    got = s.poll(1_650 * MS)
    # First window starts at the data (1.000 s), then one per hop; all on the grid.
    assert [(w.start_us, w.end_us) for w in got] == [(1_000 * MS, 1_600 * MS),
                                                     (1_050 * MS, 1_650 * MS)]
    assert s.stats.dropped == 0
    # Inference fell behind by 3 hops: only the newest two are served, the rest counted.
    s.note("events", 1_650 * MS, 1_900 * MS, 1_900 * MS)
    s.note("audio", 1_650 * MS, 1_900 * MS, 1_900 * MS)
    assert [w.end_us for w in s.poll(1_900 * MS)] == [1_850 * MS, 1_900 * MS]
    assert s.stats.dropped == 3 and s.stats.cut == 4
    assert all(w.present == (True, True) and not w.degraded for w in got)


def test_window_waits_for_both_modalities_then_masks_the_late_one():
    s = _sched()
    s.note("events", 1_000 * MS, 1_650 * MS, 1_650 * MS)
    s.note("audio", 1_000 * MS, 1_550 * MS, 1_650 * MS)
    assert s.poll(1_650 * MS) == []  # audio not yet at 1.6 s: wait
    s.note("audio", 1_550 * MS, 1_610 * MS, 1_660 * MS)
    (w,) = s.poll(1_660 * MS)
    assert w.end_us == 1_600 * MS and w.present == (True, True)
    # Audio stops at 1.61 s: the 1.65 s window is cut after max_wait with audio masked.
    s.note("events", 1_650 * MS, 1_760 * MS, 1_760 * MS)
    assert s.poll(1_740 * MS) == []
    (w,) = s.poll(1_750 * MS)
    assert w.present == (True, False) and w.degraded and s.stats.late["audio"] == 1


def test_timed_out_modality_does_not_delay_windows_and_health_levels():
    s = _sched()
    s.note("audio", 1_000 * MS, 1_100 * MS, 1_100 * MS)
    s.note("events", 1_000 * MS, 1_700 * MS, 1_700 * MS)
    assert s.health(1_700 * MS)[0] == core.WARN  # audio silent for 0.6 s > 0.5 s
    got = s.poll(1_700 * MS)  # no wait for max_wait: audio is known missing
    assert got and got[-1].end_us == 1_700 * MS and got[-1].timed_out == (False, True)
    assert s.health(2_300 * MS)[0] == core.STALE
    assert s.poll(2_300 * MS) == [] and s.stats.stale > 0
    # Recovery: both back, windows resume near now, not from the stale past.
    s.note("events", 2_300 * MS, 2_400 * MS, 2_400 * MS)
    s.note("audio", 2_300 * MS, 2_400 * MS, 2_400 * MS)
    assert s.health(2_400 * MS)[0] == core.OK
    got = s.poll(2_400 * MS)
    assert got and got[0].end_us >= 2_200 * MS and got[-1].present == (True, True)


def test_never_heard_modality_times_out_from_creation():
    s = _sched(now_us=1_000 * MS)
    s.note("events", 1_000 * MS, 1_800 * MS, 1_800 * MS)
    got = s.poll(1_800 * MS)
    assert got and all(w.present == (True, False) for w in got)
    assert s.health(1_800 * MS) == (core.WARN, "degraded: audio missing (masked)")


def test_configure_changes_waiting():
    s = _sched()
    s.configure(max_wait_us=0, timeout_us=10_000 * MS)
    s.note("events", 1_000 * MS, 1_700 * MS, 1_700 * MS)
    s.note("audio", 1_000 * MS, 1_100 * MS, 1_100 * MS)
    assert s.poll(1_600 * MS)[-1].present == (True, False)


# ----------------------------------------------------------------------------- schema
def _prediction(degraded=False):
    w = core.WindowCut(1_000 * MS, 1_600 * MS, (True, not degraded), (False, degraded))
    probs = np.array([0.1, 0.7, 0.2])
    return core.make_prediction(
        seq=3, window=w, probs=probs, classes=["a", "b", "c"],
        modality_attention=[0.6, 0.4], attention_map=np.full((8, 2), 1 / 16), k=2,
        n_events=10, audio_coverage=1.0, inference_ms=5.0, latency_ms=12.5)


def test_prediction_schema_round_trip():
    p = core.parse_prediction(json.dumps(_prediction()))
    assert p["version"] == core.SCHEMA_VERSION and p["label"] == "b" and p["class_id"] == 1
    assert [e["label"] for e in p["top_k"]] == ["b", "c"]
    assert p["window"] == {"start_ns": 1_000_000_000, "end_ns": 1_600_000_000}
    assert p["modality_attention"] == {"events": 0.6, "audio": 0.4}
    assert np.asarray(p["attention_map"]["values"]).shape == (8, 2)
    d = _prediction(degraded=True)
    assert d["degraded"] and d["missing"] == ["audio"] and d["present"] == ["events"]
    with pytest.raises(ValueError):
        core.parse_prediction(json.dumps({**d, "version": 99}))
    with pytest.raises(ValueError):
        core.parse_prediction(json.dumps({k: v for k, v in d.items() if k != "label"}))


# ----------------------------------------------------------------------------- scoring / plan
def test_replay_plan_puts_samples_on_the_window_grid():
    plan = core.ReplayPlan(600 * MS, 50 * MS, 200 * MS, 30 * MS, first_start_us=1_012 * MS)
    assert plan.origin_us == 1_050 * MS and plan.slot_us == 800 * MS
    assert plan.packet_us == 25 * MS  # shrunk to divide the hop
    assert plan.slot_start(2) == 2_650 * MS
    slot, a, b = plan.packet(32)
    assert (slot, a, b) == (1, 1_850 * MS, 1_875 * MS)
    # Audio sample ranges tile the timeline with no gap or overlap.
    r = [plan.sample_range(*plan.packet(k)[1:], 44_100) for k in range(5)]
    assert all(r[i][1] == r[i + 1][0] for i in range(4))


def test_replay_order_interleaves_classes():
    labels = [0] * 3 + [1] * 2 + [2] * 4
    order = core.replay_order(labels)
    assert sorted(order) == list(range(9))
    assert [labels[i] for i in order] == [0, 1, 2, 0, 1, 2, 0, 2, 2]
    assert core.replay_order(labels, "listed") == list(range(9))
    with pytest.raises(ValueError):
        core.replay_order(labels, "random")


def test_scoreboard_matches_windows_to_samples():
    b = core.Scoreboard()
    b.add_truth(core.GroundTruth("s0", "1", 1, 1_000_000_000, 1_600_000_000))
    b.add_truth(core.GroundTruth("s1", "2", 2, 1_800_000_000, 2_400_000_000))

    def pred(start_ms, cls):
        p = _prediction()
        p["window"] = {"start_ns": start_ms * 1_000_000, "end_ns": (start_ms + 600) * 1_000_000}
        p["class_id"] = cls
        return p

    assert b.add_prediction(pred(1000, 1))[0].id == "s0"  # aligned, right
    assert b.add_prediction(pred(1800, 1))[1] == 1.0  # aligned, wrong
    g, cover = b.add_prediction(pred(1700, 2))  # mostly s1 (500 ms of 600)
    assert g.id == "s1" and cover == pytest.approx(500 / 600)
    s = b.summary()
    assert s["aligned_windows"] == 2 and s["aligned_accuracy"] == 0.5
    assert s["majority_windows"] == 3 and s["majority_accuracy"] == pytest.approx(2 / 3)


def test_find_bundled_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bundled model"):
        core.find_bundled_model([tmp_path / "a"])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "m.pt").write_bytes(b"x")
    assert core.find_bundled_model([tmp_path / "a", tmp_path / "b"]).name == "m.pt"


def test_diagnostic_values_are_strings():
    kv = dict(core.diagnostic_values(
        level=core.WARN, message="m", device="cpu", inputs={"events": core.InputCounters(bad=2)},
        rates={"events.msgs": 10.0}, buffers={"events.size": 5},
        scheduler=core.SchedulerStats(), window_latency={"p50": 1.0},
        inference_latency={"p50": 2.0}, predictions=4))
    assert kv["level"] == "WARN" and kv["events.bad_messages"] == "2"
    assert all(isinstance(v, str) for v in kv.values())
