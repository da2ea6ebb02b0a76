"""Live perception node: DVS events + microphone audio -> TAAF network -> /taaf/prediction.

Threads: the executor (single-threaded in ``main``) runs the subscriptions (decode, map to ROS
time, push into the ring buffers: short and bounded) and the diagnostics timer; inference runs
in a worker thread of its own, woken by every decoded message (so a window is cut as soon as its
data is in) and every 10 ms (so max_wait_s expires on time). A slow inference therefore never
delays decoding (torch and the numba kernels release the GIL while they compute) and decoding
never waits for the network. A worker thread rather than a timer in a MultiThreadedExecutor:
rclpy's multi-threaded executor cost about 1.2 ms of CPU per callback here against 0.4 ms for the
single-threaded one, which at 200 messages/s plus a 100 Hz timer was half a core. The buffers
and the scheduler take their own locks. Everything that is not wiring lives in the ROS-free
modules beside this one (timing, multiarray_stamp, windowing, prediction, stats, classifier).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray, MultiArrayDimension, String

from taaf_ros.audio import AudioFormatError, PcmInfo
from taaf_ros.audio.decode import (
    decode_audio_data_stamped,
    decode_audio_stamped,
    decode_multiarray,
)
from taaf_ros.buffers import AudioRingBuffer, EventRingBuffer
from taaf_ros.events import (
    EventDecoder,
    EventFormatError,
    events_from_dvs_event_array,
    events_from_pointcloud2,
)
from taaf_ros.nodes.classifier import Classifier, WindowResult, find_bundled_model
from taaf_ros.nodes.msg_imports import (
    MissingMessagePackageError,
    audio_msg_type,
    event_msg_type,
    import_msg,
    try_import_msg,
)
from taaf_ros.nodes.multiarray_stamp import multiarray_stamp_ns
from taaf_ros.nodes.params import PERCEPTION_NODE, PERCEPTION_PARAMS, declare_all, spec
from taaf_ros.nodes.prediction import make_prediction
from taaf_ros.nodes.stats import InputCounters, LatencyStats, RateMeter, diagnostic_values
from taaf_ros.nodes.timing import SeqTracker, StamplessClock, event_times_to_ros, stamp_to_us
from taaf_ros.nodes.windowing import MODALITIES, WindowCut, WindowScheduler

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
        self._make_buffers()
        # Groups matter where a MultiThreadedExecutor spins the node (several nodes in one
        # process): decoders keep state from message to message, so decoding is never parallel.
        decode_group = MutuallyExclusiveCallbackGroup()
        diag_group = MutuallyExclusiveCallbackGroup()
        try:
            self._subscribe(decode_group)
        except MissingMessagePackageError as exc:
            raise StartupError(str(exc)) from exc
        out_qos = QoSProfile(depth=10)
        self.pub_pred = self.create_publisher(String, "/taaf/prediction", out_qos)
        self.pub_att = self.create_publisher(Float32MultiArray, "/taaf/attention", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self.pub_image = self.create_publisher(Image, "/taaf/debug_image", out_qos)
        classification = try_import_msg("vision_msgs", "Classification")
        self._classification_type = classification
        self.pub_cls = (self.create_publisher(classification, "/taaf/classification", out_qos)
                        if classification is not None else None)
        self.create_timer(self.p["diagnostics_period_s"], self._on_diagnostics, diag_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.seq = 0
        self.window_latency = LatencyStats()
        self.inference_latency = LatencyStats()
        self._worker = threading.Thread(target=self._infer_loop, name="taaf_inference",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model {self.model_path} on {self.classifier.device}; window "
            f"{self.classifier.window_us / 1e6:.3f} s, hop {self.p['hop_s']} s; events "
            f"{self.p['events_type']} on {self.p['events_topic']}, audio {self.p['audio_type']} "
            f"on {self.p['audio_topic']}"
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
        self.sensor_fallback = (self.p["sensor_width"] or w, self.p["sensor_height"] or h)

    def _make_buffers(self) -> None:
        self.event_buf = EventRingBuffer(self.p["event_buffer_capacity"])
        self.audio_buf: AudioRingBuffer | None = None  # made at the first chunk (its rate)
        self.sensor_size = self.sensor_fallback
        now = self._now_us()
        self.scheduler = WindowScheduler(
            self.classifier.window_us, round(self.p["hop_s"] * 1e6),
            round(self.p["max_wait_s"] * 1e6), round(self.p["modality_timeout_s"] * 1e6), now)
        self.inputs = {"events": InputCounters(), "audio": InputCounters()}
        self.rates = {"events.msgs": RateMeter(), "events.events": RateMeter(),
                      "audio.msgs": RateMeter(), "audio.samples": RateMeter()}
        self.seq_tracker = SeqTracker()
        self.audio_clock = StamplessClock()
        self.audio_stamps = {"header": 0, "layout": 0, "receipt": 0}  # chunks by time source
        self.decoders: dict[str, EventDecoder] = {}
        self.audio_info: Any = None

    def _subscribe(self, group: MutuallyExclusiveCallbackGroup) -> None:
        # Sensor-data QoS (best effort, volatile: drivers publish best effort) but a history of
        # 100 instead of 5: with 10 ms packets, 5 is lost whenever inference holds the GIL for
        # 50 ms; 100 is still bounded (about a second of packets).
        qos = QoSProfile(depth=100, reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
        ev_type = event_msg_type(self.p["events_type"])
        au_type = audio_msg_type(self.p["audio_type"])
        self.create_subscription(ev_type, self.p["events_topic"], self._on_events, qos,
                                 callback_group=group)
        self.create_subscription(au_type, self.p["audio_topic"], self._on_audio, qos,
                                 callback_group=group)
        if self.p["audio_type"] == "audio_data_stamped":
            info_type = import_msg("audio_common_msgs", "AudioInfo", "audio_data_stamped")
            # AudioInfo is latched by audio_capture: reliable + transient local to get it.
            from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

            info_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(info_type, self.p["audio_info_topic"], self._on_info,
                                     info_qos, callback_group=group)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        merged = {**self.p, **changes}
        for name in changes:
            try:
                if not spec(PERCEPTION_PARAMS, name).runtime:
                    return SetParametersResult(
                        successful=False, reason=f"{name} is read at start-up: restart the node")
            except KeyError:
                return SetParametersResult(successful=False, reason=f"unknown parameter {name}")
        from taaf_ros.nodes.params import validate

        errors = validate(PERCEPTION_PARAMS, {k: merged[k] for k in changes} |
                          {"window_s": merged["window_s"], "hop_s": merged["hop_s"]})
        if errors:
            return SetParametersResult(successful=False, reason="; ".join(errors))
        self.p = merged
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

    def _decode_events(self, msg: Any) -> tuple[np.ndarray, int]:
        """-> (events with sensor times, header stamp µs); updates sensor size and seq."""
        kind = self.p["events_type"]
        stamp = stamp_to_us(msg.header.stamp.sec, msg.header.stamp.nanosec)
        if kind == "pointcloud2":
            return events_from_pointcloud2(msg), stamp
        if kind == "dvs_event_array":
            self.sensor_size = (int(msg.width) or self.sensor_fallback[0],
                                int(msg.height) or self.sensor_fallback[1])
            return events_from_dvs_event_array(msg), stamp
        width, height = int(msg.width), int(msg.height)
        key = f"{msg.encoding}/{width}x{height}"
        if key not in self.decoders:
            # One decoder per stream format: evt3 keeps state from packet to packet.
            self.decoders[key] = EventDecoder(str(msg.encoding), width, height)
            self.sensor_size = (width, height)
        lost = self.seq_tracker.update(int(msg.seq))
        self.inputs["events"].lost_packets += lost
        return self.decoders[key].decode(msg.events, int(msg.time_base)), stamp

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
            ev, stamp = self._decode_events(msg)
        except _BAD_INPUT as exc:  # a message must never kill the node
            self._bad("events", exc)
            return
        if stamp <= 0:
            stamp = self._sent_us(info, now)  # unstamped driver: best available estimate
        ev["t"] = event_times_to_ros(ev["t"], stamp)
        c.decoded += len(ev)
        self.event_buf.push(ev)
        self.rates["events.msgs"].add(now / 1e6)
        self.rates["events.events"].add(now / 1e6, len(ev))
        start = int(ev["t"][0]) if len(ev) else stamp
        end = int(ev["t"][-1]) if len(ev) else stamp
        self.scheduler.note("events", start, end, now)
        self._wake.set()

    def _on_info(self, msg: Any) -> None:
        self.audio_info = msg

    def _decode_audio(self, msg: Any) -> Any:
        kind = self.p["audio_type"]
        if kind == "audio_data_stamped":
            info = self.audio_info or PcmInfo(channels=self.p["audio_channels"],
                                              sample_rate=self.p["audio_sample_rate"])
            return decode_audio_data_stamped(msg, info)
        if kind == "audio_stamped":
            return decode_audio_stamped(msg)
        return decode_multiarray(msg, self.p["audio_sample_rate"], self.p["audio_channels"])

    def _on_audio(self, msg: Any, info: Any) -> None:
        now = self._now_us()
        c = self.inputs["audio"]
        c.messages += 1
        try:
            chunk = self._decode_audio(msg)
            layout = getattr(msg, "layout", None)
            stamp_ns = chunk.stamp_ns or (multiarray_stamp_ns(layout.dim)
                                          if layout is not None else None)
        except _BAD_INPUT as exc:
            self._bad("audio", exc)
            return
        samples, rate = chunk.samples, int(chunk.sample_rate)
        buf = self.audio_buf
        if buf is None or buf.sample_rate != rate:
            buf = AudioRingBuffer(max(1, round(self.p["audio_buffer_s"] * rate)), rate)
            self.audio_buf = buf  # a single reference swap: the inference thread sees old or new
        if stamp_ns:
            start = stamp_ns // 1000
            self.audio_stamps["header" if chunk.stamp_ns else "layout"] += 1
        else:
            # No time in the message: receipt time, continued by sample count, never moved
            # back over audio already placed (leading samples dropped instead, counted).
            start, skip = self.audio_clock.place(self._sent_us(info, now), len(samples), rate)
            samples = samples[skip:]
            self.audio_stamps["receipt"] += 1
        n = len(samples)
        if n:
            buf.push(samples, start)
        c.decoded += n
        self.rates["audio.msgs"].add(now / 1e6)
        self.rates["audio.samples"].add(now / 1e6, n)
        self.scheduler.note("audio", start, start + (n * 1_000_000) // rate, now)
        self._wake.set()

    # ---------------------------------------------------------------------------- windows
    def _infer_loop(self) -> None:
        """The inference thread: poll the scheduler whenever data came in, at least every 10 ms
        (which bounds the added latency of a max_wait_s expiry), and classify what is ready."""
        period = min(0.01, self.p["hop_s"] / 2)
        while not self._stop.is_set():
            self._wake.wait(period)
            self._wake.clear()  # before polling: data noted after this wakes the next wait
            if self._stop.is_set() or not self.context.ok():
                break
            self._on_tick()

    def destroy_node(self) -> None:
        """Stop the inference thread (after the window it is classifying), then the node."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None and threading.current_thread() is not self._worker:
            self._worker.join(timeout=10.0)
        super().destroy_node()

    def _on_tick(self) -> None:
        for window in self.scheduler.poll(self._now_us()):
            try:
                self._classify(window)
            except Exception as exc:  # noqa: BLE001 - log and keep serving later windows
                self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5.0)

    def _classify(self, w: WindowCut) -> None:
        t_start = time.perf_counter()
        ev_present, au_present = w.present
        events = (self.event_buf.window(w.start_us, w.end_us, self.p["max_events_per_window"])
                  if ev_present else None)
        buf = self.audio_buf
        pcm, coverage, rate = None, 0.0, 0
        if au_present and buf is not None:
            pcm, coverage = buf.window_with_coverage(w.start_us, w.end_us)
            rate = buf.sample_rate
        if events is None and pcm is None:
            return
        res = self.classifier.classify(events, self.sensor_size, pcm, rate, w.start_us)
        inference_ms = (time.perf_counter() - t_start) * 1e3
        present = WindowCut(w.start_us, w.end_us, (events is not None, pcm is not None),
                            w.timed_out)
        latency_ms = (self._now_us() - w.end_us) / 1e3
        pred = make_prediction(
            seq=self.seq, window=present, probs=res.probs, classes=self.classifier.classes,
            modality_attention=res.modality_attention, attention_map=res.attention_map,
            k=self.p["top_k"], n_events=0 if events is None else len(events),
            audio_coverage=coverage, inference_ms=inference_ms, latency_ms=latency_ms)
        self.seq += 1
        self.pub_pred.publish(String(data=json.dumps(pred)))
        self.pub_att.publish(_attention_msg(res.attention_map))
        if self.pub_cls is not None:
            self.pub_cls.publish(self._classification(pred, w.end_us))
        if self.p["publish_debug_image"]:
            self.pub_image.publish(_debug_image(res, w.end_us))
        self.window_latency.add(latency_ms)
        self.inference_latency.add(inference_ms)

    def _classification(self, pred: dict[str, Any], end_us: int) -> Any:
        hyp_type = import_msg("vision_msgs", "ObjectHypothesis")
        msg = self._classification_type()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(end_us * 1000, 1_000_000_000)
        for item in pred["top_k"]:
            h = hyp_type()
            h.class_id, h.score = item["label"], float(item["score"])
            msg.results.append(h)
        return msg

    # ---------------------------------------------------------------------------- diagnostics
    def _on_diagnostics(self) -> None:
        now = self._now_us()
        level, message = self.scheduler.health(now)
        ev_stats = self.event_buf.stats
        buffers: dict[str, Any] = {
            "events.size": len(self.event_buf), "events.capacity": self.event_buf.capacity,
            "events.overwritten": ev_stats.overwritten,
            "events.late_dropped": ev_stats.late_dropped,
            "events.subsampled": ev_stats.subsampled}
        buf = self.audio_buf
        if buf is not None:
            au = buf.stats
            buffers |= {"audio.size": len(buf), "audio.capacity": buf.capacity,
                        "audio.overwritten": au.overwritten, "audio.gaps": au.gaps,
                        "audio.overlap_dropped": au.overlap_dropped,
                        "audio.stamp_resyncs": self.audio_clock.resyncs,
                        "audio.stamp_corrections": self.audio_clock.corrections,
                        "audio.stamp_dropped_samples": self.audio_clock.dropped_samples}
            buffers |= {f"audio.stamped_by_{k}": v for k, v in self.audio_stamps.items()}
        dec = {f"decoder.{k}": v for d in self.decoders.values()
               for k, v in d.stats.as_dict().items()}
        values = diagnostic_values(
            level=level, message=message, device=str(self.classifier.device),
            inputs=self.inputs, rates={k: r.rate(now / 1e6) for k, r in self.rates.items()},
            buffers=buffers, scheduler=self.scheduler.stats,
            window_latency=self.window_latency.percentiles(),
            inference_latency=self.inference_latency.percentiles(), predictions=self.seq,
            extra=dec)
        status = DiagnosticStatus(level=bytes([level]), name=f"{self.get_name()}: perception",
                                  message=message, hardware_id=str(self.classifier.device),
                                  values=[KeyValue(key=k, value=v) for k, v in values])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def _attention_msg(attention_map: np.ndarray) -> Float32MultiArray:
    """T x M map, row-major, with labelled dims ('time', 'modality:events,audio')."""
    T, M = attention_map.shape
    msg = Float32MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label="time", size=T, stride=T * M),
        MultiArrayDimension(label="modality:" + ",".join(MODALITIES[:M]), size=M, stride=M),
    ]
    msg.data = attention_map.astype(np.float32).ravel().tolist()
    return msg


def _debug_image(res: WindowResult, end_us: int) -> Image:
    """rgb8: event frame (ON red, OFF green, x4), audio spike raster, attention bars."""
    scale = 4
    parts = []
    if res.events_frame is not None:
        f = res.events_frame.sum(axis=0)  # (2, H, W)
        norm = max(float(f.max()), 1.0)
        rgb = np.zeros((*f.shape[1:], 3), np.uint8)
        rgb[..., 0] = (255 * f[1] / norm).astype(np.uint8)
        rgb[..., 1] = (255 * f[0] / norm).astype(np.uint8)
        parts.append(rgb.repeat(scale, 0).repeat(scale, 1))
    width = max([p.shape[1] for p in parts] + [136])
    if res.audio_frame is not None:
        a = res.audio_frame.sum(axis=1).T  # (C, T)
        raster = (255 * a / max(float(a.max()), 1.0)).astype(np.uint8)
        raster = np.repeat(raster, max(1, width // raster.shape[1]), 1)[:, :width]
        parts.append(np.stack([raster] * 3, -1).repeat(2, 0))
    bars = np.zeros((8 * len(res.modality_attention), width, 3), np.uint8)
    for i, a in enumerate(res.modality_attention):
        bars[8 * i + 1: 8 * i + 7, : int(width * float(a))] = (255, 255, 0)
    parts.append(bars)
    parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in parts]
    img = np.concatenate(parts, 0)
    msg = Image(height=img.shape[0], width=img.shape[1], encoding="rgb8", step=img.shape[1] * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(end_us * 1000, 1_000_000_000)
    msg.data = img.tobytes()  # bytes, not an ndarray: see docs (uint8[] assignment cost)
    return msg


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
