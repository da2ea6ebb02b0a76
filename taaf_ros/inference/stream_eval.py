"""A model on a stream, offline: a dataset split replayed as the replay node plays it (each
sample in a slot of the window plus a gap, on the hop grid), every sliding window classified
through the live front ends, and the windows scored as the demo scores them.

Three figures, for a decision rule (:class:`~taaf_ros.inference.decision.DecisionRule`):
``aligned`` (windows that coincide with a sample: offline evaluation's number), ``majority``
(every window a sample covers at least half of; an abstention counts as wrong) and
``background`` (windows that overlap no sample: the share where the node abstains or says
``background``, where the model has that class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from taaf_ros.data.readers import EadDataset
from taaf_ros.inference.decision import DecisionRule
from taaf_ros.inference.live import LivePipeline, LiveSettings
from taaf_ros.inference.pipeline import Classifier
from taaf_ros.stream.replay_plan import ReplayPlan
from taaf_ros.stream.scheduler import WindowCut


@dataclass
class StreamWindows:
    """Every sliding window of a replay: start (µs), probabilities (W, K), the fraction of the
    window the best-covering sample covers, and that sample's class (-1: none)."""

    start_us: np.ndarray
    probs: np.ndarray
    cover: np.ndarray
    truth: np.ndarray
    hop_us: int


def replay_windows(classifier: Classifier, dataset: EadDataset, indices: Sequence[int], *,
                   hop_s: float = 0.05, gap_s: float = 1.0, progress: bool = False
                   ) -> StreamWindows:
    """Replay ``indices`` of ``dataset`` in slots of window + ``gap_s`` and classify every
    window ending on the ``hop_s`` grid, through the live front ends."""
    fe = classifier.frontend
    hop_us, window_us = round(hop_s * 1e6), fe.window_us
    plan = ReplayPlan(window_us, hop_us, round(gap_s * 1e6), hop_us, 0)
    slot_us = plan.slot_us
    live = LivePipeline(classifier, dataset.sensor_size,
                        LiveSettings(hop_us=hop_us, history_us=window_us + 2 * slot_us))
    starts, probs, cover, truth = [], [], [], []
    spans: list[tuple[int, int, int]] = []
    next_end = plan.origin_us + hop_us
    from tqdm import tqdm

    for slot, i in enumerate(tqdm(indices, desc="stream", unit="sample", disable=not progress)):
        s = dataset[i]
        start = plan.slot_start(slot)
        ev = s.events[s.events["t"] < window_us].copy()
        ev["t"] += start
        live.push_events(ev, dataset.sensor_size)
        n = round(window_us * s.sample_rate / 1e6)
        pcm = np.zeros(round(slot_us * s.sample_rate / 1e6), np.float32)
        part = s.pcm[:n]
        pcm[:len(part)] = part
        live.push_audio(pcm, start, s.sample_rate)
        spans.append((start, start + window_us, int(s.label)))
        while next_end <= start + slot_us:
            w0 = next_end - window_us
            if w0 >= plan.origin_us:
                cut = WindowCut(w0, next_end, (True, True), (False, False))
                e, _, a, _ = live.window_tensors(cut)
                probs.append(classifier.classify_tensors(e, a).probs)
                starts.append(w0)
                c, t = _best(w0, next_end, spans[-2:])
                cover.append(c)
                truth.append(t)
            next_end += hop_us
    return StreamWindows(np.asarray(starts), np.asarray(probs), np.asarray(cover),
                         np.asarray(truth), hop_us)


def _best(a: int, b: int, spans: list[tuple[int, int, int]]) -> tuple[float, int]:
    best, label = 0.0, -1
    for s, e, y in spans:
        ov = (min(b, e) - max(a, s)) / (b - a)
        if ov > best:
            best, label = ov, y
    return best, label


def score(w: StreamWindows, rule: DecisionRule, classes: Sequence[str]) -> dict[str, float]:
    """The rule run over the windows in order; aligned, majority and background figures."""
    chosen = np.array([rule.decide(p, int(s), w.hop_us).class_id
                       for p, s in zip(w.probs, w.start_us, strict=True)])
    bg = classes.index("background") if "background" in classes else -2
    aligned, majority, none = w.cover >= 0.99, w.cover >= 0.5, w.cover <= 0.0
    return {
        "aligned": float(np.mean(chosen[aligned] == w.truth[aligned])) if aligned.any() else
        float("nan"),
        "majority": float(np.mean(chosen[majority] == w.truth[majority])) if majority.any()
        else float("nan"),
        "background": float(np.mean((chosen[none] < 0) | (chosen[none] == bg))) if none.any()
        else float("nan"),
        "aligned_windows": int(aligned.sum()), "majority_windows": int(majority.sum()),
        "background_windows": int(none.sum()),
        "abstained": float(np.mean(chosen < 0)),
    }
