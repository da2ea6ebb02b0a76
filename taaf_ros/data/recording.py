"""A user's recording as the perception node would receive it: decoded pieces on the ROS clock.

A bag is read message by message (streamed, never loaded whole) and every message goes through
the objects the node's callbacks use (:class:`~taaf_ros.stream.inputs.EventInput`,
:class:`~taaf_ros.stream.inputs.AudioInput`): the same decoders, the same sensor-to-ROS clock,
the same stamp checks, with the recorder's receipt time (log time) where the node uses its
receipt time. What comes out is therefore what the node's front ends are fed when the bag is
played into it with its clock (``taaf_bag_play --clock``).

Files (no ROS at all): an event file the project reads (``.raw`` EVT 3.0 as Prophesee cameras
write it, ``.aedat4``, ``.h5``, ``.npy``, N-MNIST ``.bin``) and a WAV. The recording's time 0
is the first event's time and the WAV's first sample (``audio_offset_s`` moves the audio);
events are read in chunks where the format allows (``.raw``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from taaf_ros.audio.wav import read_wav
from taaf_ros.data.bags import (
    DVS_TYPE,
    EVENT_PACKET_TYPES,
    POINTCLOUD2_TYPE,
    BagError,
    bag_time_range,
    bag_topics,
    read_bag,
    where,
)
from taaf_ros.data.readers import EventFileError, read_aedat4, read_events, read_raw_evt3_chunks
from taaf_ros.defaults import STREAM_AUDIO_RATE_HZ
from taaf_ros.stream.inputs import AudioInput, AudioPiece, EventInput, EventPiece

EVENT_KINDS = {**dict.fromkeys(EVENT_PACKET_TYPES, "event_packet"),
               DVS_TYPE: "dvs_event_array", POINTCLOUD2_TYPE: "pointcloud2"}
AUDIO_KINDS = {"audio_common_msgs/msg/AudioDataStamped": "audio_data_stamped",
               "audio_common_msgs/msg/AudioStamped": "audio_stamped",
               "std_msgs/msg/Int16MultiArray": "int16_multiarray",
               "std_msgs/msg/Float32MultiArray": "float32_multiarray"}
AUDIO_INFO_TYPE = "audio_common_msgs/msg/AudioInfo"
MAX_STAMP_OFFSET_US = 5_000_000  # the node's max_stamp_offset_s default


class Piece(NamedTuple):
    """One decoded message: events or audio (the other None), and its receipt time (µs)."""

    events: EventPiece | None
    audio: AudioPiece | None
    received_us: int


@dataclass
class RecordingSource:
    """What one recording holds and how its pieces were decoded (for the report)."""

    path: Path
    start_us: int = 0  # the recording's time 0 on the ROS clock (relative label times)
    end_us: int | None = None  # its last message's time (None: known once read through)
    events_topic: str = ""
    audio_topic: str = ""
    events_kind: str = ""
    audio_kind: str = ""
    sensor_size: tuple[int, int] = (0, 0)
    stamp_offsets_us: dict[str, list[int]] = field(
        default_factory=lambda: {"events": [], "audio": []})
    decode_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    jumps: list[str] = field(default_factory=list)  # where the stamps jumped (topic and time)


def _pick(topics: dict[str, str], wanted: str, kinds: dict[str, str], what: str, path: Path
          ) -> str:
    if wanted:
        if wanted not in topics:
            raise BagError(f"{path}: no topic {wanted} (topics: {sorted(topics)})")
        if topics[wanted] not in kinds:
            raise BagError(f"{path}: topic {wanted} is {topics[wanted]}, not an {what} type "
                           f"the node reads ({', '.join(sorted(kinds))})")
        return wanted
    found = sorted(t for t, ty in topics.items() if ty in kinds)
    if len(found) > 1:
        raise BagError(f"{path}: {len(found)} {what} topics ({', '.join(found)}); name one")
    return found[0] if found else ""


def open_bag(path: str | Path, events_topic: str = "", audio_topic: str = "",
             audio_info_topic: str = "", sensor_size: tuple[int, int] = (0, 0),
             audio_rate: int = STREAM_AUDIO_RATE_HZ, audio_format: str = ""
             ) -> tuple[RecordingSource, Iterator[Piece]]:
    """The bag's source description and its decoded pieces, in log-time order.

    Topics left empty are found by type (the only one of its kind; none is a recording
    without that modality). ``sensor_size``: for PointCloud2, which does not carry it.
    ``audio_rate``: for MultiArray audio, which does not carry it, and for AudioDataStamped
    recorded without its AudioInfo, with ``audio_format`` (``wave``: S16LE mono; ``mp3``).
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}")
    topics = bag_topics(path)
    src = RecordingSource(path)
    src.events_topic = _pick(topics, events_topic, EVENT_KINDS, "event", path)
    src.audio_topic = _pick(topics, audio_topic, AUDIO_KINDS, "audio", path)
    if not src.events_topic and not src.audio_topic:
        raise BagError(f"{path}: neither an event nor an audio topic the node reads "
                       f"(topics: {topics})")
    src.events_kind = EVENT_KINDS.get(topics.get(src.events_topic, ""), "")
    src.audio_kind = AUDIO_KINDS.get(topics.get(src.audio_topic, ""), "")
    info_topic = audio_info_topic
    if src.audio_kind == "audio_data_stamped" and not info_topic and not audio_format:
        infos = sorted(t for t, ty in topics.items() if ty == AUDIO_INFO_TYPE)
        if len(infos) > 1:
            raise BagError(f"{path}: AudioDataStamped needs its AudioInfo topic; found "
                           f"{infos}: name one (--audio-info-topic)")
        if not infos:
            raise BagError(f"{path}: AudioDataStamped without an AudioInfo topic in the bag: "
                           "say what the microphone sent (--audio-format wave or mp3, and "
                           "--audio-rate, its sample rate)")
        info_topic = infos[0]
    first, last = bag_time_range(path)
    src.start_us, src.end_us = first // 1000, last // 1000
    info = None
    if audio_format and not info_topic:
        from taaf_ros.audio import PcmInfo

        info = PcmInfo(channels=1, sample_rate=int(audio_rate), coding_format=audio_format)
    return src, _bag_pieces(src, info_topic, sensor_size, audio_rate, info)


def _bag_pieces(src: RecordingSource, info_topic: str, sensor_size: tuple[int, int],
                audio_rate: int, info: Any = None) -> Iterator[Piece]:
    ev_in = EventInput(src.events_kind or "event_packet", sensor_size, MAX_STAMP_OFFSET_US)
    au_in = AudioInput(src.audio_kind or "int16_multiarray", audio_rate, 1, MAX_STAMP_OFFSET_US)
    if info is not None:  # stated by the user: the bag has no AudioInfo
        au_in.set_info(info, src.start_us)
    wanted = [t for t in (src.events_topic, src.audio_topic, info_topic) if t]
    for item in read_bag(src.path, wanted):
        now = item.log_time_ns // 1000
        try:
            if item.topic == info_topic:
                au_in.set_info(item.msg, now)
            elif item.topic == src.events_topic:
                before = (ev_in.clock.resyncs, ev_in.timeline.jumps, ev_in.timeline.implausible)
                piece = ev_in.decode(item.msg, now, now)
                if (ev_in.clock.resyncs, ev_in.timeline.jumps,
                        ev_in.timeline.implausible) != before:
                    src.jumps.append(where(item.topic, item.log_time_ns))
                src.sensor_size = piece.sensor_size
                _note_offset(src, "events", item.msg, now)
                yield Piece(piece, None, now)
            else:
                before = (au_in.clock.resyncs, au_in.timeline.jumps, au_in.implausible)
                piece = au_in.decode(item.msg, now, now)
                if (au_in.clock.resyncs, au_in.timeline.jumps, au_in.implausible) != before:
                    src.jumps.append(where(item.topic, item.log_time_ns))
                _note_offset(src, "audio", item.msg, now)
                yield Piece(None, piece, now)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise BagError(f"{src.path}: {where(item.topic, item.log_time_ns)}: "
                           f"{type(exc).__name__}: {exc}") from exc
    src.decode_stats = {"events": ev_in.stats(), "audio": au_in.stats()}


def _note_offset(src: RecordingSource, kind: str, msg: Any, now_us: int) -> None:
    """Header stamp minus receipt (µs): how the driver's clock sat against the recorder's."""
    header = getattr(msg, "header", None)
    if header is None:
        return
    stamp = int(header.stamp.sec) * 1_000_000 + int(header.stamp.nanosec) // 1000
    offsets = src.stamp_offsets_us[kind]
    if stamp > 0 and len(offsets) < 10_000:
        offsets.append(stamp - now_us)


# ---------------------------------------------------------------------------------- files
EVENT_FILE_SUFFIXES = (".raw", ".aedat4", ".h5", ".hdf5", ".npy", ".bin")


def open_files(events_path: str | Path | None, wav_path: str | Path | None,
               sensor_size: tuple[int, int] = (0, 0), audio_offset_s: float = 0.0,
               chunk_s: float = 0.05) -> tuple[RecordingSource, Iterator[Piece]]:
    """An event file and a WAV as pieces of ``chunk_s`` on the recording's own clock
    (time 0: the first event; the WAV starts at ``audio_offset_s``). Either may be None
    (a one-modality recording). ``sensor_size``: where the file does not say it."""
    if events_path is None and wav_path is None:
        raise EventFileError("a recording needs an event file, a WAV or both")
    path = Path(events_path or wav_path)
    src = RecordingSource(path)
    src.events_kind = "file" if events_path else ""
    src.audio_kind = "wav" if wav_path else ""
    return src, _file_pieces(src, events_path, wav_path, sensor_size, audio_offset_s, chunk_s)


def _event_chunks(path: Path, sensor_size: tuple[int, int]
                  ) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    suffix = path.suffix.lower()
    if suffix not in EVENT_FILE_SUFFIXES:
        raise EventFileError(f"{path}: unknown event file type {suffix!r} (known: "
                             f"{', '.join(EVENT_FILE_SUFFIXES)})")
    if suffix == ".raw":
        return read_raw_evt3_chunks(path)
    if suffix == ".aedat4":
        ev, size = read_aedat4(path)
    else:
        ev = read_events(path)
        size = sensor_size
        if size == (0, 0) and len(ev):
            size = (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1)
    return size, iter([ev])


def _file_pieces(src: RecordingSource, events_path: str | Path | None,
                 wav_path: str | Path | None, sensor_size: tuple[int, int],
                 audio_offset_s: float, chunk_s: float) -> Iterator[Piece]:
    step_us = round(chunk_s * 1e6)
    events: Iterator[np.ndarray] = iter(())
    t0: int | None = None
    if events_path is not None:
        src.sensor_size, events = _event_chunks(Path(events_path), sensor_size)
    audio = read_wav(wav_path) if wav_path is not None else None
    audio_at = round(audio_offset_s * 1e6)
    k = 0  # next audio chunk
    for ev in events:
        if not len(ev):
            continue
        if np.any(np.diff(ev["t"]) < 0):
            raise EventFileError(f"{events_path}: event times go backwards; sort the file")
        if t0 is None:
            t0 = int(ev["t"][0])
        ev = ev.copy()
        ev["t"] -= t0
        # Packets of chunk_s, as a camera driver sends them, each after the audio chunks that
        # ended before it: the order a bag of the same recording has.
        t = ev["t"]
        edges = np.arange(int(t[0]) // step_us * step_us + step_us, int(t[-1]) + step_us,
                          step_us)
        cuts = np.searchsorted(t, edges)
        for lo, hi, end in zip(np.r_[0, cuts[:-1]], cuts, edges, strict=True):
            while audio is not None and audio_at + (k + 1) * step_us <= end:
                yield _wav_piece(k, step_us, audio, audio_at)
                k += 1
                if k * step_us * audio.sample_rate // 1_000_000 >= len(audio.samples):
                    audio = None
            # Empty packets too: "nothing until end" keeps the stream's reach moving.
            yield Piece(EventPiece(ev[lo:hi], int(end), src.sensor_size), None, int(end))
    while audio is not None and k * step_us * audio.sample_rate // 1_000_000 < len(
            audio.samples):
        yield _wav_piece(k, step_us, audio, audio_at)
        k += 1


def _wav_piece(k: int, step_us: int, audio: Any, at_us: int) -> Piece:
    rate = audio.sample_rate
    i0 = k * step_us * rate // 1_000_000
    i1 = (k + 1) * step_us * rate // 1_000_000
    start = at_us + i0 * 1_000_000 // rate
    return Piece(None, AudioPiece(audio.samples[i0:i1], start, rate), at_us + (k + 1) * step_us)
