"""Everything a live perception node does between its subscriptions and its publishers, with
no ROS import: decoded data in, windows cut and classified, predictions out, diagnostics.

The node (``taaf_ros.nodes.perception_node``) owns the ROS side (parameters, subscriptions,
message decoding, publishers, the worker thread) and calls :class:`LiveSession` from two
threads: :meth:`~LiveSession.push_events`, :meth:`~LiveSession.push_audio` and
:meth:`~LiveSession.bad`
from the decode thread, :meth:`~LiveSession.run_once` from the inference thread. The live front
end (``taaf_ros.stream.live_frontend``) gives each window's tensors; the session alone runs them
through the network. The front end and the scheduler take their own locks; the counters are
plain ints.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from taaf_ros.inference.classifier import Classifier, WindowResult
from taaf_ros.inference.decision import DecisionRule
from taaf_ros.inference.prediction import make_prediction
from taaf_ros.inference.rule_choice import deployed_rule
from taaf_ros.inference.stats import (
    DelayMeter,
    InputCounters,
    InputHealth,
    LatencyStats,
    RateMeter,
    WorkerHealth,
    combine_levels,
    diagnostic_values,
    stamp_advice,
)
from taaf_ros.model.bundled import find_bundled_model
from taaf_ros.stream.clock import JUMP_US
from taaf_ros.stream.inputs import AudioInput, EventInput
from taaf_ros.stream.live_frontend import LiveFrontEnd, LiveSettings
from taaf_ros.stream.scheduler import WindowCut, WindowScheduler
from taaf_ros.stream.time_watch import TimeWatch

MIN_DELAYS = 20
"""Messages of an input measured before its delay sets the wait (max_wait_s -1)."""

WAIT_MARGIN_US = 20_000
"""Added to the measured delay: the inference thread polls every 10 ms."""

MIN_WAIT_US = 100_000
"""The measured wait is never shorter: a delay that spikes (a loaded machine, a burst of
other traffic) outruns a 99th percentile of the past, and waiting costs latency only for the
windows whose data is late."""


@dataclass
class LiveWindow:
    """A classified window: the network output, events counted, audio coverage (0-1), and
    (debug view only) the window's events as recorded."""

    window: WindowCut
    result: WindowResult
    n_events: int
    audio_coverage: float
    raw_events: np.ndarray | None = None
    sensor_size: tuple[int, int] | None = None


Publish = Callable[[LiveWindow, dict[str, Any]], None]
"""Called with each classified window and its /taaf/prediction object."""


class LiveSession:
    """The live core of the perception node.

    Args:
        classifier: the loaded, warmed-up model.
        sensor_size: event sensor (width, height) until a message says otherwise.
        hop_us, max_wait_us, timeout_us: the scheduler's hop, wait for late data and modality
            timeout. now_us: the ROS clock at start.
        settings: the rest of the front end's settings (buffers, paths); its hop and
            history are set here.
        top_k: classes listed in each prediction.
        monotonic: the steady clock (s) of warning holds and the worker's heartbeat.
    """

    def __init__(self, classifier: Classifier, sensor_size: tuple[int, int], *, hop_us: int,
                 max_wait_us: int, timeout_us: int, now_us: int,
                 settings: LiveSettings | None = None, top_k: int = 3,
                 decision: DecisionRule | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 wait_bound_us: int = 1_000_000) -> None:
        self.classifier = classifier
        self.monotonic = monotonic  # holds and heartbeats (a simulation passes its own)
        self.wait_bound_us = int(wait_bound_us)
        self.measured_wait = max_wait_us < 0  # max_wait_s -1: the inputs' measured delay
        if self.measured_wait:
            max_wait_us = self.wait_bound_us  # until the delays are measured
        # Event counts are kept for a window, the wait for late data and a second of slack
        # (max_wait_s raised at run time beyond that slack masks the late events' windows).
        history = classifier.window_us + max(max_wait_us, self.wait_bound_us) + 1_000_000
        settings = dataclasses.replace(settings or LiveSettings(0, 0), hop_us=hop_us,
                                       history_us=history)
        self._sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        self._settings = settings
        self.front_end = LiveFrontEnd(classifier.frontend, self._sensor_size, settings)
        self.scheduler = WindowScheduler(classifier.window_us, hop_us, max_wait_us, timeout_us,
                                         now_us)
        self.time = TimeWatch(now_us, monotonic=monotonic)
        self._stream_lock = threading.Lock()  # swaps of the front end and the scheduler
        self.top_k = int(top_k)
        self.hop_us = int(hop_us)
        self.decision = decision or DecisionRule()
        self.inputs = {"events": InputCounters(), "audio": InputCounters()}
        self.rates = {k: RateMeter() for k in ("events.msgs", "events.events", "audio.msgs",
                                               "audio.samples")}
        self.window_latency, self.inference_latency = LatencyStats(), LatencyStats()
        # receipt minus how far each input's data reached before: what a window waits for
        self.delays = {"events": DelayMeter(), "audio": DelayMeter()}
        self._reach: dict[str, int] = {}
        self.health = WorkerHealth()
        self.input_health = InputHealth()
        # What the classified windows held, summed (diagnostics: inputs that arrive but
        # contribute nothing).
        self.window_inputs = {"windows": 0, "events": 0, "audio_coverage": 0.0}
        self.seq = 0

    @staticmethod
    def load_classifier(p: Mapping[str, Any], say: Callable[[str], None] | None = None
                        ) -> Classifier:
        """Load and warm up the model named by the perception node's parameter values (names
        and meaning: ``taaf_ros.params``); ``say`` is told of slow steps before they
        run. Raises what :class:`Classifier` raises for a missing or bad model."""
        import torch

        if p["torch_threads"]:
            # Before the first inference. On a batch-1 network, more intra-op threads than free
            # cores make inference many times slower (threads spin-wait on busy cores).
            torch.set_num_threads(p["torch_threads"])
        classifier = Classifier(p["model_path"] or str(find_bundled_model()), p["device"],
                                p["window_s"], p["dtype"], p["inference_backend"],
                                threads=p["torch_threads"], say=say)
        classifier.warm_up()
        return classifier

    @classmethod
    def from_params(cls, p: Mapping[str, Any], now_us: int,
                    classifier: Classifier | None = None,
                    monotonic: Callable[[], float] = time.monotonic) -> LiveSession:
        """A session with fresh stream state, on ``classifier`` (default: loaded from ``p``
        by :meth:`load_classifier`)."""
        classifier = classifier or cls.load_classifier(p)
        w, h = classifier.input_size
        settings = LiveSettings(0, 0, event_front_end=p["event_front_end"],
                                event_buffer_capacity=p["event_buffer_capacity"],
                                max_events_per_window=p["max_events_per_window"],
                                audio_buffer_s=p["audio_buffer_s"])
        us = lambda s: round(s * 1e6)  # noqa: E731
        return cls(classifier, (p["sensor_width"] or w, p["sensor_height"] or h),
                   hop_us=us(p["hop_s"]), max_wait_us=us(p["max_wait_s"]),
                   timeout_us=us(p["modality_timeout_s"]), now_us=now_us, settings=settings,
                   top_k=p["top_k"],
                   decision=deployed_rule(classifier.card, p["smoothing_windows"],
                                          p["min_confidence"])[0],
                   monotonic=monotonic, wait_bound_us=us(p["max_wait_bound_s"]))

    @property
    def sensor_size(self) -> tuple[int, int]:
        """The event sensor (width, height) the session started with."""
        return self._sensor_size

    # ------------------------------------------------------------------ time
    def watch_clock(self, now_us: int) -> None:
        """The node's clock at a message or a poll. Gone back by more than a jump (a bag
        played again under sim time, a stepped system clock): every window, buffer and
        smoothing of the time before is dropped and the stream starts again from now."""
        back = self.time.observe(now_us)
        if back is None:
            return
        with self._stream_lock:
            raw = self.front_end.raw
            front_end = LiveFrontEnd(self.classifier.frontend, self.front_end.sensor_size,
                                     self._settings)
            front_end.keep_raw_events(raw.capacity if raw is not None else 0)
            old = self.scheduler
            scheduler = WindowScheduler(old.window_us, old.hop_us, old.max_wait_us,
                                        old.timeout_us, now_us, old.max_backlog, old.modalities)
            scheduler.stats = old.stats  # the counters go on
            self.front_end, self.scheduler = front_end, scheduler
            self._reach.clear()
            self.time.generation += 1

    def input_jumped(self, name: str, delta_us: int, at_us: int, now_us: int) -> None:
        """The stamps of input ``name`` jumped by ``delta_us`` against their receipt times at
        (node-clock) ``at_us`` and were re-anchored (``StampTimeline``): the windows that
        straddle that time mix two time bases and are dropped."""
        self.scheduler.discontinuity(at_us)
        self.time.input_jumped(name, delta_us)

    # ------------------------------------------------------------------ decode thread
    def receive_events(self, source: EventInput, msg: Any, now_us: int, sent_us: int) -> None:
        """One event message: decoded by ``source`` (the topic's input), pushed; a jump of its
        stamps is noted. Raises what decoding raises for a malformed message."""
        timeline, jumps = source.timeline, source.timeline.jumps
        piece = source.decode(msg, now_us, sent_us)
        if timeline.jumps != jumps:
            first = int(piece.events["t"][0]) if len(piece.events) else piece.reach_us
            self._stamps_moved("events", timeline, first, now_us)
        self.push_events(piece.events, piece.reach_us, piece.sensor_size, now_us)

    def receive_audio(self, source: AudioInput, msg: Any, now_us: int, sent_us: int) -> None:
        """One audio message, as :meth:`receive_events`."""
        timeline, jumps = source.timeline, source.timeline.jumps
        piece = source.decode(msg, now_us, sent_us)
        if timeline.jumps != jumps:
            self._stamps_moved("audio", timeline, piece.start_us, now_us)
        self.push_audio(piece.samples, piece.start_us, piece.sample_rate, now_us)

    def _stamps_moved(self, name: str, timeline: Any, at_us: int, now_us: int) -> None:
        if timeline.messages == 1:  # its first stamps, on another clock: nothing to straddle
            self.time.input_anchored(name, timeline.last_jump_us)
        else:
            self.input_jumped(name, timeline.last_jump_us, at_us, now_us)

    def push_events(self, ev: np.ndarray, reach: int, sensor_size: tuple[int, int],
                    now_us: int) -> None:
        """One decoded event message: its events (ROS-time µs), how far the stream reaches
        and the sensor size of that message."""
        self.watch_clock(now_us)
        self.front_end.push_events(ev, sensor_size)
        self._count("events", len(ev), now_us)
        self._reached("events", reach, now_us)
        self.scheduler.note("events", int(ev["t"][0]) if len(ev) else reach, reach, now_us)

    def push_audio(self, samples: np.ndarray, start_us: int, sample_rate: int,
                   now_us: int) -> None:
        """One decoded audio chunk, its first sample at start_us (ROS-time µs)."""
        self.watch_clock(now_us)
        if not len(samples):  # a compressed message that completed no frame yet
            self._count("audio", 0, now_us)
            return
        ready = self.front_end.push_audio(samples, start_us, sample_rate)
        self._count("audio", len(samples), now_us)
        if ready is not None:
            self._reached("audio", ready, now_us)
        # Audio is ready up to `ready`, which lags the chunk end by the resampler's delay.
        self.scheduler.note("audio", start_us, ready, now_us)

    def _reached(self, name: str, reach_us: int, now_us: int) -> None:
        """The input's data now reaches ``reach_us``: the data just past where it reached
        before came ``now - that`` after its time, what a window ending there waits for."""
        before = self._reach.get(name)
        if before is not None and now_us >= before - JUMP_US:  # not across a clock jump
            self.delays[name].add(now_us - before)
        self._reach[name] = reach_us if before is None else max(before, reach_us)

    def bad(self, name: str, exc: BaseException) -> str:
        """Count a message that could not be decoded; returns the line to log."""
        c = self.inputs[name]
        c.messages += 1
        c.bad += 1
        c.last_error = f"{type(exc).__name__}: {exc}"[:200]
        return f"bad {name} message dropped ({c.bad} so far): {c.last_error}"

    def _count(self, name: str, n: int, now_us: int) -> None:
        c = self.inputs[name]
        c.messages += 1
        c.decoded += n
        unit = "events" if name == "events" else "samples"
        self.rates[f"{name}.msgs"].add(now_us / 1e6)
        self.rates[f"{name}.{unit}"].add(now_us / 1e6, n)

    # ------------------------------------------------------------------ inference thread
    def classify_window(self, w: WindowCut, front_end: LiveFrontEnd | None = None
                        ) -> LiveWindow | None:
        """The window's tensors (from ``front_end``, default the session's) through the
        network; None where no modality has data."""
        fe = front_end or self.front_end
        ev, n_events, au, coverage = fe.window_tensors(w)
        if ev is None and au is None:
            return None
        res = self.classifier.classify_tensors(ev, au)
        present = WindowCut(w.start_us, w.end_us, (ev is not None, au is not None), w.timed_out)
        raw = fe.raw_window(w)
        if raw is None:
            return LiveWindow(present, res, n_events, coverage)
        return LiveWindow(present, res, n_events, coverage, raw, fe.sensor_size)

    def run_once(self, now_us: Callable[[], int], publish: Publish) -> str | None:
        """Cut every window that is ready, classify and publish each.

        Returns None, or the traceback of an exception, which is counted and shown as ERROR
        in diagnostics; the caller logs it and goes on (one bad window must not stop every
        later prediction; a hang shows as a stale heartbeat).
        """
        self.health.beat(self.monotonic())
        try:
            self.watch_clock(now_us())
            if self.measured_wait:
                self.scheduler.configure(max_wait_us=self.measured_wait_us(now_us()))
            with self._stream_lock:  # one time base for the windows of this poll
                generation, front_end = self.time.generation, self.front_end
                windows = self.scheduler.poll(now_us())
            for w in windows:
                t0 = time.perf_counter()
                out = self.classify_window(w, front_end)
                if out is None or self.time.generation != generation:
                    continue  # nothing in it, or the clock went back while it was classified
                inference_ms = (time.perf_counter() - t0) * 1e3
                latency_ms = (now_us() - w.end_us) / 1e3
                res = out.result
                if not np.isfinite(res.probs).all():
                    raise FloatingPointError(
                        "the network's output is not finite (NaN or inf): the model's weights "
                        "are corrupt; retrain it or load another checkpoint")
                decided = self.decision.decide(res.probs, w.start_us, self.hop_us)
                pred = make_prediction(
                    seq=self.seq, window=out.window, probs=decided.probs,
                    abstained=decided.abstained,
                    classes=self.classifier.classes, modality_attention=res.modality_attention,
                    attention_map=res.attention_map, k=self.top_k, n_events=out.n_events,
                    audio_coverage=out.audio_coverage, inference_ms=inference_ms,
                    latency_ms=latency_ms)
                self.seq += 1
                self.window_inputs["windows"] += 1
                self.window_inputs["events"] += out.n_events
                self.window_inputs["audio_coverage"] += out.audio_coverage
                publish(out, pred)
                self.window_latency.add(latency_ms)
                self.inference_latency.add(inference_ms)
        except Exception:  # noqa: BLE001 - reported to the caller, then the next poll goes on
            text = traceback.format_exc()
            self.health.failed(text, self.monotonic())
            return text
        return None

    def measured_wait_us(self, now_us: int | None = None) -> int:
        """The wait for a window's data that the inputs' delivery delays call for: the 99th
        percentile of the slowest input not timed out, plus two polls, at least 0.1 s, at most
        the bound (and the bound until 20 messages of each input are measured)."""
        timed_out = self.scheduler.timed_out(self.time.latest_us if now_us is None else now_us)
        delays = [d.quantile_ms(0.99) for d, t in zip(self.delays.values(), timed_out,
                                                      strict=True)
                  if not t and d.count >= MIN_DELAYS]
        if not delays or len(delays) < sum(not t for t in timed_out):
            return self.wait_bound_us
        wait = max(MIN_WAIT_US, round(max(delays) * 1e3) + WAIT_MARGIN_US)
        return min(self.wait_bound_us, wait)

    def reconfigure(self, *, max_events_per_window: int, max_wait_us: int, timeout_us: int,
                    top_k: int, smoothing_windows: int = 0, min_confidence: float = -1.0
                    ) -> None:
        """Apply the parameters that may change at run time (max_wait_us < 0: measured;
        smoothing_windows 0, min_confidence -1: the model card's)."""
        self.top_k = int(top_k)
        rule = deployed_rule(self.classifier.card, smoothing_windows, min_confidence)[0]
        self.decision.configure(rule.smoothing_windows, rule.min_confidence)
        self.front_end.settings.max_events_per_window = int(max_events_per_window)
        self.measured_wait = max_wait_us < 0
        wait = self.measured_wait_us() if self.measured_wait else max_wait_us
        self.scheduler.configure(max_wait_us=wait, timeout_us=timeout_us)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self, now_us: int, *, device: str, event_stats: dict[str, int],
                    audio_stats: dict[str, int], stamp_offsets: dict[str, int | None],
                    warnings: list[str] | None = None
                    ) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/value pairs) of the node's DiagnosticStatus.

        event_stats / audio_stats: the decoders' counters; stamp_offsets: per stream ("event",
        "audio") the offset of the last implausible header stamp (µs), or None; warnings: the
        caller's own (e.g. the ROS graph's), raising OK to WARN.
        """
        mono = self.monotonic()
        self.inputs["events"].lost_packets = event_stats.get("lost_packets", 0)
        extra = {f"events.{k}": v for k, v in event_stats.items() if k != "lost_packets"}
        extra |= {f"audio.{k}": v for k, v in audio_stats.items()}
        buffers = self.front_end.stats()
        sched = self.scheduler.stats
        counters = {k: v for k, v in (extra | buffers).items() if isinstance(v, int | float)}
        for name, c in self.inputs.items():
            counters |= {f"{name}.messages": c.messages, f"{name}.bad_messages": c.bad,
                         f"{name}.decoded": c.decoded, f"{name}.lost_packets": c.lost_packets}
        counters |= {"windows.cut": sched.cut, "windows.dropped": sched.dropped,
                     "windows.late": sum(sched.late.values())}
        counters |= {f"windows.late.{m}": n for m, n in sched.late.items()}
        counters |= self.time.counters()
        counters |= {f"windows.{k}": v for k, v in self.window_inputs.items()}
        warnings = [*(warnings or []), *(stamp_advice(name, off, self.time.sim_time, now_us)
                                         for name, off in stamp_offsets.items()
                                         if off is not None),
                    *self.time.warnings(mono)]
        w, h = self.front_end.sensor_size
        delays = {m: d.quantile_ms(0.95) for m, d in self.delays.items()}
        notes = {"sensor": f"{w} x {h}", **{f"delay.{m}": f"{v:.0f} ms" for m, v
                                            in delays.items()},
                 "wait_fix": (f"raise max_wait_bound_s (the wait follows the measured delay "
                              f"up to it, {self.wait_bound_us / 1e6:g} s)" if self.measured_wait
                              else "raise max_wait_s above that, or set it to -1 (measured)")}
        warnings += self.input_health.update(mono, counters, notes)
        extra |= {f"input_delay_ms.{m}.p95": f"{v:.1f}" for m, v in delays.items()}
        extra |= {"windows.wait_ms": f"{self.scheduler.max_wait_us / 1e3:.0f}",
                  "windows.wait": "measured" if self.measured_wait else "max_wait_s"}
        level, message = combine_levels(self.scheduler.health(now_us), self.health.level(mono),
                                        warnings)
        extra |= self.time.counters()
        extra |= {"backend": self.classifier.backend,
                  "backend.reason": self.classifier.backend_reason,
                  "dtype": str(self.classifier.dtype).removeprefix("torch."),
                  "worker.heartbeat_age_s": f"{self.health.heartbeat_age_s(mono):.2f}",
                  "worker.errors": self.health.errors}
        values = diagnostic_values(
            level=level, message=message, device=device, inputs=self.inputs,
            rates={k: r.rate(now_us / 1e6) for k, r in self.rates.items()},
            buffers=buffers, scheduler=sched,
            window_latency=self.window_latency.percentiles(),
            inference_latency=self.inference_latency.percentiles(), predictions=self.seq,
            extra=extra)
        return level, message, values
