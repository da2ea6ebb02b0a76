"""Runtime counters of the perception node (input rates, latencies, per-input counts) and the
key/value pairs of its DiagnosticStatus."""

from __future__ import annotations

import threading
import time
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
    """Latencies (ms) of the last ``period_s`` seconds (at most ``n``) and their percentiles,
    so /diagnostics shows what the node costs now, not since it started; bounded memory."""

    def __init__(self, n: int = 2000, period_s: float = 10.0) -> None:
        self.period_s = float(period_s)
        self._v: deque[tuple[float, float]] = deque(maxlen=n)
        self._lock = threading.Lock()

    def add(self, ms: float, now_s: float | None = None) -> None:
        with self._lock:
            self._v.append((time.monotonic() if now_s is None else now_s, float(ms)))

    def percentiles(self, now_s: float | None = None) -> dict[str, float]:
        """p50, p99 and max over the period (NaN where nothing came in it), and ``n``."""
        since = (time.monotonic() if now_s is None else now_s) - self.period_s
        with self._lock:
            a = np.asarray([ms for t, ms in self._v if t >= since])
        if not len(a):
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                "max": float(a.max()), "n": len(a)}


class DelayMeter:
    """How long an input's data takes to arrive: node clock at receipt minus the time its data
    now reaches (µs), over the last ``n`` messages; bounded memory, thread-safe."""

    def __init__(self, n: int = 256) -> None:
        self._v: deque[int] = deque(maxlen=n)
        self._lock = threading.Lock()

    def add(self, delay_us: int) -> None:
        with self._lock:
            self._v.append(int(delay_us))

    @property
    def count(self) -> int:
        """Delays held (at most ``n``)."""
        return len(self._v)

    def quantile_ms(self, q: float = 0.95) -> float:
        """The ``q`` quantile (ms) of the recent delays; NaN before any."""
        with self._lock:
            if not self._v:
                return float("nan")
            return float(np.quantile(np.asarray(self._v), q)) / 1e3


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


def stamp_advice(stream: str, offset_us: int, sim_time: bool = False,
                 clock_us: int | None = None) -> str:
    """What to tell a user whose header stamps are far from the ROS clock (``sim_time``: the
    node follows /clock, which reads ``clock_us``: 0 while no /clock has come).

    >>> stamp_advice("audio", 1_700_000_000_000_000, sim_time=True, clock_us=0)[:60]
    'audio header stamps are far from the ROS clock: use_sim_time'
    """
    if sim_time and not clock_us:
        return (f"{stream} header stamps are far from the ROS clock: use_sim_time is true but "
                "no /clock has arrived (the ROS time is 0). Play the bag with --clock, or set "
                "use_sim_time:=false for live drivers")
    where = "ahead of" if offset_us > 0 else "behind"
    return (f"{stream} header stamps are {abs(offset_us) / 1e6:.1f} s {where} the ROS clock, "
            "their data placed at receipt time. Replaying a bag: play it with --clock and set "
            "use_sim_time:=true. A driver: make it stamp with ROS time")


def combine_levels(scheduler: tuple[int, str], worker: tuple[int, str],
                   warnings: list[str]) -> tuple[int, str]:
    """The node's one level: a failing worker first, then the scheduler's; any warning
    (implausible stamps, inputs that contribute little, overload) raises OK to WARN."""
    if worker[0] == ERROR:
        return worker
    level, message = scheduler
    if warnings:
        level = level if level == STALE else max(level, WARN)
        message = "; ".join([message, *warnings])
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
           ("windows.backlog_jumps", scheduler.jumps),
           ("windows.straddling_a_jump", scheduler.straddling)]
    kv += [(f"windows.late.{m}", n) for m, n in scheduler.late.items()]
    for name, stats in (("window_latency_ms", window_latency), ("inference_ms", inference_latency)):
        kv += [(f"{name}.{k}", f"{v:.2f}") for k, v in stats.items() if k != "n"]
        kv.append((f"{name}.windows", stats.get("n", 0)))
    kv += list((extra or {}).items())
    return [(k, str(v)) for k, v in kv]


# Inputs that arrive but are lost: (counter key, whether the counted items are part of
# ``decoded`` or were removed before it (None: a sign of corrupt input, warned at any
# count), what they were, the likely cause and fix).
_EVENT_LOSSES = (
    ("events.outside_sensor", True, "outside the sensor or the model's crop",
     "the sensor size in use ({sensor}) does not match the camera: set sensor_width / "
     "sensor_height (launch arguments too) or fix the driver's width and height"),
    ("events.too_late", True, "too late for any window still held",
     "stamps run behind the stream or jump; check the driver's clock"),
    ("events.late_dropped", True, "too late for any window still held",
     "stamps run behind the stream or jump; check the driver's clock"),
    ("events.time_outliers", None, "far (> 1 s) from the rest of their packet",
     "corrupt or hostile packets on the event topic"),
    ("events.decoder.dropped_out_of_range", False, "beyond the size the packets declare",
     "the driver's width and height are smaller than its events"),
)
_AUDIO_LOSSES = (
    ("audio.overlap_dropped", True, "overlapping audio already placed",
     "stamps going back or chunks overlapping; check the driver's stamps"),
    ("audio.input_overlap_dropped", True, "overlapping audio already resampled",
     "stamps going back or chunks overlapping; check the driver's stamps"),
    ("audio.ahead_trimmed_samples", None, "past the time they were sent (a chunk longer than "
     "its stamp allows)", "corrupt or hostile chunks, or a publisher stamping the chunk's "
     "end; stamp the first sample"),
    ("audio.stamp_dropped_samples", False,
     "in time already placed (stamp-less chunks arriving early)",
     "a publisher whose chunks come faster than real time"),
)


class InputHealth:
    """Warnings about inputs that arrive but contribute little, from the counters' growth
    between two diagnostics reports: most events or samples lost to one cause, malformed
    messages, packets lost, an input missing from windows because it came after max_wait_s,
    windows dropped (overload), format and rate changes.

    A warning stays for ``hold_s`` after the last report that raised it, so that one hostile
    message is still visible on /diagnostics after the moment it struck.

    >>> h = InputHealth()
    >>> h.update(0.0, {"events.messages": 10, "events.decoded": 1000})
    []
    >>> h.update(1.0, {"events.messages": 20, "events.decoded": 1100,
    ...                "events.outside_sensor": 90})[0][:58]
    'events: 90 of 100 events in the last 1.0 s were outside th'
    """

    def __init__(self, hold_s: float = 10.0, share: float = 0.5, overload_s: float = 3.0,
                 late_share: float = 0.05) -> None:
        self.hold_s, self.share, self.overload_s = float(hold_s), float(share), float(overload_s)
        self.late_share = float(late_share)
        self._windows: deque[tuple[float, float, float, float]] = deque()
        self._notes: dict[str, str] = {}
        self._last: dict[str, float] = {}
        self._last_s: float | None = None
        self._held: dict[str, tuple[float, str]] = {}

    def update(self, now_s: float, counters: dict[str, float],
               notes: dict[str, str] | None = None) -> list[str]:
        """The warnings in force after this report (counters are cumulative; notes: values
        the advice names, e.g. ``sensor``, the event sensor size in use)."""
        self._notes = {"sensor": "?", **(notes or {})}
        d = {k: float(v) - self._last.get(k, 0.0) for k, v in counters.items()}
        span = 0.0 if self._last_s is None else now_s - self._last_s
        self._last, self._last_s = {k: float(v) for k, v in counters.items()}, now_s
        for key, text in self._check(d, span, now_s):
            self._held[key] = (now_s, text)
        # An input missing from windows shows in every such prediction (degraded) and is
        # judged over the last overload_s already: held that long, not hold_s.
        self._held = {k: v for k, v in self._held.items() if now_s - v[0] <= (
            self.overload_s if k.startswith("late.") else self.hold_s)}
        return [text for _, text in self._held.values()]

    def _check(self, d: dict[str, float], span: float, now_s: float
               ) -> list[tuple[str, str]]:
        out = []
        g = lambda k: d.get(k, 0.0)  # noqa: E731
        period = f"in the last {span:.1f} s"
        for name, losses, unit in (("events", _EVENT_LOSSES, "events"),
                                   ("audio", _AUDIO_LOSSES, "samples")):
            kept = g(f"{name}.decoded")
            for key, subset, what, fix in losses:
                lost = g(key)
                total = kept if subset else kept + lost
                if lost > 0 and (subset is None or lost >= self.share * total):
                    out.append((key, f"{name}: {lost:,.0f} of {total:,.0f} {unit} {period} "
                                     f"were {what} ({key}): {fix.format(**self._notes)}"))
            msgs, bad = g(f"{name}.messages"), g(f"{name}.bad_messages")
            if bad > 0:
                out.append((f"{name}.bad", f"{name}: {bad:,.0f} of {msgs:,.0f} messages {period} "
                                           f"could not be decoded ({name}.last_error)"))
        windows = g("windows.windows")
        if windows >= 5 and g("events.decoded") > 0 and g("windows.events") == 0:
            out.append(("events.empty", f"events: {g('events.decoded'):,.0f} decoded {period} "
                                        f"but none in the {windows:.0f} windows classified: "
                                        "their times miss the windows (check the stamps)"))
        coverage = g("windows.audio_coverage") / max(windows, 1)
        if windows >= 5 and g("audio.decoded") > 0 and coverage < 0.1:
            out.append(("audio.empty", f"audio: chunks arrive but the {windows:.0f} windows "
                                       f"{period} held {100 * coverage:.0f} % real audio: "
                                       "their stamps miss the windows (check the stamps and "
                                       "the AudioInfo)"))
        lost, msgs = g("events.lost_packets"), g("events.messages")
        if lost > 0.01 * (lost + msgs):
            out.append(("lost", f"events: {lost:,.0f} packets lost {period} (seq gaps): the "
                                "network or the subscriber cannot keep up"))
        # Windows cut without an input that had not timed out: its data came after
        # max_wait_s (a delivery delay longer than the wait, stamps behind), named per input
        # once it is more than late_share of the windows of the last overload_s. Windows
        # dropped because inference fell behind: overload.
        self._windows.append((now_s, g("windows.late.events"), g("windows.late.audio"),
                              g("windows.cut")))
        while now_s - self._windows[0][0] > self.overload_s:
            self._windows.popleft()
        cut = sum(w[3] for w in self._windows)
        for k, name in ((1, "events"), (2, "audio")):
            late = sum(w[k] for w in self._windows)
            if late >= 3 and late > self.late_share * cut:
                delay = self._notes.get(f"delay.{name}", "?")
                fix = self._notes.get("wait_fix", "raise max_wait_s above that")
                out.append((f"late.{name}", f"{name}: missing from {late:,.0f} of {cut:,.0f} "
                                            f"windows in the last {self.overload_s:.0f} s, its "
                                            f"data arriving after the wait ({delay} after its "
                                            f"time, 95th percentile): {fix}, or fix the "
                                            "driver's stamps"))
        dropped = g("windows.dropped")
        if dropped > 0:
            out.append(("overload", f"overloaded: {dropped:,.0f} windows dropped {period} "
                                    "(inference fell behind): lower the input rate, raise "
                                    "hop_s, or use a faster device"))
        n = g("events.format_changes")
        if n > 0:
            out.append(("events.format_changes", f"events: the sensor size or encoding changed "
                        f"{n:,.0f} times {period}, now {self._notes['sensor']} "
                        "(events.format_changes): followed; a camera reconfigured changes it "
                        "once, over and over means several publishers on one topic, or a "
                        "corrupt one"))
        if g("events.clock_resyncs") > 0:
            out.append(("events.clock_resyncs", f"events: the camera's time base jumped "
                        f"against its header stamps {g('events.clock_resyncs'):,.0f} times "
                        f"{period} (events.clock_resyncs): a camera reset or its clock stepped, "
                        "followed"))
        if g("audio.info_changes_held") > 0:
            out.append(("audio.info_changes_held", f"AudioInfo changed again within 1 s "
                        f"(held) {g('audio.info_changes_held'):,.0f} times {period} "
                        "(audio.info_changes_held): several publishers on one topic, or a "
                        "corrupt one"))
        if g("audio.info_refused") > 0:
            out.append(("audio.info_refused", f"audio: {g('audio.info_refused'):,.0f} AudioInfo "
                        f"refused {period}, the last good one stays in force "
                        "(audio.last_error names it): fix the driver's AudioInfo"))
        return out
