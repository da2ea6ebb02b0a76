"""When windows are cut from the live streams and which modality is present in each
(DESIGN 2.2), plus the modality order and the health levels it reports."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from taaf_ros.modalities import MODALITIES
from taaf_ros.stream.clock import grid_ceil

# DiagnosticStatus levels (diagnostic_msgs): OK 0, WARN 1, ERROR 2, STALE 3.
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


class WindowCut(NamedTuple):
    """One window to classify: [start_us, end_us) and which modalities feed it.

    present: per modality (MODALITIES order), True if its data reached end_us in time.
    timed_out: per modality, True if it had no message for modality_timeout (missing).
    """

    start_us: int
    end_us: int
    present: tuple[bool, ...]
    timed_out: tuple[bool, ...]

    @property
    def degraded(self) -> bool:
        return not all(self.present)

    @property
    def empty(self) -> bool:
        return not any(self.present)


@dataclass
class SchedulerStats:
    """Counters of the scheduler (numbers of windows)."""

    cut: int = 0
    """Windows handed out with at least one modality present."""
    degraded: int = 0
    """Of those, windows with a modality masked."""
    late: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODALITIES, 0))
    """Per modality: windows cut by max_wait with that modality's data not yet at the end."""
    stale: int = 0
    """Windows with no modality present (no prediction)."""
    dropped: int = 0
    """Windows ready but skipped because inference fell behind (backlog beyond the limit)."""
    jumps: int = 0
    """Polls that skipped a long backlog in one step (data far behind now, e.g. old stamps)."""
    straddling: int = 0
    """Windows not cut because they straddle a jump of an input's time base."""


class WindowScheduler:
    """Decides when windows are cut (DESIGN 2.2). Thread-safe; times are µs of the ROS clock.

    Args:
        window_us: window length. hop_us: a window ends on every multiple of hop_us.
        max_wait_us: a window is cut at the latest this long after its end; a modality whose
            data has not reached the end by then counts as missing for that window (where all
            are late, those with data in the window count as present: cut with what came).
        timeout_us: a modality with no message for this long is missing (masked in every window
            until it comes back), so windows do not wait for it.
        max_backlog: if more windows than this are ready at one poll (inference fell behind),
            only the newest are returned and the others are counted as dropped: old windows
            are worth less than keeping up.
        now_us: creation time; a modality never heard of counts as timed out after timeout_us.

    Use: call :meth:`note` from the decode side for every decoded message and :meth:`poll`
    from the inference side; :meth:`health` gives the OK/WARN/STALE level.

    Window grid: windows end on multiples of ``hop`` of the ROS clock (µs since the epoch), not
    on multiples after the first message. Any producer that starts a sample on that grid (the
    replay node does) therefore gets one window that covers exactly that sample, as in
    training, with no message exchanged to agree on a phase.
    """

    def __init__(self, window_us: int, hop_us: int, max_wait_us: int, timeout_us: int,
                 now_us: int, max_backlog: int = 2,
                 modalities: Sequence[str] = MODALITIES) -> None:
        if window_us <= 0 or hop_us <= 0:
            raise ValueError("window_us and hop_us must be > 0")
        self.window_us, self.hop_us = int(window_us), int(hop_us)
        self.max_wait_us, self.timeout_us = int(max_wait_us), int(timeout_us)
        self.max_backlog = max(1, int(max_backlog))
        self.modalities = tuple(modalities)
        self.stats = SchedulerStats(late=dict.fromkeys(self.modalities, 0))
        self._created_us = int(now_us)
        self._progress: dict[str, int | None] = dict.fromkeys(self.modalities)
        self._receipt: dict[str, int | None] = dict.fromkeys(self.modalities)
        self._next_end: int | None = None
        self._breaks: list[int] = []  # times where an input's time base jumped
        self._lock = threading.Lock()

    def configure(self, *, max_wait_us: int | None = None, timeout_us: int | None = None) -> None:
        """Change the run-time settings (from a parameters callback)."""
        with self._lock:
            if max_wait_us is not None:
                self.max_wait_us = int(max_wait_us)
            if timeout_us is not None:
                self.timeout_us = int(timeout_us)

    def note(self, modality: str, start_us: int | None, end_us: int | None,
             receipt_us: int) -> None:
        """A message of ``modality`` arrived at receipt_us holding data over [start_us, end_us].

        end_us is how far that stream now reaches (last event time, end of the audio chunk, or
        the stamp of an empty event packet); None for a message without time (still alive).
        """
        with self._lock:
            self._receipt[modality] = int(receipt_us)
            if end_us is None:
                return
            prev = self._progress[modality]
            self._progress[modality] = int(end_us) if prev is None else max(prev, int(end_us))
            if self._next_end is None and start_us is not None:
                # First window: the grid end that makes it start nearest the first data.
                first = int(start_us) + self.window_us
                self._next_end = grid_ceil(first - self.hop_us // 2, self.hop_us)

    def discontinuity(self, at_us: int) -> None:
        """An input's time base jumped at ``at_us`` (its data before and after come from two
        time bases): the windows that hold that time strictly inside are not cut."""
        with self._lock:
            self._breaks = [*self._breaks[-15:], int(at_us)]

    def _straddles(self, end: int) -> bool:
        start = end - self.window_us
        self._breaks = [b for b in self._breaks if b > start]  # the grid only moves on
        return any(b < end for b in self._breaks)

    def _timed_out(self, m: str, now_us: int) -> bool:
        last = self._receipt[m]
        ref = self._created_us if last is None else last
        return now_us - ref > self.timeout_us

    def timed_out(self, now_us: int) -> tuple[bool, ...]:
        """Per modality: no message for longer than the timeout."""
        with self._lock:
            return tuple(self._timed_out(m, now_us) for m in self.modalities)

    def poll(self, now_us: int) -> list[WindowCut]:
        """Windows ready at now_us, oldest first (at most max_backlog; see class doc)."""
        out: list[WindowCut] = []
        with self._lock:
            if self._next_end is None:
                return out
            timed_out = tuple(self._timed_out(m, now_us) for m in self.modalities)
            if all(timed_out):
                # Nothing to wait for: skip the grid forward to now, count STALE windows.
                target = grid_ceil(now_us - self.max_wait_us, self.hop_us)
                if target > self._next_end:
                    self.stats.stale += (target - self._next_end) // self.hop_us
                    self._next_end = target
                return out
            self._skip_backlog(now_us, timed_out)
            while True:
                end = self._next_end
                ready = tuple((self._progress[m] or -1) >= end for m in self.modalities)
                waited = now_us >= end + self.max_wait_us
                if not (waited or all(r or t for r, t in zip(ready, timed_out, strict=True))):
                    break
                if end > now_us:  # never cut a window that lies in the future
                    break
                self._next_end = end + self.hop_us
                if self._breaks and self._straddles(end):
                    self.stats.straddling += 1
                    continue
                if waited:
                    for m, r, t in zip(self.modalities, ready, timed_out, strict=True):
                        if not r and not t:
                            self.stats.late[m] += 1
                    if not any(ready):  # every input late (a wait shorter than any delay):
                        # cut with what has come rather than with nothing
                        start = end - self.window_us
                        ready = tuple(not t and (self._progress[m] or -1) > start
                                      for m, t in zip(self.modalities, timed_out, strict=True))
                out.append(WindowCut(end - self.window_us, end, ready, timed_out))
            if len(out) > self.max_backlog:
                self.stats.dropped += len(out) - self.max_backlog
                out = out[-self.max_backlog:]
            kept = []
            for w in out:
                if w.empty:
                    self.stats.stale += 1
                else:
                    self.stats.cut += 1
                    self.stats.degraded += int(w.degraded)
                    kept.append(w)
            return kept

    def _newest_ready_end(self, now_us: int, timed_out: tuple[bool, ...]) -> int:
        """The latest grid end that poll could cut now (caller holds the lock)."""
        hop = self.hop_us
        waited = (now_us - self.max_wait_us) // hop * hop
        reach = [p if p is not None else -1 for p, t in
                 zip(self._progress.values(), timed_out, strict=True) if not t]
        ready = (min(min(reach), now_us) // hop * hop) if reach else now_us // hop * hop
        return max(waited, ready)

    def _skip_backlog(self, now_us: int, timed_out: tuple[bool, ...]) -> None:
        """Jump over windows that could only be dropped: O(1) however far behind we are."""
        assert self._next_end is not None
        newest = self._newest_ready_end(now_us, timed_out)
        keep_from = newest - (self.max_backlog - 1) * self.hop_us
        if keep_from > self._next_end:
            self.stats.dropped += (keep_from - self._next_end) // self.hop_us
            self.stats.jumps += 1
            self._next_end = keep_from

    def health(self, now_us: int) -> tuple[int, str]:
        """(level, message): OK, WARN (a modality missing: degraded) or STALE (all missing)."""
        timed_out = self.timed_out(now_us)
        missing = [m for m, t in zip(self.modalities, timed_out, strict=True) if t]
        if not missing:
            return OK, "all modalities present"
        if len(missing) == len(self.modalities):
            return STALE, "no input: " + ", ".join(missing) + " missing, no predictions"
        return WARN, "degraded: " + ", ".join(missing) + " missing (masked)"
