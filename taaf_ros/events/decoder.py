"""One decoder object per event stream: payload bytes in, EVENT_DTYPE events (t in µs) out.

>>> from taaf_ros.events.evt3 import encode_evt3
>>> from taaf_ros.events.types import make_events
>>> dec = EventDecoder("evt3", width=640, height=480)
>>> ev = dec.decode(encode_evt3(make_events([3, 4], [7, 7], [100, 100], [1, 1])))
>>> ev["x"].tolist(), ev["t"].tolist(), dec.stats.decoded
([3, 4], [100, 100], 2)

How ``time_base`` (the EventPacket field, nanoseconds) maps to the output time ``t`` (µs):

=============  ======================================================================
encoding       output t
=============  ======================================================================
evt3           sensor time from the stream itself (24-bit clock extended by counting
               wraps); ``time_base`` is ignored. Relate it to ROS time via the header.
mono           ``(time_base + dt_ns) // 1000``
libcaer        ``time_base // 1000 + timestamp_us`` (+ 2**31 µs per wrap in the packet)
libcaer_cmp    ``time_base // 1000 + (TIME_HIGH << 12 | TIME_LOW)``
=============  ======================================================================

Malformed input never raises from ``decode``: trailing bytes that do not make a whole word
(or event) are counted and ignored, events outside the sensor are counted and dropped, and
unknown words are counted and skipped.
"""

from __future__ import annotations

import array
import sys
from dataclasses import asdict, dataclass

import numpy as np

from taaf_ros.events.evt3 import decode_evt3_words, new_state
from taaf_ros.events.libcaer import decode_libcaer_cmp_words, decode_libcaer_words
from taaf_ros.events.mono import decode_mono_words

# encoding -> (word dtype, bytes per unit that must be whole)
_WORDS: dict[str, tuple[str, int]] = {
    "evt3": ("u2", 2),
    "mono": ("i8", 8),
    "libcaer": ("i4", 8),  # int32 pairs: a whole event is 8 bytes
    "libcaer_cmp": ("u2", 2),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_WORDS)
MAX_TIME_BASE_NS = (1 << 63) - (1 << 33)  # leaves room for the 32-bit offsets without overflow

Payload = bytes | bytearray | memoryview | array.array | np.ndarray


class EventFormatError(ValueError):
    """Input that is not a valid event message or payload (bad fields, sizes or types)."""


@dataclass
class DecoderStats:
    """Running counters of one decoder, all cumulative since construction or ``reset``.

    Every event word the decoder sees ends up in exactly one of ``decoded``,
    ``dropped_out_of_range``, ``dropped_untimed`` (evt3: before the first TIME_HIGH) or
    ``dropped_invalid`` (libcaer: valid mark cleared).
    """

    packets: int = 0
    bytes: int = 0
    decoded: int = 0
    dropped_out_of_range: int = 0
    dropped_untimed: int = 0
    dropped_invalid: int = 0
    truncated_bytes: int = 0
    unknown_words: int = 0
    time_rollovers: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def payload_to_uint8(payload: Payload) -> np.ndarray:
    """View any bytes-like payload (incl. ``array.array('B')`` from rclpy) as uint8, no copy."""
    if isinstance(payload, np.ndarray):
        return np.ascontiguousarray(payload).reshape(-1).view(np.uint8)
    try:
        view = memoryview(payload)
    except TypeError as exc:
        raise EventFormatError(f"payload must be bytes-like, got {type(payload).__name__}") from exc
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def _words(buf: np.ndarray, code: str, unit: int) -> tuple[np.ndarray, int]:
    """Whole words of ``buf`` in native byte order, aligned for numba; and the leftover bytes."""
    usable = buf.shape[0] - buf.shape[0] % unit
    dt = np.dtype("<" + code)
    words = buf[:usable].view(dt)
    if sys.byteorder != "little" or not words.flags.aligned:
        words = words.astype(dt.newbyteorder("="))
    return words, buf.shape[0] - usable


class EventDecoder:
    """Stateful decoder of one event stream (one camera, one encoding).

    Args:
        encoding: one of ``SUPPORTED_ENCODINGS`` (EventPacket.encoding).
        width, height: sensor size in pixels; events outside it are dropped and counted.

    ``decode`` is not thread-safe: evt3 state carries over from one packet to the next, so
    packets of one stream must be fed in order, each exactly once.
    """

    def __init__(self, encoding: str, width: int, height: int) -> None:
        if encoding not in _WORDS:
            raise ValueError(
                f"unsupported event encoding {encoding!r}; supported: "
                f"{', '.join(SUPPORTED_ENCODINGS)}")
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                    or not 0 < value <= 65536:
                raise ValueError(f"{name} must be an int in [1, 65536], got {value!r}")
        self.encoding = encoding
        self.width = int(width)
        self.height = int(height)
        self.stats = DecoderStats()
        self._state = new_state()

    def reset(self) -> None:
        """Forget the stream state (evt3 row, column, time) and zero the counters."""
        self.stats = DecoderStats()
        self._state = new_state()

    def decode(self, payload: Payload, time_base: int = 0) -> np.ndarray:
        """Decode one packet's payload; ``time_base`` in ns (see the module table)."""
        tb = int(time_base)
        if not 0 <= tb <= MAX_TIME_BASE_NS:
            raise EventFormatError(f"time_base must be in [0, {MAX_TIME_BASE_NS}] ns, got {tb}")
        buf = payload_to_uint8(payload)
        code, unit = _WORDS[self.encoding]
        words, leftover = _words(buf, code, unit)
        if self.encoding == "evt3":
            events, counts = decode_evt3_words(words, self.width, self.height, self._state)
        elif self.encoding == "mono":
            events, counts = decode_mono_words(words, tb, self.width, self.height)
        elif self.encoding == "libcaer":
            events, counts = decode_libcaer_words(words, tb, self.width, self.height)
        else:
            events, counts = decode_libcaer_cmp_words(words, tb, self.width, self.height)
        st = self.stats
        st.packets += 1
        st.bytes += buf.shape[0]
        st.truncated_bytes += leftover
        for name, value in counts.items():
            setattr(st, name, getattr(st, name) + value)
        return events
