"""The /taaf/prediction JSON message: its versioned schema, how it is built and checked."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from taaf_ros.modalities import MODALITIES
from taaf_ros.stream.scheduler import WindowCut

SCHEMA = "taaf_ros/prediction"
SCHEMA_VERSION = 1


def top_k(probs: np.ndarray, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """Best k classes, best first: [{"label", "class_id", "score"}]."""
    order = np.argsort(-probs, kind="stable")[: max(1, int(k))]
    return [{"label": classes[i], "class_id": int(i), "score": round(float(probs[i]), 6)}
            for i in order]


def make_prediction(*, seq: int, window: WindowCut, probs: np.ndarray, classes: Sequence[str],
                    modality_attention: Sequence[float], attention_map: np.ndarray,
                    k: int, n_events: int, audio_coverage: float, inference_ms: float,
                    latency_ms: float, modalities: Sequence[str] = MODALITIES,
                    abstained: bool = False) -> dict[str, Any]:
    """The /taaf/prediction object (schema version :data:`SCHEMA_VERSION`).

    Fields: schema, version, seq (window counter), stamp_ns (= window end), window
    {start_ns, end_ns}, label, class_id, confidence, top_k, modality_attention {name: a_m},
    attention_map {dims: ["time", "modality"], modalities, values: T x M}, present, missing,
    degraded, inputs {events: count in the window, audio_coverage: fraction of real samples},
    inference_ms, latency_ms (window end -> publish, ROS clock), abstained (the decision rule
    found no class sure enough: label "" and class_id -1, confidence and top_k still say what
    it weighed; see :mod:`taaf_ros.inference.decision`).
    """
    best = top_k(probs, classes, k)
    present = [m for m, p in zip(modalities, window.present, strict=True) if p]
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "seq": int(seq),
        "stamp_ns": window.end_us * 1000,
        "window": {"start_ns": window.start_us * 1000, "end_ns": window.end_us * 1000},
        "label": "" if abstained else best[0]["label"],
        "class_id": -1 if abstained else best[0]["class_id"],
        "confidence": best[0]["score"],
        "top_k": best,
        "modality_attention": {m: round(float(a), 6)
                               for m, a in zip(modalities, modality_attention, strict=True)},
        "attention_map": {"dims": ["time", "modality"], "modalities": list(modalities),
                          "values": np.round(np.asarray(attention_map, float), 6).tolist()},
        "present": present,
        "missing": [m for m in modalities if m not in present],
        "degraded": window.degraded,
        "inputs": {"events": int(n_events), "audio_coverage": round(float(audio_coverage), 4)},
        "inference_ms": round(float(inference_ms), 3),
        "latency_ms": round(float(latency_ms), 3),
        "abstained": bool(abstained),
    }


REQUIRED_KEYS = ("schema", "version", "seq", "stamp_ns", "window", "label", "class_id",
                 "confidence", "top_k", "modality_attention", "attention_map", "present",
                 "missing", "degraded", "inputs", "inference_ms", "latency_ms")


def parse_prediction(text: str) -> dict[str, Any]:
    """Parse and check a /taaf/prediction message (ValueError if it is not schema v1)."""
    obj = json.loads(text)
    if obj.get("schema") != SCHEMA or obj.get("version") != SCHEMA_VERSION:
        raise ValueError(f"not a {SCHEMA} v{SCHEMA_VERSION} message")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ValueError(f"prediction lacks {missing}")
    return obj
