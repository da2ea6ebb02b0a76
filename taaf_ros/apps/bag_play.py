"""``taaf_bag_play``: play a ROS 2 bag (sqlite3 or mcap) without a ROS install, like
``ros2 bag play``.

Messages go out at their recorded spacing (``--pace log``: the recorder's receive times, as
``ros2 bag play``; ``--pace header``: the header stamps; ``--rate`` scales either). By default
every header stamp is moved by one constant, so the first one is *now* and the stream keeps
its own timing — what the perception node needs without sim time. With ``--clock`` stamps stay as
recorded and ``/clock`` carries the bag's time instead (then run the node with
``use_sim_time:=true``).

Message types: a type whose Python package is installed (``sensor_msgs``, and
``event_camera_msgs`` or ``audio_common_msgs`` where built) is published as recorded. Event
packets whose package is absent (event_camera_msgs, event_array_msgs, dvs_msgs: not on PyPI)
are decoded here and published as ``sensor_msgs/PointCloud2`` on the same topic, with the
sensor's own time continued through one offset (run the node with
``events_type:=pointcloud2 sensor_width:=W sensor_height:=H``; the sizes are printed);
``audio_common_msgs/AudioDataStamped`` becomes ``std_msgs/Int16MultiArray`` chunks with the
taaf_ros ``t_ns`` layout stamp. Memory stays bounded: the bag is read as it plays.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taaf_ros.apps.options import parser
from taaf_ros.data.bags import (
    EVENT_TYPES,
    BagError,
    BagEventDecoder,
    BagMessage,
    bag_topics,
    where,
)
from taaf_ros.data.bags import read_bag as read_bag_messages


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = parser("taaf_bag_play", " ".join(__doc__.split("\n\n")[0].replace("``", "").split()))
    ap.add_argument("bag", help="bag folder (with metadata.yaml) or a .db3 / .mcap file")
    ap.add_argument("--topics", nargs="+", default=None, help="topics to play (default: all)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    ap.add_argument("--clock", action="store_true",
                    help="keep recorded stamps and publish /clock (use_sim_time:=true)")
    ap.add_argument("--loop", action="store_true", help="start over at the end")
    ap.add_argument("--pace", choices=("log", "header"), default="log",
                    help="space messages by the recorder's receive times (log, as ros2 bag "
                    "play does) or by their header stamps (header: the sensor's own timing, "
                    "for bags whose receive times are bunched)")
    ap.add_argument("--start-delay", type=float, default=1.0,
                    help="wait before the first message (s), for discovery")
    ap.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                    help="before the start delay, wait up to this long until every topic has "
                    "a subscriber (best effort drops what is sent before discovery completes)")
    ap.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO",
                    help="publish topic FROM under the name TO")
    ap.add_argument("--pointcloud2", action="store_true",
                    help="publish events as PointCloud2 even where their package is installed")
    args = ap.parse_args(argv)
    if args.rate <= 0:
        ap.error("--rate must be > 0")
    if args.wait_for_subscribers < 0:
        ap.error("--wait-for-subscribers must be >= 0")
    try:
        args.remap = dict(r.split(":=", 1) for r in args.remap)
    except ValueError:
        ap.error("--remap takes FROM:=TO")
    return args


def ros_type(msgtype: str) -> Any | None:
    """The rclpy class of 'pkg/msg/Name', or None when its package is not installed."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


def to_rclpy(src: Any, cls: Any) -> Any:
    """Copy a rosbags message object into the rclpy class of the same definition."""
    msg = cls()
    for name, typ in cls.get_fields_and_field_types().items():
        value = getattr(src, name)
        current = getattr(msg, name)
        if hasattr(current, "get_fields_and_field_types"):
            value = to_rclpy(value, type(current))
        elif typ.startswith("sequence<") and "/" in typ:
            elem = ros_type(typ[9:-1].split(",")[0].replace("/", "/msg/", 1))
            value = [to_rclpy(v, elem) for v in value]
        elif isinstance(value, np.ndarray):
            value = value.tobytes() if value.dtype == np.uint8 else value.tolist()
        setattr(msg, name, value)
    return msg


def output_type(msgtype: str, force_pointcloud2: bool) -> Any | None:
    """The rclpy class a bag type is published as (None: not published, e.g. AudioInfo)."""
    cls = None if (force_pointcloud2 and msgtype in EVENT_TYPES) else ros_type(msgtype)
    if cls is not None:
        return cls
    if msgtype in EVENT_TYPES:
        from sensor_msgs.msg import PointCloud2

        return PointCloud2
    if msgtype == "audio_common_msgs/msg/AudioDataStamped":
        from std_msgs.msg import Int16MultiArray

        return Int16MultiArray
    if msgtype == "audio_common_msgs/msg/AudioInfo":
        return None
    raise BagError(f"{msgtype} cannot be published here: install its message package")


class Converter:
    """Bag messages -> (rclpy message, topic) to publish, restamped by ``shift_ns``."""

    def __init__(self, force_pointcloud2: bool) -> None:
        self.force = force_pointcloud2
        self.decoders: dict[str, BagEventDecoder] = {}
        self.offsets: dict[str, int] = {}  # topic -> sensor-to-ROS offset (µs), fixed
        self.audio_info: Any = None

    def convert(self, item: BagMessage, shift_ns: int) -> Any | None:
        cls = None if (self.force and item.msgtype in EVENT_TYPES) else ros_type(item.msgtype)
        if cls is not None:
            msg = to_rclpy(item.msg, cls)
            if hasattr(msg, "header"):
                _shift(msg.header, shift_ns)
            return msg
        if item.msgtype in EVENT_TYPES:
            return self._events(item, shift_ns)
        if item.msgtype == "audio_common_msgs/msg/AudioInfo":
            self.audio_info = item.msg
            return None
        if item.msgtype == "audio_common_msgs/msg/AudioDataStamped":
            return self._audio(item, shift_ns)
        raise BagError(f"{item.topic}: {item.msgtype} cannot be published here: install its "
                       "message package")

    def _events(self, item: BagMessage, shift_ns: int) -> Any:
        from taaf_ros.events import events_to_pointcloud2

        chunk = self.decoders.setdefault(item.topic, BagEventDecoder()).decode(item)
        ev = chunk.events
        stamp_us = (chunk.stamp_ns + shift_ns) // 1000
        if len(ev) and item.topic not in self.offsets:
            self.offsets[item.topic] = stamp_us - int(ev["t"][0])
            print(f"taaf_bag_play: {item.topic}: event time = sensor time + "
                  f"{self.offsets[item.topic]} µs", flush=True)
        ev["t"] += self.offsets.get(item.topic, 0)
        msg = events_to_pointcloud2(ev)
        _set(msg.header, int(ev["t"][0]) * 1000 if len(ev) else stamp_us * 1000)
        return msg

    def _audio(self, item: BagMessage, shift_ns: int) -> Any:
        from std_msgs.msg import Int16MultiArray, MultiArrayDimension

        from taaf_ros.audio.multiarray_stamp import stamped_layout_dims

        fmt = getattr(self.audio_info, "sample_format", "S16LE") or "S16LE"
        if fmt != "S16LE":
            raise BagError(f"{item.topic}: {fmt} audio cannot be converted to Int16MultiArray")
        pcm = np.frombuffer(bytes(item.msg.audio.data), dtype="<i2")
        h = item.msg.header
        t_ns = int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec) + shift_ns
        msg = Int16MultiArray()
        msg.layout.dim = [MultiArrayDimension(label=lab, size=n, stride=st)
                          for lab, n, st in stamped_layout_dims(len(pcm), t_ns)]
        msg.data = pcm.tolist()
        return msg


def _header_ns(msg: Any) -> int | None:
    h = getattr(msg, "header", None)
    return None if h is None else int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec)


def _set(header: Any, t_ns: int) -> None:
    header.stamp.sec, header.stamp.nanosec = divmod(int(t_ns), 1_000_000_000)


def _shift(header: Any, shift_ns: int) -> None:
    _set(header, int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec) + shift_ns)


@dataclass
class Played:
    """How far playing got: messages published, topics announced on the console."""

    messages: int = 0
    announced: set[str] = field(default_factory=set)


def play_once(args: argparse.Namespace, topics: dict[str, str], pubs: dict[str, Any],
              clock_pub: Any, conv: Converter, played: Played) -> None:
    """Publish the bag once, paced as ``args`` say, counting on ``played``. Raises BagError
    naming the message that cannot be converted."""
    t_wall0, log0, stamp0 = time.time_ns(), None, None
    for item in read_bag_messages(args.bag, args.topics):
        stamp = _header_ns(item.msg)
        log0 = item.log_time_ns if log0 is None else log0
        stamp0 = stamp if stamp0 is None else stamp0
        paced_by_header = args.pace == "header" and stamp is not None
        bag_t = stamp if paced_by_header else item.log_time_ns
        due = t_wall0 + (bag_t - (stamp0 if paced_by_header else log0)) / args.rate
        while (wait := (due - time.time_ns()) / 1e9) > 0:
            time.sleep(min(wait, 0.025))
        if clock_pub is not None:
            c = clock_pub.msg_type()
            c.clock.sec, c.clock.nanosec = divmod(int(bag_t), 1_000_000_000)
            clock_pub.publish(c)
        # The first header stamp becomes now; every stamp keeps its distance to it.
        shift = 0 if args.clock else t_wall0 - (stamp0 if stamp0 is not None else log0)
        try:
            msg = conv.convert(item, shift)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise BagError(f"{where(item.topic, item.log_time_ns)}: "
                           f"{type(exc).__name__}: {exc}") from exc
        if msg is None:
            continue
        if item.topic not in played.announced:
            played.announced.add(item.topic)
            print(f"taaf_bag_play: {item.topic} ({topics[item.topic]}) as "
                  f"{type(msg).__module__.split('.')[0]}/{type(msg).__name__}"
                  + _size_hint(conv, item), flush=True)
        pubs[item.topic].publish(msg)
        played.messages += 1


def main(argv: list[str] | None = None) -> int:
    """Console script ``taaf_bag_play``; exit code 2 when the bag cannot be played."""
    args = parse_args(argv)
    try:
        topics = bag_topics(args.bag)
    except BagError as exc:
        print(f"taaf_bag_play: error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from taaf_ros.nodes.signals import ignore_signals, init_rclpy
    # Only the program name: this command's own flags (--remap) are not ROS arguments.
    init_rclpy(sys.argv[:1])
    node = rclpy.create_node("taaf_bag_play")
    clock_pub = None
    if args.clock:
        from rosgraph_msgs.msg import Clock

        clock_pub = node.create_publisher(Clock, "/clock", 10)
    conv = Converter(args.pointcloud2)
    played = Played()
    try:
        # Publishers first, then the delay: discovery must match them before the first message.
        pubs: dict[str, Any] = {}
        for name, msgtype in topics.items():
            cls = output_type(msgtype, args.pointcloud2)
            if cls is not None and (args.topics is None or name in args.topics):
                pubs[name] = node.create_publisher(cls, args.remap.get(name, name),
                                                   publisher_qos(msgtype))
        _wait_for_subscribers(node, pubs, args.wait_for_subscribers)
        time.sleep(args.start_delay)
        while True:
            play_once(args, topics, pubs, clock_pub, conv, played)
            if not args.loop:
                break
        # Publishing only queues a sample: a process that exits at once can take the last
        # ones with it (best effort resends nothing). Give them time to leave.
        time.sleep(0.5)
    except BagError as exc:
        print(f"taaf_bag_play: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: stop quietly, say how far it got
    finally:
        ignore_signals()
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"taaf_bag_play: {played.messages} messages played", flush=True)
    return 0


LATCHED_TYPES = ("audio_common_msgs/msg/AudioInfo",)
"""Published reliable and transient local, as their drivers publish them (audio_capture
latches its AudioInfo): a late subscriber still gets the last one, and the node's reliable
subscription matches (a best-effort publisher never would)."""


def publisher_qos(msgtype: str) -> Any:
    """The QoS a topic of ``msgtype`` is played with: sensor data, or latched."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if msgtype in LATCHED_TYPES:
        return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return qos_profile_sensor_data


def _wait_for_subscribers(node: Any, pubs: dict[str, Any], timeout_s: float) -> None:
    if timeout_s <= 0:
        return
    end = time.monotonic() + timeout_s
    while (waiting := [name for name, pub in pubs.items() if pub.get_subscription_count() == 0]):
        if time.monotonic() > end:
            print(f"taaf_bag_play: no subscriber after {timeout_s:g} s on {', '.join(waiting)}; "
                  "playing anyway", flush=True)
            return
        time.sleep(0.05)


def _size_hint(conv: Converter, item: BagMessage) -> str:
    dec = conv.decoders.get(item.topic)
    if dec is None or not dec.decoders:
        return ""
    d = next(iter(dec.decoders.values()))
    return (f"; perception node: events_type:=pointcloud2 sensor_width:={d.width} "
            f"sensor_height:={d.height}")


if __name__ == "__main__":
    sys.exit(main())
