"""Replay node: plays a dataset split in the EAD layout as live sensor streams, in real time.

Events go out as PointCloud2 (stock messages, the default) or EventPacket evt3 (where
event_camera_msgs is installed), audio as Int16MultiArray chunks or AudioDataStamped (where
audio_common_msgs is installed), and each sample's ground truth as JSON on its own topic.
Timing and alignment: see replay_plan.ReplayPlan.

Pacing: a packet [a, b) of the plan is published once the ROS clock has passed b (it has then
been "captured"); every tick publishes all packets that are due, so after a stall (a loaded
machine, a slow disk read) the replay catches up instead of drifting. Every message carries the
capture time of its data (event header stamps, the audio header stamp or, for Int16MultiArray,
the ``t_ns=`` layout stamp of multiarray_stamp.stamped_layout_dims), so publishing late moves
no data in time: the perception node sees exactly the plan's timeline.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import Int16MultiArray, MultiArrayDimension, String

from taaf_ros.audio.multiarray_stamp import stamped_layout_dims
from taaf_ros.data.readers import EadDataset, EadSample
from taaf_ros.events import encode_evt3, events_to_pointcloud2
from taaf_ros.inference.scoring import GroundTruth
from taaf_ros.nodes.msg_imports import MissingMessagePackageError, import_msg
from taaf_ros.nodes.perception_node import StartupError
from taaf_ros.nodes.signals import SPIN_TIMEOUT_S, ignore_signals, init_rclpy
from taaf_ros.params import REPLAY_NODE, REPLAY_PARAMS, declare_all
from taaf_ros.stream.replay_plan import ReplayPlan, replay_order

# Ground truth must not be lost to discovery races: reliable, and kept for late joiners.
GT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _stamp(msg_header: Any, t_us: int) -> None:
    msg_header.stamp.sec, ns = divmod(int(t_us) * 1000, 1_000_000_000)
    msg_header.stamp.nanosec = ns


class ReplayNode(Node):
    """Publishes samples in slots on the hop grid; ``finished`` once the last one has played."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(REPLAY_NODE, **kwargs)
        try:
            self.p = declare_all(self, REPLAY_PARAMS)
            if not self.p["data_root"]:
                raise ValueError("data_root is required (a dataset in the EAD layout)")
            self.dataset = EadDataset(self.p["data_root"], self.p["split"])
        except (ValueError, FileNotFoundError) as exc:
            raise StartupError(str(exc)) from exc
        order = replay_order([lab for _, _, lab, _ in self.dataset.samples],
                             self.p["order"])
        first = self.p["start_index"]
        n = len(order) - first
        if self.p["samples"]:
            n = min(n, self.p["samples"])
        if n <= 0:
            raise StartupError(f"no samples to replay in {self.p['data_root']}/"
                               f"{self.p['split']} from index {self.p['start_index']}")
        self.indices = order[first:first + n]
        self.classes = self.dataset.classes
        self.sensor = self.dataset.sensor_size
        try:
            self._make_publishers()
        except MissingMessagePackageError as exc:
            raise StartupError(str(exc)) from exc
        self.plan = self._plan()
        self.audio_rate = int(self.dataset.meta.get("audio_rate", 0)) or self[0].sample_rate
        self.finished = False
        # Bounded whatever loop:=true plays: a count and the latest sample only.
        self.played = 0
        self.last_truth: GroundTruth | None = None
        self._packet = 0
        self._loaded: tuple[int, EadSample, np.ndarray] | None = None
        self._seq = 0
        self._evt3_clock_us = 0  # sensor time of the last event sent (evt3 continues it)
        self.create_timer(self.p["packet_s"], self._on_tick)
        self.get_logger().info(
            f"replaying {n} samples ({self.p['order']}) of {self.p['data_root']}/"
            f"{self.p['split']}; events {self.p['events_type']} on {self.p['events_topic']}, "
            f"audio {self.p['audio_type']} at {self.audio_rate} Hz on {self.p['audio_topic']}"
            + ("" if self.plan else "; waiting for /clock (use_sim_time)"))

    def _plan(self) -> ReplayPlan | None:
        """The slots, from now plus the start delay; None while a simulated clock has not
        started (no /clock yet: planning from t = 0 would send every early packet at once)."""
        now = self.get_clock().now().nanoseconds // 1000
        if now == 0 and self.get_clock().ros_time_is_active:
            return None
        return ReplayPlan(round(self.p["window_s"] * 1e6), round(self.p["hop_s"] * 1e6),
                          round(self.p["gap_s"] * 1e6), round(self.p["packet_s"] * 1e6),
                          now + round(self.p["start_delay_s"] * 1e6))

    def __getitem__(self, i: int) -> EadSample:
        return self.dataset[self.indices[i % len(self.indices)]]

    def _make_publishers(self) -> None:
        qos = qos_profile_sensor_data
        if self.p["events_type"] == "event_packet":
            self._event_type = import_msg("event_camera_msgs", "EventPacket", "events_type")
        else:
            self._event_type = None
        self.pub_events = self.create_publisher(
            self._event_type or import_msg("sensor_msgs", "PointCloud2"),
            self.p["events_topic"], qos)
        if self.p["audio_type"] == "audio_data_stamped":
            self._audio_type = import_msg("audio_common_msgs", "AudioDataStamped", "audio_type")
            info_type = import_msg("audio_common_msgs", "AudioInfo", "audio_type")
            # Latched like audio_capture's: a late subscriber still learns the format.
            self.pub_info = self.create_publisher(info_type, self.p["audio_info_topic"],
                                                  GT_QOS)
        else:
            self._audio_type = None
        self.pub_audio = self.create_publisher(self._audio_type or Int16MultiArray,
                                               self.p["audio_topic"], qos)
        self.pub_gt = self.create_publisher(String, self.p["ground_truth_topic"], GT_QOS)

    # ---------------------------------------------------------------------------- timing
    def _on_tick(self) -> None:
        if self.finished:
            return
        if self.plan is None:
            self.plan = self._plan()
            if self.plan is None:
                return
            self.get_logger().info(f"slots of {self.plan.slot_us / 1e6:.3f} s from "
                                   f"t={self.plan.origin_us / 1e6:.3f} s")
        now = self.get_clock().now().nanoseconds // 1000
        while True:
            slot, a, b = self.plan.packet(self._packet)
            if b > now:
                return
            if slot >= len(self.indices) and not self.p["loop"]:
                self.finished = True
                self.get_logger().info(f"replay finished: {self.played} samples")
                return
            self._publish_packet(slot, a, b)
            self._packet += 1

    def _sample(self, slot: int) -> tuple[EadSample, np.ndarray]:
        """The slot's sample (loaded once) and its audio as int16, cut to the window."""
        if self._loaded is None or self._loaded[0] != slot:
            s = self[slot]
            n = round(self.p["window_s"] * s.sample_rate)
            # float [-1, 1) -> int16 by x * 32768, the inverse of the decoder's scaling.
            pcm = np.clip(np.round(s.pcm[:n] * 32768.0), -32768, 32767).astype(np.int16)
            self._loaded = (slot, s, pcm)
            start = self.plan.slot_start(slot)
            g = GroundTruth(s.id, self.classes[s.label], int(s.label), start * 1000,
                            (start + self.plan.window_us) * 1000)
            self.played += 1
            self.last_truth = g
            self.pub_gt.publish(String(data=g.to_json()))
            if self._audio_type is not None and slot == 0:
                self._publish_info(s.sample_rate)
        return self._loaded[1], self._loaded[2]

    def _publish_packet(self, slot: int, a: int, b: int) -> None:
        s, pcm = self._sample(slot)
        start = self.plan.slot_start(slot)
        # Events of [a, b) that lie in the sample's window; relative times -> ROS time.
        t = s.events["t"]
        lo, hi = np.searchsorted(t, [a - start, min(b - start, self.plan.window_us)])
        ev = s.events[lo:hi].copy() if hi > lo else s.events[:0].copy()
        ev["t"] += start
        self._publish_events(ev, b)
        i0, i1 = self.plan.sample_range(a, b, s.sample_rate)
        k0 = i0 - self.plan.sample_range(start, start, s.sample_rate)[0]
        chunk = np.zeros(i1 - i0, np.int16)  # silence after the sample and in the gap
        part = pcm[max(k0, 0): max(k0 + i1 - i0, 0)]
        chunk[: len(part)] = part
        self._publish_audio(chunk, a, s.sample_rate)

    def _publish_events(self, ev: np.ndarray, end_us: int) -> None:
        # Header stamp = the first event's time; an empty packet says "nothing until end_us",
        # which keeps the event stream alive and moving while the scene is still.
        stamp_us = int(ev["t"][0]) if len(ev) else end_us
        if self._event_type is None:
            msg = events_to_pointcloud2(ev)
        else:
            msg = self._event_type()
            msg.encoding = "evt3"
            msg.width, msg.height = self.sensor
            msg.seq = self._seq
            rel = ev.copy()
            rel["t"] -= self.plan.origin_us  # evt3 counts sensor time from 0
            msg.time_base = int(rel["t"][0]) * 1000 if len(rel) else 0
            # The stream goes on from the last packet's clock, as a camera's does: a packet
            # that restarted at TIME_HIGH 0 would read as a 24-bit wrap after 16.8 s.
            msg.events = encode_evt3(rel, self._evt3_clock_us) if len(rel) else b""
            if len(rel):
                self._evt3_clock_us = int(rel["t"][-1])
        self._seq += 1
        _stamp(msg.header, stamp_us)
        self.pub_events.publish(msg)

    def _publish_audio(self, chunk: np.ndarray, start_us: int, rate: int) -> None:
        if self._audio_type is None:
            msg = Int16MultiArray()
            # No header: the capture time of the first sample goes into the layout (taaf_ros
            # convention, docs/ros.md), so the perception node need not stamp at receipt.
            msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=stride)
                              for label, size, stride in
                              stamped_layout_dims(len(chunk), start_us * 1000)]
            msg.data = chunk.tolist()  # std_msgs int16[] takes a sequence; chunks are small
        else:
            msg = self._audio_type()
            _stamp(msg.header, start_us)
            msg.audio.data = chunk.tobytes()
        self.pub_audio.publish(msg)

    def _publish_info(self, rate: int) -> None:
        info = import_msg("audio_common_msgs", "AudioInfo")()
        info.channels, info.sample_rate = 1, int(rate)
        info.sample_format, info.coding_format = "S16LE", "wave"
        self.pub_info.publish(info)


def main(args: list[str] | None = None) -> int:
    """Console script ``replay_node``: plays the split once (or loops) and exits."""
    init_rclpy(args)
    try:
        node = ReplayNode()
    except StartupError as exc:
        print(f"[{REPLAY_NODE}] error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not node.finished:
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_signals()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
