"""Benchmark bin_events against tonic's ToFrame (the oracle) on one window; asserts equal output.

Run: python benchmarks/bench_binning.py [--sizes 1000000 10000000] [--repeats 3]
Prints events/s for tonic, for bin_events (numba) and for the numpy bincount variant, and the
speed-up of bin_events over tonic. Times exclude the conversion to tonic's dtype (favouring tonic).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tonic

from taaf_ros.events.binning import _bin_numpy, bin_events, tonic_bin_edges
from taaf_ros.events.types import make_events

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
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
