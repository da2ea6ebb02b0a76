"""Tests of the time helpers: event times, the stampless audio clock, sequence gaps."""

from __future__ import annotations

import numpy as np

from taaf_ros.stream import clock
from taaf_ros.stream.clock import SensorClock, SeqTracker, StamplessClock, check_stamp

MS = 1000  # µs per ms


def test_sensor_clock_keeps_sensor_spacing_under_host_jitter():
    """Packets every 10 ms of sensor time, host stamps late by 0-8 ms at random: the mapped
    times follow the sensor clock to within the smallest delay, not each packet's jitter."""
    rng = np.random.default_rng(0)
    clk = SensorClock()
    truth = 1_700_000_000_000_000 - 5_000_000  # ROS time of sensor t = 0
    errors = []
    for k in range(500):
        t_first = 5_000_000 + k * 10_000
        stamp = truth + t_first + int(rng.integers(0, 8_000))
        errors.append(t_first + clk.offset(t_first, stamp) - (truth + t_first))
    late = np.array(errors[100:])
    # Re-anchoring to each stamp would be off by up to 8 ms; the filter stays within 2 ms.
    assert late.min() >= 0 and late.max() < 2_000
    assert clk.resyncs == 0


def test_sensor_clock_follows_drift_and_resyncs_on_jumps():
    clk = SensorClock(gain=0.05)
    for k in range(400):  # host clock runs 100 ppm fast against the sensor
        t = k * 10_000
        off = clk.offset(t, 1_000_000 + t + t // 10_000)
    assert abs(off - (1_000_000 + 399)) < 50
    clk.offset(4_000_000, 10_000_000_000)  # the camera restarted on another time base
    assert clk.resyncs == 1 and clk.current == 10_000_000_000 - 4_000_000


def test_check_stamp_names_the_offset():
    day = 86_400_000_000
    now = 1_700_000_000_000_000
    assert check_stamp(now - 20_000, now, 5_000_000) is None
    assert check_stamp(now - day, now, 5_000_000) == -day
    assert check_stamp(now + day, now, 5_000_000) == day


def test_stampless_clock_continues_by_sample_count_and_resyncs():
    clk = StamplessClock(resync_us=100 * MS, early_us=5 * MS)
    assert clk.place(1_010 * MS, 80, 8000) == (1_000 * MS, 0)  # chunk ends at receipt
    # Jittered receipt (13 ms late): placed back to back anyway.
    assert clk.place(1_033 * MS, 80, 8000) == (1_010 * MS, 0)
    # 2 ms earlier than the clock predicts: within early_us, still back to back.
    assert clk.place(1_028 * MS, 80, 8000) == (1_020 * MS, 0)
    assert clk.next_us == 1_030 * MS and (clk.resyncs, clk.corrections) == (0, 0)
    # A pause of 1 s: restart from the receipt time, forward.
    assert clk.place(2_100 * MS, 80, 8000) == (2_090 * MS, 0)
    assert clk.resyncs == 1


def test_stampless_clock_never_moves_back_over_placed_audio():
    clk = StamplessClock(resync_us=100 * MS, early_us=5 * MS)
    # The first chunk came 40 ms late (discovery, a loaded publisher): placed 40 ms late.
    assert clk.place(1_050 * MS, 80, 8000) == (1_040 * MS, 0)
    # The next one arrives on time: all of it lies in time already placed: dropped whole.
    assert clk.place(1_020 * MS, 80, 8000) == (1_050 * MS, 80)
    # A chunk whose start is 20 ms inside placed time: 160 of 400 samples dropped, the rest
    # continues exactly where the placed audio ends, and the clock is now on the receipt.
    assert clk.place(1_080 * MS, 400, 8000) == (1_050 * MS, 160)
    assert clk.next_us == 1_080 * MS
    assert clk.corrections == 2 and clk.dropped_samples == 240 and clk.resyncs == 0


def test_stampless_clock_moves_forward_after_lost_chunks_not_on_jitter():
    clk = StamplessClock(resync_us=100 * MS, early_us=5 * MS, window=4)
    t = 1_000 * MS
    assert clk.place(t + 10 * MS, 80, 8000) == (t, 0)
    # A burst: three chunks delivered together 30 ms late. The last one is on time, so no
    # chunk proves the clock early: back to back.
    for k in (1, 2, 3):
        assert clk.place(t + 40 * MS, 80, 8000) == (t + k * 10 * MS, 0)
    # Two chunks lost (20 ms): every later chunk arrives >= 20 ms after the clock expects it;
    # after `window` such chunks the clock jumps forward by the smallest lead, 20 ms.
    got = [clk.place(t + (k + 1) * 10 * MS + 20 * MS + j * MS, 80, 8000)
           for k, j in zip(range(4, 8), (3, 0, 7, 1), strict=True)]
    assert [g[0] for g in got] == [t + 40 * MS, t + 50 * MS, t + 60 * MS, t + 90 * MS]
    assert clk.corrections == 1 and clk.resyncs == 0 and clk.next_us == t + 100 * MS


def test_stampless_clock_is_monotonic_and_close_under_random_delays():
    """Random delays, bursts, lost chunks and pauses: placed chunks never overlap, and once
    the clock has had a few chunks to settle, placement is within a few ms of the truth."""
    rng = np.random.default_rng(1)
    clk = StamplessClock()
    end, t, errors = None, 1_000 * MS, []
    for _ in range(3000):
        n = 80
        t += n * 125  # true end of this chunk
        u = rng.random()
        if u < 0.005:
            t += int(rng.integers(150, 400)) * MS  # a pause (the stream stopped)
        elif u < 0.01:
            continue  # lost in transport
        delay = int(rng.exponential(2 * MS)) + (50 * MS if rng.random() < 0.01 else 0)
        start, skip = clk.place(t + delay, n, 8000)
        assert 0 <= skip <= n
        if end is not None:
            assert start >= end  # never back over placed audio
        end = start + (n - skip) * 125
        if skip < n:
            errors.append(start - (t - n * 125 + skip * 125))
    errors = np.abs(np.asarray(errors))
    assert clk.resyncs > 0 and clk.corrections > 0
    # Lost chunks leave the clock early by their length until `window` chunks prove it.
    assert np.mean(errors <= 6 * MS) > 0.9 and errors.max() <= 60 * MS


def test_seq_gaps_count_lost_packets():
    s = SeqTracker()
    for q in (1, 2, 5, 6, 3, 4):  # a gap of 2, then a restart that the stream continues
        s.update(q)
    assert s.lost == 2 and s.resets == 1 and s.outliers == 0
    for q in (0, 5, 2**64 - 1, 6, 1000, 7):  # numbers nothing continues: outliers only
        s.update(q)
    assert s.lost == 2 and s.resets == 1 and s.outliers == 3


def test_doctests():
    import doctest

    assert doctest.testmod(clock).failed == 0
