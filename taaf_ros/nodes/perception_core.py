"""ROS-free logic of the live perception node, unit-testable without a ROS graph.

- Time: every input is mapped to ROS time in µs (header stamp + per-event offset; MultiArray
  audio by the taaf_ros layout stamp, else at receipt and then by sample count).
- :class:`WindowScheduler`: which windows to cut when, and which modality is present in each
  (DESIGN 2.2).
- The prediction JSON schema (versioned), live scoring against ground truth, diagnostics values.

Window grid: windows end on multiples of ``hop`` of the ROS clock (µs since the epoch), not on
multiples after the first message. Any producer that starts a sample on that grid (the replay
node does) therefore gets one window that covers exactly that sample, as in training, with no
message exchanged to agree on a phase.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

SCHEMA = "taaf_ros/prediction"
SCHEMA_VERSION = 1
MODALITIES = ("events", "audio")

# DiagnosticStatus levels (diagnostic_msgs): OK 0, WARN 1, ERROR 2, STALE 3.
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


# ------------------------------------------------------------------------------ time helpers
def stamp_to_us(sec: int, nanosec: int) -> int:
    """builtin_interfaces/Time fields -> µs."""
    return int(sec) * 1_000_000 + int(nanosec) // 1000


def grid_ceil(t_us: int, hop_us: int) -> int:
    """Smallest multiple of hop_us that is >= t_us."""
    return -(-int(t_us) // hop_us) * hop_us


def event_times_to_ros(t: np.ndarray, stamp_us: int) -> np.ndarray:
    """Per-event times (any clock, µs) -> ROS time: the header stamp is the first event's time.

    This is the convention of event_camera_msgs (stamp = ROS time of the first event, times
    relative to time_base), and holds whatever clock a PointCloud2 ``t`` field uses.
    """
    if t.size == 0:
        return t.astype(np.int64)
    return t.astype(np.int64) - np.int64(t[0]) + np.int64(stamp_us)


class StamplessClock:
    """Start times for audio chunks that carry no time (std_msgs MultiArrays without the
    taaf_ros stamp, see :func:`multiarray_stamp_ns`), from their receipt times.

    A chunk is taken to end when it is received (it was published once captured), so its first
    sample is at ``est = receipt - duration``; delivery only ever delays a chunk, so ``est`` is
    never earlier than the truth, while the sample count is exact. Chunks are therefore placed
    back to back by sample count, and the clock never moves backwards over audio it has placed
    (a window already cut from that audio keeps its meaning). ``lead = est - next`` (how much
    later than the running clock a chunk arrives) drives three corrections, all counted:

    - ``lead > resync_us``: a pause in the stream or a clock jump: restart at ``est``
      (``resyncs``); the audio buffer fills the gap with silence marked as missing.
    - ``lead < -early_us``: the chunk arrived before the clock says it could have ended, which
      proves the placed audio is late (the chunks that set the clock came late, or the
      microphone's clock runs fast): the chunk's leading samples that fall in time already
      placed are dropped, never written over placed audio, which pulls the clock in to this
      receipt (``corrections``, ``dropped_samples``).
    - every one of the last ``window`` chunks has ``lead > early_us``: the clock is early
      (chunks were lost in transport, or the microphone's clock runs slow), by at least the
      smallest lead: jump forward by it, a gap (``corrections``). Taking the minimum over a
      window keeps one-sided delivery jitter and bursts from moving the clock.

    Time is kept as an origin plus a sample count, so chunk durations that are not whole µs do
    not accumulate rounding error.
    """

    def __init__(self, resync_us: int = 100_000, early_us: int = 5_000, window: int = 8) -> None:
        self.resync_us, self.early_us = int(resync_us), int(early_us)
        self.resyncs = 0
        self.corrections = 0
        self.dropped_samples = 0
        self._origin_us: int | None = None
        self._count = 0  # samples placed since the origin
        self._rate = 0
        self._leads: deque[int] = deque(maxlen=max(1, int(window)))

    @property
    def next_us(self) -> int | None:
        """Where the next chunk goes if it arrives on time (µs); None before the first."""
        if self._origin_us is None:
            return None
        return self._origin_us + (self._count * 1_000_000) // self._rate

    def _restart(self, start_us: int, n: int, rate: int) -> None:
        self._origin_us, self._count, self._rate = int(start_us), n, rate
        self._leads.clear()

    def place(self, receipt_us: int, n_samples: int, sample_rate: int) -> tuple[int, int]:
        """(start_us, skip) for a chunk of n_samples received at receipt_us: its samples
        ``[skip:]`` go at start_us, which is never before the end of what was placed.

        >>> clk = StamplessClock()
        >>> clk.place(1_010_000, 80, 8000)  # 80 samples = 10 ms, ending at receipt
        (1000000, 0)
        >>> clk.place(1_023_000, 80, 8000)  # 3 ms late: back to back all the same
        (1010000, 0)
        >>> clk.place(1_005_000, 80, 8000)  # ends before placed audio does: all dropped
        (1020000, 80)
        """
        n, rate = int(n_samples), int(sample_rate)
        est = int(receipt_us) - (n * 1_000_000) // rate
        nxt = self.next_us
        if nxt is None or rate != self._rate or est - nxt > self.resync_us:
            if nxt is not None:
                self.resyncs += 1
            self._restart(est, n, rate)
            return est, 0
        lead = est - nxt
        if lead < -self.early_us:
            # Samples of this chunk before nxt lie in time already placed: drop them.
            skip = min(n, -(lead * rate // 1_000_000))
            self.corrections += 1
            self.dropped_samples += skip
            self._count += n - skip
            self._leads.clear()
            return nxt, skip
        self._leads.append(lead)
        if len(self._leads) == self._leads.maxlen and min(self._leads) > self.early_us:
            start = nxt + min(self._leads)  # <= est: still not earlier than the truth
            self.corrections += 1
            self._restart(start, n, rate)
            return start, 0
        self._count += n
        return nxt, 0


# ------------------------------------------------------------------------------ MultiArray stamp
STAMP_LABEL_PREFIX = "t_ns="
"""taaf_ros convention for stamping std_msgs MultiArray audio (which has no header): the
layout carries a dimension of size 1 labelled ``t_ns=<int>``, the ROS time (ns) of the chunk's
first sample. See :func:`stamped_layout_dims` and docs/ros.md."""


def stamped_layout_dims(n_samples: int, t_ns: int) -> list[tuple[str, int, int]]:
    """(label, size, stride) of the layout dims of a mono chunk stamped at t_ns.

    ``[("samples", n, n), ("t_ns=<t_ns>", 1, 1)]``: the data are an n x 1 array (so the dims
    stay true to the data for any MultiArray reader) and the second dim's label holds the stamp.

    >>> stamped_layout_dims(80, 1_700_000_000_000_000_000)
    [('samples', 80, 80), ('t_ns=1700000000000000000', 1, 1)]
    """
    n = int(n_samples)
    return [("samples", n, n), (f"{STAMP_LABEL_PREFIX}{int(t_ns)}", 1, 1)]


def multiarray_stamp_ns(dims: Iterable[Any]) -> int | None:
    """The stamp (ns) of a MultiArray layout written by :func:`stamped_layout_dims`, else None.

    ``dims`` are ``layout.dim`` (objects with ``label`` and ``size``). A label that starts with
    ``t_ns=`` but does not hold a positive integer, or a stamp dim whose size is not 1, counts
    as no stamp (the caller falls back to the receipt time).

    >>> from types import SimpleNamespace as D
    >>> multiarray_stamp_ns([D(label="samples", size=80), D(label="t_ns=1234", size=1)])
    1234
    >>> multiarray_stamp_ns([D(label="t_ns=soon", size=1)]) is None
    True
    """
    for d in dims:
        label = str(getattr(d, "label", ""))
        if label.startswith(STAMP_LABEL_PREFIX) and int(getattr(d, "size", 1)) == 1:
            digits = label[len(STAMP_LABEL_PREFIX):]
            if digits.isdigit() and int(digits) > 0:
                return int(digits)
            return None
    return None


class SeqTracker:
    """Counts packets lost from gaps in a per-packet sequence number."""

    def __init__(self) -> None:
        self.lost = 0
        self.resets = 0
        self._last: int | None = None

    def update(self, seq: int) -> int:
        """Record ``seq``; returns how many packets were skipped before it."""
        seq = int(seq)
        gap = 0
        if self._last is not None:
            if seq > self._last + 1:
                gap = seq - self._last - 1
            elif seq <= self._last:
                self.resets += 1  # driver restarted or reordered: not a loss
        self.lost += gap
        self._last = seq
        return gap


# ------------------------------------------------------------------------------ windows
class WindowCut(NamedTuple):
    """One window to classify: [start_us, end_us) and which modalities feed it.

    present: per modality (MODALITIES order), True if its data reached end_us in time.
    timed_out: per modality, True if it had no message for modality_timeout (missing).
    """

    start_us: int
    end_us: int
    present: tuple[bool, ...]
    timed_out: tuple[bool, ...]

    @property
    def degraded(self) -> bool:
        return not all(self.present)

    @property
    def empty(self) -> bool:
        return not any(self.present)


@dataclass
class SchedulerStats:
    """Counters of the scheduler (numbers of windows)."""

    cut: int = 0
    """Windows handed out with at least one modality present."""
    degraded: int = 0
    """Of those, windows with a modality masked."""
    late: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODALITIES, 0))
    """Per modality: windows cut by max_wait with that modality's data not yet at the end."""
    stale: int = 0
    """Windows with no modality present (no prediction)."""
    dropped: int = 0
    """Windows ready but skipped because inference fell behind (backlog beyond the limit)."""


class WindowScheduler:
    """Decides when windows are cut (DESIGN 2.2). Thread-safe; times are µs of the ROS clock.

    Args:
        window_us: window length. hop_us: a window ends on every multiple of hop_us.
        max_wait_us: a window is cut at the latest this long after its end; a modality whose
            data has not reached the end by then counts as missing for that window.
        timeout_us: a modality with no message for this long is missing (masked in every window
            until it comes back), so windows do not wait for it.
        max_backlog: if more windows than this are ready at one poll (inference fell behind),
            only the newest are returned and the others are counted as dropped: old windows
            are worth less than keeping up.
        now_us: creation time; a modality never heard of counts as timed out after timeout_us.

    Use: call :meth:`note` from the decode side for every decoded message and :meth:`poll`
    from the inference side; :meth:`health` gives the OK/WARN/STALE level.
    """

    def __init__(self, window_us: int, hop_us: int, max_wait_us: int, timeout_us: int,
                 now_us: int, max_backlog: int = 2,
                 modalities: Sequence[str] = MODALITIES) -> None:
        if window_us <= 0 or hop_us <= 0:
            raise ValueError("window_us and hop_us must be > 0")
        self.window_us, self.hop_us = int(window_us), int(hop_us)
        self.max_wait_us, self.timeout_us = int(max_wait_us), int(timeout_us)
        self.max_backlog = max(1, int(max_backlog))
        self.modalities = tuple(modalities)
        self.stats = SchedulerStats(late=dict.fromkeys(self.modalities, 0))
        self._created_us = int(now_us)
        self._progress: dict[str, int | None] = dict.fromkeys(self.modalities)
        self._receipt: dict[str, int | None] = dict.fromkeys(self.modalities)
        self._next_end: int | None = None
        self._lock = threading.Lock()

    def configure(self, *, max_wait_us: int | None = None, timeout_us: int | None = None) -> None:
        """Change the run-time settings (from a parameters callback)."""
        with self._lock:
            if max_wait_us is not None:
                self.max_wait_us = int(max_wait_us)
            if timeout_us is not None:
                self.timeout_us = int(timeout_us)

    def note(self, modality: str, start_us: int | None, end_us: int | None,
             receipt_us: int) -> None:
        """A message of ``modality`` arrived at receipt_us holding data over [start_us, end_us].

        end_us is how far that stream now reaches (last event time, end of the audio chunk, or
        the stamp of an empty event packet); None for a message without time (still alive).
        """
        with self._lock:
            self._receipt[modality] = int(receipt_us)
            if end_us is None:
                return
            prev = self._progress[modality]
            self._progress[modality] = int(end_us) if prev is None else max(prev, int(end_us))
            if self._next_end is None and start_us is not None:
                # First window: the grid end that makes it start nearest the first data.
                first = int(start_us) + self.window_us
                self._next_end = grid_ceil(first - self.hop_us // 2, self.hop_us)

    def _timed_out(self, m: str, now_us: int) -> bool:
        last = self._receipt[m]
        ref = self._created_us if last is None else last
        return now_us - ref > self.timeout_us

    def timed_out(self, now_us: int) -> tuple[bool, ...]:
        """Per modality: no message for longer than the timeout."""
        with self._lock:
            return tuple(self._timed_out(m, now_us) for m in self.modalities)

    def poll(self, now_us: int) -> list[WindowCut]:
        """Windows ready at now_us, oldest first (at most max_backlog; see class doc)."""
        out: list[WindowCut] = []
        with self._lock:
            if self._next_end is None:
                return out
            timed_out = tuple(self._timed_out(m, now_us) for m in self.modalities)
            if all(timed_out):
                # Nothing to wait for: skip the grid forward to now, count STALE windows.
                target = grid_ceil(now_us - self.max_wait_us, self.hop_us)
                if target > self._next_end:
                    self.stats.stale += (target - self._next_end) // self.hop_us
                    self._next_end = target
                return out
            while True:
                end = self._next_end
                ready = tuple((self._progress[m] or -1) >= end for m in self.modalities)
                waited = now_us >= end + self.max_wait_us
                if not (waited or all(r or t for r, t in zip(ready, timed_out, strict=True))):
                    break
                if end > now_us:  # never cut a window that lies in the future
                    break
                if waited:
                    for m, r, t in zip(self.modalities, ready, timed_out, strict=True):
                        if not r and not t:
                            self.stats.late[m] += 1
                out.append(WindowCut(end - self.window_us, end, ready, timed_out))
                self._next_end = end + self.hop_us
            if len(out) > self.max_backlog:
                self.stats.dropped += len(out) - self.max_backlog
                out = out[-self.max_backlog:]
            kept = []
            for w in out:
                if w.empty:
                    self.stats.stale += 1
                else:
                    self.stats.cut += 1
                    self.stats.degraded += int(w.degraded)
                    kept.append(w)
            return kept

    def health(self, now_us: int) -> tuple[int, str]:
        """(level, message): OK, WARN (a modality missing: degraded) or STALE (all missing)."""
        timed_out = self.timed_out(now_us)
        missing = [m for m, t in zip(self.modalities, timed_out, strict=True) if t]
        if not missing:
            return OK, "all modalities present"
        if len(missing) == len(self.modalities):
            return STALE, "no input: " + ", ".join(missing) + " missing, no predictions"
        return WARN, "degraded: " + ", ".join(missing) + " missing (masked)"


# ------------------------------------------------------------------------------ prediction
def top_k(probs: np.ndarray, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """Best k classes, best first: [{"label", "class_id", "score"}]."""
    order = np.argsort(-probs, kind="stable")[: max(1, int(k))]
    return [{"label": classes[i], "class_id": int(i), "score": round(float(probs[i]), 6)}
            for i in order]


def make_prediction(*, seq: int, window: WindowCut, probs: np.ndarray, classes: Sequence[str],
                    modality_attention: Sequence[float], attention_map: np.ndarray,
                    k: int, n_events: int, audio_coverage: float, inference_ms: float,
                    latency_ms: float, modalities: Sequence[str] = MODALITIES
                    ) -> dict[str, Any]:
    """The /taaf/prediction object (schema version :data:`SCHEMA_VERSION`).

    Fields: schema, version, seq (window counter), stamp_ns (= window end), window
    {start_ns, end_ns}, label, class_id, confidence, top_k, modality_attention {name: a_m},
    attention_map {dims: ["time", "modality"], modalities, values: T x M}, present, missing,
    degraded, inputs {events: count in the window, audio_coverage: fraction of real samples},
    inference_ms, latency_ms (window end -> publish, ROS clock).
    """
    best = top_k(probs, classes, k)
    present = [m for m, p in zip(modalities, window.present, strict=True) if p]
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "seq": int(seq),
        "stamp_ns": window.end_us * 1000,
        "window": {"start_ns": window.start_us * 1000, "end_ns": window.end_us * 1000},
        "label": best[0]["label"],
        "class_id": best[0]["class_id"],
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


# ------------------------------------------------------------------------------ scoring
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
    majority: every window that a sample covers at least half of (sliding windows as well).
    """

    truths: dict[str, GroundTruth] = field(default_factory=dict)
    aligned: list[tuple[str, int, int]] = field(default_factory=list)  # (id, true, predicted)
    majority: list[tuple[str, int, int]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    degraded: int = 0
    predictions: int = 0

    def add_truth(self, g: GroundTruth) -> None:
        self.truths[g.id] = g

    def add_prediction(self, pred: dict[str, Any]) -> tuple[GroundTruth | None, float]:
        self.predictions += 1
        self.latencies_ms.append(float(pred["latency_ms"]))
        self.degraded += int(bool(pred["degraded"]))
        g, cover = best_match(pred["window"]["start_ns"], pred["window"]["end_ns"],
                              self.truths.values())
        if g is not None:
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
        return {
            "samples": len(self.truths),
            "predictions": self.predictions,
            "degraded": self.degraded,
            "aligned_windows": len(self.aligned),
            "aligned_accuracy": self._acc(self.aligned),
            "majority_windows": len(self.majority),
            "majority_accuracy": self._acc(self.majority),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p99": float(np.percentile(lat, 99)),
        }


# ------------------------------------------------------------------------------ diagnostics
class RateMeter:
    """Counts per second over a sliding period (for 'input rates' in diagnostics)."""

    def __init__(self, period_s: float = 2.0) -> None:
        self.period_s = float(period_s)
        self._items: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def add(self, now_s: float, amount: float = 1.0) -> None:
        with self._lock:
            self._items.append((now_s, amount))
            self._trim(now_s)

    def _trim(self, now_s: float) -> None:
        while self._items and self._items[0][0] < now_s - self.period_s:
            self._items.popleft()  # bounded: one entry per message within the period

    def rate(self, now_s: float) -> float:
        with self._lock:
            self._trim(now_s)
            return sum(a for _, a in self._items) / self.period_s


class LatencyStats:
    """The last ``n`` latencies (ms) and their percentiles; bounded memory."""

    def __init__(self, n: int = 500) -> None:
        self._v: deque[float] = deque(maxlen=n)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._v.append(float(ms))

    def percentiles(self) -> dict[str, float]:
        with self._lock:
            if not self._v:
                return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
            a = np.asarray(self._v)
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                "max": float(a.max())}


@dataclass
class InputCounters:
    """Per-input counters, updated by the decode thread (ints: atomic enough under the GIL)."""

    messages: int = 0
    bad: int = 0
    lost_packets: int = 0
    decoded: int = 0  # events or samples
    last_error: str = ""


def diagnostic_values(*, level: int, message: str, device: str,
                      inputs: dict[str, InputCounters], rates: dict[str, float],
                      buffers: dict[str, Any], scheduler: SchedulerStats,
                      window_latency: dict[str, float], inference_latency: dict[str, float],
                      predictions: int, extra: dict[str, Any] | None = None
                      ) -> list[tuple[str, str]]:
    """Key/value pairs of the node's DiagnosticStatus (all strings, stable key names)."""
    kv: list[tuple[str, Any]] = [("level", LEVEL_NAMES[level]), ("message", message),
                                 ("device", device), ("predictions", predictions)]
    for name, c in inputs.items():
        kv += [(f"{name}.messages", c.messages), (f"{name}.bad_messages", c.bad),
               (f"{name}.lost_packets", c.lost_packets), (f"{name}.decoded", c.decoded),
               (f"{name}.last_error", c.last_error)]
    kv += [(f"{k}.rate_hz", f"{v:.1f}") for k, v in rates.items()]
    kv += [(f"buffer.{k}", v) for k, v in buffers.items()]
    kv += [("windows.cut", scheduler.cut), ("windows.degraded", scheduler.degraded),
           ("windows.stale", scheduler.stale), ("windows.dropped", scheduler.dropped)]
    kv += [(f"windows.late.{m}", n) for m, n in scheduler.late.items()]
    kv += [(f"window_latency_ms.{k}", f"{v:.2f}") for k, v in window_latency.items()]
    kv += [(f"inference_ms.{k}", f"{v:.2f}") for k, v in inference_latency.items()]
    kv += list((extra or {}).items())
    return [(k, str(v)) for k, v in kv]


# ------------------------------------------------------------------------------ model
def find_bundled_model(share_dirs: Iterable[str | os.PathLike[str]] | None = None) -> Path:
    """The default checkpoint: ``share/taaf_ros/models/*.pt``, else the source tree's models/.

    Looked up in order: the ament index (``AMENT_PREFIX_PATH``, a ROS workspace or install),
    ``<sys.prefix>/share/taaf_ros/models`` (a plain ``pip install`` puts data_files there and
    sets no AMENT_PREFIX_PATH), then ``models/`` beside the package (an editable install or a
    source checkout). Raises FileNotFoundError naming every place searched.
    """
    dirs: list[Path] = []
    if share_dirs is None:
        try:
            from ament_index_python.packages import get_package_share_directory

            dirs.append(Path(get_package_share_directory("taaf_ros")) / "models")
        except (ImportError, LookupError, OSError, ValueError):
            pass  # no ament index (AMENT_PREFIX_PATH unset) or package not registered
        dirs.append(Path(sys.prefix) / "share" / "taaf_ros" / "models")
        dirs.append(Path(__file__).resolve().parents[2] / "models")
    else:
        dirs = [Path(d) for d in share_dirs]
    for d in dirs:
        found = sorted(d.glob("*.pt")) if d.is_dir() else []
        if found:
            return found[0]
    raise FileNotFoundError("no bundled model (*.pt) in " + ", ".join(map(str, dirs))
                            + "; set model_path to a checkpoint")


def frontend_from_card(card: dict[str, Any]) -> Any:
    """The FrontEndConfig the model was trained with, from its model card."""
    from taaf_ros.frontend import FrontEndConfig

    fe = dict(card.get("frontend") or {})
    if fe:
        return FrontEndConfig.from_dict(fe)
    _, h, w = card["event_shape"]
    return FrontEndConfig(window_s=float(card["window_s"]), n_time_bins=int(card["T"]),
                          input_size=(int(w), int(h)))


class WindowResult(NamedTuple):
    """Network output for one window (numpy, batch dimension removed)."""

    probs: np.ndarray  # (K,)
    modality_attention: np.ndarray  # (M,)
    attention_map: np.ndarray  # (T, M)
    events_frame: np.ndarray | None  # (T, 2, H, W) input, for the debug image
    audio_frame: np.ndarray | None  # (T, 2, C)


class Classifier:
    """A loaded checkpoint + its front end: one window of raw data -> class probabilities.

    Args:
        path: checkpoint file (see taaf_ros.model.checkpoint). device: 'auto', 'cpu', 'cuda:N'.
        window_s: 0 = the model card's window; another value changes the window the front end
            bins over (the network still sees T bins).

    Raises CheckpointError (missing / corrupt / wrong file) or RuntimeError / ValueError (device).
    """

    def __init__(self, path: str | os.PathLike[str], device: str = "auto",
                 window_s: float = 0.0) -> None:
        import dataclasses

        import torch

        from taaf_ros.model import load_checkpoint, select_device

        self.device = select_device(device)
        loaded = load_checkpoint(path, map_location="cpu")
        self.card = loaded.card
        self.model = loaded.model.to(self.device).eval()
        self.classes = [str(c) for c in self.card["classes"]]
        self.modalities = tuple(self.card.get("modalities", MODALITIES))
        fe = frontend_from_card(self.card)
        if window_s > 0:
            fe = dataclasses.replace(fe, window_s=float(window_s))
        self.frontend = fe
        self._torch = torch

    @property
    def window_us(self) -> int:
        return self.frontend.window_us

    def warm_up(self) -> None:
        """Run one synthetic window: the first call compiles numba kernels and allocates
        torch buffers (up to seconds), which must not delay the first live windows."""
        from taaf_ros.events.types import make_events

        w, h = self.input_size
        ev = make_events([0, w - 1], [0, h - 1], [0, self.window_us - 1], [0, 1])
        rate = self.frontend.cochlea.sample_rate
        pcm = np.random.default_rng(0).standard_normal(round(self.window_us * rate / 1e6))
        self.classify(ev, (w, h), 0.1 * pcm.astype(np.float32), rate, 0)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network's event input."""
        return self.frontend.input_size

    def classify(self, events: np.ndarray | None, sensor_size: tuple[int, int],
                 pcm: np.ndarray | None, sample_rate: int, start_us: int) -> WindowResult:
        """Events (ROS-time µs) and PCM of the window starting at start_us; None = masked."""
        from taaf_ros.frontend import audio_tensor, event_tensor

        torch = self._torch
        ev = au = None
        if events is not None and "events" in self.modalities:
            ev = event_tensor(events, sensor_size, start_us, self.frontend)
        if pcm is not None and "audio" in self.modalities:
            au = audio_tensor(pcm, sample_rate, self.frontend)
        if ev is None and au is None:
            raise ValueError("no modality present")
        present = torch.tensor([[ev is not None, au is not None]], device=self.device)
        with torch.inference_mode():
            out = self.model(
                None if ev is None else torch.from_numpy(ev)[:, None].to(self.device),
                None if au is None else torch.from_numpy(au)[:, None].to(self.device),
                present,
            )
            probs = torch.softmax(out.logits[0].float(), dim=-1).cpu().numpy()
            att = out.modality_attention[0].float().cpu().numpy()
            amap = out.attention_map[0].float().cpu().numpy()
        return WindowResult(probs, att, amap, ev, au)


# ------------------------------------------------------------------------------ replay plan
class ReplayPlan:
    """Where each replayed sample sits on the ROS clock (the alignment policy).

    Every sample gets a slot of ``slot_us = ceil((window + gap) / hop) * hop``: its first
    ``window`` of events and audio, then silence (audio zeros, empty event packets). Slots start
    on multiples of ``hop`` of the ROS clock, which is also the perception node's window grid,
    so the window ending at ``slot_start + window`` covers exactly one sample (the window offline
    evaluation classifies) and is matched to it by :func:`best_match`; sliding windows in
    between are matched to the sample covering most of them. Packets (events) and chunks
    (audio) of ``packet_us`` tile the timeline from the first slot; packet_us is shrunk to
    divide hop so that no packet straddles two slots.
    """

    def __init__(self, window_us: int, hop_us: int, gap_us: int, packet_us: int,
                 first_start_us: int) -> None:
        self.window_us, self.hop_us = int(window_us), int(hop_us)
        self.slot_us = grid_ceil(self.window_us + int(gap_us), self.hop_us)
        self.packet_us = self.hop_us // max(1, -(-self.hop_us // int(packet_us)))
        self.origin_us = grid_ceil(first_start_us, self.hop_us)

    def slot_start(self, slot: int) -> int:
        return self.origin_us + slot * self.slot_us

    def packet(self, k: int) -> tuple[int, int, int]:
        """(slot index, start µs, end µs) of packet k."""
        a = self.origin_us + k * self.packet_us
        return (a - self.origin_us) // self.slot_us, a, a + self.packet_us

    def sample_range(self, a_us: int, b_us: int, rate: int) -> tuple[int, int]:
        """Global audio sample indices [i0, i1) for [a_us, b_us): contiguous across packets."""
        return ((a_us - self.origin_us) * rate // 1_000_000,
                (b_us - self.origin_us) * rate // 1_000_000)


REPLAY_ORDERS = ("interleaved", "listed")


def replay_order(labels: Sequence[int], order: str = "interleaved") -> list[int]:
    """Dataset indices in replay order.

    ``listed``: the dataset's order (class by class). ``interleaved``: round robin over the
    classes (first sample of each class in class order, then the second, ...), so that the
    first N samples of a replay are as class-balanced as N allows.

    >>> replay_order([0, 0, 0, 1, 1, 2])
    [0, 3, 5, 1, 4, 2]
    """
    if order == "listed":
        return list(range(len(labels)))
    if order != "interleaved":
        raise ValueError(f"order must be one of {REPLAY_ORDERS}, got {order!r}")
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(int(c), []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    out: list[int] = []
    for k in range(max((len(q) for q in queues), default=0)):
        out += [q[k] for q in queues if k < len(q)]
    return out
