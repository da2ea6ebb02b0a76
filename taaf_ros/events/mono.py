"""The ``mono`` encoding of event_camera_codecs: one 64-bit little-endian word per event.

======  ==========================================================
bits    meaning
======  ==========================================================
0-31    dt: nanoseconds since the packet's ``time_base`` (uint32)
32-47   x (uint16)
48-62   y (15 bits)
63      polarity (1 = ON)
======  ==========================================================

Time: ``t_us = (time_base_ns + dt_ns) // 1000`` (floor to the microsecond). The format has no
state across packets and no wrap inside one (a packet spans at most 2**32 ns, ~4.3 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from taaf_ros.events.types import EVENT_DTYPE

COUNTER_NAMES = ("decoded", "dropped_out_of_range")
MAX_X = 0xFFFF
MAX_Y = 0x7FFF
MAX_DT_NS = 0xFFFFFFFF


@njit(cache=True, nogil=True)
def _decode_kernel(words, time_base_ns, width, height, xs, ys, ts, ps):
    n = 0
    oor = 0
    for i in range(words.shape[0]):
        w = words[i]  # int64 view: arithmetic shifts, so every field is masked below
        x = (w >> 32) & 0xFFFF
        y = (w >> 48) & 0x7FFF
        if x < width and y < height:
            xs[n] = x
            ys[n] = y
            ts[n] = (time_base_ns + (w & 0xFFFFFFFF)) // 1000
            ps[n] = (w >> 63) & 1
            n += 1
        else:
            oor += 1
    return n, oor


def decode_mono_words(
    words: np.ndarray, time_base_ns: int, width: int, height: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Decode native-order int64 ``mono`` words; ``time_base_ns`` in [0, 2**63 - 2**32)."""
    out = np.empty(words.shape[0], dtype=EVENT_DTYPE)
    n, oor = _decode_kernel(words, np.int64(time_base_ns), width, height,
                            out["x"], out["y"], out["t"], out["p"])
    return out[:n], {"decoded": int(n), "dropped_out_of_range": int(oor)}


def encode_mono(events: np.ndarray, time_base_ns: int = 0) -> bytes:
    """Encode events as ``mono`` words relative to ``time_base_ns``.

    Every event must satisfy ``0 <= t_us * 1000 - time_base_ns < 2**32``, x <= 65535 and
    y <= 32767; otherwise ValueError.
    """
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events must have dtype EVENT_DTYPE, got {events.dtype}")
    if events.shape[0] == 0:
        return b""
    dt = events["t"].astype(np.int64) * 1000 - int(time_base_ns)
    if dt.min() < 0 or dt.max() > MAX_DT_NS:
        raise ValueError("mono stores dt in 32 bits of ns: need 0 <= t*1000 - time_base < 2**32")
    if events["y"].max() > MAX_Y:
        raise ValueError(f"mono stores y in 15 bits: y must be <= {MAX_Y}")
    w = dt.astype(np.uint64)
    w |= events["x"].astype(np.uint64) << np.uint64(32)
    w |= events["y"].astype(np.uint64) << np.uint64(48)
    w |= (events["p"] != 0).astype(np.uint64) << np.uint64(63)
    return w.astype("<u8").tobytes()
