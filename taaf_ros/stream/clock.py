"""Mapping input times onto the ROS clock (µs): header stamps and their plausibility, the
filtered sensor-to-ROS offset of an event stream, the window grid, audio chunks without
stamps, and packet loss from sequence numbers."""

from __future__ import annotations

from collections import deque

import numpy as np


def stamp_to_us(sec: int, nanosec: int) -> int:
    """builtin_interfaces/Time fields -> µs."""
    return int(sec) * 1_000_000 + int(nanosec) // 1000


def grid_ceil(t_us: int, hop_us: int) -> int:
    """Smallest multiple of hop_us that is >= t_us."""
    return -(-int(t_us) // hop_us) * hop_us


def check_stamp(stamp_us: int, now_us: int, max_offset_us: int) -> int | None:
    """The offset ``stamp - now`` (µs) if it is beyond ``max_offset_us``, else None.

    A stamp far from the ROS clock is a driver on sensor or boot time, a bag replayed with its
    recorded stamps, or a machine whose clock is off: windows on the ROS clock would never see
    that data (or would wait a day for it).
    """
    off = int(stamp_us) - int(now_us)
    return off if abs(off) > max_offset_us else None


JUMP_US = 1_000_000
"""A stamp that moves more than this against its receipt time is a discontinuity of its
input's time base (above delivery jitter, below the history the node keeps)."""


class StampTimeline:
    """One input's header stamps (µs) -> the node's clock, across jumps of the input's time
    base (a driver restarted, its clock stepped) and of the node's own clock.

    Stamps are used as they are while they follow their receipt times: ``lag = receipt -
    stamp`` is then the delivery delay, small and positive, and a stall of the subscriber only
    makes it larger for a while (a backlog drains, the next messages are on time again). The
    input's time base jumped, and its stamps are re-anchored (an offset added from then on),
    where

    - consecutive stamps go back by more than ``jump_us`` against their receipt times (a
      driver restarted, its clock stepped back): the stream goes on where its receipt times
      say. Both going back together is not a jump of the input: the node's clock went back
      with it (a bag played again, a system clock stepped);
    - consecutive stamps go ahead by more than ``jump_us`` against their receipt times and
      lie that far ahead of their receipt (a clock stepped forward, the node's clock went back
      alone, or the stamps are right again after a jump): no delivery does that, the stream
      goes on where its receipt times say, or uses its stamps as they are again where those
      are right. (Stamps ahead after a stall are not: the backlog was late, the next message
      is on time.) A first stamp that far ahead is anchored at its receipt;
    - stamps stay more than ``jump_us`` behind their receipts for longer than ``jump_us`` (a
      driver on another machine's clock; the node's clock stepped forward alone): anchored at
      receipt. A first message that far off is anchored at once.

    ``max_offset_us``: stamps further than this from receipt are named in /diagnostics
    (``last_stamp_offset_us``, cleared as soon as a stamp is right again).

    >>> tl = StampTimeline()
    >>> tl.map(10_000_000, 10_020_000)               # 20 ms delivery: used as it is
    10000000
    >>> tl.map(8_010_000, 10_030_000)                # the driver restarted 2 s back
    10010000
    >>> tl.map(8_020_000, 10_040_000), tl.jumps, tl.last_jump_us
    (10020000, 1, -2000000)
    >>> tl.map(8_030_000, 11_550_000)                # delivered after a 1.5 s stall: kept
    10030000
    """

    def __init__(self, jump_us: int = JUMP_US, max_offset_us: int = 5_000_000) -> None:
        self.jump_us, self.max_offset_us = int(jump_us), int(max_offset_us)
        self.offset_us = 0
        self.jumps = 0
        self.last_jump_us = 0  # the last jump's size: how far the stamps moved against receipt
        self.implausible = 0
        self.last_stamp_offset_us: int | None = None
        self.messages = 0
        self._prev: tuple[int, int] | None = None  # (stamp, receipt) of the last message
        self._behind_since: int | None = None  # receipt time since when stamps are far behind

    def map(self, stamp_us: int, receipt_us: int) -> int:
        """The node-clock time of a message stamped ``stamp_us`` and received (sent, where
        the DDS source time is known) at ``receipt_us``."""
        stamp, receipt = int(stamp_us), int(receipt_us)
        self.messages += 1
        off = stamp - receipt
        if abs(off) > self.max_offset_us:
            self.implausible += 1
            self.last_stamp_offset_us = off
        else:
            self.last_stamp_offset_us = None
        prev, self._prev = self._prev, (stamp, receipt)
        if prev is not None:
            d_stamp, d_receipt = stamp - prev[0], receipt - prev[1]
            delta = d_stamp - d_receipt
            ahead = receipt - (stamp + self.offset_us) < -self.jump_us
            if (d_stamp < -self.jump_us and delta < -self.jump_us) or (delta > self.jump_us
                                                                        and ahead):
                self._jump(delta)  # the stamps moved alone: continue by receipt
                if -self.jump_us // 10 <= receipt - stamp <= self.jump_us:
                    self.offset_us = 0  # back to stamps that are right as they are
        lag = receipt - (stamp + self.offset_us)
        if lag < -self.jump_us or (prev is None and lag > self.jump_us):
            self._jump(-lag)
        elif lag > self.jump_us:
            if self._behind_since is None:
                self._behind_since = receipt
            elif receipt - self._behind_since > self.jump_us:
                self._jump(-lag)
        if abs(receipt - (stamp + self.offset_us)) <= self.jump_us:
            self._behind_since = None
        return stamp + self.offset_us

    def _jump(self, delta: int) -> None:
        """The stamps moved ``delta`` against their receipt: map them back by it."""
        self.offset_us -= delta
        self.jumps += 1
        self.last_jump_us = delta


class SensorClock:
    """Sensor time (µs) of one event stream -> ROS time (µs), through a filtered offset.

    Each packet gives a sample ``offset = stamp - t_first`` (header stamp = ROS time of the
    packet's first event, the event_camera_msgs convention). Host stamps only ever come late
    (a driver stamps when it reads the USB buffer), so the filter follows the lower envelope:
    a sample below the estimate replaces it at once (it proves the estimate late), a sample
    above it moves the estimate up by ``gain`` of the difference (sensor and host clocks drift
    apart slowly). A sample more than ``resync_us`` away restarts the filter (a camera reset or
    a clock jump; counted in ``resyncs``). Event times within the stream therefore keep the
    sensor's own spacing instead of taking on each packet's host jitter.

    Plausibility: given ``now_us``, a stamp more than ``max_offset_us`` from it (see
    :func:`check_stamp`) is not followed: the receipt time ``now_us`` stands in for it, and
    ``implausible`` / ``last_stamp_offset_us`` say so for the diagnostics.

    >>> clk = SensorClock()
    >>> clk.offset(5_000_000, 1_700_000_000_000_000)   # first packet fixes the offset
    1699999995000000
    >>> clk.offset(5_010_000, 1_700_000_000_013_000)   # stamped 3 ms late: barely moves
    1699999995000030
    >>> clk.offset(5_020_000, 1_699_999_999_990_000) - 1699999995000000  # earlier: follows
    -30000
    """

    def __init__(self, gain: float = 0.01, resync_us: int = 1_000_000,
                 max_offset_us: int = 5_000_000) -> None:
        self.gain, self.resync_us = float(gain), int(resync_us)
        self.max_offset_us = int(max_offset_us)
        self.resyncs = 0
        self.implausible = 0
        self.outliers = 0
        self.last_stamp_offset_us: int | None = None
        self._offset: float | None = None

    @property
    def current(self) -> int | None:
        """The offset in use (µs), None before the first packet."""
        return None if self._offset is None else round(self._offset)

    def checked_stamp(self, stamp_us: int, now_us: int) -> int:
        """stamp_us, or now_us (counted, offset kept) where the stamp is implausible."""
        bad = check_stamp(stamp_us, now_us, self.max_offset_us)
        if bad is None:
            return int(stamp_us)
        self.implausible += 1
        self.last_stamp_offset_us = bad
        return int(now_us)

    def place(self, sensor_us: np.ndarray, stamp_us: int, now_us: int) -> tuple[int, np.ndarray]:
        """Update with one packet's event times; -> (offset to add, mask of the events kept).

        Every event is checked, not only the first: an event more than ``resync_us`` from the
        packet's reference event is an outlier (a corrupt word, a hostile packet), dropped and
        counted in ``outliers``, and never moves the clock or the stream's reach. The reference
        is the packet's first event that agrees with the running offset (within ``resync_us``
        of the header stamp); where none does (the first packet, a camera reset), the packet's
        median event, so that one outlier can never be the reference.

        >>> clk = SensorClock()
        >>> t = np.array([5_000_000, 5_000_010, 3_605_000_000])  # the last: an hour later
        >>> off, keep = clk.place(t, 1_700_000_000_000_000, 1_700_000_000_000_000)
        >>> keep.tolist(), clk.outliers, off
        ([True, True, False], 1, 1699999995000000)
        """
        t = np.asarray(sensor_us, dtype=np.int64)
        stamp = self.checked_stamp(stamp_us, now_us)
        ref = None
        if self._offset is not None:
            agrees = np.flatnonzero(np.abs(t + round(self._offset) - stamp) <= self.resync_us)
            ref = int(t[agrees[0]]) if len(agrees) else None
        if ref is None:
            ref = int(np.partition(t, len(t) // 2)[len(t) // 2])
        keep = np.abs(t - ref) <= self.resync_us
        self.outliers += int(len(t) - np.count_nonzero(keep))
        first = int(t[int(np.argmax(keep))])
        return self.offset(first, stamp), keep

    def offset(self, first_sensor_us: int, stamp_us: int, now_us: int | None = None) -> int:
        """Update with one packet (first event's sensor time, header stamp, and the ROS time
        of receipt if known); -> offset (µs) to add to the packet's sensor times."""
        if now_us is not None:
            stamp_us = self.checked_stamp(stamp_us, now_us)
        sample = float(int(stamp_us) - int(first_sensor_us))
        est = self._offset
        if est is None or abs(sample - est) > self.resync_us:
            self.resyncs += int(est is not None)
            est = sample
        elif sample < est:
            est = sample
        else:
            est += self.gain * (sample - est)
        self._offset = est
        return round(est)


class StamplessClock:
    """Start times for audio chunks that carry no time (std_msgs MultiArrays without the
    taaf_ros stamp, see
    :func:`taaf_ros.audio.multiarray_stamp.multiarray_stamp_ns`), from their receipt times.

    A chunk is taken to end when it is received (it was published once captured), so its first
    sample is at ``est = receipt - duration``; delivery only ever delays a chunk, so ``est`` is
    never earlier than the truth, while the sample count is exact. Chunks are therefore placed
    back to back by sample count, and the clock never moves backwards over audio it has placed
    (a window already cut from that audio keeps its meaning). ``lead = est - next`` (how much
    later than the running clock a chunk arrives) drives three corrections, all counted:

    - ``lead > resync_us``: a pause in the stream or a clock jump: restart at ``est``
      (``resyncs``); the audio buffer fills the gap with silence marked as missing.
    - ``lead < -JUMP_US``: the clock went back (a bag played again, a stepped clock): no
      delivery is that early, restart at ``est`` (``resyncs``).
    - ``lead < -early_us``: the chunk arrived before the clock says it could have ended, which
      proves the placed audio is late (the chunks that set the clock came late, or the
      microphone's clock runs fast): the chunk's leading samples that fall in time already
      placed are dropped, never written over placed audio, which pulls the clock in to this
      receipt (``corrections``, ``dropped_samples``).
    - every one of the last ``window`` chunks has ``lead > early_us``: the clock is early
      (chunks were lost in transport, or the microphone's clock runs slow), by at least the
      smallest lead: jump forward by it, a gap (``corrections``). Taking the minimum over a
      window keeps one-sided delivery jitter and bursts from moving the clock.

    Time is kept as an origin plus a sample count, so chunk durations that are not whole µs do
    not accumulate rounding error.
    """

    def __init__(self, resync_us: int = 100_000, early_us: int = 5_000, window: int = 8) -> None:
        self.resync_us, self.early_us = int(resync_us), int(early_us)
        self.resyncs = 0
        self.corrections = 0
        self.dropped_samples = 0
        self._origin_us: int | None = None
        self._count = 0  # samples placed since the origin
        self._rate = 0
        self._leads: deque[int] = deque(maxlen=max(1, int(window)))

    @property
    def next_us(self) -> int | None:
        """Where the next chunk goes if it arrives on time (µs); None before the first."""
        if self._origin_us is None:
            return None
        return self._origin_us + (self._count * 1_000_000) // self._rate

    def _restart(self, start_us: int, n: int, rate: int) -> None:
        self._origin_us, self._count, self._rate = int(start_us), n, rate
        self._leads.clear()

    def place(self, receipt_us: int, n_samples: int, sample_rate: int) -> tuple[int, int]:
        """(start_us, skip) for a chunk of n_samples received at receipt_us: its samples
        ``[skip:]`` go at start_us, which is never before the end of what was placed.

        >>> clk = StamplessClock()
        >>> clk.place(1_010_000, 80, 8000)  # 80 samples = 10 ms, ending at receipt
        (1000000, 0)
        >>> clk.place(1_023_000, 80, 8000)  # 3 ms late: back to back all the same
        (1010000, 0)
        >>> clk.place(1_005_000, 80, 8000)  # ends before placed audio does: all dropped
        (1020000, 80)
        """
        n, rate = int(n_samples), int(sample_rate)
        est = int(receipt_us) - (n * 1_000_000) // rate
        nxt = self.next_us
        if (nxt is None or rate != self._rate or est - nxt > self.resync_us
                or nxt - est > JUMP_US):
            if nxt is not None:
                self.resyncs += 1
            self._restart(est, n, rate)
            return est, 0
        lead = est - nxt
        if lead < -self.early_us:
            # Samples of this chunk before nxt lie in time already placed: drop them.
            skip = min(n, -(lead * rate // 1_000_000))
            self.corrections += 1
            self.dropped_samples += skip
            self._count += n - skip
            self._leads.clear()
            return nxt, skip
        self._leads.append(lead)
        if len(self._leads) == self._leads.maxlen and min(self._leads) > self.early_us:
            start = nxt + min(self._leads)  # <= est: still not earlier than the truth
            self.corrections += 1
            self._restart(start, n, rate)
            return start, 0
        self._count += n
        return nxt, 0


class SeqTracker:
    """Counts packets lost from gaps in a per-packet sequence number.

    A number other than the next one is only a suspect until the packet after it continues
    from it: then the stream really jumped (a gap of at most ``max_gap`` is counted as lost
    packets, anything else as a reset: a driver restart, or a jump no stream survives). A
    suspect that nothing continues (a corrupt or hostile packet between the stream's own) is
    counted in ``outliers`` and changes nothing.

    >>> s = SeqTracker()
    >>> [s.update(q) for q in (1, 2, 5, 6, 0, 7, 2**64 - 1, 8)], s.lost, s.resets, s.outliers
    ([0, 0, 0, 2, 0, 0, 0, 0], 2, 0, 2)
    """

    def __init__(self, max_gap: int = 100_000) -> None:
        self.max_gap = int(max_gap)
        self.lost = 0
        self.resets = 0
        self.outliers = 0
        self._last: int | None = None
        self._suspect: int | None = None

    def update(self, seq: int) -> int:
        """Record ``seq``; returns how many packets were found lost with it."""
        seq = int(seq)
        last, suspect = self._last, self._suspect
        self._suspect = None
        if last is None or seq == last + 1:
            self.outliers += int(suspect is not None)
            self._last = seq
            return 0
        if suspect is None or seq != suspect + 1:
            self.outliers += int(suspect is not None)
            self._suspect = seq
            return 0
        # The stream goes on from the suspect: it really jumped there.
        gap = suspect - last - 1
        self._last = seq
        if 0 <= gap <= self.max_gap:
            self.lost += gap
            return gap
        self.resets += 1
        return 0
