"""The ``libcaer`` and ``libcaer_cmp`` encodings of libcaer_driver (iniVation DAVIS, DVXplorer).

``libcaer``: libcaer's own polarity events, 8 bytes each, copied from the driver as they are:

=======  ======  ==================================================================
bytes    type    meaning
=======  ======  ==================================================================
0-3      uint32  bit 0 valid mark, bit 1 polarity, bits 2-16 y, bits 17-31 x
4-7      int32   timestamp, µs, low 31 bits of the sensor clock
=======  ======  ==================================================================

Time: ``t_us = time_base_ns // 1000 + timestamp (+ 2**31 per wrap)``. The driver puts the host
time at start-up plus the high bits of the sensor clock into ``time_base``; a timestamp smaller
than the one before it inside one packet is a wrap of the 31-bit clock (counted). Events with
the valid mark cleared were invalidated by libcaer (e.g. by its filters) and are dropped
(counted as ``dropped_invalid``).

``libcaer_cmp``: the driver's compressed form, 16-bit little-endian words, code in the top 4
bits (layout from ros-event-camera/libcaer_driver ``compression_tokens.hpp`` and the decoder of
event_camera_codecs):

=====  ===========  ===============================================================
code   type         payload
=====  ===========  ===============================================================
0      TIME_HIGH    high 12 bits of the 24-bit time since ``time_base`` (µs)
1      TIME_LOW     low 12 bits
2      ADDR_X       x [0:11]                                 -> sets the current column
3      ADDR_Y       y [0:11], polarity [11]                  -> one event at (x, y)
4      VECT_BASE_Y  y [0:11], polarity [11]                  -> base row, polarity
5      VECT_8       valid mask [0:8]: event at base y + i    -> then base y += 8
=====  ===========  ===============================================================

Time: ``t_us = time_base_ns // 1000 + (TIME_HIGH << 12 | TIME_LOW)``. Every packet starts its
time (and column, row, polarity) afresh, so this decoder keeps no state across packets. Other
codes are counted as unknown words.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from taaf_ros.events.types import EVENT_DTYPE

LIBCAER_COUNTERS = ("decoded", "dropped_out_of_range", "dropped_invalid", "time_rollovers")
CMP_COUNTERS = ("decoded", "dropped_out_of_range", "unknown_words")
MAX_COORD = 0x7FFF
TS_WRAP_US = 1 << 31

CMP_TIME_HIGH, CMP_TIME_LOW, CMP_ADDR_X, CMP_ADDR_Y, CMP_VECT_BASE_Y, CMP_VECT_8 = range(6)
CMP_MAX_COORD = 0x7FF
CMP_MAX_DT_US = (1 << 24) - 1


@njit(cache=True, nogil=True)
def _decode_libcaer_kernel(words, base_us, width, height, counts, xs, ys, ts, ps):
    n = 0
    oor = 0
    invalid = 0
    rolls = 0
    last = np.int64(0)
    high = np.int64(0)
    for i in range(words.shape[0] // 2):
        d = np.int64(words[2 * i]) & 0xFFFFFFFF
        stamp = np.int64(words[2 * i + 1])
        # Only wraps inside the packet matter: time_base carries the high bits at its start.
        if stamp < last:
            high += TS_WRAP_US
            rolls += 1
        last = stamp
        if d & 1 == 0:
            invalid += 1
            continue
        x = (d >> 17) & 0x7FFF
        y = (d >> 2) & 0x7FFF
        if x < width and y < height:
            xs[n] = x
            ys[n] = y
            ts[n] = base_us + high + stamp
            ps[n] = (d >> 1) & 1
            n += 1
        else:
            oor += 1
    counts[0] = n
    counts[1] = oor
    counts[2] = invalid
    counts[3] = rolls
    return n


def decode_libcaer_words(
    words: np.ndarray, time_base_ns: int, width: int, height: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Decode native-order int32 words (data, timestamp pairs; length must be even)."""
    out = np.empty(words.shape[0] // 2, dtype=EVENT_DTYPE)
    counts = np.zeros(len(LIBCAER_COUNTERS), dtype=np.int64)
    n = _decode_libcaer_kernel(words, np.int64(time_base_ns // 1000), width, height, counts,
                               out["x"], out["y"], out["t"], out["p"])
    return out[:n], dict(zip(LIBCAER_COUNTERS, counts.tolist(), strict=True))


def encode_libcaer(events: np.ndarray, time_base_ns: int = 0) -> bytes:
    """Encode events as libcaer polarity events (valid mark set) relative to ``time_base_ns``.

    Needs ``0 <= t_us - time_base_ns // 1000 < 2**31`` and x, y <= 32767 (else ValueError).
    Wraps are not produced: build such streams by hand.
    """
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events must have dtype EVENT_DTYPE, got {events.dtype}")
    out = np.empty((events.shape[0], 2), dtype="<u4")
    if events.shape[0] == 0:
        return b""
    stamp = events["t"].astype(np.int64) - int(time_base_ns) // 1000
    if stamp.min() < 0 or stamp.max() >= TS_WRAP_US:
        raise ValueError("libcaer timestamps are 31 bits of µs after time_base")
    if max(int(events["x"].max()), int(events["y"].max())) > MAX_COORD:
        raise ValueError(f"libcaer stores x and y in 15 bits: must be <= {MAX_COORD}")
    d = (events["x"].astype(np.uint32) << np.uint32(17)) | (
        events["y"].astype(np.uint32) << np.uint32(2))
    d |= ((events["p"] != 0).astype(np.uint32) << np.uint32(1)) | np.uint32(1)
    out[:, 0] = d
    out[:, 1] = stamp.astype(np.uint32)
    return out.tobytes()


@njit(cache=True, nogil=True)
def _decode_cmp_kernel(words, base_us, width, height, counts, xs, ys, ts, ps):
    n = 0
    oor = 0
    unknown = 0
    x = 0
    by = 0
    pol = 0
    high = 0
    low = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code == CMP_ADDR_Y:
            y = w & 0x7FF
            if x < width and y < height:
                xs[n] = x
                ys[n] = y
                ts[n] = base_us + ((high << 12) | low)
                ps[n] = (w >> 11) & 1
                n += 1
            else:
                oor += 1
        elif code == CMP_VECT_8:
            for k in range(8):
                if (w >> k) & 1:
                    if x < width and by + k < height:
                        xs[n] = x
                        ys[n] = by + k
                        ts[n] = base_us + ((high << 12) | low)
                        ps[n] = pol
                        n += 1
                    else:
                        oor += 1
            by += 8
        elif code == CMP_ADDR_X:
            x = w & 0x7FF
        elif code == CMP_VECT_BASE_Y:
            by = w & 0x7FF
            pol = (w >> 11) & 1
        elif code == CMP_TIME_LOW:
            low = w & 0xFFF
        elif code == CMP_TIME_HIGH:
            high = w & 0xFFF
        else:
            unknown += 1
    counts[0] = n
    counts[1] = oor
    counts[2] = unknown
    return n


@njit(cache=True, nogil=True)
def _count_cmp_events(words, width, height):  # pragma: no cover - compiled
    """The number of events of a packet inside the sensor (the decoder's address state
    only, no output): what the decoder will write."""
    n = 0
    x = 0
    by = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code == CMP_ADDR_Y:
            n += x < width and (w & 0x7FF) < height
        elif code == CMP_VECT_8:
            if x < width:
                for k in range(8):
                    n += ((w >> k) & 1) and by + k < height
            by += 8
        elif code == CMP_ADDR_X:
            x = w & 0x7FF
        elif code == CMP_VECT_BASE_Y:
            by = w & 0x7FF
    return n


def decode_libcaer_cmp_words(
    words: np.ndarray, time_base_ns: int, width: int, height: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Decode native-order uint16 ``libcaer_cmp`` words of one packet (fresh state).

    Memory: a counting pass first sizes the output to exactly the events the packet yields,
    so a packet costs what its decoded events cost, never 8 slots of 13 bytes for every 2-byte
    word (a hostile packet of VECT_8 words outside the sensor allocates nothing).
    """
    out = np.empty(_count_cmp_events(words, width, height), dtype=EVENT_DTYPE)
    counts = np.zeros(len(CMP_COUNTERS), dtype=np.int64)
    n = _decode_cmp_kernel(words, np.int64(time_base_ns // 1000), width, height, counts,
                           out["x"], out["y"], out["t"], out["p"])
    events = out[:n]
    return events, dict(zip(CMP_COUNTERS, counts.tolist(), strict=True))


def encode_libcaer_cmp(events: np.ndarray, time_base_ns: int = 0) -> bytes:
    """Encode one packet as ``libcaer_cmp`` words (ADDR_X / ADDR_Y only, no vectors).

    Needs ``0 <= t_us - time_base_ns // 1000 < 2**24`` and x, y <= 2047 (else ValueError).
    Events are written in their given order; meant for tests and replay, not for speed.
    """
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events must have dtype EVENT_DTYPE, got {events.dtype}")
    if events.shape[0] == 0:
        return b""
    dt = events["t"].astype(np.int64) - int(time_base_ns) // 1000
    if dt.min() < 0 or dt.max() > CMP_MAX_DT_US:
        raise ValueError("libcaer_cmp times are 24 bits of µs after time_base")
    if max(int(events["x"].max()), int(events["y"].max())) > CMP_MAX_COORD:
        raise ValueError(f"libcaer_cmp stores x and y in 11 bits: must be <= {CMP_MAX_COORD}")
    words: list[int] = []
    high = low = x = -1
    for xi, yi, ti, pi in zip(events["x"].tolist(), events["y"].tolist(), dt.tolist(),
                              events["p"].tolist(), strict=True):
        if ti >> 12 != high:
            high = ti >> 12
            words.append((CMP_TIME_HIGH << 12) | high)
        if ti & 0xFFF != low:
            low = ti & 0xFFF
            words.append((CMP_TIME_LOW << 12) | low)
        if xi != x:
            x = xi
            words.append((CMP_ADDR_X << 12) | xi)
        words.append((CMP_ADDR_Y << 12) | (int(pi != 0) << 11) | yi)
    return np.asarray(words, dtype="<u2").tobytes()
