"""The streaming event front end: every event is fitted and binned once, on arrival.

A live window of 0.6 s cut every 50 ms would otherwise re-bin each event twelve times. Instead,
events go on arrival into *sub-bins* of ``step_us`` (the greatest common divisor of the hop and
the model's time-bin width, so that every window boundary and every time-bin boundary of every
window falls on a sub-bin edge), kept in a fixed ring of per-pixel counts; a window's
``(T, 2, h, w)`` tensor is then the sum of its ``bin_us / step_us`` sub-bins per time bin,
clipped to the model's count range. Its cost per window no longer depends on the event rate.

The tensor is identical to :func:`taaf_ros.frontend.event_tensor` (and so to tonic's
``ToFrame`` oracle) on the same events: same crop/letterbox tables, same half-open bins. The
condition is that tonic's float bin edges are whole microseconds, i.e. ``window_us`` is a
multiple of ``T``; :func:`streaming_step` returns None otherwise, or when the common step is so
small that a window spans more than ``MAX_SUB_BINS`` sub-bins, and the node then bins each
window from its event ring buffer instead (the path before this module).

Thread safety: one lock; ``push`` (decode thread) and ``window_tensor`` (inference thread) each
hold it for one bounded pass (the numba kernel runs without the GIL).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from numba import njit

from taaf_ros.events.binning import fit_tables
from taaf_ros.events.types import EVENT_DTYPE

MAX_SUB_BINS = 480
"""Largest number of sub-bins in one window for which streaming is worth it."""

__all__ = ["MAX_SUB_BINS", "EventFrameStats", "StreamingEventFrames", "streaming_step"]


def streaming_step(window_us: int, n_time_bins: int, hop_us: int) -> int | None:
    """The sub-bin width (µs) for streaming, or None where per-window binning must be used.

    >>> streaming_step(600_000, 8, 50_000)   # bins of 75 ms, hop 50 ms: 25 ms sub-bins
    25000
    >>> streaming_step(500_000, 3, 50_000) is None   # bins of 166666.67 µs: float edges
    True
    """
    window_us, n_time_bins, hop_us = int(window_us), int(n_time_bins), int(hop_us)
    if window_us <= 0 or n_time_bins < 1 or hop_us <= 0 or window_us % n_time_bins:
        return None
    step = math.gcd(window_us // n_time_bins, hop_us)
    return step if window_us // step <= MAX_SUB_BINS else None


@dataclass
class EventFrameStats:
    """Counters (numbers of events)."""

    binned: int = 0
    """Events counted into a sub-bin."""
    outside_sensor: int = 0
    """Events outside the sensor, or outside the crop of the model's input."""
    too_late: int = 0
    """Events older than the oldest sub-bin still held (their windows are long gone)."""
    size_changes: int = 0
    """Pushes whose sensor size differs from the push before (each is mapped with its own)."""


@njit(cache=True, nogil=True)
def _push_kernel(x, y, t, p, lut_x, lut_y, width_in, plane, step, ring, totals, state):
    """Fit and count events into the ring. state = [head, binned, outside, too_late].

    ring: (n_sub + 1, 2 * plane) int32; row n_sub stays zero (the "not held" sub-bin).
    """
    n_sub = ring.shape[0] - 1
    head = state[0]
    n_w = lut_x.shape[0] - 1
    n_h = lut_y.shape[0] - 1
    # Events come time-sorted, so most share the sub-bin of the one before: the division and
    # modulo are only done when an event leaves [lo, hi), the current sub-bin's time span.
    lo, hi, r = np.int64(1), np.int64(0), 0
    binned = outside = 0
    for i in range(t.shape[0]):
        xi = lut_x[min(np.int64(x[i]), n_w)]
        yi = lut_y[min(np.int64(y[i]), n_h)]
        if xi < 0 or yi < 0:
            outside += 1
            continue
        ti = t[i]
        if ti < lo or ti >= hi:
            s = ti // step
            if s > head:
                # Newer sub-bins: clear the slots they reuse (at most the whole ring).
                first = max(head + 1, s - n_sub + 1)
                for k in range(first, s + 1):
                    ring[k % n_sub, :] = 0
                    totals[k % n_sub] = 0
                head = s
            elif s <= head - n_sub:
                state[3] += 1
                continue
            lo, hi, r = s * step, s * step + step, s % n_sub
        ring[r, (1 if p[i] != 0 else 0) * plane + yi * width_in + xi] += 1
        totals[r] += 1
        binned += 1
    state[0] = head
    state[1] += binned
    state[2] += outside


class StreamingEventFrames:
    """A ring of sub-bin event counts at the model's input resolution.

    Args:
        sensor_size: the camera's (width, height), pixels, where a push does not name one.
        input_size: the model's (w, h); events are mapped with the same tables as
            :func:`taaf_ros.events.binning.fit_events` (``fit_mode`` crop or letterbox).
        window_us, n_time_bins: the model's window and its T time bins.
        step_us: sub-bin width from :func:`streaming_step`.
        history_us: how far back events are held (µs): at least a window plus the longest wait
            for late data. Memory: ``history_us / step_us`` x 2 x h x w int32 counts.

    Times are ROS-clock µs (any clock, as long as windows are asked on the same one).

    Example:
        >>> from taaf_ros.events.types import make_events
        >>> fr = StreamingEventFrames((4, 4), (4, 4), "crop", 100, 2, 50, 200)
        >>> fr.push(make_events([0, 1, 1], [0, 0, 0], [1000, 1049, 1050], [1, 1, 0]))
        >>> frames, n = fr.window_tensor(1000, 15)
        >>> frames.shape, n, frames[0, 1, 0].tolist(), frames[1, 0, 0].tolist()
        ((2, 2, 4, 4), 3, [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0])
    """

    def __init__(self, sensor_size: tuple[int, int], input_size: tuple[int, int],
                 fit_mode: str, window_us: int, n_time_bins: int, step_us: int,
                 history_us: int) -> None:
        window_us, n_time_bins, step_us = int(window_us), int(n_time_bins), int(step_us)
        bin_us = window_us // max(n_time_bins, 1)
        if step_us <= 0 or window_us % n_time_bins or bin_us % step_us:
            raise ValueError(f"step_us={step_us} does not divide the bins of a {window_us} µs "
                             f"window in {n_time_bins}: use streaming_step()")
        self.window_us, self.n_time_bins, self.step_us = window_us, n_time_bins, step_us
        self.bin_us = bin_us
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.fit_mode = fit_mode
        self.n_sub = max(-(-int(history_us) // step_us), window_us // step_us) + 1
        w, h = self.input_size
        self._plane = w * h
        self._ring = np.zeros((self.n_sub + 1, 2 * self._plane), dtype=np.int32)
        self._totals = np.zeros(self.n_sub + 1, dtype=np.int64)
        self._state = np.array([np.iinfo(np.int64).min // 2, 0, 0, 0], dtype=np.int64)
        self._size_changes = 0
        self._lock = threading.Lock()
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))

    @property
    def stats(self) -> EventFrameStats:
        with self._lock:
            s = self._state
            return EventFrameStats(int(s[1]), int(s[2]), int(s[3]), self._size_changes)

    def push(self, events: np.ndarray, sensor_size: tuple[int, int] | None = None) -> None:
        """Count events (EVENT_DTYPE, times on the window clock) into their sub-bins.

        sensor_size: the (width, height) these events were recorded with (default: the latest
        one); it maps these events only, and the ring is kept.
        """
        if len(events) == 0:
            return
        if events.dtype != EVENT_DTYPE:
            raise TypeError(f"events must be EVENT_DTYPE, got {events.dtype}")
        size = self.sensor_size if sensor_size is None else (int(sensor_size[0]),
                                                            int(sensor_size[1]))
        with self._lock:
            if size != self.sensor_size:
                self._size_changes += 1
                self.sensor_size = size
            # Cached per size (a few, each O(width + height): sizes are at most 65536).
            lut_x, lut_y = fit_tables(size[0], size[1], *self.input_size, self.fit_mode)
            _push_kernel(events["x"], events["y"], events["t"], events["p"], lut_x, lut_y,
                         self.input_size[0], self._plane, self.step_us, self._ring,
                         self._totals, self._state)

    def window_tensor(self, start_us: int, max_count: int) -> tuple[np.ndarray, int]:
        """float32 ``(T, 2, h, w)`` of the window ``[start_us, start_us + window_us)`` and the
        number of events in it (before clipping). start_us must be a multiple of step_us."""
        if start_us % self.step_us:
            raise ValueError(f"window start {start_us} µs is not on the {self.step_us} µs grid")
        per_bin = self.bin_us // self.step_us
        subs = start_us // self.step_us + np.arange(self.n_time_bins * per_bin, dtype=np.int64)
        w, h = self.input_size
        with self._lock:
            head = int(self._state[0])
            held = (subs <= head) & (subs > head - self.n_sub)
            rows = np.where(held, subs % self.n_sub, self.n_sub)
            counts = self._ring[rows].reshape(self.n_time_bins, per_bin, 2 * self._plane)
            n_events = int(self._totals[rows].sum())
        frames = counts.sum(axis=1, dtype=np.int32)
        np.minimum(frames, max_count, out=frames)
        return frames.astype(np.float32).reshape(self.n_time_bins, 2, h, w), n_events
