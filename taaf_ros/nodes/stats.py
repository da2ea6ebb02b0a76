"""Runtime counters of the perception node (input rates, latencies, per-input counts) and the
key/value pairs of its DiagnosticStatus."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from taaf_ros.nodes.windowing import LEVEL_NAMES, SchedulerStats


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
