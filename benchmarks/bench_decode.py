"""Decoding speed of the event payload decoders, on one core, against plain references.

    python benchmarks/bench_decode.py --events 10000000
    python benchmarks/bench_decode.py --data-root ../shared/data     # + real recordings, peers

The evt3 stream imitates a busy Gen4 sensor (1280 x 720): short horizontal bursts of pixels in
one row at one time stamp with ~70 % fill, written with vector words as the sensor does. The
same events are encoded as mono and libcaer. Each decoder runs once to warm up (numba compiles
or loads its cache), then the best of ``--repeat`` timed runs is reported. References: the
plain-Python EVT 3.0 decoder on a prefix of the stream (it is too slow for all of it), and
vectorised numpy decoders for mono and libcaer.

With ``--data-root``, the same is done on the real recordings of ``event_bags/`` (each bag's
payloads concatenated, repeated to ``--real-events``): a synthetic stream can flatter a kernel,
real words (mostly single events on a Prophesee sensor) do not. The peer ``expelliarmus`` (C,
``pip install expelliarmus``) decodes the same EVT 3.0 words from a file, timed with its file
reading, as it is used.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import record

from taaf_ros.events.decoder import EventDecoder
from taaf_ros.events.evt3 import decode_evt3_reference, encode_evt3
from taaf_ros.events.libcaer import encode_libcaer
from taaf_ros.events.mono import encode_mono
from taaf_ros.events.types import empty_events

WIDTH, HEIGHT = 1280, 720


def busy_stream(n_events: int, span_us: int, seed: int = 0) -> np.ndarray:
    """Bursts of 4-48 neighbouring pixels per row and time stamp, ~70 % of them firing."""
    rng = np.random.default_rng(seed)
    n_bursts = max(1, int(n_events / (26 * 0.7)))
    length = rng.integers(4, 49, n_bursts)
    start = rng.integers(0, WIDTH - 48, n_bursts)
    burst = np.repeat(np.arange(n_bursts), length)
    offset = np.arange(burst.size) - np.repeat(np.cumsum(length) - length, length)
    keep = rng.random(burst.size) < 0.7
    burst, offset = burst[keep], offset[keep]
    ev = empty_events(burst.size)
    ev["x"] = start[burst] + offset
    ev["y"] = rng.integers(0, HEIGHT, n_bursts)[burst]
    ev["t"] = np.sort(rng.integers(0, span_us, n_bursts))[burst]
    ev["p"] = rng.integers(0, 2, n_bursts)[burst]
    return ev[:n_events]


def mono_numpy(raw: bytes, time_base: int) -> np.ndarray:
    w = np.frombuffer(raw, dtype="<u8")
    x, y = (w >> 32) & 0xFFFF, (w >> 48) & 0x7FFF
    keep = (x < WIDTH) & (y < HEIGHT)
    w = w[keep]
    ev = empty_events(w.size)
    ev["x"], ev["y"], ev["p"] = x[keep], y[keep], w >> 63
    ev["t"] = (time_base + (w & 0xFFFFFFFF).astype(np.int64)) // 1000
    return ev


def libcaer_numpy(raw: bytes, time_base: int) -> np.ndarray:
    w = np.frombuffer(raw, dtype="<u4").reshape(-1, 2)
    d, stamp = w[:, 0], w[:, 1].view("<i4").astype(np.int64)
    stamp += np.cumsum(np.r_[False, np.diff(stamp) < 0]) << 31  # 31-bit clock wraps
    x, y = (d >> 17) & 0x7FFF, (d >> 2) & 0x7FFF
    keep = (d & 1 == 1) & (x < WIDTH) & (y < HEIGHT)
    ev = empty_events(int(keep.sum()))
    ev["x"], ev["y"], ev["p"] = x[keep], y[keep], (d[keep] >> 1) & 1
    ev["t"] = time_base // 1000 + stamp[keep]
    return ev


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000, help="events in the stream")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per decoder (best kept)")
    ap.add_argument("--reference-events", type=int, default=200_000,
                    help="prefix length for the plain-Python evt3 reference")
    ap.add_argument("--data-root", default=None, help="real data root (holds event_bags/)")
    ap.add_argument("--real-events", type=int, default=5_000_000,
                    help="events per real stream (the bag repeated)")
    record.add_argument(ap)
    args = ap.parse_args()
    rows: list[record.Row] = []

    ev = busy_stream(args.events, span_us=2_000_000)  # 2 s: within mono's 32-bit ns offsets
    n = ev.size
    time_base = 1_700_000_000_000_000_000
    ev["t"] += time_base // 1000
    evt3 = encode_evt3(_sensor_time(ev))
    payloads = {"evt3": (evt3, 0), "mono": (encode_mono(ev, time_base), time_base),
                "libcaer": (encode_libcaer(ev, time_base), time_base)}
    print(f"{n / 1e6:.1f} M events, sensor {WIDTH}x{HEIGHT}; evt3 {len(evt3) / n:.2f} B/event")

    for name, (raw, tb) in payloads.items():
        dec = EventDecoder(name, WIDTH, HEIGHT)
        out = dec.decode(raw, time_base=tb)  # warm-up: compile or load the numba cache
        assert out.size == n, (name, out.size, n)
        dt = best_time(lambda raw=raw, tb=tb, name=name:
                       EventDecoder(name, WIDTH, HEIGHT).decode(raw, time_base=tb), args.repeat)
        rate = n / dt / 1e6
        if name == "evt3":
            cut = len(evt3) * min(1.0, args.reference_events / n)
            prefix = evt3[: int(cut) // 2 * 2]
            t0 = time.perf_counter()
            ref = decode_evt3_reference(prefix, WIDTH, HEIGHT)
            ref_rate = ref.size / (time.perf_counter() - t0) / 1e6
            ref_name = "plain Python"
            np.testing.assert_array_equal(ref, out[: ref.size])
        else:
            ref_fn = mono_numpy if name == "mono" else libcaer_numpy
            ref_rate = n / best_time(lambda raw=raw, tb=tb, f=ref_fn: f(raw, tb),
                                     args.repeat) / 1e6
            ref_name = "numpy"
            np.testing.assert_array_equal(ref_fn(raw, tb), out)
        print(f"{name:8s} {rate:8.1f} M events/s   {ref_name:12s} {ref_rate:8.2f} M events/s"
              f"   ratio {rate / ref_rate:7.1f}x")
        rows.append(record.Row(f"decoding {name}, {n / 1e6:.0f} M synthetic events, "
                               f"{WIDTH} x {HEIGHT}", f"{rate:.0f} M events/s",
                               f"{ref_name}: {ref_rate:.2f} M events/s", rate / ref_rate))
    if args.data_root:
        rows += bench_real(args)
    record.write(args.record, "Decoding event camera packets (one core)", rows,
                 ["decoded events equal the reference's (asserted)"])


def real_streams(root: str, n_events: int) -> dict[str, tuple[bytes, int, int, int, int]]:
    """encoding -> (payload repeated to >= n_events, events in it, time_base, width, height)."""
    from pathlib import Path

    from taaf_ros.data.bags import read_bag

    out = {}
    for name in ("test_data_evt3_trigger", "test_data_libcaer_rollover", "test_events_2"):
        msgs = [m.msg for m in read_bag(Path(root) / "event_bags" / name)]
        enc, w, h = msgs[0].encoding, int(msgs[0].width), int(msgs[0].height)
        if enc == "evt3":
            words = np.frombuffer(b"".join(bytes(m.events) for m in msgs), "<u2")
            # Without the 2 external-trigger words (type 0xA): expelliarmus refuses them.
            raw, tb = words[(words >> 12) != 0xA].tobytes(), 0
        else:  # per-packet time bases: keep the first packet's layout, repeat one packet type
            raw, tb = b"".join(bytes(m.events) for m in msgs[:1]), int(msgs[0].time_base)
        n = EventDecoder(enc, w, h).decode(raw, tb).size
        reps = max(1, -(-n_events // max(n, 1)))
        out[enc] = (raw * reps, n * reps, tb, w, h)
    return out


def bench_real(args: argparse.Namespace) -> list[record.Row]:
    print(f"\nreal recordings (../event_bags, repeated to >= {args.real_events / 1e6:g} M events)")
    rows = []
    for enc, (raw, n, tb, w, h) in real_streams(args.data_root, args.real_events).items():
        EventDecoder(enc, w, h).decode(raw[:4096], tb)  # warm-up
        dt = best_time(lambda raw=raw, enc=enc, tb=tb, w=w, h=h:
                       EventDecoder(enc, w, h).decode(raw, tb), args.repeat)
        line = f"{enc:12s} {w}x{h} {len(raw) / n:.2f} B/event: {n / dt / 1e6:7.1f} M events/s"
        what = f"decoding a real {enc} recording ({w} x {h}, repeated to {n / 1e6:.1f} M events)"
        if enc == "evt3":
            peer, peer_rate = expelliarmus_evt3(raw, n / dt, args.repeat)
            line += "   " + peer
            if peer_rate:
                rows.append(record.Row(what, f"{n / dt / 1e6:.1f} M events/s", f"expelliarmus "
                                       f"(C, with its file read): {peer_rate / 1e6:.1f} M "
                                       "events/s", n / dt / peer_rate, headline=True))
        else:
            rows.append(record.Row(what, f"{n / dt / 1e6:.0f} M events/s", "-"))
        print(line)
    return rows


def expelliarmus_evt3(raw: bytes, our_rate: float, repeat: int) -> tuple[str, float]:
    """The peer on the same EVT 3.0 words, read from a file as it is used: (what to print,
    its events per second; 0 where it is not installed)."""
    try:
        from expelliarmus import Wizard
    except ImportError:
        return "expelliarmus not installed (pip install expelliarmus)", 0.0
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "real.raw"
        path.write_bytes(b"% evt 3.0\n% end\n" + raw)  # a RAW file's header, then the words
        wizard = Wizard(encoding="evt3", fpath=str(path))
        got = wizard.read()
        ours = EventDecoder("evt3", WIDTH, HEIGHT).decode(raw)
        # Same events; times differ only after each repeat, where the clock jumps back.
        assert got.size == ours.size and np.array_equal(got["x"], ours["x"].astype(got["x"].dtype))
        dt = best_time(wizard.read, repeat)
    rate = got.size / dt
    return (f"expelliarmus (C, with file read) {rate / 1e6:.1f} M events/s -> ours "
            f"{our_rate / rate:.2f}x"), rate


def _sensor_time(ev: np.ndarray) -> np.ndarray:
    """EVT 3.0 carries sensor time: start the evt3 copy of the stream at 0 µs."""
    out = ev.copy()
    out["t"] -= out["t"].min()
    return out


if __name__ == "__main__":
    main()
