"""Live accuracy: replayed samples' ground truth and matching prediction windows to it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class GroundTruth(NamedTuple):
    """One replayed sample: it occupies [start_ns, end_ns) of the ROS clock."""

    id: str
    label: str
    class_id: int
    start_ns: int
    end_ns: int

    def to_json(self) -> str:
        return json.dumps(self._asdict())

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        d = json.loads(text)
        return cls(str(d["id"]), str(d["label"]), int(d["class_id"]), int(d["start_ns"]),
                   int(d["end_ns"]))


def best_match(start_ns: int, end_ns: int, truths: Iterable[GroundTruth]
               ) -> tuple[GroundTruth | None, float]:
    """The sample covering most of the window, and the fraction of the window it covers."""
    best, cover = None, 0.0
    length = max(end_ns - start_ns, 1)
    for g in truths:
        ov = min(end_ns, g.end_ns) - max(start_ns, g.start_ns)
        if ov > 0 and ov / length > cover:
            best, cover = g, ov / length
    return best, cover


@dataclass
class Scoreboard:
    """Live accuracy against ground truth.

    aligned: windows that coincide with a sample (>= 99 % covered): exactly what offline
    evaluation of the same sample computes, so this accuracy is comparable to it.
    majority: every window that a sample covers at least half of (sliding windows as well);
    an abstention counts as wrong.
    background: windows that overlap no sample: True where the node abstained (or said
    ``background``), which is right there.
    """

    truths: dict[str, GroundTruth] = field(default_factory=dict)
    aligned: list[tuple[str, int, int]] = field(default_factory=list)  # (id, true, predicted)
    majority: list[tuple[str, int, int]] = field(default_factory=list)
    background: list[bool] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    degraded: int = 0
    predictions: int = 0

    def add_truth(self, g: GroundTruth) -> None:
        self.truths[g.id] = g

    def add_prediction(self, pred: dict[str, Any]) -> tuple[GroundTruth | None, float]:
        self.predictions += 1
        self.latencies_ms.append(float(pred["latency_ms"]))
        self.inference_ms.append(float(pred.get("inference_ms", np.nan)))
        self.degraded += int(bool(pred["degraded"]))
        g, cover = best_match(pred["window"]["start_ns"], pred["window"]["end_ns"],
                              self.truths.values())
        if g is None:
            self.background.append(bool(pred.get("abstained")) or pred["label"] == "background")
        else:
            row = (g.id, g.class_id, int(pred["class_id"]))
            if cover >= 0.99:
                self.aligned.append(row)
            if cover >= 0.5:
                self.majority.append(row)
        return g, cover

    @staticmethod
    def _acc(rows: list[tuple[str, int, int]]) -> float:
        return float(np.mean([t == p for _, t, p in rows])) if rows else float("nan")

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        inf = np.asarray(self.inference_ms) if self.inference_ms else np.asarray([np.nan])
        return {
            "samples": len(self.truths),
            "predictions": self.predictions,
            "degraded": self.degraded,
            "aligned_windows": len(self.aligned),
            "aligned_accuracy": self._acc(self.aligned),
            "majority_windows": len(self.majority),
            "majority_accuracy": self._acc(self.majority),
            "background_windows": len(self.background),
            "background_abstained": float(np.mean(self.background)) if self.background
            else float("nan"),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p99": float(np.percentile(lat, 99)),
            "inference_ms_p50": float(np.percentile(inf, 50)),
            "inference_ms_p99": float(np.percentile(inf, 99)),
        }
