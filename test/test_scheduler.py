"""Tests of the window scheduler: the hop grid, waiting, masking, health levels."""

from __future__ import annotations

import pytest

from taaf_ros.stream.clock import SensorClock
from taaf_ros.stream.scheduler import OK, STALE, WARN, WindowScheduler

MS = 1000  # µs per ms


def _sched(**kw):
    args = dict(window_us=600 * MS, hop_us=50 * MS, max_wait_us=100 * MS,
                timeout_us=500 * MS, now_us=0)
    args.update(kw)
    return WindowScheduler(**args)


def test_windows_end_on_the_hop_grid_and_cover_the_first_data():
    s = _sched()
    s.note("events", 1_000 * MS, 1_700 * MS, 1_700 * MS)
    s.note("audio", 1_002 * MS, 1_700 * MS, 1_700 * MS)
    got = s.poll(1_650 * MS)
    # First window starts at the data (1.000 s), then one per hop; all on the grid.
    assert [(w.start_us, w.end_us) for w in got] == [(1_000 * MS, 1_600 * MS),
                                                     (1_050 * MS, 1_650 * MS)]
    assert s.stats.dropped == 0
    # Inference fell behind by 3 hops: only the newest two are served, the rest counted.
    s.note("events", 1_650 * MS, 1_900 * MS, 1_900 * MS)
    s.note("audio", 1_650 * MS, 1_900 * MS, 1_900 * MS)
    assert [w.end_us for w in s.poll(1_900 * MS)] == [1_850 * MS, 1_900 * MS]
    assert s.stats.dropped == 3 and s.stats.cut == 4
    assert all(w.present == (True, True) and not w.degraded for w in got)


def test_window_waits_for_both_modalities_then_masks_the_late_one():
    s = _sched()
    s.note("events", 1_000 * MS, 1_650 * MS, 1_650 * MS)
    s.note("audio", 1_000 * MS, 1_550 * MS, 1_650 * MS)
    assert s.poll(1_650 * MS) == []  # audio not yet at 1.6 s: wait
    s.note("audio", 1_550 * MS, 1_610 * MS, 1_660 * MS)
    (w,) = s.poll(1_660 * MS)
    assert w.end_us == 1_600 * MS and w.present == (True, True)
    # Audio stops at 1.61 s: the 1.65 s window is cut after max_wait with audio masked.
    s.note("events", 1_650 * MS, 1_760 * MS, 1_760 * MS)
    assert s.poll(1_740 * MS) == []
    (w,) = s.poll(1_750 * MS)
    assert w.present == (True, False) and w.degraded and s.stats.late["audio"] == 1


def test_timed_out_modality_does_not_delay_windows_and_health_levels():
    s = _sched()
    s.note("audio", 1_000 * MS, 1_100 * MS, 1_100 * MS)
    s.note("events", 1_000 * MS, 1_700 * MS, 1_700 * MS)
    assert s.health(1_700 * MS)[0] == WARN  # audio silent for 0.6 s > 0.5 s
    got = s.poll(1_700 * MS)  # no wait for max_wait: audio is known missing
    assert got and got[-1].end_us == 1_700 * MS and got[-1].timed_out == (False, True)
    assert s.health(2_300 * MS)[0] == STALE
    assert s.poll(2_300 * MS) == [] and s.stats.stale > 0
    # Recovery: both back, windows resume near now, not from the stale past.
    s.note("events", 2_300 * MS, 2_400 * MS, 2_400 * MS)
    s.note("audio", 2_300 * MS, 2_400 * MS, 2_400 * MS)
    assert s.health(2_400 * MS)[0] == OK
    got = s.poll(2_400 * MS)
    assert got and got[0].end_us >= 2_200 * MS and got[-1].present == (True, True)


def test_never_heard_modality_times_out_from_creation():
    s = _sched(now_us=1_000 * MS)
    s.note("events", 1_000 * MS, 1_800 * MS, 1_800 * MS)
    got = s.poll(1_800 * MS)
    assert got and all(w.present == (True, False) for w in got)
    assert s.health(1_800 * MS) == (WARN, "degraded: audio missing (masked)")


def test_configure_changes_waiting():
    s = _sched()
    s.configure(max_wait_us=0, timeout_us=10_000 * MS)
    s.note("events", 1_000 * MS, 1_700 * MS, 1_700 * MS)
    s.note("audio", 1_000 * MS, 1_100 * MS, 1_100 * MS)
    assert s.poll(1_600 * MS)[-1].present == (True, False)


DAY = 86_400_000 * MS


def test_far_behind_data_is_skipped_in_one_step():
    """Data one day behind the ROS clock (a bag with its recorded stamps): one poll jumps to
    the newest windows instead of building 1.7 million of them."""
    now = 1_700_000_000_000 * MS
    s = _sched(now_us=now - DAY)
    s.note("events", now - DAY, now - DAY + 700 * MS, now)
    s.note("audio", now - DAY, now - DAY + 700 * MS, now)
    got = s.poll(now)
    assert len(got) <= s.max_backlog and s.stats.jumps == 1
    assert s.stats.dropped >= DAY // (50 * MS) - 20
    # Nothing is cut in the future; the grid now sits just behind now.
    assert all(w.end_us <= now for w in got) and s._next_end <= now + 50 * MS


@pytest.mark.parametrize("offset", [-DAY, DAY])
def test_day_offset_stamps_are_mapped_to_receipt_time(offset):
    """Stamps a day in the past or the future: the sensor clock names the offset and maps the
    data to receipt time, so windows keep being cut near now."""
    now0 = 1_700_000_000_000 * MS
    clk = SensorClock()
    s = _sched(now_us=now0)
    cut = []
    for k in range(100):  # 1 s of 10 ms packets, sensor time from 0
        now = now0 + k * 10 * MS
        off = clk.offset(k * 10 * MS, now + offset, now)
        s.note("events", k * 10 * MS + off, k * 10 * MS + off + 9 * MS, now)
        s.note("audio", now - 10 * MS, now, now)
        cut += s.poll(now)
    assert clk.implausible == 100 and clk.last_stamp_offset_us == offset
    assert cut and all(abs(w.end_us - now) < 1_000 * MS for w in cut)
    assert s.stats.jumps == 0
