"""Time evlib's event frame on streams saved by bench_binning.py (run in evlib's own venv).

evlib imports torchvision whenever torch is installed, and the project's torch/torchvision
pair makes that import fail, so evlib runs in a separate virtual environment
(``make bench-peers`` makes it). Usage: ``python evlib_frames.py STREAM.npz [...] --repeats 3``.
Each .npz holds x, y, t (µs), p and width, height, bins; one JSON line is printed per stream:
{"name", "seconds" (best of the repeats: DataFrame in, dense (T, 2, H, W) counts out),
"sha1" of the dense counts as int64, "events"}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
from evlib.representations import create_event_frame, densify_event_frame


def frame(df: pl.DataFrame, width: int, height: int, bins: int) -> np.ndarray:
    long = create_event_frame(df, height, width, bins, engine="in-memory")
    return densify_event_frame(long, bins, 2, height, width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("streams", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for path in args.streams:
        z = np.load(path)
        w, h, bins = int(z["width"]), int(z["height"]), int(z["bins"])
        df = pl.DataFrame({"t": z["t"].astype(np.int64), "x": z["x"].astype(np.int16),
                           "y": z["y"].astype(np.int16), "polarity": z["p"].astype(np.int8)})
        best, dense = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            dense = frame(df, w, h, bins)
            best = min(best, time.perf_counter() - t0)
        digest = hashlib.sha1(np.ascontiguousarray(dense, dtype=np.int64).tobytes()).hexdigest()
        print(json.dumps({"name": path.stem, "seconds": best, "sha1": digest,
                          "events": int(len(df))}), flush=True)


if __name__ == "__main__":
    main()
