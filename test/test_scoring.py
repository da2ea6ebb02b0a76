"""Tests of live scoring: matching prediction windows to replayed samples."""

from __future__ import annotations

import pytest
from test_prediction import sample_prediction

from taaf_ros.inference.scoring import GroundTruth, Scoreboard


def test_scoreboard_matches_windows_to_samples():
    b = Scoreboard()
    b.add_truth(GroundTruth("s0", "1", 1, 1_000_000_000, 1_600_000_000))
    b.add_truth(GroundTruth("s1", "2", 2, 1_800_000_000, 2_400_000_000))

    def pred(start_ms, cls):
        p = sample_prediction()
        p["window"] = {"start_ns": start_ms * 1_000_000, "end_ns": (start_ms + 600) * 1_000_000}
        p["class_id"] = cls
        return p

    assert b.add_prediction(pred(1000, 1))[0].id == "s0"  # aligned, right
    assert b.add_prediction(pred(1800, 1))[1] == 1.0  # aligned, wrong
    g, cover = b.add_prediction(pred(1700, 2))  # mostly s1 (500 ms of 600)
    assert g.id == "s1" and cover == pytest.approx(500 / 600)
    s = b.summary()
    assert s["aligned_windows"] == 2 and s["aligned_accuracy"] == 0.5
    assert s["majority_windows"] == 3 and s["majority_accuracy"] == pytest.approx(2 / 3)
