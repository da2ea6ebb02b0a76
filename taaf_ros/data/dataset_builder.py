"""A user's recordings and a labels CSV -> a dataset in the EAD layout (the command is
``taaf_dataset``, :mod:`taaf_ros.apps.dataset`).

Every sample is a window the perception node would cut (see :mod:`.span_cutter`), decoded
and timed by the node's own input code (see :mod:`.recording`). The layout, the CSV and the
report are documented in docs/data.md.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taaf_ros.data.bags import BagError
from taaf_ros.data.labels import (
    SECONDS_PER,
    LabelSpan,
    read_labels,
    spans_from_label_topic,
)
from taaf_ros.data.readers import EventFileError
from taaf_ros.data.recording import Piece, RecordingSource, open_bag, open_files
from taaf_ros.data.span_cutter import (
    BACKGROUND,
    CutSample,
    WindowCutter,
    WindowRequest,
    cut_recording,
    span_windows,
)
from taaf_ros.defaults import BLOCK_SHARE, FEW_GROUPS, HOP_S, STREAM_AUDIO_RATE_HZ
from taaf_ros.frontend import FrontEndConfig

LAYOUT = "taaf_ros/ead"
LAYOUT_VERSION = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]*$")


class DatasetError(ValueError):
    """A recording, a span or a setting that cannot give a correct dataset; names the cause."""


@dataclass
class BuildSettings:
    """How ``taaf_dataset`` turns recordings into samples (see ``taaf_dataset --help``)."""

    labels: Path
    out: Path
    source: str = "bag"  # "bag" or "files"
    model: str = ""  # the front end's model ('' = the bundled one)
    classes: tuple[str, ...] = ()  # the allowed labels, in order ((): the labels found)
    times: str = "relative"
    grid_s: float = HOP_S
    stride_s: float = 0.0  # 0: the window length
    background: bool = False
    background_stride_s: float = 0.0  # 0: the window length
    test_ratio: float = 0.25
    seed: int = 0
    on_bad: str = "error"
    min_audio_coverage: float = 0.9
    dry_run: bool = False
    overwrite: bool = False
    label_topic: str = ""  # labels from this topic of the bags instead of a CSV
    bags: tuple[Path, ...] = ()  # the bags, with label_topic
    events_topic: str = ""
    audio_topic: str = ""
    audio_info_topic: str = ""
    sensor_size: tuple[int, int] = (0, 0)
    audio_rate: int = STREAM_AUDIO_RATE_HZ
    audio_format: str = ""  # AudioDataStamped without AudioInfo: wave or mp3 ('' = from it)
    audio_offset_s: float = 0.0
    time_unit: str = "s"  # of the labels' start and end
    progress: bool = True


@dataclass
class Report:
    """What a build found: per split and class, per recording, and every problem."""

    table: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    recordings: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    events_decoded: int = 0
    seconds: float = 0.0
    validation: str = ""  # what train_ead.py will hold out for validation (val_speaker auto)

    def add(self, split: str, label: str, s: CutSample, window_s: float) -> None:
        row = self.table.setdefault((split, label), {"samples": 0, "seconds": 0.0,
                                                     "events": 0, "audio_coverage": 0.0})
        row["samples"] += 1
        row["seconds"] += window_s
        row["events"] += len(s.events)
        row["audio_coverage"] += s.audio_coverage

    def render(self) -> str:
        lines = ["| split | class | samples | seconds | events | audio coverage |",
                 "|---|---|---:|---:|---:|---:|"]
        for (split, label), r in sorted(self.table.items()):
            n = max(r["samples"], 1)
            lines.append(f"| {split} | {label} | {r['samples']} | {r['seconds']:.1f} | "
                         f"{r['events']:,} | {r['audio_coverage'] / n:.2f} |")
        lines += ["", "| recording | events | audio | clock offset events / audio (ms) |",
                  "|---|---|---|---|"]
        for rec in self.recordings:
            off = rec["stamp_offset_ms"]
            lines.append(f"| {rec['recording']} | {rec['events'] or '-'} | {rec['audio'] or '-'}"
                         f" | {_ms(off['events'])} / {_ms(off['audio'])} |")
        if self.validation:
            lines += ["", f"validation (train_ead.py, --val-speaker auto): {self.validation}"]
        if self.problems:
            lines += ["", f"{len(self.problems)} problem(s):", *(f"- {p}" for p in self.problems)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        table = [{"split": s, "class": c, **r} for (s, c), r in sorted(self.table.items())]
        return {"table": table,
                "recordings": self.recordings, "problems": self.problems,
                "events_decoded": self.events_decoded, "seconds": self.seconds}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


# ------------------------------------------------------------------------------- splits
def assign_splits(spans: Sequence[LabelSpan], test_ratio: float, seed: int) -> dict[int, str]:
    """CSV line -> split. A ``split`` column is used as given (every row needs one, and one
    recording may not be in two splits); else whole groups (``group`` column, else the
    recording) go to ``test`` until it holds ``test_ratio`` of the spans, the rest ``train``.
    """
    given = [s for s in spans if s.split]
    if given:
        if len(given) != len(spans):
            row = next(s for s in spans if not s.split)
            raise DatasetError(f"line {row.line}: no split, while other rows give one: give "
                               "every row a split, or none (then --test-ratio assigns them)")
        splits_of: dict[Path, set[str]] = {}
        for s in spans:
            splits_of.setdefault(s.recording, set()).add(s.split)
        for rec, names in splits_of.items():
            if len(names) > 1:
                raise DatasetError(f"{rec.name} is in splits {sorted(names)}: windows of one "
                                   "recording in train and test leak into the score")
        return {s.line: s.split for s in spans}
    if not 0 < test_ratio < 1:
        raise DatasetError(f"test_ratio must be in (0, 1), got {test_ratio}")
    groups: dict[str, list[LabelSpan]] = {}
    for s in spans:
        groups.setdefault(s.group or str(s.recording), []).append(s)
    if len(groups) < 2:
        raise DatasetError("one group (or recording) only: nothing to hold out for the test "
                           "split; add a split column, a group column or more recordings")
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    test: set[str] = set()
    for g in names[:-1]:  # at least one group stays in train
        if sum(len(groups[t]) for t in test) >= test_ratio * len(spans):
            break
        test.add(g)
    return {s.line: ("test" if (s.group or str(s.recording)) in test else "train")
            for s in spans}


# ------------------------------------------------------------------------------- building
def _frontend(model: str) -> FrontEndConfig:
    from taaf_ros.frontend import frontend_from_card
    from taaf_ros.model import load_checkpoint
    from taaf_ros.model.bundled import find_bundled_model

    path = model or str(find_bundled_model())
    return frontend_from_card(load_checkpoint(path).card)


def _open(rec: Path, st: BuildSettings) -> tuple[RecordingSource, Iterator[Piece]]:
    if st.source == "bag":
        return open_bag(rec, st.events_topic, st.audio_topic, st.audio_info_topic,
                        st.sensor_size, st.audio_rate, st.audio_format)
    if rec.suffix.lower() == ".wav":
        return open_files(None, rec, st.sensor_size, st.audio_offset_s)
    wav = rec.with_suffix(".wav")
    return open_files(rec, wav if wav.is_file() else None, st.sensor_size, st.audio_offset_s)


def _check_name(text: str, what: str, where: str) -> str:
    if not _NAME.match(text) or text in (".", ".."):
        raise DatasetError(f"{where}: {what} {text!r} cannot name a folder or file: use "
                           "letters, digits, space and ._+- (not first)")
    return text


def _problem(st: BuildSettings, report: Report, text: str) -> None:
    if st.on_bad == "error":
        raise DatasetError(text + " (--on-bad report: skip such samples, counted)")
    report.problems.append(text)


def _check_sample(s: CutSample, src: RecordingSource, modalities: tuple[str, ...],
                  min_coverage: float, where: str, relative: bool = True) -> str | None:
    """Why a cut window is unusable, or None; its time as the labels give it (``relative``:
    seconds from the recording's start)."""
    t = (s.request.start_us - (src.start_us if relative else 0)) / 1e6
    if "events" in modalities:
        if not src.events_kind:
            return f"{where}: {src.path.name} has no event stream"
        if not s.events_reached:
            return (f"{where}: the window at {t:.3f} s is not inside the event stream of "
                    f"{src.path.name} (a span out of range, or the topic stopped)")
    if "audio" in modalities:
        if not src.audio_kind:
            return f"{where}: {src.path.name} has no audio"
        if s.audio_coverage < min_coverage:
            return (f"{where}: the window at {t:.3f} s has audio for {s.audio_coverage:.0%} of "
                    f"it in {src.path.name} (a span out of range, a gap in the audio, or its "
                    f"clock far from the events'; --min-audio-coverage {min_coverage})")
    return None


def _labelled_spans(st: BuildSettings) -> list[LabelSpan]:
    """The spans of the labels CSV, or of the bags' label topic."""
    if not st.label_topic:
        spans = read_labels(st.labels, st.times, st.classes or None, st.time_unit)
        check_label_names(spans, st.classes, st.labels)
        return spans
    spans = spans_from_label_topic(st.bags, st.label_topic)
    unknown = sorted({s.label for s in spans} - set(st.classes)) if st.classes else []
    if unknown:
        raise DatasetError(f"labels {unknown} on {st.label_topic} are not among the classes "
                           f"{list(st.classes)}")
    return spans


@dataclass
class _Build:
    """One build's state: where samples go, what was kept, what the report says."""

    st: BuildSettings
    fe: FrontEndConfig
    splits: dict[int, str]
    folder: Path | None  # None: a dry run
    modalities: tuple[str, ...] = ()
    report: Report = field(default_factory=Report)
    rows: list[dict[str, Any]] = field(default_factory=list)
    sensor: tuple[int, int] | None = None
    windows_asked: int = 0

    def requests(self, spans: list[LabelSpan], src: RecordingSource
                 ) -> tuple[list[WindowRequest], list[tuple[int, int, LabelSpan]]]:
        """The windows of a recording's spans, and the spans on the ROS clock."""
        window_us, grid_us = self.fe.window_us, round(self.st.grid_s * 1e6)
        stride_us = round((self.st.stride_s or self.fe.window_s) * 1e6)
        requests, located = [], []
        outside = spans_outside(spans, src, self.st)  # before a window is asked for
        for why in outside.values():
            _problem(self.st, self.report, why)
        for s in spans:
            if s.line in outside:
                continue
            base = src.start_us if s.times == "relative" else 0
            a, b = base + round(s.start_s * 1e6), base + round(s.end_s * 1e6)
            located.append((a, b, s))
            self.windows_asked += (b - a) // stride_us + 1
            if self.windows_asked > MAX_WINDOWS:
                raise DatasetError(f"{s.where(self.st.labels)}: the spans so far ask for over "
                                   f"{MAX_WINDOWS:,} windows: are the times in "
                                   f"{self.st.time_unit} (--time-unit)?")
            requests += [WindowRequest(w, s.label, s.line)
                         for w in span_windows(a, b, window_us, grid_us, stride_us)]
        return requests, located

    def recording(self, rec: Path, src: RecordingSource, pieces: Iterator[Piece],
                  have: tuple[str, ...], spans: list[LabelSpan]) -> int:
        """Cut, check and keep the samples of one recording; how many were kept."""
        st = self.st
        requests, located = self.requests(spans, src)
        if not located:  # every span outside the recording (reported): nothing to cut
            self.report.recordings.append(_recording_row(src))
            return 0
        bg_stride = round((st.background_stride_s or self.fe.window_s) * 1e6)
        cutter = WindowCutter(self.fe, requests, have,
                              background_stride_us=bg_stride if st.background else 0,
                              spans=[(a, b) for a, b, _ in located])
        line_of = {s.line: s for s in spans}
        kept = 0
        for sample in cut_recording(pieces, cutter):
            r = sample.request
            span = line_of.get(r.line)
            where = (span.where(st.labels) if span else
                     f"{rec.name}, background at {r.start_us / 1e6:.3f} s")
            why = _check_sample(sample, src, self.modalities, st.min_audio_coverage, where,
                                relative=span is None or span.times == "relative")
            if why is not None:
                if span is not None:  # a background window past a stream's end is no error
                    _problem(st, self.report, why)
                continue
            self.keep(sample, src, rec, span or _nearest_span(located, r.start_us), where)
            kept += 1
        if src.jumps:
            _problem(st, self.report, f"{rec.name}: the stamps jump ({len(src.jumps)} times, "
                     f"first at {src.jumps[0]}): a clock reset or a recording of two sessions; "
                     "windows across a jump are misplaced. Split the recording or label "
                     "around the jump")
        self.report.events_decoded += cutter.events_seen
        self.report.recordings.append(_recording_row(src))
        return kept

    def keep(self, sample: CutSample, src: RecordingSource, rec: Path, owner: LabelSpan,
             where: str) -> None:
        """Write one sample (its split and group those of ``owner``, its labelled span or,
        for background, the nearest one) and note it."""
        if "events" in self.modalities:
            if self.sensor is None:
                self.sensor = src.sensor_size
            elif src.sensor_size != self.sensor:
                raise DatasetError(f"{where}: sensor {src.sensor_size} differs from the "
                                   f"dataset's {self.sensor}; one dataset, one sensor")
        r = sample.request
        split, group = self.splits[owner.line], _slug(owner.group or rec.stem)
        sid = f"{_slug(r.label)}_{group}_{len(self.rows):05d}"  # unique in the dataset
        self.report.add(split, r.label, sample, self.fe.window_s)
        self.rows.append({"id": sid, "split": split, "label": r.label, "group": group,
                          "recording": str(rec), "line": r.line, "start_ns": r.start_us * 1000,
                          "events": len(sample.events),
                          "audio_coverage": round(sample.audio_coverage, 4)})
        if self.folder is not None:
            _write_sample(self.folder / split / r.label, sid, sample, self.fe, self.modalities)


def build_dataset(st: BuildSettings, argv: Sequence[str] = ()) -> Report:
    """Build (or, with ``dry_run``, only report on) the dataset ``st`` describes: written into
    a temporary folder beside ``st.out`` and moved there whole once every sample is cut, so
    that a build that stops leaves nothing half-written."""
    spans = _labelled_spans(st)
    fe = _frontend(st.model)
    grid_us = round(st.grid_s * 1e6)
    strides = [("stride_s", st.stride_s or fe.window_s)]
    if st.background:
        strides.append(("background_stride_s", st.background_stride_s or fe.window_s))
    for name, value in strides:
        if grid_us <= 0 or round(value * 1e6) % grid_us:
            raise DatasetError(f"{name} ({value} s) must be a multiple of grid_s "
                               f"({st.grid_s} s): windows sit on the node's hop grid")
    splits = assign_splits(spans, st.test_ratio, st.seed)
    for s in spans:
        _check_name(s.label, "label", s.where(st.labels))
        _check_name(splits[s.line], "split", s.where(st.labels))
    classes = list(st.classes) or sorted({s.label for s in spans})
    if st.background and BACKGROUND not in classes:
        classes.append(BACKGROUND)
    by_rec: dict[Path, list[LabelSpan]] = {}
    for s in spans:
        by_rec.setdefault(s.recording, []).append(s)
    out, tmp = st.out, None
    if not st.dry_run:
        if out.exists() and any(out.iterdir()) and not st.overwrite:
            raise DatasetError(f"{out} exists and is not empty (--overwrite replaces it)")
        remove_stale_partials(out)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    build = _Build(st, fe, splits, tmp)
    t0 = time.perf_counter()
    try:
        sources = []
        for rec in sorted(by_rec):
            try:
                src, pieces = _open(rec, st)
            except (BagError, EventFileError, OSError, ValueError) as exc:
                raise DatasetError(f"{by_rec[rec][0].where(st.labels)}: {exc}") from exc
            have = tuple(m for m, k in (("events", src.events_kind), ("audio", src.audio_kind))
                         if k)
            sources.append((rec, src, pieces, have))
        # The dataset's modalities: every recording's; one without a modality is a problem.
        build.modalities = tuple(m for m in ("events", "audio")
                                 if any(m in have for *_, have in sources))
        for rec, src, pieces, have in sources:
            kept = build.recording(rec, src, pieces, have, by_rec[rec])
            if st.progress:
                print(f"{rec.name}: {kept} samples", file=sys.stderr)
        build.report.seconds = time.perf_counter() - t0
        build.report.validation = _validation_plan(build.rows)
        if not build.rows:
            raise DatasetError("no sample was cut: check the spans against the recordings "
                               "(--dry-run shows them)")
        if tmp is not None:
            rule = ("the labels' split column" if any(s.split for s in spans) else
                    f"whole groups to test, ratio {st.test_ratio}, seed {st.seed}")
            meta = _meta(st, fe, classes, build.sensor, build.modalities, build.rows, rule,
                         argv)
            (tmp / "samples.csv").write_text(_csv(build.rows))
            (tmp / "report.json").write_text(json.dumps(build.report.to_dict(), indent=1))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            if out.exists():
                shutil.rmtree(out)
            tmp.replace(out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return build.report


MAX_WINDOWS = 10_000_000
"""More windows than this in one build is a mistake in the labels (40 days of 0.6 s windows at
a 50 ms hop... every one a sample): refused before any is asked for."""

UNITS = SECONDS_PER
"""--time-unit: what the labels' start and end count, in seconds."""


def spans_outside(spans: Sequence[LabelSpan], src: RecordingSource, st: BuildSettings
                  ) -> dict[int, str]:
    """CSV line -> why its span does not lie in its recording (where the recording's end is
    known): a span far past it is a labels file in another unit (a spreadsheet's nanoseconds
    given as seconds would ask for billions of windows). Each reason names the line, the times
    as the CSV gives them, and the likely unit with its flag."""
    slack = 1.0
    if src.end_us is None:
        return {}
    duration = (src.end_us - src.start_us) / 1e6
    out = {}
    for s in spans:
        rel = s.times == "relative"
        start, end = ((s.start_s, s.end_s) if rel else
                      (s.start_s - src.start_us / 1e6, s.end_s - src.start_us / 1e6))
        if -slack <= start and end <= duration + slack:
            continue
        given = UNITS[st.time_unit]
        shown = (f"{s.start_s / given:.12g}-{s.end_s / given:.12g} {st.time_unit}"
                 + ("" if rel else " (absolute)"))
        hint = ""
        if rel:  # the unit in which this span would lie in the recording
            fits = [u for u, f in UNITS.items()
                    if f < given and duration / 100 < end * f / given <= duration + slack]
            if fits:
                hint = f": its times look like {fits[0]} (--time-unit {fits[0]})"
        out[s.line] = (f"{s.where(st.labels)}: the span {shown} is not inside "
                       f"{src.path.name}, which lasts {duration:.1f} s{hint}")
    return out


def check_label_names(spans: Sequence[LabelSpan], classes: Sequence[str],
                      csv_path: Path) -> None:
    """A label one edit away from another, or used by very few spans where the others have
    many, is a typo until ``--classes`` lists it: an error naming both labels."""
    counts: dict[str, int] = {}
    first: dict[str, LabelSpan] = {}
    for s in spans:
        counts[s.label] = counts.get(s.label, 0) + 1
        first.setdefault(s.label, s)
    if classes or len(counts) < 2:
        return
    typical = float(np.median(list(counts.values())))
    for label, n in sorted(counts.items(), key=lambda kv: kv[1]):
        others = sorted((o for o in counts if o != label), key=lambda o: edits(label, o))
        close = len(label) >= 3 and edits(label, others[0]) <= (1 if len(label) < 6 else 2)
        rare = n <= 2 and typical >= 10 * n
        if close and counts[others[0]] >= n or rare:
            near = others[0]
            why = "an edit or two from" if close else "used by very few spans beside"
            raise DatasetError(
                f"{first[label].where(csv_path)}: label {label!r} ({n} span(s)) is {why} "
                f"{near!r} ({counts[near]} spans): a typo? Fix it, or name every class with "
                f"--classes ({','.join(sorted(counts))})")


def edits(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) from ``a`` to ``b``.

    >>> edits("stpo", "stop"), edits("tow", "two"), edits("door", "knock")
    (1, 1, 4)
    """
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def remove_stale_partials(out: Path) -> None:
    """Folders a build of ``out`` left behind when it was killed (``.<name>.<pid>.partial``
    of a process that is gone)."""
    for p in out.parent.glob(f".{out.name}.*.partial"):
        pid = p.name[len(out.name) + 2:-len(".partial")]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass  # another user's live build


def _validation_plan(rows: list[dict[str, Any]]) -> str:
    """What training will hold out for validation from these samples (see
    ``taaf_ros.training.run_data.validation_split``), for the report and the dry run."""
    train = [r for r in rows if r["split"] == "train"]
    groups = sorted({r["group"] for r in train})
    if not train:
        return ""
    if len(groups) < FEW_GROUPS:
        recs = len({r["recording"] for r in train})
        return (f"{len(groups)} training group(s): the last {BLOCK_SHARE:.0%} of each of the "
                f"{recs} training recordings' windows (time blocks), so every recording trains")
    largest = max(groups, key=lambda g: (sum(r["group"] == g for r in train), g))
    return f"group {largest} (the largest of {len(groups)} training groups)"


def _nearest_span(spans: list[tuple[int, int, LabelSpan]], t_us: int) -> LabelSpan:
    """The labelled span nearest ``t_us``: a background window takes its split and group."""
    return min(spans, key=lambda s: min(abs(t_us - s[0]), abs(t_us - s[1])))[2]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")


def _write_sample(folder: Path, sid: str, s: CutSample, fe: FrontEndConfig,
                  modalities: tuple[str, ...]) -> None:
    from scipy.io import wavfile

    folder.mkdir(parents=True, exist_ok=True)
    if "events" in modalities:
        np.save(folder / f"{sid}.events.npy", s.events)
    if "audio" in modalities:
        # float32 at the model's rate: exactly the samples the node's cochlea holds.
        wavfile.write(folder / f"{sid}.wav", fe.cochlea.sample_rate, s.pcm.astype(np.float32))


def _recording_row(src: RecordingSource) -> dict[str, Any]:
    med = {k: (float(np.median(v)) / 1e3 if v else None)
           for k, v in src.stamp_offsets_us.items()}
    return {"recording": str(src.path), "events": src.events_kind, "audio": src.audio_kind,
            "sensor_size": list(src.sensor_size), "stamp_offset_ms": med,
            "decode": src.decode_stats}


def _meta(st: BuildSettings, fe: FrontEndConfig, classes: list[str],
          sensor: tuple[int, int] | None, modalities: tuple[str, ...],
          rows: list[dict[str, Any]], split_rule: str, argv: Sequence[str]) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        c = counts.setdefault(r["split"], {})
        c[r["label"]] = c.get(r["label"], 0) + 1
    for c in counts.values():
        c["total"] = sum(c.values())
    return {"layout": LAYOUT, "layout_version": LAYOUT_VERSION, "name": st.out.name,
            "classes": classes, "sensor_size": list(sensor or fe.input_size),
            "audio_rate": fe.cochlea.sample_rate, "modalities": list(modalities),
            "window_s": fe.window_s, "grid_s": st.grid_s, "frontend": fe.to_dict(),
            "counts": counts, "split_rule": split_rule,
            "built_by": shlex.join(["taaf_dataset", *argv])}


def _csv(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    return "\n".join([",".join(keys), *(",".join(str(r[k]) for k in keys) for r in rows)]) + "\n"
