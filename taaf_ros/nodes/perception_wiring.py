"""What the perception node does, for both of its forms: the plain node (``perception_node``)
and the managed one (``managed_perception_node``).

Threads: the executor (single-threaded in ``spin_node``) runs the subscriptions (decode, map to
ROS time, push into the front ends: short and bounded) and the diagnostics timer; inference runs
in a worker thread of its own, woken by every decoded message (so a window is cut as soon as its
data is in) and every 10 ms (so max_wait_s expires on time). A slow inference therefore never
delays decoding (torch and the numba kernels release the GIL while they compute) and decoding
never waits for the network. A worker thread rather than a timer in a MultiThreadedExecutor:
rclpy's multi-threaded executor cost about 1.2 ms of CPU per callback here against 0.4 ms for the
single-threaded one, which at 200 messages/s plus a 100 Hz timer was half a core. Everything
that is not wiring is ROS-free: message decoding and clocks in ``nodes.inputs``, the live core
(pipeline, scheduler, predictions, counters, diagnostics) in ``taaf_ros.inference.session``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray, String

from taaf_ros.audio import AudioFormatError
from taaf_ros.events import EventFormatError
from taaf_ros.inference.live import LiveWindow
from taaf_ros.inference.render import render_window
from taaf_ros.inference.session import LiveSession
from taaf_ros.nodes import outputs
from taaf_ros.nodes.inputs import AudioInput, EventInput, sent_time_us
from taaf_ros.nodes.msg_imports import (
    MissingMessagePackageError,
    audio_msg_type,
    event_msg_type,
    import_msg,
    try_import_msg,
)
from taaf_ros.nodes.params import PERCEPTION_PARAMS, declare_all, runtime_update

_BAD_INPUT = (EventFormatError, AudioFormatError, ValueError, TypeError, AttributeError,
              OverflowError, IndexError, KeyError)


def _us(seconds: float) -> int:
    return round(seconds * 1e6)


# rclpy before Iron (Humble's) calls a subscription with the message only: there the DDS source
# timestamp is unavailable and sent_time_us falls back to the receipt time. Untested here: PyPI
# carries Jazzy and Kilted only.
WITH_MESSAGE_INFO = hasattr(Subscription, "CallbackType")


def with_message_info(callback: Callable[[Any, Any], None],
                      supported: bool = WITH_MESSAGE_INFO) -> Callable[..., None]:
    """``callback(msg, info)`` as this rclpy calls subscriptions (info None where it cannot)."""
    return callback if supported else (lambda msg: callback(msg, None))


class StartupError(RuntimeError):
    """The node cannot start: bad parameter, missing model, missing message package."""


class PerceptionWiring:
    """What both perception nodes do, cut into the steps of a managed node's transitions:
    load (configure), publishers (configure), start/halt (activate/deactivate). The plain node
    runs load, publishers and start in its constructor; the managed one on its transitions."""

    p: dict[str, Any]

    def _init_wiring(self) -> None:
        # First: destroy_node may run on a node whose construction failed (StartupError).
        self._wake, self._stop = threading.Event(), threading.Event()
        self._worker: threading.Thread | None = None
        self._subs: list[Any] = []
        self._timer: Any = None
        self._pubs: list[Any] = []
        self.classifier: Any = None
        self.session: Any = None

    def _declare_parameters(self) -> None:
        try:
            self.p = declare_all(self, PERCEPTION_PARAMS)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _load(self) -> None:
        """A session with fresh stream state, on the loaded model (loading it if needed)."""
        from taaf_ros.model import CheckpointError

        try:
            self.session = LiveSession.from_params(self.p, self._now_us(), self.classifier)
        except (FileNotFoundError, CheckpointError, RuntimeError, ValueError, KeyError,
                MemoryError) as exc:
            raise StartupError(f"cannot load the model: {type(exc).__name__}: {exc}") from exc
        self.classifier = self.session.classifier
        size, max_off = self.session.sensor_size, _us(self.p["max_stamp_offset_s"])
        self.events_in = EventInput(self.p["events_type"], size, max_off)
        self.audio_in = AudioInput(self.p["audio_type"], self.p["audio_sample_rate"],
                                   self.p["audio_channels"], max_off)

    def _check_message_types(self) -> None:
        """StartupError now, not at the first subscription, when a configured type is absent."""
        try:
            event_msg_type(self.p["events_type"])
            audio_msg_type(self.p["audio_type"])
        except MissingMessagePackageError as exc:
            raise StartupError(str(exc)) from exc

    def _make_publishers(self) -> None:
        qos = QoSProfile(depth=10)
        self.pub_pred = self.create_publisher(String, "/taaf/prediction", qos)
        self.pub_att = self.create_publisher(Float32MultiArray, "/taaf/attention", qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", qos)
        self.pub_image = self.create_publisher(Image, "/taaf/debug_image", qos)
        self._cls_type = try_import_msg("vision_msgs", "Classification")
        self._hyp_type = try_import_msg("vision_msgs", "ObjectHypothesis")
        self.pub_cls = (self.create_publisher(self._cls_type, "/taaf/classification", qos)
                        if self._cls_type is not None else None)
        self._pubs = [self.pub_pred, self.pub_att, self.pub_diag, self.pub_image, self.pub_cls]

    def _drop_publishers(self) -> None:
        for pub in self._pubs:
            if pub is not None:
                self.destroy_publisher(pub)
        self._pubs = []

    def _start(self) -> None:
        """Subscribe, start the diagnostics timer and the inference thread."""
        # Groups matter where a MultiThreadedExecutor spins the node (several nodes in one
        # process): decoders keep state from message to message, so decoding is never parallel.
        try:
            self._subscribe(MutuallyExclusiveCallbackGroup())
        except MissingMessagePackageError as exc:
            raise StartupError(str(exc)) from exc
        self._timer = self.create_timer(self.p["diagnostics_period_s"], self._on_diagnostics,
                                        MutuallyExclusiveCallbackGroup())
        self._stop.clear()
        self._worker = threading.Thread(target=self._infer_loop, name="taaf_inference",
                                        daemon=True)
        self._worker.start()

    def _halt(self) -> None:
        """Stop the inference thread (after the window it is classifying), unsubscribe."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None and threading.current_thread() is not self._worker:
            self._worker.join(timeout=10.0)
        self._worker = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def destroy_node(self) -> None:
        """Stop the inference thread first: it must not publish on a destroyed node."""
        self._halt()
        super().destroy_node()  # the rclpy Node this is mixed into

    def _started_line(self) -> str:
        return (f"model {self.classifier.path} on {self.classifier.device}; window "
                f"{self.classifier.window_us / 1e6:.3f} s, hop {self.p['hop_s']} s, event front "
                f"end {self.session.live.mode}; events {self.p['events_type']} on "
                f"{self.p['events_topic']}, audio {self.p['audio_type']} on "
                f"{self.p['audio_topic']}"
                + ("" if self.pub_cls else "; vision_msgs absent: no /taaf/classification"))

    def _subscribe(self, group: MutuallyExclusiveCallbackGroup) -> None:
        # Sensor-data QoS (best effort, volatile: drivers publish best effort) but a history of
        # 100 instead of 5: with 10 ms packets, 5 is lost whenever inference holds the GIL for
        # 50 ms; 100 is still bounded (about a second of packets).
        qos = QoSProfile(depth=100, reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
        self._subs.append(self.create_subscription(
            event_msg_type(self.p["events_type"]), self.p["events_topic"],
            with_message_info(self._on_events), qos, callback_group=group))
        self._subs.append(self.create_subscription(
            audio_msg_type(self.p["audio_type"]), self.p["audio_topic"],
            with_message_info(self._on_audio), qos, callback_group=group))
        if self.p["audio_type"] == "audio_data_stamped":
            info_type = import_msg("audio_common_msgs", "AudioInfo", "audio_data_stamped")
            # AudioInfo is latched by audio_capture: reliable + transient local to get it.
            info_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._subs.append(self.create_subscription(
                info_type, self.p["audio_info_topic"],
                self._on_audio_info, info_qos, callback_group=group))

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        merged, reason = runtime_update(PERCEPTION_PARAMS, self.p, {p.name: p.value
                                                                     for p in params})
        if merged is None:
            return SetParametersResult(successful=False, reason=reason)
        self.p = merged
        if self.session is not None:
            self.session.reconfigure(max_events_per_window=merged["max_events_per_window"],
                                     max_wait_us=_us(merged["max_wait_s"]),
                                     timeout_us=_us(merged["modality_timeout_s"]),
                                     top_k=merged["top_k"])
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------------------- inputs
    def _now_us(self) -> int:
        return self.get_clock().now().nanoseconds // 1000

    def _sent_us(self, info: Any, now_us: int) -> int:
        return sent_time_us(info, now_us, self.get_clock().ros_time_is_active)

    def _on_events(self, msg: Any, info: Any) -> None:
        now = self._now_us()
        try:
            piece = self.events_in.decode(msg, now, self._sent_us(info, now))
            self.session.push_events(*piece, now)
        except Exception as exc:  # noqa: BLE001 - a message must never kill the node
            self._bad_message("events", exc)
            return
        self._wake.set()

    def _on_audio(self, msg: Any, info: Any) -> None:
        now = self._now_us()
        try:
            piece = self.audio_in.decode(msg, now, self._sent_us(info, now))
            self.session.push_audio(*piece, now)
        except Exception as exc:  # noqa: BLE001
            self._bad_message("audio", exc)
            return
        self._wake.set()

    def _on_audio_info(self, msg: Any) -> None:
        try:
            self.audio_in.set_info(msg, self._now_us())
        except Exception as exc:  # noqa: BLE001
            self._bad_message("audio", exc)

    def _bad_message(self, name: str, exc: Exception) -> None:
        """Count and log (throttled) a message that failed; malformed input is expected, any
        other failure (MemoryError included) is a bug a message exposed, logged with its type."""
        line = self.session.bad(name, exc)
        if not isinstance(exc, _BAD_INPUT):
            line += " (not a known input fault: please report it)"
        self.get_logger().warning(line, throttle_duration_sec=5.0)

    # ---------------------------------------------------------------------------- windows
    def _infer_loop(self) -> None:
        """The inference thread: classify what is ready whenever data came in, and at least
        every 10 ms (which bounds the added latency of a max_wait_s expiry). A failure is
        logged with its traceback and the loop goes on (see LiveSession.run_once)."""
        period = min(0.01, self.p["hop_s"] / 2)
        while not self._stop.is_set():
            self._wake.wait(period)
            self._wake.clear()  # before polling: data noted after this wakes the next wait
            if self._stop.is_set() or not self.context.ok():
                break
            error = self.session.run_once(self._now_us, self._publish)
            if error is not None:
                self.get_logger().error(f"inference failed ({self.session.health.errors} so "
                                        f"far):\n{error}", throttle_duration_sec=5.0)

    def _publish(self, out: LiveWindow, pred: dict[str, Any]) -> None:
        self.pub_pred.publish(String(data=json.dumps(pred, allow_nan=False)))
        self.pub_att.publish(outputs.attention_msg(out.result.attention_map))
        if self.pub_cls is not None:
            self.pub_cls.publish(outputs.classification_msg(self._cls_type, self._hyp_type,
                                                            pred, out.window.end_us))
        if self.p["publish_debug_image"]:
            self.pub_image.publish(outputs.image_msg(render_window(out.result),
                                                     out.window.end_us))

    # ---------------------------------------------------------------------------- diagnostics
    def _on_diagnostics(self) -> None:
        offsets = {"event": self.events_in.clock.last_stamp_offset_us,
                   "audio": self.audio_in.last_stamp_offset_us}
        level, message, values = self.session.diagnostics(
            self._now_us(), device=str(self.classifier.device),
            event_stats=self.events_in.stats(), audio_stats=self.audio_in.stats(),
            stamp_offsets=offsets)
        self.pub_diag.publish(outputs.diagnostics_msg(
            f"{self.get_name()}: perception", str(self.classifier.device), level, message,
            values, self._now_us()))
