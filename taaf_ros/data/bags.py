"""ROS 2 bags (sqlite3 and mcap) without a ROS install, through ``rosbags``.

``rosbags`` reads both storage formats and deserialises CDR from message definitions; the event
and audio driver types are not in its built-in type store, so their ``.msg`` definitions are
registered here (:data:`MSG_DEFINITIONS`: the drivers' published message files, kept in
:mod:`taaf_ros.interfaces`).
The bag's own embedded definitions are not used: mcap files written by rosbag2 embed them as
ROS IDL with ``@verbatim`` annotations, which rosbags does not parse.

Quirks handled: a ``metadata.yaml`` with an empty ``storage_identifier`` (some rosbag2 versions
write that for mcap) is read by opening its single storage file directly, chosen by suffix;
anything else that cannot be read raises :class:`BagError` naming the bag and the cause.

Times: ``log_time_ns`` is when the recorder received a message (the bag's timeline), the header
stamps are the drivers'; events are decoded by one :class:`~taaf_ros.events.EventDecoder` per
topic, in order, so evt3 state carries across packets as it does live.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taaf_ros.events import EventDecoder, events_from_dvs_event_array, events_from_pointcloud2
from taaf_ros.events.types import EVENT_DTYPE
from taaf_ros.interfaces import msg_definitions


def _msg_definitions() -> dict[str, str]:
    defs = msg_definitions()
    # event_array_msgs is event_camera_msgs' older name, with the same fields.
    defs["event_array_msgs/msg/EventArray"] = defs["event_camera_msgs/msg/EventPacket"]
    return defs


MSG_DEFINITIONS: dict[str, str] = _msg_definitions()

EVENT_PACKET_TYPES = ("event_camera_msgs/msg/EventPacket", "event_array_msgs/msg/EventArray")
DVS_TYPE = "dvs_msgs/msg/EventArray"
POINTCLOUD2_TYPE = "sensor_msgs/msg/PointCloud2"
EVENT_TYPES = (*EVENT_PACKET_TYPES, DVS_TYPE, POINTCLOUD2_TYPE)


class BagError(RuntimeError):
    """A bag that cannot be read: missing, unknown storage, unknown message type."""


def typestore() -> Any:
    """A rosbags type store (Kilted's standard types) with the driver types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name, text in MSG_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def _storage_path(path: Path) -> Path:
    """The path rosbags should open: the bag folder, or its only storage file where the
    folder's metadata names no storage plugin."""
    meta = path / "metadata.yaml"
    if not path.is_dir() or not meta.is_file():
        return path
    import yaml

    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"{meta}: not a rosbag2 metadata file ({exc})") from exc
    if info.get("storage_identifier"):
        return path
    files = [path / f for f in info.get("relative_file_paths") or []]
    if len(files) != 1 or files[0].suffix not in (".mcap", ".db3"):
        raise BagError(f"{meta}: empty storage_identifier and not exactly one .mcap/.db3 file "
                       f"({[f.name for f in files]}); fix the metadata or open the file itself")
    return files[0]


@dataclass(frozen=True)
class BagMessage:
    """One message: topic, type name, receive time (ns, bag timeline), deserialised object."""

    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Messages of a bag folder or storage file, in log-time order, deserialised.

    topics: only these (None: all). Raises BagError for unreadable bags or a message type
    that is neither in rosbags' store nor in :data:`MSG_DEFINITIONS`.
    """
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}")
    store = typestore()
    wanted = None if topics is None else set(topics)
    try:
        with Reader(_storage_path(path)) as reader:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            for c in conns:
                if c.msgtype not in store.fielddefs:
                    raise BagError(f"{path}: topic {c.topic} has type {c.msgtype}, which has no "
                                   "known message definition")
            _check_db_types(path, conns)
            for conn, log_ns, raw in reader.messages(connections=conns):
                try:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - any corrupt payload, named
                    raise BagError(f"{path}: {where(conn.topic, int(log_ns))}: the "
                                   f"{conn.msgtype} payload is corrupt "
                                   f"({type(exc).__name__}: {exc})") from exc
                yield BagMessage(conn.topic, conn.msgtype, int(log_ns), msg)
    except ReaderError as exc:
        raise BagError(f"{path}: {exc}") from exc


def where(topic: str, log_time_ns: int) -> str:
    """'topic at <log time>' for messages about one message of a bag."""
    return f"{topic} at log time {log_time_ns / 1e9:.6f} s"


def _check_db_types(path: Path, conns: list[Any]) -> None:
    """A sqlite3 bag whose topics table disagrees with metadata.yaml on a type: rosbags would
    read no message of that topic, silently."""
    import sqlite3

    for f in ([path] if path.suffix == ".db3" else sorted(path.glob("*.db3"))):
        try:
            with sqlite3.connect(f"file:{f}?mode=ro", uri=True) as db:
                in_db = dict(db.execute("SELECT name, type FROM topics").fetchall())
        except sqlite3.Error as exc:
            raise BagError(f"{f}: not a readable rosbag2 sqlite3 file ({exc})") from exc
        for c in conns:
            if c.topic in in_db and in_db[c.topic] != c.msgtype:
                raise BagError(f"{f}: topic {c.topic} is {in_db[c.topic]} in the db but "
                               f"{c.msgtype} in metadata.yaml; fix metadata.yaml")


def bag_topics(path: str | Path) -> dict[str, str]:
    """topic -> message type of a bag."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    try:
        with Reader(_storage_path(Path(path))) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except (ReaderError, FileNotFoundError) as exc:
        raise BagError(f"{path}: {exc}") from exc


def bag_time_range(path: str | Path) -> tuple[int, int]:
    """(first, last) log time (ns) of a bag: its timeline, from the metadata."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    try:
        with Reader(_storage_path(Path(path))) as reader:
            return int(reader.start_time), int(reader.end_time)
    except (ReaderError, FileNotFoundError) as exc:
        raise BagError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class EventChunk:
    """The decoded events of one message.

    events: EVENT_DTYPE, t in µs (evt3: sensor time; mono/libcaer: time_base + offset;
        dvs/PointCloud2: the message's own times). time_base_ns: EventPacket.time_base (0 for
        other types). stamp_ns: header stamp. sensor_size: (width, height), (0, 0) if unknown.
    """

    events: np.ndarray
    time_base_ns: int
    stamp_ns: int
    log_time_ns: int
    sensor_size: tuple[int, int]
    encoding: str
    seq: int


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class BagEventDecoder:
    """Decodes event messages (any of :data:`EVENT_TYPES`) of one topic, in order."""

    def __init__(self) -> None:
        self.decoders: dict[str, EventDecoder] = {}

    def decode(self, item: BagMessage) -> EventChunk:
        """The message's events; BagError naming the topic and log time for a bad one."""
        try:
            return self._decode(item)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise BagError(f"{where(item.topic, item.log_time_ns)}: {type(exc).__name__}: "
                           f"{exc}") from exc

    def _decode(self, item: BagMessage) -> EventChunk:
        m = item.msg
        stamp = _stamp_ns(m.header)
        if item.msgtype in EVENT_PACKET_TYPES:
            key = f"{m.encoding}/{m.width}x{m.height}"
            if key not in self.decoders:
                self.decoders[key] = EventDecoder(str(m.encoding), int(m.width), int(m.height))
            ev = self.decoders[key].decode(m.events, int(m.time_base))
            return EventChunk(ev, int(m.time_base), stamp, item.log_time_ns,
                              (int(m.width), int(m.height)), str(m.encoding), int(m.seq))
        if item.msgtype == DVS_TYPE:
            return EventChunk(events_from_dvs_event_array(m), 0, stamp, item.log_time_ns,
                              (int(m.width), int(m.height)), "dvs", 0)
        if item.msgtype == POINTCLOUD2_TYPE:
            return EventChunk(events_from_pointcloud2(m), 0, stamp, item.log_time_ns,
                              (0, 0), "pointcloud2", 0)
        raise BagError(f"{item.topic}: {item.msgtype} is not an event message type")


def read_bag_events(path: str | Path, topic: str | None = None) -> Iterator[EventChunk]:
    """Decoded event messages of one topic (default: the only event topic of the bag)."""
    if topic is None:
        found = [t for t, ty in bag_topics(path).items() if ty in EVENT_TYPES]
        if len(found) != 1:
            raise BagError(f"{path}: {len(found)} event topics ({found}); name one")
        topic = found[0]
    decoder = BagEventDecoder()
    for item in read_bag(path, [topic]):
        yield decoder.decode(item)


def events_from_bag(path: str | Path, topic: str | None = None
                    ) -> tuple[np.ndarray, tuple[int, int]]:
    """All events of a bag's event topic, concatenated in message order, and the sensor size."""
    parts, size = [], (0, 0)
    for chunk in read_bag_events(path, topic):
        parts.append(chunk.events)
        size = chunk.sensor_size if chunk.sensor_size != (0, 0) else size
    return (np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)), size


def write_bag(path: str | Path, messages: Iterable[tuple[str, str, int, Any]],
              storage: str = "sqlite3") -> Path:
    """Write a ROS 2 bag (``sqlite3`` or ``mcap``) of ``(topic, type, log time ns, message)``
    in log-time order, messages built from :func:`typestore`'s classes (the driver types
    included) or already serialised (CDR ``bytes``, e.g. rclpy's ``serialize_message``); what
    tests, benchmarks and users converting their own recordings need. No QoS is recorded
    (taaf_bag_play plays each type with its driver's QoS)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    conns: dict[str, Any] = {}
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        for topic, msgtype, log_ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            data = msg if isinstance(msg, bytes) else store.serialize_cdr(msg, msgtype)
            writer.write(conns[topic], int(log_ns), data)
    return Path(path)
