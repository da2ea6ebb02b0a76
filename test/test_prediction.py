"""Tests of the /taaf/prediction schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taaf_ros.inference.prediction import SCHEMA_VERSION, make_prediction, parse_prediction
from taaf_ros.stream.scheduler import WindowCut

MS = 1000  # µs per ms


def sample_prediction(degraded: bool = False) -> dict:
    """A prediction of a 0.6 s window (shared with test_scoring)."""
    w = WindowCut(1_000 * MS, 1_600 * MS, (True, not degraded), (False, degraded))
    probs = np.array([0.1, 0.7, 0.2])
    return make_prediction(
        seq=3, window=w, probs=probs, classes=["a", "b", "c"],
        modality_attention=[0.6, 0.4], attention_map=np.full((8, 2), 1 / 16), k=2,
        n_events=10, audio_coverage=1.0, inference_ms=5.0, latency_ms=12.5)


def test_prediction_schema_round_trip():
    p = parse_prediction(json.dumps(sample_prediction()))
    assert p["version"] == SCHEMA_VERSION and p["label"] == "b" and p["class_id"] == 1
    assert [e["label"] for e in p["top_k"]] == ["b", "c"]
    assert p["window"] == {"start_ns": 1_000_000_000, "end_ns": 1_600_000_000}
    assert p["modality_attention"] == {"events": 0.6, "audio": 0.4}
    assert np.asarray(p["attention_map"]["values"]).shape == (8, 2)
    d = sample_prediction(degraded=True)
    assert d["degraded"] and d["missing"] == ["audio"] and d["present"] == ["events"]
    with pytest.raises(ValueError):
        parse_prediction(json.dumps({**d, "version": 99}))
    with pytest.raises(ValueError):
        parse_prediction(json.dumps({k: v for k, v in d.items() if k != "label"}))
