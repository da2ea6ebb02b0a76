"""Live perception node: DVS events + microphone audio -> TAAF network -> /taaf/prediction.

Threads: the executor (single-threaded in ``main``) runs the subscriptions (decode, map to ROS
time, push into the ring buffers: short and bounded) and the diagnostics timer; inference runs
in a worker thread of its own, woken by every decoded message (so a window is cut as soon as its
data is in) and every 10 ms (so max_wait_s expires on time). A slow inference therefore never
delays decoding (torch and the numba kernels release the GIL while they compute) and decoding
never waits for the network. A worker thread rather than a timer in a MultiThreadedExecutor:
rclpy's multi-threaded executor cost about 1.2 ms of CPU per callback here against 0.4 ms for the
single-threaded one, which at 200 messages/s plus a 100 Hz timer was half a core. The front
ends and the scheduler take their own locks. Everything that is not wiring is ROS-free:
message decoding and clocks in ``nodes.inputs``, windows in ``taaf_ros.stream``, the pipeline,
predictions and statistics in ``taaf_ros.inference``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray, String

from taaf_ros.audio import AudioFormatError
from taaf_ros.events import EventFormatError
from taaf_ros.inference.live import LivePipeline, LiveSettings, LiveWindow
from taaf_ros.inference.pipeline import Classifier, find_bundled_model
from taaf_ros.inference.prediction import make_prediction
from taaf_ros.inference.render import render_window
from taaf_ros.inference.stats import (
    InputCounters,
    LatencyStats,
    RateMeter,
    WorkerHealth,
    combine_levels,
    diagnostic_values,
    stamp_advice,
)
from taaf_ros.nodes import outputs
from taaf_ros.nodes.inputs import AudioInput, EventInput
from taaf_ros.nodes.msg_imports import (
    MissingMessagePackageError,
    audio_msg_type,
    event_msg_type,
    import_msg,
    try_import_msg,
)
from taaf_ros.nodes.params import PERCEPTION_NODE, PERCEPTION_PARAMS, declare_all, spec, validate
from taaf_ros.stream.scheduler import WindowCut, WindowScheduler

_BAD_INPUT = (EventFormatError, AudioFormatError, ValueError, TypeError, AttributeError,
              OverflowError, IndexError, KeyError)


class StartupError(RuntimeError):
    """The node cannot start: bad parameter, missing model, missing message package."""


class PerceptionNode(Node):
    """Subscribes to events and audio, publishes predictions, attention and diagnostics."""

    def __init__(self, **kwargs: Any) -> None:
        # First: destroy_node may run on a node whose construction failed (StartupError).
        self._wake, self._stop = threading.Event(), threading.Event()
        self._worker: threading.Thread | None = None
        super().__init__(PERCEPTION_NODE, **kwargs)
        try:
            self.p = declare_all(self, PERCEPTION_PARAMS)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self._load_model()
        # Groups matter where a MultiThreadedExecutor spins the node (several nodes in one
        # process): decoders keep state from message to message, so decoding is never parallel.
        decode_group = MutuallyExclusiveCallbackGroup()
        diag_group = MutuallyExclusiveCallbackGroup()
        try:
            self._subscribe(decode_group)
        except MissingMessagePackageError as exc:
            raise StartupError(str(exc)) from exc
        qos = QoSProfile(depth=10)
        self.pub_pred = self.create_publisher(String, "/taaf/prediction", qos)
        self.pub_att = self.create_publisher(Float32MultiArray, "/taaf/attention", qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", qos)
        self.pub_image = self.create_publisher(Image, "/taaf/debug_image", qos)
        self._cls_type = try_import_msg("vision_msgs", "Classification")
        self._hyp_type = try_import_msg("vision_msgs", "ObjectHypothesis")
        self.pub_cls = (self.create_publisher(self._cls_type, "/taaf/classification", qos)
                        if self._cls_type is not None else None)
        self.create_timer(self.p["diagnostics_period_s"], self._on_diagnostics, diag_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.seq = 0
        self.window_latency, self.inference_latency = LatencyStats(), LatencyStats()
        self.health = WorkerHealth()
        self._worker = threading.Thread(target=self._infer_loop, name="taaf_inference",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model {self.model_path} on {self.classifier.device}; window "
            f"{self.classifier.window_us / 1e6:.3f} s, hop {self.p['hop_s']} s, event front end "
            f"{self.live.mode}; events {self.p['events_type']} on {self.p['events_topic']}, "
            f"audio {self.p['audio_type']} on {self.p['audio_topic']}"
            + ("" if self.pub_cls else "; vision_msgs absent: no /taaf/classification"))

    # ---------------------------------------------------------------------------- set-up
    def _load_model(self) -> None:
        import torch

        from taaf_ros.model import CheckpointError

        if self.p["torch_threads"]:
            # Before the first inference. On a batch-1 network, more intra-op threads than free
            # cores make inference many times slower (threads spin-wait on busy cores).
            torch.set_num_threads(self.p["torch_threads"])
        path = self.p["model_path"]
        try:
            path = path or str(find_bundled_model())
            self.classifier = Classifier(path, self.p["device"], self.p["window_s"],
                                         self.p["dtype"])
            self.classifier.warm_up()
        except (FileNotFoundError, CheckpointError, RuntimeError, ValueError, KeyError) as exc:
            raise StartupError(f"cannot load the model: {exc}") from exc
        self.model_path = path
        w, h = self.classifier.input_size
        size = (self.p["sensor_width"] or w, self.p["sensor_height"] or h)
        us = lambda s: round(s * 1e6)  # noqa: E731
        hop, wait = us(self.p["hop_s"]), us(self.p["max_wait_s"])
        # Event counts are kept for a window, the wait for late data and a second of slack
        # (max_wait_s raised at run time beyond that slack masks the late events' windows).
        self.live = LivePipeline(self.classifier, size, LiveSettings(
            hop_us=hop, history_us=self.classifier.window_us + wait + us(1.0),
            event_front_end=self.p["event_front_end"],
            event_buffer_capacity=self.p["event_buffer_capacity"],
            max_events_per_window=self.p["max_events_per_window"],
            audio_buffer_s=self.p["audio_buffer_s"]))
        max_off = us(self.p["max_stamp_offset_s"])
        self.events_in = EventInput(self.p["events_type"], size, max_off)
        self.audio_in = AudioInput(self.p["audio_type"], self.p["audio_sample_rate"],
                                   self.p["audio_channels"], max_off)
        self.scheduler = WindowScheduler(self.classifier.window_us, hop, wait,
                                         us(self.p["modality_timeout_s"]), self._now_us())
        self.inputs = {"events": InputCounters(), "audio": InputCounters()}
        self.rates = {k: RateMeter() for k in ("events.msgs", "events.events", "audio.msgs",
                                               "audio.samples")}

    def _subscribe(self, group: MutuallyExclusiveCallbackGroup) -> None:
        # Sensor-data QoS (best effort, volatile: drivers publish best effort) but a history of
        # 100 instead of 5: with 10 ms packets, 5 is lost whenever inference holds the GIL for
        # 50 ms; 100 is still bounded (about a second of packets).
        qos = QoSProfile(depth=100, reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
        self.create_subscription(event_msg_type(self.p["events_type"]), self.p["events_topic"],
                                 self._on_events, qos, callback_group=group)
        self.create_subscription(audio_msg_type(self.p["audio_type"]), self.p["audio_topic"],
                                 self._on_audio, qos, callback_group=group)
        if self.p["audio_type"] == "audio_data_stamped":
            info_type = import_msg("audio_common_msgs", "AudioInfo", "audio_data_stamped")
            # AudioInfo is latched by audio_capture: reliable + transient local to get it.
            info_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(info_type, self.p["audio_info_topic"],
                                     lambda m: setattr(self.audio_in, "info", m), info_qos,
                                     callback_group=group)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        for name in changes:
            try:
                if not spec(PERCEPTION_PARAMS, name).runtime:
                    return SetParametersResult(
                        successful=False, reason=f"{name} is read at start-up: restart the node")
            except KeyError:
                return SetParametersResult(successful=False, reason=f"unknown parameter {name}")
        merged = {**self.p, **changes}
        errors = validate(PERCEPTION_PARAMS, {k: merged[k] for k in changes} |
                          {"window_s": merged["window_s"], "hop_s": merged["hop_s"]})
        if errors:
            return SetParametersResult(successful=False, reason="; ".join(errors))
        self.p = merged
        self.live.settings.max_events_per_window = merged["max_events_per_window"]
        self.scheduler.configure(max_wait_us=round(merged["max_wait_s"] * 1e6),
                                 timeout_us=round(merged["modality_timeout_s"] * 1e6))
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------------------- inputs
    def _now_us(self) -> int:
        return self.get_clock().now().nanoseconds // 1000

    def _bad(self, name: str, exc: BaseException) -> None:
        c = self.inputs[name]
        c.bad += 1
        c.last_error = f"{type(exc).__name__}: {exc}"[:200]
        self.get_logger().warning(f"bad {name} message dropped ({c.bad} so far): {c.last_error}",
                                  throttle_duration_sec=5.0)

    def _sent_us(self, info: Any, now_us: int) -> int:
        """When a message was sent (µs, ROS clock): the DDS source timestamp, which no
        executor or GIL delay in this node inflates; the callback time where there is none,
        where the ROS clock is simulated (source timestamps are system time) or where it is
        implausible (a publisher on a machine whose clock is far off)."""
        src = (info or {}).get("source_timestamp") or 0
        if src <= 0 or self.get_clock().ros_time_is_active:
            return now_us
        src_us = int(src) // 1000
        return src_us if now_us - 5_000_000 <= src_us <= now_us + 100_000 else now_us

    def _on_events(self, msg: Any, info: Any) -> None:
        now = self._now_us()
        c = self.inputs["events"]
        c.messages += 1
        try:
            ev, reach = self.events_in.decode(msg, now, self._sent_us(info, now))
            self.live.push_events(ev, self.events_in.sensor_size)
        except _BAD_INPUT as exc:  # a message must never kill the node
            self._bad("events", exc)
            return
        c.decoded += len(ev)
        self.rates["events.msgs"].add(now / 1e6)
        self.rates["events.events"].add(now / 1e6, len(ev))
        self.scheduler.note("events", int(ev["t"][0]) if len(ev) else reach, reach, now)
        self._wake.set()

    def _on_audio(self, msg: Any, info: Any) -> None:
        now = self._now_us()
        c = self.inputs["audio"]
        c.messages += 1
        try:
            piece = self.audio_in.decode(msg, now, self._sent_us(info, now))
            self.live.push_audio(*piece)
        except _BAD_INPUT as exc:
            self._bad("audio", exc)
            return
        n = len(piece.samples)
        c.decoded += n
        self.rates["audio.msgs"].add(now / 1e6)
        self.rates["audio.samples"].add(now / 1e6, n)
        end = piece.start_us + (n * 1_000_000) // piece.sample_rate
        self.scheduler.note("audio", piece.start_us, end, now)
        self._wake.set()

    # ---------------------------------------------------------------------------- windows
    def _infer_loop(self) -> None:
        """The inference thread: poll the scheduler whenever data came in, at least every 10 ms
        (which bounds the added latency of a max_wait_s expiry), and classify what is ready.
        An exception is logged with its traceback, shown as ERROR in /diagnostics and the loop
        goes on: the thread never dies of one window (the heartbeat shows if it hangs)."""
        period = min(0.01, self.p["hop_s"] / 2)
        while not self._stop.is_set():
            self._wake.wait(period)
            self._wake.clear()  # before polling: data noted after this wakes the next wait
            if self._stop.is_set() or not self.context.ok():
                break
            self.health.beat(time.monotonic())
            try:
                for window in self.scheduler.poll(self._now_us()):
                    self._classify(window)
            except Exception:  # noqa: BLE001 - reported, then the next poll goes on
                text = traceback.format_exc()
                self.health.failed(text, time.monotonic())
                self.get_logger().error(f"inference failed ({self.health.errors} so far):\n"
                                        f"{text}", throttle_duration_sec=5.0)

    def destroy_node(self) -> None:
        """Stop the inference thread (after the window it is classifying), then the node."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None and threading.current_thread() is not self._worker:
            self._worker.join(timeout=10.0)
        super().destroy_node()

    def _classify(self, w: WindowCut) -> None:
        t_start = time.perf_counter()
        out = self.live.classify(w)
        if out is None:
            return
        inference_ms = (time.perf_counter() - t_start) * 1e3
        latency_ms = (self._now_us() - w.end_us) / 1e3
        self._publish(out, inference_ms, latency_ms)
        self.window_latency.add(latency_ms)
        self.inference_latency.add(inference_ms)

    def _publish(self, out: LiveWindow, inference_ms: float, latency_ms: float) -> None:
        res = out.result
        pred = make_prediction(
            seq=self.seq, window=out.window, probs=res.probs, classes=self.classifier.classes,
            modality_attention=res.modality_attention, attention_map=res.attention_map,
            k=self.p["top_k"], n_events=out.n_events, audio_coverage=out.audio_coverage,
            inference_ms=inference_ms, latency_ms=latency_ms)
        self.seq += 1
        self.pub_pred.publish(String(data=json.dumps(pred)))
        self.pub_att.publish(outputs.attention_msg(res.attention_map))
        if self.pub_cls is not None:
            self.pub_cls.publish(outputs.classification_msg(self._cls_type, self._hyp_type,
                                                            pred, out.window.end_us))
        if self.p["publish_debug_image"]:
            self.pub_image.publish(outputs.image_msg(render_window(res), out.window.end_us))

    # ---------------------------------------------------------------------------- diagnostics
    def _on_diagnostics(self) -> None:
        now, mono = self._now_us(), time.monotonic()
        ev_stats, au_stats = self.events_in.stats(), self.audio_in.stats()
        self.inputs["events"].lost_packets = ev_stats["lost_packets"]
        stamps = [stamp_advice(name, clk.last_stamp_offset_us)
                  for name, clk in (("event", self.events_in.clock), ("audio", self.audio_in))
                  if clk.last_stamp_offset_us is not None]
        level, message = combine_levels(self.scheduler.health(now), self.health.level(mono),
                                        stamps)
        extra = {f"events.{k}": v for k, v in ev_stats.items() if k != "lost_packets"}
        extra |= {f"audio.{k}": v for k, v in au_stats.items()}
        extra |= {"worker.heartbeat_age_s": f"{self.health.heartbeat_age_s(mono):.2f}",
                  "worker.errors": self.health.errors}
        values = diagnostic_values(
            level=level, message=message, device=str(self.classifier.device),
            inputs=self.inputs, rates={k: r.rate(now / 1e6) for k, r in self.rates.items()},
            buffers=self.live.stats(), scheduler=self.scheduler.stats,
            window_latency=self.window_latency.percentiles(),
            inference_latency=self.inference_latency.percentiles(), predictions=self.seq,
            extra=extra)
        status = DiagnosticStatus(level=bytes([level]), name=f"{self.get_name()}: perception",
                                  message=message, hardware_id=str(self.classifier.device),
                                  values=[KeyValue(key=k, value=v) for k, v in values])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args: list[str] | None = None) -> int:
    """Console script ``perception_node``; non-zero exit when it cannot start."""
    rclpy.init(args=args)
    try:
        node = PerceptionNode()
    except StartupError as exc:
        print(f"[{PERCEPTION_NODE}] error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()  # inference has its own thread (see the module doc)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
