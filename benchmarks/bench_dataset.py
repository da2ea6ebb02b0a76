"""How fast ``taaf_dataset`` turns a bag into a dataset, and in how much memory.

Times, on one bag: reading it alone (rosbags, every message deserialised: the floor), and the
whole build (``taaf_dataset bag``: decoding through the node's inputs, the clock, cutting and
writing the samples) in a child process, whose peak RSS is measured. Bags:

- synthetic: a camera at ``--rate`` M events/s (EventPacket evt3, ``--packet-ms`` packets,
  ``--sensor`` pixels) and a 16 kHz microphone (AudioDataStamped), ``--seconds`` long,
  written with rosbags (some hundreds of MB), labelled with a 0.6 s span every second;
- the real camera bags of ``<data root>/event_bags`` (events only), labelled the same way.

Usage::

    python benchmarks/bench_dataset.py [--rate 5] [--seconds 30] [--markdown docs/bench/dataset.md]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))


def synthetic_messages(rate_meps: float, seconds: float, packet_ms: float,
                       sensor: tuple[int, int], seed: int = 0):
    """(topic, type, log ns, message) of the synthetic camera and microphone, generated as
    they are written (the bag never sits in memory)."""
    from recordings import AUDIO_TOPIC, EVENTS_TOPIC, INFO_TOPIC, T0_NS

    from taaf_ros.data.bags import typestore
    from taaf_ros.events import encode_evt3
    from taaf_ros.events.types import empty_events

    T = typestore().types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Packet = T["event_camera_msgs/msg/EventPacket"]
    Audio, Data = T["audio_common_msgs/msg/AudioDataStamped"], T["audio_common_msgs/msg/AudioData"]

    def header(ns: int):
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="camera")

    rng = np.random.default_rng(seed)
    yield (INFO_TOPIC, "audio_common_msgs/msg/AudioInfo", T0_NS,
           T["audio_common_msgs/msg/AudioInfo"](channels=1, sample_rate=16000,
                                                sample_format="S16LE", bitrate=0,
                                                coding_format="wave"))
    step = round(packet_ms * 1000)
    per_packet = max(1, round(rate_meps * 1e6 * packet_ms / 1e3))
    chunk = 320  # 20 ms of audio
    next_audio = 0
    clock = 0
    for seq, a in enumerate(range(0, round(seconds * 1e6), step)):
        ev = empty_events(per_packet)
        ev["x"] = rng.integers(0, sensor[0], per_packet)
        ev["y"] = rng.integers(0, sensor[1], per_packet)
        ev["t"] = np.sort(rng.integers(a, a + step, per_packet))
        ev["p"] = rng.integers(0, 2, per_packet)
        stamp = T0_NS + int(ev["t"][0]) * 1000
        words = encode_evt3(ev, clock)
        clock = int(ev["t"][-1])
        while next_audio * 1_000_000 // 16000 + 20_000 <= a + step:
            s_ns = T0_NS + next_audio * 1_000_000_000 // 16000
            pcm = (rng.standard_normal(chunk) * 1000).astype("<i2")
            yield (AUDIO_TOPIC, "audio_common_msgs/msg/AudioDataStamped",
                   s_ns + 20_000_000 + 3_000_000,
                   Audio(header=header(s_ns), audio=Data(data=np.frombuffer(
                       pcm.tobytes(), np.uint8).copy())))
            next_audio += chunk
        yield (EVENTS_TOPIC, "event_camera_msgs/msg/EventPacket",
               T0_NS + (a + step) * 1000 + 1_000_000,
               Packet(header=header(stamp), height=sensor[1], width=sensor[0], seq=seq,
                      time_base=stamp, encoding="evt3", is_bigendian=False,
                      events=np.frombuffer(words, np.uint8).copy()))


def labels_for(bag: Path, seconds: float, folder: Path) -> Path:
    """Spans of two classes, groups in turn: 0.6 s every second on a long bag; on a real bag
    (a second or two) 0.1 s spans every 0.15 s, whose centred windows the build keeps where
    they lie inside the bag (--on-bad report)."""
    step, length = (1.0, 0.6) if seconds > 4 else (0.15, 0.1)
    starts = np.arange(0.2, seconds - length, step)
    rows = [f"{bag},{t:.3f},{t + length:.3f},{'ab'[i % 2]},g{i % 3}"
            for i, t in enumerate(starts)]
    path = folder / f"{bag.name}.csv"
    path.write_text("recording,start,end,label,group\n" + "\n".join(rows) + "\n")
    return path


def read_alone(bag: Path) -> tuple[float, int]:
    """Seconds to read (and deserialise) every message, and the bag's events."""
    from taaf_ros.data.bags import EVENT_TYPES, BagEventDecoder, bag_topics, read_bag

    topics = list(bag_topics(bag))
    t0 = time.perf_counter()
    for _ in read_bag(bag, topics):
        pass
    read_s = time.perf_counter() - t0
    ev_topic = next(t for t, ty in bag_topics(bag).items() if ty in EVENT_TYPES)
    dec = BagEventDecoder()
    n = sum(len(dec.decode(m).events) for m in read_bag(bag, [ev_topic]))
    return read_s, n


def build(labels: Path, out: Path, extra: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, output) of ``taaf_dataset bag`` in a child process."""
    cmd = [sys.executable, "-m", "taaf_ros.apps.dataset", "bag", str(labels), "--out-dir",
           str(out), "--quiet", "--overwrite", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status:
        raise SystemExit(f"taaf_dataset failed:\n{output}")
    return wall, usage.ru_maxrss / 1024, output


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=5.0, help="synthetic camera, M events/s")
    ap.add_argument("--seconds", type=float, default=30.0, help="synthetic bag length")
    ap.add_argument("--packet-ms", type=float, default=5.0)
    ap.add_argument("--sensor", type=int, nargs=2, default=(640, 480))
    ap.add_argument("--storage", choices=("sqlite3", "mcap"), default="mcap")
    ap.add_argument("--data-root", type=Path,
                    default=Path(os.environ.get("TAAF_DATA_ROOT", REPO.parent / "shared/data")))
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    record.add_argument(ap)
    args = ap.parse_args()
    args.data_root = args.data_root.resolve()  # the labels files name bags from elsewhere
    recorded: list[record.Row] = []
    from taaf_ros.data.bags import write_bag

    tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    bag = tmp / "synthetic"
    t0 = time.perf_counter()
    write_bag(bag, synthetic_messages(args.rate, args.seconds, args.packet_ms,
                                      tuple(args.sensor)), args.storage)
    size = sum(f.stat().st_size for f in bag.iterdir())
    print(f"wrote a {size / 2**20:.0f} MiB {args.storage} bag ({args.seconds:g} s at "
          f"{args.rate:g} M ev/s, {args.sensor[0]}x{args.sensor[1]}) in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    cases = [("synthetic", bag, args.seconds, [])]
    report = ["--on-bad", "report"]
    real = args.data_root / "event_bags"
    for b in sorted(p for p in real.iterdir() if p.is_dir()) if real.is_dir() else []:
        from taaf_ros.data.bags import BagError, bag_time_range, bag_topics

        try:
            first, last = bag_time_range(b)
        except BagError as exc:  # a bag this benchmark cannot time: say so
            print(f"skipped {b.name}: {exc}")
            continue
        seconds = (last - first) / 1e9
        if seconds >= 0.7 and any("EventPacket" in t for t in bag_topics(b).values()):
            cases.append((b.name, b, seconds, report))
    rows = ["| bag | MiB | events | read alone (s) | build (s) | build M ev/s | its loop M ev/s "
            "| read alone M ev/s | peak RSS (MiB) | samples |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, path, seconds, extra in cases:
        labels = labels_for(path, seconds, tmp)
        read_s, n = read_alone(path)
        wall, rss, output = build(labels, tmp / f"ds-{name}", extra)
        samples = sum(1 for _ in (tmp / f"ds-{name}" / "samples.csv").open()) - 1
        mib = (sum(f.stat().st_size for f in path.iterdir()) if path.is_dir()
               else path.stat().st_size) / 2**20
        loop = re.search(r"\(([\d.]+) M events/s\)", output)
        rows.append(f"| {name} | {mib:.0f} | {n:,} | {read_s:.2f} | {wall:.1f} | "
                    f"{n / wall / 1e6:.1f} | {loop.group(1) if loop else '?'} | "
                    f"{n / read_s / 1e6:.1f} | {rss:.0f} | {samples} |")
        print(rows[-1], flush=True)
        recorded.append(record.Row(
            f"taaf_dataset bag on {name} ({mib:.0f} MiB, {n:,} events): decode, cut, write",
            f"{n / wall / 1e6:.1f} M events/s, peak RSS {rss:.0f} MiB",
            f"rosbags reading and deserialising it alone: {n / read_s / 1e6:.1f} M events/s",
            read_s / wall))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = "\n".join(rows)
    print("\n" + text)
    print(f"\n(this benchmark process itself peaked at {base:.0f} MiB)")
    if args.markdown:
        args.markdown.write_text(
            f"# Dataset build benchmark\n\nWritten by `python benchmarks/bench_dataset.py "
            f"{' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPU "
            "cores). Build: `taaf_dataset bag` in a child process (decode through the node's "
            "inputs, cut, write), its wall time including Python start-up and loading the "
            "model card (about 3 s here); its loop: the rate the build itself reports (reading, "
            "decoding, cutting and writing, without start-up); read alone: rosbags reading and "
            "deserialising every message of the bag in this process. Peak RSS: the build "
            "process's, torch included.\n\n" + text + "\n")
    record.write(args.record, "Building a dataset from bags (taaf_dataset)", recorded,
                 ["build: the command's wall time in a child process, start-up included"])
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
