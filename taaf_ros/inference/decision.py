"""From each window's class probabilities to the label the node publishes: a short temporal
smoothing and an abstention rule.

Windows slide every hop, so a sample is seen by many windows, most of them covering only part
of it, and the windows between samples see nothing the network was trained on. Averaging the
probabilities of the last ``smoothing_windows`` consecutive windows steadies the label over a
sample; a smoothed confidence below ``min_confidence`` publishes no label (abstains): the
network is not sure, or there is nothing to recognise. The defaults are chosen on the
validation speaker by ``taaf_stream_select`` (docs/results-stream.md).

>>> rule = DecisionRule(smoothing_windows=2, min_confidence=0.6)
>>> rule.decide(np.array([0.9, 0.1]), start_us=0, hop_us=50_000)
Decision(probs=array([0.9, 0.1]), class_id=0, confidence=0.9)
>>> rule.decide(np.array([0.3, 0.7]), start_us=50_000, hop_us=50_000).class_id  # mean 0.6 / 0.4
0
>>> rule.decide(np.array([0.5, 0.5]), start_us=100_000, hop_us=50_000).class_id  # 0.4 / 0.6
1
>>> rule.decide(np.array([0.5, 0.5]), start_us=150_000, hop_us=50_000).class_id  # abstains
-1
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np


class Decision(NamedTuple):
    """The smoothed probabilities, the chosen class (-1: abstained) and its confidence."""

    probs: np.ndarray
    class_id: int
    confidence: float

    @property
    def abstained(self) -> bool:
        return self.class_id < 0


class DecisionRule:
    """Smoothing over consecutive windows and abstention below a confidence.

    ``smoothing_windows`` = 1 and ``min_confidence`` = 0 publish each window's own argmax.
    A window that does not follow the previous one by one hop (a gap in the input, windows
    dropped) starts the smoothing afresh: probabilities of windows apart in time are never
    mixed.
    """

    def __init__(self, smoothing_windows: int = 1, min_confidence: float = 0.0) -> None:
        self.configure(smoothing_windows, min_confidence)
        self._last_start: int | None = None

    def configure(self, smoothing_windows: int, min_confidence: float) -> None:
        if int(smoothing_windows) < 1 or not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError("need smoothing_windows >= 1 and min_confidence in [0, 1]")
        self.smoothing_windows = int(smoothing_windows)
        self.min_confidence = float(min_confidence)
        self._recent: deque[np.ndarray] = deque(maxlen=self.smoothing_windows)

    def decide(self, probs: np.ndarray, start_us: int, hop_us: int) -> Decision:
        if self._last_start is None or start_us - self._last_start != hop_us:
            self._recent.clear()
        self._last_start = int(start_us)
        self._recent.append(np.asarray(probs, dtype=np.float64))
        smoothed = np.mean(self._recent, axis=0) if len(self._recent) > 1 else self._recent[0]
        best = int(np.argmax(smoothed))
        confidence = float(smoothed[best])
        return Decision(smoothed, best if confidence >= self.min_confidence else -1, confidence)
