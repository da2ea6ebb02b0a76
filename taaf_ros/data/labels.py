"""The labels file of a user's recordings: a CSV of labelled time spans.

One row a span::

    recording,start,end,label,split,group
    door_01,2.50,3.10,door,,kitchen
    door_01,5.00,5.40,knock,,kitchen

``recording``: a bag (folder or .db3/.mcap file) or an event file, relative to the CSV's folder
or absolute. ``start`` / ``end``: seconds; relative to the recording's start, or absolute ROS
time (seconds since the epoch) where the ``time`` column (or ``--times``) says ``absolute``.
``label``: the class. Optional columns: ``split`` (train / test / ...: the split, given by the
user), ``group`` (a session, a speaker, a room: whole groups go to one split and validation
holds one out), ``time`` (relative or absolute, per row). Columns may come in any order;
unknown columns are kept for the user and ignored here.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("recording", "start", "end", "label")
TIMES = ("relative", "absolute")
SECONDS_PER = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
"""What the start and end of a labels file may count (``unit``), in seconds."""


class LabelError(ValueError):
    """A labels file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class LabelSpan:
    """One labelled span of a recording (times in s, as the row gives them)."""

    recording: Path
    start_s: float
    end_s: float
    label: str
    split: str
    group: str
    times: str
    line: int
    origin: str = ""  # where a span from a label topic came from

    def where(self, csv_path: str | Path) -> str:
        return self.origin or f"{csv_path}, line {self.line}"


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelError(f"{where}: {name} {text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise LabelError(f"{where}: {name} {text!r} is not finite")
    return value


def read_labels(path: str | Path, times: str = "relative",
                classes: Sequence[str] | None = None, unit: str = "s") -> list[LabelSpan]:
    """The spans of a labels CSV, checked: numbers, ``start < end``, a known ``time`` and
    (given ``classes``) a known label; spans of one recording may not overlap (a window of
    the overlap would have two labels). ``unit``: what start and end count (s, ms, us, ns;
    the spans are in seconds). Raises :class:`LabelError` naming the line.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(f, "w").write("recording,start,end,label\\nrec.raw,1.0,1.6,door\\n")
    >>> [(s.recording.name, s.start_s, s.end_s, s.label) for s in read_labels(f)]
    [('rec.raw', 1.0, 1.6, 'door')]
    """
    path = Path(path)
    if times not in TIMES:
        raise LabelError(f"times must be one of {TIMES}, got {times!r}")
    if unit not in SECONDS_PER:
        raise LabelError(f"unit must be one of {tuple(SECONDS_PER)}, got {unit!r}")
    scale = SECONDS_PER[unit]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read the labels file ({exc})") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise LabelError(f"{path}: the header needs columns {', '.join(REQUIRED)} "
                         f"(missing {', '.join(missing)}; got {', '.join(header) or 'nothing'})")
    known = set(classes) if classes is not None else None
    spans: list[LabelSpan] = []
    for n, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()
               if not isinstance(v, list)}
        if not any(row.values()):
            continue  # a blank line
        where = f"{path}, line {n}"
        if not row.get("recording"):
            raise LabelError(f"{where}: no recording")
        if not row.get("label"):
            raise LabelError(f"{where}: no label")
        start = _number(row.get("start", ""), "start", where) * scale
        end = _number(row.get("end", ""), "end", where) * scale
        if not start < end:
            raise LabelError(f"{where}: start {start} s is not before end {end} s")
        row_times = row.get("time") or times
        if row_times not in TIMES:
            raise LabelError(f"{where}: time {row_times!r} must be one of {TIMES}")
        if row_times == "relative" and start < 0:
            raise LabelError(f"{where}: start {start} s is before the recording's start")
        if known is not None and row["label"] not in known:
            raise LabelError(f"{where}: label {row['label']!r} is not one of the classes "
                             f"{sorted(known)}")
        rec = Path(row["recording"])
        spans.append(LabelSpan(rec if rec.is_absolute() else path.parent / rec, start, end,
                               row["label"], row.get("split", ""), row.get("group", ""),
                               row_times, n))
    if not spans:
        raise LabelError(f"{path}: no labelled spans")
    _check_overlaps(spans, path)
    return spans


def _check_overlaps(spans: list[LabelSpan], path: Path) -> None:
    by_rec: dict[tuple[Path, str], list[LabelSpan]] = {}
    for s in spans:
        by_rec.setdefault((s.recording, s.times), []).append(s)
    for group in by_rec.values():
        group.sort(key=lambda s: s.start_s)
        for a, b in zip(group, group[1:], strict=False):
            if b.start_s < a.end_s:
                raise LabelError(f"{path}: lines {a.line} and {b.line} overlap on "
                                 f"{a.recording.name} ({a.start_s}-{a.end_s} s and "
                                 f"{b.start_s}-{b.end_s} s)")


def spans_from_label_topic(bags: Sequence[str | Path], topic: str) -> list[LabelSpan]:
    """Labelled spans recorded in the bags themselves: ``std_msgs/String`` messages on
    ``topic`` whose data is JSON with ``label``, ``start_ns`` and ``end_ns`` (ROS time), as the
    replay node's ground truth and :class:`taaf_ros.inference.scoring.GroundTruth` write
    them; a labelling tool of one's own can publish the same. Each bag is its own group.
    Raises :class:`LabelError` naming the bag and the message's log time."""
    import json

    from taaf_ros.data.bags import read_bag, where

    spans = []
    for bag in map(Path, bags):
        n = 0
        for m in read_bag(bag, [topic]):
            here = f"{bag}: {where(topic, m.log_time_ns)}"
            try:
                d = json.loads(m.msg.data)
                label, a, b = str(d["label"]), int(d["start_ns"]), int(d["end_ns"])
            except (AttributeError, ValueError, KeyError, TypeError) as exc:
                raise LabelError(f"{here}: not a label message (JSON with label, start_ns, "
                                 f"end_ns): {type(exc).__name__}: {exc}") from None
            if not label or not a < b:
                raise LabelError(f"{here}: needs a label and start_ns < end_ns")
            n += 1
            spans.append(LabelSpan(bag, a / 1e9, b / 1e9, label, "", bag.name, "absolute",
                                   len(spans) + 2, f"{bag}: label {n} on {topic}"))
        if n == 0:
            raise LabelError(f"{bag}: no message on {topic}")
    _check_overlaps(spans, Path(topic))
    return spans
