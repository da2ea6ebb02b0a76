"""Tests of the window scheduler: the hop grid, waiting, masking, health levels."""

from __future__ import annotations

from taaf_ros.nodes.windowing import OK, STALE, WARN, WindowScheduler

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
