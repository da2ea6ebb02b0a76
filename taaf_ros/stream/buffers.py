"""Bounded, preallocated ring buffers for events and audio, keyed by time (µs).

Both buffers allocate all their memory at construction and never grow: when data arrives faster
than it is consumed, the oldest data is overwritten and counted, never queued without limit
(docs/design.md, "Bounded everywhere").

Thread safety: in the live node a decode thread calls ``push`` while the inference thread calls
``window``; every public method takes the buffer's own ``threading.Lock`` for its whole duration
(a short, bounded copy), and ``window`` returns copies, so callers never see a half-written push
or memory that a later push overwrites. ``stats`` returns a snapshot.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from taaf_ros.events.types import EVENT_DTYPE, make_events

__all__ = [
    "AudioBufferStats",
    "AudioRingBuffer",
    "AudioWindow",
    "EventBufferStats",
    "EventRingBuffer",
]


@dataclass
class EventBufferStats:
    """Counters of an :class:`EventRingBuffer` (numbers of events unless stated)."""

    pushed: int = 0
    """Events offered to ``push``."""
    overwritten: int = 0
    """Events lost because capacity was exceeded (oldest first)."""
    late_dropped: int = 0
    """Events older than data already evicted (overwritten or discarded): cannot be placed."""
    unsorted_pushes: int = 0
    """Pushes whose events were not in time order among themselves (sorted on arrival)."""
    late_pushes: int = 0
    """Pushes with events older than the newest buffered event (merged into place)."""
    discarded: int = 0
    """Events removed by ``discard_before``."""
    subsampled: int = 0
    """Events left out of windows by ``max_events`` subsampling."""
    subsampled_windows: int = 0
    """Windows that were subsampled."""


def _as_events(events: np.ndarray) -> np.ndarray:
    if events.dtype == EVENT_DTYPE:
        return events
    return make_events(events["x"], events["y"], events["t"], events["p"])


class EventRingBuffer:
    """A fixed-capacity ring of EVENT_DTYPE events kept in time order.

    Args:
        capacity: maximum number of events held; memory (13 + 8 bytes per event) is allocated
            here once.

    Ordering: events are expected with non-decreasing ``t`` within and across pushes. A push that
    is unsorted is sorted (stable) first; events older than the newest buffered one are merged
    into place (cost proportional to the buffered events newer than them); events older than the
    newest event already evicted (overwritten or discarded) are dropped and counted in
    ``stats.late_dropped``, because a window over that time may already have been cut.

    Example:
        >>> from taaf_ros.events.types import make_events
        >>> buf = EventRingBuffer(capacity=4)
        >>> buf.push(make_events(x=[0] * 6, y=[0] * 6, t=[0, 10, 20, 30, 40, 50], p=1))
        >>> len(buf), buf.stats.overwritten, buf.window(25, 45)["t"].tolist()
        (4, 2, [30, 40])
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._ev = np.zeros(self.capacity, dtype=EVENT_DTYPE)
        # Contiguous copy of the times: searchsorted on the packed record field would copy it.
        self._t = np.zeros(self.capacity, dtype=np.int64)
        self._head = 0  # physical index of the oldest event
        self._size = 0
        self._latest: int | None = None
        self._evicted_t: int | None = None  # time of the newest event evicted so far
        self._stats = EventBufferStats()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return self._size

    @property
    def stats(self) -> EventBufferStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    @property
    def latest_time(self) -> int | None:
        """The largest event time ever accepted (µs), kept after discards; None before any."""
        with self._lock:
            return self._latest

    # -- internal helpers (caller holds the lock) ------------------------------------------
    def _segments(self) -> list[tuple[int, int]]:
        """Physical (start, stop) ranges holding the buffered events, oldest first."""
        end = self._head + self._size
        if end <= self.capacity:
            return [(self._head, end)]
        return [(self._head, self.capacity), (0, end - self.capacity)]

    def _logical_index(self, t: int) -> int:
        """Number of buffered events with time < t."""
        n = 0
        for a, b in self._segments():
            k = int(np.searchsorted(self._t[a:b], t, side="left"))
            n += k
            if k < b - a:
                break
        return n

    def _drop_oldest(self, n: int) -> None:
        if n <= 0:
            return
        self._evicted_t = int(self._t[(self._head + n - 1) % self.capacity])
        self._head = (self._head + n) % self.capacity
        self._size -= n

    def _append_sorted(self, ev: np.ndarray) -> None:
        """Append time-ordered events that are not older than the newest buffered one."""
        n = len(ev)
        if n > self.capacity:
            self._stats.overwritten += n - self.capacity + self._size
            self._evicted_t = int(ev["t"][n - self.capacity - 1])
            self._head, self._size = 0, 0
            ev = ev[n - self.capacity :]
            n = self.capacity
        overflow = self._size + n - self.capacity
        if overflow > 0:
            self._stats.overwritten += overflow
            self._drop_oldest(overflow)
        start = (self._head + self._size) % self.capacity
        first = min(n, self.capacity - start)
        self._ev[start : start + first] = ev[:first]
        self._t[start : start + first] = ev["t"][:first]
        self._ev[: n - first] = ev[first:]
        self._t[: n - first] = ev["t"][first:]
        self._size += n

    def _gather(self, lo: int, hi: int, idx: np.ndarray | None = None) -> np.ndarray:
        """Copy logical events [lo, hi) (or the logical indices ``idx``) out of the ring."""
        if idx is None:
            idx = np.arange(lo, hi)
        # take, not self._ev[...]: fancy indexing of the packed 13-byte records is ~10x slower.
        return self._ev.take((self._head + idx) % self.capacity)

    # -- public API ------------------------------------------------------------------------
    def push(self, events: np.ndarray) -> None:
        """Add events (EVENT_DTYPE, or any x, y, t, p array, which is converted); see class doc."""
        ev = _as_events(np.asarray(events))
        if len(ev) == 0:
            return
        t = ev["t"]
        unsorted = bool(np.any(t[1:] < t[:-1]))
        if unsorted:
            ev = ev[np.argsort(t, kind="stable")]
        with self._lock:
            self._stats.pushed += len(ev)
            self._stats.unsorted_pushes += int(unsorted)
            if self._evicted_t is not None and ev["t"][0] < self._evicted_t:
                k = int(np.searchsorted(ev["t"], self._evicted_t, side="left"))
                self._stats.late_dropped += k
                ev = ev[k:]
                if len(ev) == 0:
                    return
            first_t = int(ev["t"][0])
            if self._size and self._latest is not None and first_t < self._latest:
                # Late packet: take back the buffered events newer than it and merge.
                self._stats.late_pushes += 1
                k = self._logical_index(first_t + 1)
                tail = self._gather(k, self._size)
                self._size = k
                merged = np.concatenate([tail, ev])
                ev = merged[np.argsort(merged["t"], kind="stable")]
            self._append_sorted(ev)
            last_t = int(ev["t"][-1])
            self._latest = last_t if self._latest is None else max(self._latest, last_t)

    def window(self, t0: int, t1: int, max_events: int | None = None) -> np.ndarray:
        """Copy of the buffered events with ``t0 <= t < t1`` (µs), in time order.

        If there are more than ``max_events``, a deterministic uniform subset of exactly
        ``max_events`` is returned (every ``n / max_events``-th event, so time order and the
        event-rate profile are kept); the left-out events are counted in ``stats.subsampled``.
        """
        with self._lock:
            lo, hi = self._logical_index(t0), self._logical_index(t1)
            n = max(hi - lo, 0)
            if max_events is not None and n > max_events:
                self._stats.subsampled += n - max_events
                self._stats.subsampled_windows += 1
                idx = lo + (np.arange(max_events, dtype=np.int64) * n) // max(max_events, 1)
                return self._gather(lo, hi, idx)
            return self._gather(lo, lo + n)

    def discard_before(self, t: int) -> int:
        """Drop buffered events with time < t (µs); later events older than t are refused.

        Returns the number of events dropped.
        """
        with self._lock:
            k = self._logical_index(t)
            self._drop_oldest(k)
            self._stats.discarded += k
            self._evicted_t = t if self._evicted_t is None else max(self._evicted_t, int(t))
            return k


@dataclass
class AudioBufferStats:
    """Counters of an :class:`AudioRingBuffer` (numbers of samples unless stated)."""

    pushed: int = 0
    """Samples offered to ``push``."""
    overwritten: int = 0
    """Real samples lost because capacity was exceeded."""
    gaps: int = 0
    """Pushes that started later than the end of the buffered audio (beyond the jitter)."""
    gap_samples: int = 0
    """Zero samples inserted for those gaps (marked as not covered)."""
    overlaps: int = 0
    """Pushes that started before the end of the buffered audio (overlap or stamp backwards)."""
    overlap_dropped: int = 0
    """Samples of those pushes that were already covered and were dropped."""


class AudioWindow(NamedTuple):
    """Samples of a window and the fraction of them that are real audio (not zero padding).

    ``first`` is the buffer's absolute sample index of ``samples[0]``, and ``held`` the
    absolute range ``[a, b)`` that was read from the buffer. Those samples are final: later
    pushes only append. Samples outside it are zeros that may still change (audio not yet
    arrived) or are gone (overwritten).
    """

    samples: np.ndarray
    coverage: float
    first: int = 0
    held: tuple[int, int] = (0, 0)


class AudioRingBuffer:
    """A fixed-capacity ring of mono float32 PCM, keyed by time in µs.

    Args:
        capacity_samples: samples held (memory: 5 bytes per sample, allocated here once).
        sample_rate: samples per second (Hz), an integer.
        max_jitter_us: a push whose stamp is within this of the end of the buffered audio is
            treated as contiguous (stamps jitter; the sample count is more precise). Default 1000.

    Time model: the first push fixes the time of sample 0; sample ``k`` is at
    ``origin + k * 1e6 / sample_rate`` µs. A later push at ``start_time_us`` maps to sample
    ``round((start_time_us - origin) * sample_rate / 1e6)``. If that is past the end of the buffered
    audio by more than the jitter, the gap is filled with zeros marked as not covered; if it is
    before the end (overlap, or a stamp going backwards), the samples already covered are dropped
    and only the new remainder is appended. Both are counted in ``stats``.
    """

    def __init__(self, capacity_samples: int, sample_rate: int, max_jitter_us: int = 1000) -> None:
        if capacity_samples < 1 or sample_rate < 1:
            raise ValueError("capacity_samples and sample_rate must be >= 1")
        self.capacity = int(capacity_samples)
        self.sample_rate = int(sample_rate)
        self.max_jitter_us = int(max_jitter_us)
        self._pcm = np.zeros(self.capacity, dtype=np.float32)
        self._valid = np.zeros(self.capacity, dtype=bool)  # False where zero-filled
        self._origin_us: int | None = None
        self._end = 0  # absolute index one past the newest sample
        self._size = 0
        self._stats = AudioBufferStats()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return self._size

    @property
    def stats(self) -> AudioBufferStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    @property
    def latest_time(self) -> int | None:
        """Time (µs) just after the newest sample, i.e. audio is present up to here; or None."""
        with self._lock:
            return None if self._origin_us is None else self._time_of(self._end)

    def _time_of(self, k: int) -> int:
        assert self._origin_us is not None
        return self._origin_us + (k * 1_000_000) // self.sample_rate

    def _index_of(self, t_us: int) -> int:
        """Absolute index of the sample nearest to t_us (integer rounding, no float drift)."""
        assert self._origin_us is not None
        return ((t_us - self._origin_us) * self.sample_rate + 500_000) // 1_000_000

    def _write(self, values: np.ndarray | None, n: int) -> None:
        """Append n samples (invalid zeros when values is None); the ring keeps the newest."""
        skip = max(n - self.capacity, 0)
        lost = self._size + n - self.capacity
        if lost > 0:
            # Count only real audio that is pushed out.
            old = min(lost, self._size)
            first = self._end - self._size
            idx = np.arange(first, first + old) % self.capacity
            self._stats.overwritten += int(np.count_nonzero(self._valid[idx]))
        if values is not None and skip:
            self._stats.overwritten += skip
        idx = np.arange(self._end + skip, self._end + n) % self.capacity
        if values is None:
            self._pcm[idx] = 0.0
            self._valid[idx] = False
        else:
            self._pcm[idx] = values[skip:]
            self._valid[idx] = True
        self._end += n
        self._size = min(self._size + n, self.capacity)

    def push(self, samples: np.ndarray, start_time_us: int) -> None:
        """Append mono samples (1-D, cast to float32, not rescaled) starting at start_time_us."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"mono samples expected (1-D), got shape {x.shape}")
        with self._lock:
            self._stats.pushed += len(x)
            if self._origin_us is None:
                self._origin_us = int(start_time_us)
            k = self._index_of(int(start_time_us))
            jitter = (self.max_jitter_us * self.sample_rate) // 1_000_000
            if k > self._end + jitter:
                self._stats.gaps += 1
                self._stats.gap_samples += k - self._end
                self._write(None, k - self._end)
            elif k < self._end - jitter:
                self._stats.overlaps += 1
                dup = min(self._end - k, len(x))
                self._stats.overlap_dropped += dup
                x = x[dup:]
            if len(x):
                self._write(x, len(x))

    def window_with_coverage(self, t0: int, t1: int) -> AudioWindow:
        """Samples for ``[t0, t1)`` (µs) and the fraction of them that is real audio.

        The window holds ``round((t1 - t0) * sample_rate / 1e6)`` samples (a fixed length for a
        fixed duration), starting at the sample nearest ``t0``; samples not in the buffer (not yet
        arrived, overwritten, gaps) are zeros and lower the coverage.
        """
        n = ((t1 - t0) * self.sample_rate + 500_000) // 1_000_000
        out = np.zeros(max(n, 0), dtype=np.float32)
        with self._lock:
            if self._origin_us is None or n <= 0:
                return AudioWindow(out, 0.0)
            k0 = self._index_of(t0)
            a = max(k0, self._end - self._size)
            b = min(k0 + n, self._end)
            if b <= a:
                return AudioWindow(out, 0.0, k0, (k0, k0))
            idx = np.arange(a, b) % self.capacity
            valid = self._valid[idx]
            out[a - k0 : b - k0] = np.where(valid, self._pcm[idx], np.float32(0.0))
            return AudioWindow(out, float(np.count_nonzero(valid)) / n, k0, (a, b))

    def window(self, t0: int, t1: int) -> np.ndarray:
        """Samples for ``[t0, t1)`` (µs), zero-padded; see :meth:`window_with_coverage`."""
        return self.window_with_coverage(t0, t1).samples
