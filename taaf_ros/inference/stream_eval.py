"""A model on a stream, offline: a dataset split replayed as the replay node plays it (each
sample in a slot of the window plus a gap, on the hop grid), one's own recordings' samples put
back where they were recorded, or labelled recordings decoded as the node decodes them; every
sliding window classified through the live front ends, and the windows scored as the demo
scores them.

Three figures, for a decision rule (:class:`~taaf_ros.inference.decision.DecisionRule`):
``aligned`` (windows that coincide with a sample: offline evaluation's number), ``majority``
(every window a labelled sample covers at least half of; an abstention counts as wrong) and
``background`` (windows that overlap no sample, or are mostly a ``background`` sample: the
share where the node abstains or says ``background``, where the model has that class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taaf_ros.data.labels import LabelSpan
from taaf_ros.data.readers import EadDataset
from taaf_ros.defaults import HOP_S, STREAM_AUDIO_RATE_HZ
from taaf_ros.inference.classifier import Classifier
from taaf_ros.inference.decision import DecisionRule
from taaf_ros.stream.live_frontend import LiveFrontEnd, LiveSettings
from taaf_ros.stream.replay_plan import ReplayPlan
from taaf_ros.stream.scheduler import WindowCut


def fastest_classifier(model: str) -> Classifier:
    """The model on the CPU through ONNX Runtime where it is installed (five times the eager
    speed at batch 1), else eager: thousands of windows are classified one by one."""
    try:
        return Classifier(model, "cpu", backend="onnxruntime")
    except (ImportError, RuntimeError):
        return Classifier(model, "cpu")


@dataclass
class StreamWindows:
    """Every sliding window of a replay: start (µs), probabilities (W, K), the fraction of the
    window the best-covering sample covers, and that sample's class (-1: none). ``aligned``:
    the windows that are samples (a recording: the windows taaf_dataset cuts from its spans;
    None: those a sample covers whole)."""

    start_us: np.ndarray
    probs: np.ndarray
    cover: np.ndarray
    truth: np.ndarray
    hop_us: int
    aligned: np.ndarray | None = None

    @staticmethod
    def concat(runs: Sequence[StreamWindows]) -> StreamWindows:
        """Several recordings' windows as one (each with ``aligned`` set)."""
        return StreamWindows(*(np.concatenate([getattr(r, f) for r in runs])
                               for f in ("start_us", "probs", "cover", "truth")),
                             runs[0].hop_us, np.concatenate([r.aligned for r in runs]))


class _Classified:
    """Windows classified through a live front end, in order, each with the labelled span
    (start µs, end µs, class) that covers it most: collected into a StreamWindows."""

    def __init__(self, classifier: Classifier, live: LiveFrontEnd) -> None:
        self.classifier, self.live = classifier, live
        self.starts: list[int] = []
        self.probs: list[np.ndarray] = []
        self.cover: list[float] = []
        self.truth: list[int] = []

    def add(self, start_us: int, end_us: int, spans: Sequence[tuple[int, int, int]]) -> None:
        e, _, a, _ = self.live.window_tensors(WindowCut(start_us, end_us, (True, True),
                                                        (False, False)))
        self.probs.append(self.classifier.classify_tensors(e, a).probs)
        self.starts.append(start_us)
        c, t = _best(start_us, end_us, spans)
        self.cover.append(c)
        self.truth.append(t)

    def windows(self, hop_us: int, aligned: set[int] | None = None) -> StreamWindows:
        """The windows so far; ``aligned``: the starts of the windows that are samples."""
        return StreamWindows(np.asarray(self.starts), np.asarray(self.probs),
                             np.asarray(self.cover), np.asarray(self.truth), hop_us,
                             None if aligned is None else
                             np.asarray([w in aligned for w in self.starts], dtype=bool))


def replay_windows(classifier: Classifier, dataset: EadDataset, indices: Sequence[int], *,
                   hop_s: float = HOP_S, gap_s: float = 1.0, progress: bool = False
                   ) -> StreamWindows:
    """Replay ``indices`` of ``dataset`` in slots of window + ``gap_s`` and classify every
    window ending on the ``hop_s`` grid, through the live front ends."""
    fe = classifier.frontend
    hop_us, window_us = round(hop_s * 1e6), fe.window_us
    plan = ReplayPlan(window_us, hop_us, round(gap_s * 1e6), hop_us, 0)
    slot_us = plan.slot_us
    live = LiveFrontEnd(classifier.frontend, dataset.sensor_size,
                        LiveSettings(hop_us=hop_us, history_us=window_us + 2 * slot_us))
    out = _Classified(classifier, live)
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
                out.add(w0, next_end, spans[-2:])
            next_end += hop_us
    return out.windows(hop_us)


def placed_windows(classifier: Classifier, dataset: EadDataset, indices: Sequence[int],
                   places: dict[str, tuple[str, int]], *, hop_s: float = HOP_S
                   ) -> StreamWindows:
    """Samples of one's own recordings put back where they were recorded (``places``: sample
    id -> (recording, window start ns), as taaf_dataset writes them), and every window on the
    ``hop_s`` grid from each recording's first sample to its last classified through the live
    front ends: windows slid along the recordings, as the node meets them. Where samples
    overlap their data is pushed once (it is the same recording). Only windows that lie
    whole in samples' data are classified: a stretch no sample holds (the training split's,
    the test split's, or a remainder too short for a background window) would be an empty
    window no robot sees. Aligned: the samples' own windows."""
    by_rec: dict[str, list[tuple[int, int]]] = {}
    for i in indices:
        rec, start_ns = places[dataset.samples[i][3]]
        by_rec.setdefault(rec, []).append((start_ns // 1000, i))
    return StreamWindows.concat([_placed_run(classifier, dataset, sorted(items),
                                             round(hop_s * 1e6))
                                 for _, items in sorted(by_rec.items())])


def _placed_run(classifier: Classifier, dataset: EadDataset, items: list[tuple[int, int]],
                hop_us: int) -> StreamWindows:
    """One recording's samples (start µs, index), in time order: see ``placed_windows``."""
    from taaf_ros.stream.clock import grid_ceil

    window_us = classifier.frontend.window_us
    live = LiveFrontEnd(classifier.frontend, dataset.sensor_size,
                        LiveSettings(hop_us=hop_us, history_us=window_us + 2_000_000))
    spans = [(start, start + window_us, int(dataset.samples[i][2])) for start, i in items]
    out = _Classified(classifier, live)
    next_end = grid_ceil(items[0][0] + window_us, hop_us)
    pushed = stretch = items[0][0]  # data in the front end: [stretch, pushed) without a hole
    for k, (start, i) in enumerate(items):
        end = start + window_us
        if start > pushed:
            stretch = start
        if end > pushed:
            s = dataset[i]
            ev = s.events[s.events["t"] < window_us].copy()
            ev["t"] += start
            live.push_events(ev[ev["t"] >= pushed], dataset.sensor_size)
            skip = max(0, round((pushed - start) * s.sample_rate / 1e6))
            n = round(window_us * s.sample_rate / 1e6)
            live.push_audio(s.pcm[skip:n], start + round(skip * 1e6 / s.sample_rate),
                            s.sample_rate)
            pushed = end
        # windows ending before the next sample's start need nothing more
        limit = max(pushed, items[k + 1][0]) if k + 1 < len(items) else pushed
        while next_end <= limit:
            w0 = next_end - window_us
            if w0 < stretch or next_end > pushed:  # reaches into a hole
                next_end += hop_us
                continue
            out.add(w0, next_end, spans[max(0, k - 40):k + 40])
            next_end += hop_us
    return out.windows(hop_us, aligned={start for start, _ in items})


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
    aligned = w.cover >= 0.99 if w.aligned is None else w.aligned
    # A window mostly of a background sample is background too: abstaining there is right.
    labelled = (w.cover >= 0.5) & (w.truth != bg)
    majority, none = labelled, (w.cover <= 0.0) | ((w.cover >= 0.5) & (w.truth == bg))
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


def recording_windows(classifier: Classifier, pieces, spans: Sequence[tuple[int, int, int]],
                      sensor_size: tuple[int, int], hop_s: float = HOP_S,
                      stride_s: float = 0.0) -> StreamWindows:
    """Every window of a recording (decoded pieces, :mod:`taaf_ros.data.recording`) on the
    ``hop_s`` grid, classified through the live front ends as its data arrives, and scored
    against labelled ``spans`` (start µs, end µs, class index) of the ROS clock. The aligned
    windows are the ones taaf_dataset cuts from the spans (on the same grid, ``stride_s``
    apart in a long span, 0: the window), so their accuracy is the dataset's."""
    from taaf_ros.data.span_cutter import span_windows
    from taaf_ros.stream.clock import grid_ceil

    fe = classifier.frontend
    hop_us, window_us = round(hop_s * 1e6), fe.window_us
    stride_us = round((stride_s or fe.window_s) * 1e6)
    samples = {w for a, b, _ in spans for w in span_windows(a, b, window_us, hop_us, stride_us)}
    live = LiveFrontEnd(classifier.frontend, sensor_size,
                        LiveSettings(hop_us=hop_us, history_us=window_us + 2_000_000))
    reach: dict[str, int | None] = {}
    next_end: int | None = None
    out = _Classified(classifier, live)

    def cut_until(limit: int) -> None:
        nonlocal next_end
        while next_end is not None and next_end <= limit:
            out.add(next_end - window_us, next_end, spans)
            next_end += hop_us

    for piece in pieces:
        if piece.events is not None:
            ev = piece.events
            live.push_events(ev.events, ev.sensor_size)
            first = int(ev.events["t"].min()) if len(ev.events) else ev.reach_us
            reach["events"] = max(reach.get("events") or ev.reach_us, ev.reach_us)
        else:
            a = piece.audio
            if not len(a.samples):
                continue
            first = a.start_us
            reach["audio"] = live.push_audio(a.samples, a.start_us, a.sample_rate)
        if next_end is None:
            next_end = grid_ceil(first + window_us, hop_us)
        if all(v is not None for v in reach.values()):
            cut_until(min(reach.values()))
    return out.windows(hop_us, aligned=samples)


def select_spans(spans: list[LabelSpan], dataset: Path | None, split: str, recordings: str
                 ) -> list[LabelSpan]:
    """The labelled spans to score: those of ``split`` in ``dataset``'s samples.csv (by the
    labels file's line and recording), of the named ``recordings``, or all. Raises ValueError
    when the selection is empty or cannot be made."""
    import csv

    if split:
        if dataset is None:
            raise ValueError("--split needs --dataset (the dataset built from these labels)")
        with open(Path(dataset) / "samples.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == split]
        keep = {(Path(r["recording"]).name, int(r["line"])) for r in rows}
        spans = [s for s in spans if (s.recording.name, s.line) in keep]
        if not spans:
            raise ValueError(f"no span of the labels is in split {split!r} of {dataset} "
                             "(built from another labels file, or no such split)")
    if recordings:
        names = {n.strip() for n in recordings.split(",") if n.strip()}
        spans = [s for s in spans if s.recording.name in names or s.recording.stem in names]
        if not spans:
            raise ValueError(f"no span of the labels is in recordings {sorted(names)}")
    return spans


def labelled_windows(classifier: Classifier, spans: Sequence[LabelSpan], *, files: bool = False,
                     sensor_size: tuple[int, int] = (0, 0),
                     audio_rate: int = STREAM_AUDIO_RATE_HZ, hop_s: float = HOP_S,
                     stride_s: float = 0.0) -> StreamWindows:
    """Every window on the hop grid of the spans' recordings (bags, or event files with WAVs
    of the same name when ``files``), classified; the spans' labels are the truth."""
    from taaf_ros.data.recording import open_bag, open_files

    by_rec: dict[Path, list[LabelSpan]] = {}
    for s in spans:
        by_rec.setdefault(s.recording, []).append(s)
    size = tuple(sensor_size) if tuple(sensor_size) != (0, 0) else classifier.input_size
    runs = []
    for rec, rec_spans in sorted(by_rec.items()):
        if files:
            wav = rec.with_suffix(".wav")
            src, pieces = open_files(rec, wav if wav.is_file() else None, tuple(sensor_size))
        else:
            src, pieces = open_bag(rec, sensor_size=tuple(sensor_size), audio_rate=audio_rate)
        located = [((src.start_us if s.times == "relative" else 0) + round(s.start_s * 1e6),
                    (src.start_us if s.times == "relative" else 0) + round(s.end_s * 1e6),
                    classifier.classes.index(s.label)) for s in rec_spans]
        runs.append(recording_windows(classifier, pieces, located, size, hop_s, stride_s))
    return StreamWindows.concat(runs)
