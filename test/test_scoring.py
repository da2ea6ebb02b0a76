"""Tests of live scoring: matching prediction windows to replayed samples."""

from __future__ import annotations

import numpy as np
import pytest

from taaf_ros.inference.prediction import make_prediction
from taaf_ros.inference.scoring import GroundTruth, Scoreboard
from taaf_ros.stream.scheduler import WindowCut

MS = 1000  # µs per ms


def _prediction(degraded=False):
    w = WindowCut(1_000 * MS, 1_600 * MS, (True, not degraded), (False, degraded))
    probs = np.array([0.1, 0.7, 0.2])
    return make_prediction(
        seq=3, window=w, probs=probs, classes=["a", "b", "c"],
        modality_attention=[0.6, 0.4], attention_map=np.full((8, 2), 1 / 16), k=2,
        n_events=10, audio_coverage=1.0, inference_ms=5.0, latency_ms=12.5)


def test_scoreboard_matches_windows_to_samples():
    b = Scoreboard()
    b.add_truth(GroundTruth("s0", "1", 1, 1_000_000_000, 1_600_000_000))
    b.add_truth(GroundTruth("s1", "2", 2, 1_800_000_000, 2_400_000_000))

    def pred(start_ms, cls):
        p = _prediction()
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
