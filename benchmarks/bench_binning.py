"""Benchmark bin_events against tonic's ToFrame (the oracle) on one window; asserts equal output.

Run: python benchmarks/bench_binning.py [--sizes 1000000 10000000] [--repeats 3]
Prints events/s for tonic, for bin_events (numba) and for the numpy bincount variant, and the
speed-up of bin_events over tonic. Times exclude the conversion to tonic's dtype (favouring tonic).

Then the same on real recordings (the bags in ../shared/data/event_bags, each repeated in time
to ``--real-events``), against tonic, evlib's event frame (run by ``--peer-python``, a virtual
environment of its own: ``make bench-peers`` makes one) and a plain memory copy of the events
(the bandwidth bound), and the live node's streaming front end on the same events.
evlib bins the whole stream into T equal integer bins and drops what
falls past the last; the real-data window is cut the same way, so all three outputs are equal
(checked: tonic by array, evlib by a SHA-1 of its dense counts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import record
import tonic

from taaf_ros.data.bags import events_from_bag
from taaf_ros.events.binning import _bin_numpy, bin_events, tonic_bin_edges
from taaf_ros.events.types import make_events
from taaf_ros.stream.event_frames import StreamingEventFrames

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_BAGS = ("test_data_evt3_trigger", "test_data_libcaer_rollover", "test_events_2")

TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])


def make_stream(n: int, kind: str, W: int, H: int, t0: int, t1: int, seed: int = 0) -> np.ndarray:
    """Sorted events: "random" uniform in space and time; "bursty": 90 % in 3 short bursts
    over a small patch (a moving edge), the rest uniform."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        t = rng.integers(t0, t1, n)
        x, y = rng.integers(0, W, n), rng.integers(0, H, n)
    else:
        nb = n * 9 // 10
        centres = rng.integers(t0, t1, 3)
        t = np.concatenate(
            [
                np.clip(
                    rng.choice(centres, nb) + rng.normal(0, 500, nb).astype(np.int64), t0, t1 - 1
                ),
                rng.integers(t0, t1, n - nb),
            ]
        )
        x = np.concatenate([rng.integers(W // 2 - 20, W // 2 + 20, nb), rng.integers(0, W, n - nb)])
        y = np.concatenate([rng.integers(H // 2 - 20, H // 2 + 20, nb), rng.integers(0, H, n - nb)])
    order = np.argsort(t, kind="stable")
    return make_events(x[order], y[order], t[order], rng.integers(0, 2, n)[order])


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        s = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - s)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--kinds", nargs="+", default=["random", "bursty"])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--bins", type=int, default=10, help="T, time bins per window")
    ap.add_argument("--window-us", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get(
        "TAAF_DATA_ROOT", REPO_ROOT.parent / "shared" / "data")),
        help="folder holding event_bags/ (default: TAAF_DATA_ROOT or ../shared/data)")
    ap.add_argument("--real-events", type=int, default=3_000_000,
                    help="events per real stream (each bag repeated in time)")
    ap.add_argument("--peer-python", type=Path, default=REPO_ROOT / ".venv-peers/bin/python",
                    help="python of a venv with evlib (skipped where missing)")
    record.add_argument(ap)
    args = ap.parse_args()
    rows: list[record.Row] = []

    W, H, T = args.width, args.height, args.bins
    t0 = 1_700_000_000_000_000
    t1 = t0 + args.window_us
    sensor = (W, H, 2)
    bin_events(make_stream(10, "random", W, H, t0, t1), sensor, T, t0, t1)  # compile / load cache

    print(f"sensor {W}x{H}, T={T}, window {args.window_us} us, best of {args.repeats}")
    print(
        f"{'kind':>7} {'events':>10} {'tonic ev/s':>12} {'numba ev/s':>12} "
        f"{'numpy ev/s':>12} {'speed-up':>9}"
    )
    for n in args.sizes:
        for kind in args.kinds:
            ev = make_stream(n, kind, W, H, t0, t1)
            te = np.empty(n, dtype=TONIC_DTYPE)
            for f in "xytp":
                te[f] = ev[f]
            frame = tonic.transforms.ToFrame(
                sensor, time_window=(t1 - t0) / T, start_time=t0, end_time=t1
            )
            t_tonic, ref = best_of(lambda te=te, frame=frame: frame(te), args.repeats)
            t_ours, ours = best_of(lambda ev=ev: bin_events(ev, sensor, T, t0, t1), args.repeats)
            lo, hi = tonic_bin_edges(t0, t1, T)
            flat = np.zeros(T * 2 * H * W, dtype=np.int16)

            def numpy_path(ev=ev, lo=lo, hi=hi, flat=flat):
                _bin_numpy(
                    ev["x"],
                    ev["y"],
                    ev["t"],
                    ev["p"],
                    lo,
                    hi,
                    float(t0),
                    (t1 - t0) / T,
                    W,
                    H,
                    32767,
                    flat,
                )
                return flat.reshape(T, 2, H, W)

            t_np, ours_np = best_of(numpy_path, 1)
            assert ref.dtype == ours.dtype and ref.shape == ours.shape, (ref.shape, ours.shape)
            assert np.array_equal(ref, ours), "bin_events differs from tonic"
            assert np.array_equal(ref, ours_np), "numpy path differs from tonic"
            print(
                f"{kind:>7} {n:>10} {n / t_tonic:>12.3g} {n / t_ours:>12.3g} "
                f"{n / t_np:>12.3g} {t_tonic / t_ours:>8.1f}x"
            )
            rows.append(record.Row(
                f"binning {n / 1e6:g} M {kind} events, {W} x {H}, T = {T} (equal to tonic's)",
                f"{n / t_ours / 1e6:.0f} M events/s", f"tonic's ToFrame: "
                f"{n / t_tonic / 1e6:.1f} M events/s", t_tonic / t_ours))

    rows += bench_real(args)
    record.write(args.record, "Binning events into spike tensors (one core)", rows,
                 ["equal output to tonic's ToFrame (and to evlib where it ran) is asserted "
                  "before any figure is printed"])


def tiled(ev: np.ndarray, n_events: int) -> np.ndarray:
    """The recording repeated back to back in time until it holds at least n_events."""
    span = int(ev["t"][-1] - ev["t"][0]) + 1
    reps = -(-n_events // len(ev))
    out = np.tile(ev, reps)
    out["t"] = np.tile(ev["t"] - ev["t"][0], reps) + np.repeat(np.arange(reps) * span, len(ev))
    return out


def bench_real(args: argparse.Namespace) -> list[record.Row]:
    T = args.bins
    root = args.data_root / "event_bags"
    streams = {}
    for name in REAL_BAGS:
        if (root / name).is_dir():
            ev, (w, h) = events_from_bag(root / name)
            streams[name] = (tiled(ev, args.real_events), w, h)
    if not streams:
        print(f"\nno event bags under {root}: real-data comparison skipped")
        return []
    peer = {}
    if args.peer_python.exists():
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name, (ev, w, h) in streams.items():
                paths.append(Path(tmp) / f"{name}.npz")
                np.savez(paths[-1], x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"], width=w,
                         height=h, bins=T)
            out = subprocess.run([str(args.peer_python), str(REPO_ROOT / "benchmarks" / "peers"
                                  / "evlib_frames.py"), *map(str, paths), "--repeats",
                                  str(args.repeats)], capture_output=True, text=True)
            if out.returncode:
                print(f"evlib run failed: {out.stderr[-500:]}")
            peer = {d["name"]: d for d in map(json.loads, out.stdout.split("\n")[:-1])}
    else:
        print(f"\nno {args.peer_python}: evlib not timed (make bench-peers)")
    print(f"\nreal recordings (repeated to >= {args.real_events / 1e6:g} M events, one window, "
          f"T={T}), M events/s; copy = memcpy of the events ({np.dtype(ev.dtype).itemsize} "
          "B each)")
    rows: list[record.Row] = []
    print(f"{'recording':<28}{'sensor':>10}{'events':>10}{'ours':>8}{'tonic':>8}{'evlib':>8}"
          f"{'copy':>8}{'vs tonic':>10}{'vs evlib':>10}{'of copy':>9}{'stream':>8}{'of copy':>9}")
    for name, (ev, w, h) in streams.items():
        n = len(ev)
        t0, bw = int(ev["t"][0]), (int(ev["t"][-1]) - int(ev["t"][0])) // T
        t1, sensor = t0 + T * bw, (w, h, 2)
        bin_events(ev[:10], sensor, T, t0, t1)
        t_ours, ours = best_of(lambda ev=ev, s=sensor, a=t0, b=t1: bin_events(ev, s, T, a, b),
                               args.repeats)
        te = np.empty(n, dtype=TONIC_DTYPE)
        for f in "xytp":
            te[f] = ev[f]
        frame = tonic.transforms.ToFrame(sensor, time_window=bw, start_time=t0, end_time=t1)
        t_tonic, ref = best_of(lambda te=te, frame=frame: frame(te), args.repeats)
        assert np.array_equal(ref, ours), f"{name}: bin_events differs from tonic"
        t_stream = best_of(lambda ev=ev, w=w, h=h: stream_push(ev, (w, h)), args.repeats)[0]
        src = ev.view(np.uint8)
        dst = np.empty_like(src)
        t_copy, _ = best_of(lambda src=src, dst=dst: np.copyto(dst, src), args.repeats)
        line = (f"{name:<28}{f'{w}x{h}':>10}{n:>10}{n / t_ours / 1e6:>8.0f}"
                f"{n / t_tonic / 1e6:>8.1f}")
        p = peer.get(name)
        if p is not None:
            digest = hashlib.sha1(ours.astype(np.int64).tobytes()).hexdigest()
            assert digest == p["sha1"], f"{name}: evlib's frame differs from ours"
            line += f"{n / p['seconds'] / 1e6:>8.1f}"
        else:
            line += f"{'-':>8}"
        line += f"{n / t_copy / 1e6:>8.0f}{t_tonic / t_ours:>9.1f}x"
        line += f"{p['seconds'] / t_ours:>9.1f}x" if p is not None else f"{'-':>10}"
        line += f"{t_copy / t_ours:>9.0%}{n / t_stream / 1e6:>8.0f}{t_copy / t_stream:>9.0%}"
        print(line)
        what = f"binning a real recording, {name} ({w} x {h}, {n / 1e6:.1f} M events)"
        rows.append(record.Row(what, f"{n / t_ours / 1e6:.0f} M events/s", f"tonic's ToFrame: "
                               f"{n / t_tonic / 1e6:.1f} M events/s", t_tonic / t_ours,
                               headline=not rows))
        if p is not None:
            rows.append(record.Row(what, f"{n / t_ours / 1e6:.0f} M events/s", f"evlib: "
                                   f"{n / p['seconds'] / 1e6:.1f} M events/s",
                                   p["seconds"] / t_ours))
    print("ours = bin_events at the sensor's resolution (tonic's ToFrame semantics); stream = the "
          "live node's streaming front end (StreamingEventFrames.push: fit to 34x34 and count "
          "into 25 ms sub-bins, in 300 packets); faery (also on PyPI) has no count "
          "frame (its renders decay and colour-map), so it is not timed")
    return rows


def stream_push(ev: np.ndarray, sensor: tuple[int, int]) -> None:
    frames = StreamingEventFrames(sensor, (34, 34), "crop", 600_000, 8, 25_000, 2_000_000)
    for chunk in np.array_split(ev, 300):
        frames.push(chunk)


if __name__ == "__main__":
    main()
