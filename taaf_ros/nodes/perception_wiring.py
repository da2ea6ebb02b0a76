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
that is not wiring is ROS-free: message decoding and clocks in ``stream.inputs``, the live core
(pipeline, scheduler, predictions, counters, diagnostics) in ``taaf_ros.inference.session``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray, String

from taaf_ros.audio import AudioFormatError
from taaf_ros.events import EventFormatError
from taaf_ros.inference.render import render_window
from taaf_ros.inference.rule_choice import deployed_rule
from taaf_ros.inference.session import LiveSession, LiveWindow
from taaf_ros.nodes import outputs
from taaf_ros.nodes.msg_imports import (
    MissingMessagePackageError,
    audio_msg_type,
    event_msg_type,
    import_msg,
    try_import_msg,
)
from taaf_ros.params import PERCEPTION_PARAMS, declare_all, runtime_update
from taaf_ros.stream.inputs import AudioInput, EventInput, sent_time_us
from taaf_ros.stream.scheduler import ERROR, LEVEL_NAMES, STALE, WARN

DEBUG_VIEW_EVENTS = 1_000_000
"""Raw events kept for the debug view while publish_debug_image is on (21 MB)."""

NO_PUBLISHER_GRACE_S = 5.0
"""After this long without a publisher on an input topic, /diagnostics say so."""

CONSOLE_WARN_PERIOD_S = 10.0
"""A WARN or ERROR of /diagnostics is logged at most this often (it holds that long)."""

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
        self.pub_image: Any = None
        # Held while the debug image is published (inference thread) or its publisher made or
        # destroyed (parameters callback): a publisher destroyed mid-publish is InvalidHandle.
        self._image_lock = threading.Lock()
        self._frame_id = ""  # the input's frame (events, else audio), carried to the outputs

    managed = False
    """A lifecycle node: every parameter may be set while unconfigured."""

    def _declare_parameters(self) -> None:
        try:
            self.p = declare_all(self, PERCEPTION_PARAMS, all_settable=self.managed)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _load(self) -> None:
        """A session with fresh stream state, on the loaded model (loading it if needed)."""
        from taaf_ros.model import CheckpointError

        loaded = self.classifier is not None
        try:
            classifier = self.classifier or LiveSession.load_classifier(
                self.p, say=self.get_logger().info)
        except (FileNotFoundError, CheckpointError, RuntimeError, ValueError, KeyError,
                MemoryError) as exc:
            raise StartupError(f"cannot load the model: {type(exc).__name__}: {exc}") from exc
        if not loaded:  # what runs and why, once per load
            self.get_logger().info(classifier.describe())
            rule = deployed_rule(classifier.card, self.p["smoothing_windows"],
                                 self.p["min_confidence"])[1]
            self.get_logger().info(f"decision rule: {rule}")
        window_s = classifier.window_us / 1e6
        if self.p["hop_s"] > window_s:
            raise StartupError(f"hop_s ({self.p['hop_s']} s) exceeds the window ({window_s} s, "
                               "from the model card or window_s): data between windows would "
                               "never be classified; lower hop_s")
        self.classifier = classifier
        self.session = LiveSession.from_params(self.p, self._now_us(), classifier)
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

    def _make_diagnostics(self) -> None:
        """/diagnostics in every state (absolute: where aggregators listen), on a steady
        clock: a bag's /clock that stops must not stop the node's health reports."""
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self._timer = self.create_timer(self.p["diagnostics_period_s"], self._on_diagnostics,
                                        MutuallyExclusiveCallbackGroup(),
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._started_s = time.monotonic()

    def _make_publishers(self) -> None:
        """Outputs relative to the node's namespace (``/robot1/taaf/prediction``);
        ``qos_overrides./taaf/prediction.publisher.depth`` and friends change their QoS."""
        qos = QoSProfile(depth=10)
        pub = lambda t, name, q=qos: self.create_publisher(  # noqa: E731
            t, name, q, qos_overriding_options=QoSOverridingOptions.with_default_policies())
        self.pub_pred = pub(String, "taaf/prediction")
        self.pub_att = pub(Float32MultiArray, "taaf/attention")
        self.pub_image = None  # advertised only while publish_debug_image is true
        self._update_debug_image()
        self._cls_type = try_import_msg("vision_msgs", "Classification")
        self._hyp_type = try_import_msg("vision_msgs", "ObjectHypothesis")
        self.pub_cls = (pub(self._cls_type, "taaf/classification")
                        if self._cls_type is not None else None)
        self.pub_labels = None
        info_type = try_import_msg("vision_msgs", "LabelInfo")
        if info_type is not None:
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.pub_labels = pub(info_type, "taaf/label_info", latched)
            self.pub_labels.publish(outputs.label_info_msg(
                info_type, try_import_msg("vision_msgs", "VisionClass"),
                self.classifier.classes, self._now_us()))
        self._pubs = [self.pub_pred, self.pub_att, self.pub_cls, self.pub_labels]

    def _update_debug_image(self) -> None:
        if self.session is not None:  # raw events for the sensor-resolution view, while on
            keep = DEBUG_VIEW_EVENTS if self.p["publish_debug_image"] else 0
            self.session.front_end.keep_raw_events(keep)
        with self._image_lock:
            if self.p["publish_debug_image"] and self.pub_image is None:
                # No QoS overrides here: they declare parameters, and this runs inside the
                # set-parameters callback when the image is switched on at run time.
                self.pub_image = self.create_publisher(Image, "taaf/debug_image",
                                                       QoSProfile(depth=10))
            elif not self.p["publish_debug_image"] and self.pub_image is not None:
                self.destroy_publisher(self.pub_image)
                self.pub_image = None

    def _drop_publishers(self) -> None:
        with self._image_lock:
            for pub in [*self._pubs, self.pub_image]:
                if pub is not None:
                    self.destroy_publisher(pub)
            self._pubs, self.pub_image = [], None

    def _start(self) -> None:
        """Subscribe and start the inference thread."""
        self._update_debug_image()  # this session keeps raw events if the view is on
        # Groups matter where a MultiThreadedExecutor spins the node (several nodes in one
        # process): decoders keep state from message to message, so decoding is never parallel.
        try:
            self._subscribe(MutuallyExclusiveCallbackGroup())
        except MissingMessagePackageError as exc:
            raise StartupError(str(exc)) from exc
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

    def destroy_node(self) -> None:
        """Stop the inference thread first: it must not publish on a destroyed node."""
        self._halt()
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        super().destroy_node()  # the rclpy Node this is mixed into

    def _started_line(self) -> str:
        """What runs, with the topic names as resolved (namespace and remaps applied)."""
        names = [sub.topic_name for sub in self._subs]
        return (f"model {self.classifier.path} on {self.classifier.device}; window "
                f"{self.classifier.window_us / 1e6:.3f} s, hop {self.p['hop_s']} s, event front "
                f"end {self.session.front_end.mode}; events {self.p['events_type']} on {names[0]}, "
                f"audio {self.p['audio_type']} on {names[1]}"
                + (f" (AudioInfo on {names[2]})" if len(names) > 2 else "")
                + f"; predictions on {self.pub_pred.topic_name}"
                + ("" if self.pub_cls else "; vision_msgs absent: no taaf/classification"))

    def _subscribe(self, group: MutuallyExclusiveCallbackGroup) -> None:
        # Sensor-data QoS (best effort, volatile: drivers publish best effort) but a history of
        # 100 instead of 5: with 10 ms packets, 5 is lost whenever inference holds the GIL for
        # 50 ms; 100 is still bounded (about a second of packets).
        qos = QoSProfile(depth=100, reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
        overrides = QoSOverridingOptions.with_default_policies()
        self._subscribe_one("events_topic", event_msg_type(self.p["events_type"]),
                            with_message_info(self._on_events), qos, callback_group=group,
                            qos_overriding_options=overrides)
        self._subscribe_one("audio_topic", audio_msg_type(self.p["audio_type"]),
                            with_message_info(self._on_audio), qos, callback_group=group,
                            qos_overriding_options=overrides)
        if self.p["audio_type"] == "audio_data_stamped":
            info_type = import_msg("audio_common_msgs", "AudioInfo", "audio_data_stamped")
            # AudioInfo is latched by audio_capture: reliable + transient local to get it.
            info_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._subscribe_one("audio_info_topic", info_type, self._on_audio_info, info_qos,
                                callback_group=group)

    def _subscribe_one(self, param: str, msg_type: Any, callback: Any, qos: QoSProfile,
                       **kwargs: Any) -> None:
        """Subscribe the topic ``param`` names; a topic this process already has with another
        type (DDS refuses a second type for one name) is a StartupError naming both types."""
        topic = self.p[param]
        name = self.resolve_topic_name(topic)
        # Checked first because the failure itself differs by distribution: Kilted's RCLError
        # says "incompatible type", Jazzy's overwrites that with "invalid allocator".
        other = self._types_here(name) - {_type_name(msg_type)}
        if not other:
            try:
                self._subs.append(self.create_subscription(msg_type, topic, callback, qos,
                                                           **kwargs))
                return
            except Exception:  # noqa: BLE001 - rclpy's RCLError is not importable portably
                other = {t for n, types in self.get_topic_names_and_types() if n == name
                         for t in types} - {_type_name(msg_type)}
                if not other:
                    raise
        raise StartupError(
            f"{param} {name} is a topic of {', '.join(sorted(other))} in this process (the node "
            f"publishes it, or another node of the process does), so it cannot be "
            f"subscribed as {_type_name(msg_type)}: set {param}:= to the driver's topic")

    def _types_here(self, name: str) -> set[str]:
        """The types this node already publishes or subscribes on topic ``name``."""
        me = (self.get_name(), self.get_namespace())
        return {t for query in (self.get_publisher_names_and_types_by_node,
                                self.get_subscriber_names_and_types_by_node)
                for n, types in query(*me) if n == name for t in types}

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        changes = {p.name: p.value for p in params if not p.name.startswith("qos_overrides.")
                   and p.name != "use_sim_time"}
        merged, reason = runtime_update(PERCEPTION_PARAMS, self.p, changes,
                                        unconfigured=self.managed and self.session is None)
        if merged is None:
            return SetParametersResult(successful=False, reason=reason)
        self.p = merged
        if self._pubs:  # publishers exist (configured)
            self._update_debug_image()
        if self.session is not None:
            self.session.reconfigure(max_events_per_window=merged["max_events_per_window"],
                                     max_wait_us=_us(merged["max_wait_s"]),
                                     timeout_us=_us(merged["modality_timeout_s"]),
                                     top_k=merged["top_k"],
                                     smoothing_windows=merged["smoothing_windows"],
                                     min_confidence=merged["min_confidence"])
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------------------- inputs
    def _now_us(self) -> int:
        return self.get_clock().now().nanoseconds // 1000

    def _sent_us(self, info: Any, now_us: int) -> int:
        return sent_time_us(info, now_us, self.get_clock().ros_time_is_active)

    def _on_events(self, msg: Any, info: Any) -> None:
        now = self._now_us()
        self._frame_id = str(getattr(getattr(msg, "header", None), "frame_id", "") or
                             self._frame_id)
        try:
            self.session.receive_events(self.events_in, msg, now, self._sent_us(info, now))
        except Exception as exc:  # noqa: BLE001 - a message must never kill the node
            self._bad_message("events", exc)
            return
        self._wake.set()

    def _on_audio(self, msg: Any, info: Any) -> None:
        now = self._now_us()
        if not self._frame_id:
            self._frame_id = str(getattr(getattr(msg, "header", None), "frame_id", "") or "")
        try:
            self.session.receive_audio(self.audio_in, msg, now, self._sent_us(info, now))
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
                                                            pred, out.window.end_us,
                                                            self._frame_id))
        if self.pub_image is not None:
            view = render_window(out.result, events=out.raw_events, sensor_size=out.sensor_size,
                                 label=pred["label"], confidence=pred["confidence"],
                                 modalities=tuple(pred["modality_attention"]))
            msg = outputs.image_msg(view, out.window.end_us, self._frame_id)
            with self._image_lock:  # switched off meanwhile: not published
                if self.pub_image is not None:
                    self.pub_image.publish(msg)

    # ---------------------------------------------------------------------------- diagnostics
    def _on_diagnostics(self) -> None:
        # Namespaced like the node ("robot1/taaf_perception: perception"): robots apart.
        name = f"{self.get_fully_qualified_name().lstrip('/')}: perception"
        state = self._lifecycle_state()
        if self.session is None or not self._subs:
            # Not running (a managed node before activate): say so, every period.
            what = "unconfigured" if self.session is None else state or "inactive"
            self.pub_diag.publish(outputs.diagnostics_msg(
                name, "", STALE, f"{what}: no input is read, no predictions",
                [("lifecycle_state", what)], self._now_us()))
            return
        offsets = {"event": self.events_in.timeline.last_stamp_offset_us,
                   "audio": self.audio_in.last_stamp_offset_us}
        self.session.time.sim_time = self.get_clock().ros_time_is_active
        level, message, values = self.session.diagnostics(
            self._now_us(), device=str(self.classifier.device),
            event_stats=self.events_in.stats(), audio_stats=self.audio_in.stats(),
            stamp_offsets=offsets, warnings=self._graph_warnings())
        values += [("topic." + k, sub.topic_name) for k, sub in
                   zip(("events", "audio", "audio_info"), self._subs, strict=False)]
        if state:
            values.append(("lifecycle_state", state))
        if level in (WARN, ERROR):  # on the console too (throttled): not only for /diagnostics
            self.get_logger().warning(f"{LEVEL_NAMES[level]}: {message}",
                                      throttle_duration_sec=CONSOLE_WARN_PERIOD_S)
        self.pub_diag.publish(outputs.diagnostics_msg(
            name, str(self.classifier.device), level, message, values, self._now_us()))

    def _lifecycle_state(self) -> str:
        """The lifecycle state's label (managed node), else ''."""
        machine = getattr(self, "_state_machine", None)
        return str(getattr(machine, "current_state", ("", ""))[1]) if machine else ""

    def _graph_warnings(self) -> list[str]:
        """A subscribed topic whose publishers have another type (silent in DDS), or none
        after the grace period: what to fix."""
        out = []
        for sub, kind in zip(self._subs, ("events_type", "audio_type", None), strict=False):
            want = _type_name(sub.msg_type)
            types = {i.topic_type for i in self.get_publishers_info_by_topic(sub.topic_name)}
            wrong = sorted(types - {want})
            if wrong:
                fix = (f": set {kind} to match, or remap the topic" if kind else "")
                out.append(f"{sub.topic_name} has publishers of {', '.join(wrong)} but this "
                           f"node subscribes {want}; their messages never arrive{fix}")
            elif not types and time.monotonic() - self._started_s > NO_PUBLISHER_GRACE_S:
                others = sorted(name for name, have in self.get_topic_names_and_types()
                                if want in have and name != sub.topic_name)
                there = (f"topics of that type: {', '.join(others[:5])}" if others else
                         "no topic of that type either")
                param = {"events_type": "events_topic", "audio_type": "audio_topic"}.get(
                    kind, "audio_info_topic")
                out.append(f"no publisher on {sub.topic_name} ({want}, {there}): start the "
                           f"driver or remap the input ({param}:= in the launch)")
        return out


def _type_name(msg_type: Any) -> str:
    """``pkg/msg/Type`` of a message class, as the graph reports it."""
    module = msg_type.__module__.split(".")
    return f"{module[0]}/msg/{msg_type.__name__}"
