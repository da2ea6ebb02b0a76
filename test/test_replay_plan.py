"""Tests of the replay plan (samples on the window grid) and the replay order."""

from __future__ import annotations

import pytest

from taaf_ros.stream import replay_plan
from taaf_ros.stream.replay_plan import ReplayPlan, replay_order

MS = 1000  # µs per ms


def test_replay_plan_puts_samples_on_the_window_grid():
    plan = ReplayPlan(600 * MS, 50 * MS, 200 * MS, 30 * MS, first_start_us=1_012 * MS)
    assert plan.origin_us == 1_050 * MS and plan.slot_us == 800 * MS
    assert plan.packet_us == 25 * MS  # shrunk to divide the hop
    assert plan.slot_start(2) == 2_650 * MS
    slot, a, b = plan.packet(32)
    assert (slot, a, b) == (1, 1_850 * MS, 1_875 * MS)
    # Audio sample ranges tile the timeline with no gap or overlap.
    r = [plan.sample_range(*plan.packet(k)[1:], 44_100) for k in range(5)]
    assert all(r[i][1] == r[i + 1][0] for i in range(4))


def test_replay_order_interleaves_classes():
    labels = [0] * 3 + [1] * 2 + [2] * 4
    order = replay_order(labels)
    assert sorted(order) == list(range(9))
    assert [labels[i] for i in order] == [0, 1, 2, 0, 1, 2, 0, 2, 2]
    assert replay_order(labels, "listed") == list(range(9))
    with pytest.raises(ValueError):
        replay_order(labels, "random")


def test_doctests():
    import doctest

    assert doctest.testmod(replay_plan).failed == 0
