"""Prophesee EVT 3.0: decoder (numba), encoder and a slow readable reference decoder.

EVT 3.0 is a stream of 16-bit little-endian words; the top 4 bits are the word type and the
other 12 bits its payload. The stream is stateful: a CD event only carries what changed since
the previous word (row, base column, polarity, time), so the decoder state must survive from one
packet to the next.

======  =============  ==========================================================================
code    type           payload (bit 0 = least significant)
======  =============  ==========================================================================
0x0     EVT_ADDR_Y     y [0:11], system type (master/slave) [11]       -> sets the current row
0x2     EVT_ADDR_X     x [0:11], polarity [11]                         -> one CD event
0x3     VECT_BASE_X    x [0:11], polarity [11]                         -> base column, polarity
0x4     VECT_12        valid mask [0:12]: event at base x + i          -> then base x += 12
0x5     VECT_8         valid mask [0:8]:  event at base x + i          -> then base x += 8
0x6     EVT_TIME_LOW   low 12 bits of the time (µs)
0x7     CONTINUED_4    4 data bits continuing an OTHERS/EXT_TRIGGER    -> ignored
0x8     EVT_TIME_HIGH  high 12 bits of the 24-bit time (µs)
0xA     EXT_TRIGGER    edge [0], id [8:12]                             -> ignored
0xE     OTHERS         12-bit subtype (system/monitoring)              -> ignored
0xF     CONTINUED_12   12 data bits continuing an OTHERS               -> ignored
======  =============  ==========================================================================

Any other code is counted as an unknown word and skipped.

Time: ``t = TIME_HIGH << 12 | TIME_LOW`` is 24 bits of microseconds and wraps every 2**24 µs
(~16.8 s). A TIME_HIGH that jumps *backwards* by more than half its range is a wrap and bumps a
rollover count, so the decoded time is ``rollovers << 24 | high << 12 | low`` (int64 µs of
sensor time). Smaller backward jumps are kept as they are (time going back slightly), because
sensors do repeat slightly older TIME_HIGH words. CD events before the first TIME_HIGH have no
valid time and are dropped (counted as ``dropped_untimed``).

EVT 3.0 carries its own sensor time; the ``time_base`` of an EventPacket is not used.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from taaf_ros.events.types import EVENT_DTYPE, empty_events

# Word type codes (top 4 bits of each 16-bit word).
ADDR_Y = 0x0
ADDR_X = 0x2
VECT_BASE_X = 0x3
VECT_12 = 0x4
VECT_8 = 0x5
TIME_LOW = 0x6
CONTINUED_4 = 0x7
TIME_HIGH = 0x8
EXT_TRIGGER = 0xA
OTHERS = 0xE
CONTINUED_12 = 0xF

MAX_EVENTS_PER_WORD = 12
"""A VECT_12 word is the densest: it yields up to 12 events."""

_POPCOUNT = np.array([bin(i).count("1") for i in range(1 << 12)], dtype=np.int64)

MAX_COORD = 2047
"""x and y are 11-bit fields."""

TIME_WRAP_US = 1 << 24
ROLLOVER_THRESHOLD = 1 << 11
"""A TIME_HIGH smaller than the previous one by more than this (half of 2**12) is a wrap."""

# Decoder state: one int64 array so that the numba kernel can update it in place.
S_Y, S_BASE_X, S_POL, S_TIME_HIGH, S_TIME_LOW, S_ROLLOVERS, S_TIMED = range(7)
STATE_SIZE = 7

# Counters the kernel returns, in this order.
COUNTER_NAMES = ("decoded", "dropped_out_of_range", "dropped_untimed", "unknown_words",
                 "time_rollovers")


def new_state() -> np.ndarray:
    """A fresh decoder state: no row, no time yet."""
    return np.zeros(STATE_SIZE, dtype=np.int64)


@njit(cache=True, nogil=True)
def _decode_kernel(words, width, height, state, counts, xs, ys, ts, ps):
    # Locals instead of state[...] so that the loop works in registers.
    y = state[S_Y]
    bx = state[S_BASE_X]
    pol = state[S_POL]
    high = state[S_TIME_HIGH]
    low = state[S_TIME_LOW]
    rolls = state[S_ROLLOVERS]
    timed = state[S_TIMED]
    t = (rolls << 24) | (high << 12) | low
    n = 0
    oor = 0
    untimed = 0
    unknown = 0
    new_rolls = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code in (VECT_12, VECT_8):  # tested first: vectors dominate busy streams
            if code == VECT_12:
                valid = w & 0xFFF
                nbits = 12
            else:
                valid = w & 0xFF
                nbits = 8
            if timed != 0 and y < height and bx + nbits <= width:
                # Fast path, branch-free: write every slot, advance only on a set bit. Safe
                # because the output has MAX_EVENTS_PER_WORD slots of slack after the events.
                for k in range(nbits):
                    xs[n] = bx + k
                    ys[n] = y
                    ts[n] = t
                    ps[n] = pol
                    n += (valid >> k) & 1
            else:
                for k in range(nbits):
                    if (valid >> k) & 1:
                        if timed == 0:
                            untimed += 1
                        elif y < height and bx + k < width:
                            xs[n] = bx + k
                            ys[n] = y
                            ts[n] = t
                            ps[n] = pol
                            n += 1
                        else:
                            oor += 1
            bx += nbits
        elif code == ADDR_X:
            x = w & 0x7FF
            if timed == 0:
                untimed += 1
            elif x < width and y < height:
                xs[n] = x
                ys[n] = y
                ts[n] = t
                ps[n] = (w >> 11) & 1
                n += 1
            else:
                oor += 1
        elif code == ADDR_Y:
            y = w & 0x7FF
        elif code == VECT_BASE_X:
            bx = w & 0x7FF
            pol = (w >> 11) & 1
        elif code == TIME_LOW:
            low = w & 0xFFF
            t = (rolls << 24) | (high << 12) | low
        elif code == TIME_HIGH:
            h = w & 0xFFF
            if timed != 0 and high - h > ROLLOVER_THRESHOLD:
                rolls += 1
                new_rolls += 1
            high = h
            timed = 1
            t = (rolls << 24) | (high << 12) | low
        elif code in (EXT_TRIGGER, OTHERS, CONTINUED_4, CONTINUED_12):
            pass
        else:
            unknown += 1
    state[S_Y] = y
    state[S_BASE_X] = bx
    state[S_POL] = pol
    state[S_TIME_HIGH] = high
    state[S_TIME_LOW] = low
    state[S_ROLLOVERS] = rolls
    state[S_TIMED] = timed
    counts[0] = n
    counts[1] = oor
    counts[2] = untimed
    counts[3] = unknown
    counts[4] = new_rolls
    return n


@njit(cache=True, nogil=True)
def _count_events(words, popcount):
    """Upper bound of the events in ``words``: ADDR_X words plus the set bits of vectors."""
    n = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code == VECT_12:
            n += popcount[w & 0xFFF]
        elif code == VECT_8:
            n += popcount[w & 0xFF]
        elif code == ADDR_X:
            n += 1
    return n


def decode_evt3_words(
    words: np.ndarray, width: int, height: int, state: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """Decode native-order uint16 EVT 3.0 words, updating ``state`` in place.

    Returns the events (EVENT_DTYPE, t in µs of sensor time) and the counters named in
    ``COUNTER_NAMES``. Events outside ``[0, width) x [0, height)`` are dropped and counted.
    """
    # A cheap counting pass sizes the output exactly (plus the slack the branch-free vector
    # path writes past the last event), instead of 12 slots per word: that bound would
    # touch and then copy several times the memory of the result.
    cap = _count_events(words, _POPCOUNT) + MAX_EVENTS_PER_WORD
    out = np.empty(cap, dtype=EVENT_DTYPE)
    counts = np.zeros(len(COUNTER_NAMES), dtype=np.int64)
    n = _decode_kernel(words, width, height, state, counts,
                       out["x"], out["y"], out["t"], out["p"])
    # Keep the result compact when the upper bound was far too generous (sparse streams).
    events = out[:n].copy() if 2 * n < cap else out[:n]
    return events, dict(zip(COUNTER_NAMES, counts.tolist(), strict=True))


@njit(cache=True, nogil=True)
def _is_sorted(x, y, p, t):
    for i in range(1, t.shape[0]):
        if t[i] != t[i - 1]:
            if t[i] < t[i - 1]:
                return False
        elif y[i] != y[i - 1]:
            if y[i] < y[i - 1]:
                return False
        elif p[i] != p[i - 1]:
            if p[i] < p[i - 1]:
                return False
        elif x[i] < x[i - 1]:
            return False
    return True


@njit(cache=True, nogil=True)
def _encode_kernel(x, y, p, t, out, start_high):
    n = x.shape[0]
    m = 0
    cur_high = -1  # absolute t >> 12, rollovers included; -1: nothing written yet
    cur_low = -1
    cur_y = -1
    max_step = ROLLOVER_THRESHOLD - 1
    i = 0
    while i < n:
        ti = t[i]
        hi = ti >> 12
        if hi != cur_high:
            if cur_high < 0:
                cur_high = start_high
                out[m] = (TIME_HIGH << 12) | (start_high & 0xFFF)
                m += 1
            # Forward jumps longer than half the TIME_HIGH range go in steps, otherwise the
            # decoder could not tell how many times the 24-bit clock wrapped.
            while hi - cur_high > max_step:
                cur_high += max_step
                out[m] = (TIME_HIGH << 12) | (cur_high & 0xFFF)
                m += 1
            if hi != cur_high:
                cur_high = hi
                out[m] = (TIME_HIGH << 12) | (hi & 0xFFF)
                m += 1
            cur_low = -1
        lo = ti & 0xFFF
        if lo != cur_low:
            out[m] = (TIME_LOW << 12) | lo
            m += 1
            cur_low = lo
        yi = y[i]
        if yi != cur_y:
            out[m] = (ADDR_Y << 12) | yi
            m += 1
            cur_y = yi
        pi = p[i]
        xi = x[i]
        j = i + 1
        if j < n and t[j] == ti and y[j] == yi and p[j] == pi and xi < x[j] < xi + 12:
            # A run of nearby pixels in one row with one polarity and time: a vector.
            out[m] = (VECT_BASE_X << 12) | (pi << 11) | xi
            m += 1
            bx = xi
            prev = -1
            k = i
            while True:
                mask = 0
                while (k < n and t[k] == ti and y[k] == yi and p[k] == pi
                       and prev < x[k] < bx + 12):
                    mask |= 1 << (x[k] - bx)
                    prev = x[k]
                    k += 1
                if mask == 0:
                    break
                if mask < 256:  # nothing in the last 4 columns: the shorter vector fits
                    out[m] = (VECT_8 << 12) | mask
                    bx += 8
                else:
                    out[m] = (VECT_12 << 12) | mask
                    bx += 12
                m += 1
            i = k
        else:
            out[m] = (ADDR_X << 12) | (pi << 11) | xi
            m += 1
            i += 1
    return m


def encode_evt3(events: np.ndarray, after_us: int = 0) -> bytes:
    """Encode events (EVENT_DTYPE, t in µs >= 0, x and y <= 2047) as an EVT 3.0 byte stream.

    Events are written in (t, y, p, x) order (sorted here if they are not), using vectors for
    runs of nearby pixels, so that decoding the result gives back the events in that order.
    The stream starts at TIME_HIGH ``after_us >> 12`` and walks the clock forward, so a decoder
    recovers the absolute time, wraps included: with ``after_us=0`` (a fresh decoder) or, for
    the next packet of a live stream, ``after_us`` = the last time of the packets before (the
    decoder that read them continues; a camera's stream does the same). Duplicates are kept.
    """
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events must have dtype EVENT_DTYPE, got {events.dtype}")
    n = events.shape[0]
    if n == 0:
        return b""
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = (events["p"] != 0).astype(np.int64)
    t = events["t"].astype(np.int64)
    if x.max() > MAX_COORD or y.max() > MAX_COORD:
        raise ValueError(f"EVT 3.0 coordinates are 11 bits: x and y must be <= {MAX_COORD}")
    if t.min() < 0:
        raise ValueError("EVT 3.0 cannot encode negative times")
    if not 0 <= after_us <= t.min():
        raise ValueError(f"after_us must be in [0, first event time], got {after_us}")
    if not _is_sorted(x, y, p, t):
        order = np.lexsort((x, p, y, t))
        x, y, p, t = x[order], y[order], p[order], t[order]
    start_high = int(after_us) >> 12
    cap = 4 * n + (int(t[-1] >> 12) - start_high) // (ROLLOVER_THRESHOLD - 1) + 8
    out = np.empty(cap, dtype=np.uint16)
    m = _encode_kernel(x, y, p, t, out, start_high)
    return out[:m].astype("<u2").tobytes()


def decode_evt3_reference(payload: bytes, width: int, height: int) -> np.ndarray:
    """Slow, plain-Python decoder of one EVT 3.0 stream from a fresh state.

    Written for readability, as a test oracle and a benchmark baseline; same semantics as
    :func:`decode_evt3_words`. Trailing odd bytes are ignored.
    """
    n_words = len(payload) // 2
    words = np.frombuffer(payload[: 2 * n_words], dtype="<u2").tolist()
    rows: list[tuple[int, int, int, int]] = []
    y = bx = pol = high = low = rolls = 0
    timed = False

    def emit(x: int, p: int) -> None:
        if timed and x < width and y < height:
            rows.append((x, y, (rolls << 24) | (high << 12) | low, p))

    for w in words:
        code, payload12 = w >> 12, w & 0xFFF
        if code == ADDR_Y:
            y = payload12 & 0x7FF
        elif code == ADDR_X:
            emit(payload12 & 0x7FF, payload12 >> 11)
        elif code == VECT_BASE_X:
            bx, pol = payload12 & 0x7FF, payload12 >> 11
        elif code in (VECT_12, VECT_8):
            nbits = 12 if code == VECT_12 else 8
            for k in range(nbits):
                if (payload12 >> k) & 1:
                    emit(bx + k, pol)
            bx += nbits
        elif code == TIME_LOW:
            low = payload12
        elif code == TIME_HIGH:
            if timed and high - payload12 > ROLLOVER_THRESHOLD:
                rolls += 1
            high, timed = payload12, True
    if not rows:
        return empty_events()
    arr = np.array(rows, dtype=np.int64)
    out = empty_events(len(rows))
    out["x"], out["y"], out["t"], out["p"] = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
    return out
