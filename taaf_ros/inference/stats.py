"""Runtime counters of the perception node (input rates, latencies, per-input counts) and the
key/value pairs of its DiagnosticStatus."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from taaf_ros.stream.scheduler import ERROR, LEVEL_NAMES, OK, STALE, WARN, SchedulerStats


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


class WorkerHealth:
    """Heartbeat and failures of the inference worker thread, for /diagnostics.

    The worker calls :meth:`beat` every loop and :meth:`failed` with the traceback of an
    exception it caught (it then carries on with the next poll: one bad window or a bug hit
    by one input must not stop every later prediction). :meth:`level` is ERROR while the
    last failure is recent or when no beat came for ``stall_s`` (a hung worker).
    """

    def __init__(self, stall_s: float = 2.0, recent_s: float = 10.0) -> None:
        self.stall_s, self.recent_s = float(stall_s), float(recent_s)
        self.errors = 0
        self.last_error = ""
        self._beat: float | None = None
        self._error_at: float | None = None

    def beat(self, now_s: float) -> None:
        self._beat = float(now_s)

    def failed(self, text: str, now_s: float) -> None:
        self.errors += 1
        self.last_error = text[-500:]
        self._error_at = float(now_s)

    def heartbeat_age_s(self, now_s: float) -> float:
        return float("nan") if self._beat is None else float(now_s) - self._beat

    def level(self, now_s: float) -> tuple[int, str]:
        age = self.heartbeat_age_s(now_s)
        if age > self.stall_s:
            return ERROR, f"inference worker stalled: no heartbeat for {age:.1f} s"
        if self._error_at is not None and now_s - self._error_at < self.recent_s:
            last = self.last_error.strip().splitlines()[-1] if self.last_error else ""
            return ERROR, f"inference worker failed {self.errors} times, last: {last}"
        return OK, "inference worker running"


def stamp_advice(stream: str, offset_us: int) -> str:
    """What to tell a user whose header stamps are far from the ROS clock."""
    where = "ahead of" if offset_us > 0 else "behind"
    return (f"{stream} header stamps are {abs(offset_us) / 1e6:.1f} s {where} the ROS clock; "
            "their data is placed at receipt time. Replaying a bag: play it with --clock and "
            "set use_sim_time:=true; a driver: make it stamp with ROS time")


def combine_levels(scheduler: tuple[int, str], worker: tuple[int, str],
                   stamps: list[str]) -> tuple[int, str]:
    """The node's one level: a failing worker first, then the scheduler's, and implausible
    stamps raise OK to WARN."""
    if worker[0] == ERROR:
        return worker
    level, message = scheduler
    if stamps:
        level = level if level == STALE else max(level, WARN)
        message = "; ".join([message, *stamps])
    return level, message


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
           ("windows.stale", scheduler.stale), ("windows.dropped", scheduler.dropped),
           ("windows.backlog_jumps", scheduler.jumps)]
    kv += [(f"windows.late.{m}", n) for m, n in scheduler.late.items()]
    kv += [(f"window_latency_ms.{k}", f"{v:.2f}") for k, v in window_latency.items()]
    kv += [(f"inference_ms.{k}", f"{v:.2f}") for k, v in inference_latency.items()]
    kv += list((extra or {}).items())
    return [(k, str(v)) for k, v in kv]
