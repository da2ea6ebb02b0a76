"""Input messages -> data on the ROS clock: one object per input stream of the perception node.

Duck-typed (no message package imported), so everything here is unit-tested without ROS. Each
object owns the per-stream state that decoding needs — the event decoders (evt3 carries state
across packets), the sensor-to-ROS clock, sequence tracking, the stamp-less audio clock — and
counts what it refuses; it raises the decoders' errors for a malformed message, which the node
counts and drops.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from taaf_ros.audio import PcmInfo
from taaf_ros.audio.compressed import CompressedAudioStream
from taaf_ros.audio.decode import (
    AudioChunk,
    decode_audio_data_stamped,
    decode_audio_stamped,
    decode_multiarray,
    is_compressed,
    stamp_to_ns,
)
from taaf_ros.events import EventDecoder, events_from_dvs_event_array, events_from_pointcloud2
from taaf_ros.nodes.multiarray_stamp import multiarray_stamp_ns
from taaf_ros.stream.clock import SensorClock, SeqTracker, StamplessClock, check_stamp, stamp_to_us


def sent_time_us(info: Any, now_us: int, sim_time: bool) -> int:
    """When a message was sent (µs, ROS clock): the DDS source timestamp of the message info,
    which no executor or GIL delay in the node inflates; ``now_us`` (the callback time) where
    there is none, where the ROS clock is simulated (source timestamps are system time) or
    where it is implausible (a publisher on a machine whose clock is far off)."""
    src = (info or {}).get("source_timestamp") or 0
    if src <= 0 or sim_time:
        return now_us
    src_us = int(src) // 1000
    return src_us if now_us - 5_000_000 <= src_us <= now_us + 100_000 else now_us


class EventInput:
    """Event messages of one topic -> events with ROS-clock times (µs).

    kind: the ``events_type`` parameter. fallback_size: (width, height) for messages that do
    not carry the sensor size (PointCloud2; zero fields of the others). max_offset_us: header
    stamps further than this from the ROS clock are implausible (see :class:`SensorClock`).
    """

    def __init__(self, kind: str, fallback_size: tuple[int, int], max_offset_us: int) -> None:
        self.kind = kind
        self.fallback_size = (int(fallback_size[0]), int(fallback_size[1]))
        self.sensor_size = self.fallback_size
        self.clock = SensorClock(max_offset_us=max_offset_us)
        self.seq = SeqTracker()
        self.decoders: dict[str, EventDecoder] = {}

    def decode(self, msg: Any, now_us: int, sent_us: int) -> tuple[np.ndarray, int]:
        """(events on the ROS clock, how far the stream now reaches in µs) for one message.

        now_us: ROS time of receipt; sent_us: best estimate of the send time (the DDS source
        timestamp), used where the header carries no stamp.
        """
        stamp = stamp_to_us(msg.header.stamp.sec, msg.header.stamp.nanosec)
        if stamp <= 0:
            stamp = sent_us  # an unstamped driver
        ev = self._events(msg)
        if len(ev):
            ev["t"] += self.clock.offset(int(ev["t"][0]), stamp, now_us)
            return ev, int(ev["t"][-1])
        # An empty packet says "nothing until its stamp": the stream is alive and moving.
        return ev, self.clock.checked_stamp(stamp, now_us)

    def _events(self, msg: Any) -> np.ndarray:
        if self.kind == "pointcloud2":
            return events_from_pointcloud2(msg)
        width, height = int(msg.width), int(msg.height)
        if self.kind == "dvs_event_array":
            self.sensor_size = (width or self.fallback_size[0], height or self.fallback_size[1])
            return events_from_dvs_event_array(msg)
        key = f"{msg.encoding}/{width}x{height}"
        if key not in self.decoders:
            # One decoder per stream format: evt3 keeps state from packet to packet.
            self.decoders[key] = EventDecoder(str(msg.encoding), width, height)
            self.sensor_size = (width, height)
        self.seq.update(int(msg.seq))
        return self.decoders[key].decode(msg.events, int(msg.time_base))

    def stats(self) -> dict[str, int]:
        out = {"lost_packets": self.seq.lost, "seq_resets": self.seq.resets,
               "clock_resyncs": self.clock.resyncs, "implausible_stamps": self.clock.implausible}
        for d in self.decoders.values():
            for k, v in d.stats.as_dict().items():
                out[f"decoder.{k}"] = out.get(f"decoder.{k}", 0) + v
        return out


class AudioPiece(NamedTuple):
    """Decoded mono samples, the ROS time of the first (µs) and the sample rate (Hz)."""

    samples: np.ndarray
    start_us: int
    sample_rate: int


class AudioInput:
    """Audio messages of one topic -> mono PCM placed on the ROS clock.

    kind: the ``audio_type`` parameter; rate/channels: fallbacks where the message (or its
    AudioInfo) does not say. Header and ``t_ns`` layout stamps are used when plausible; without
    one (or with an implausible one) chunks are placed by :class:`StamplessClock` from their
    receipt times, back to back by sample count.
    """

    def __init__(self, kind: str, sample_rate: int, channels: int, max_offset_us: int) -> None:
        self.kind = kind
        self.fallback = PcmInfo(channels=int(channels), sample_rate=int(sample_rate))
        self.info: Any = None  # the latest AudioInfo (audio_data_stamped)
        self.max_offset_us = int(max_offset_us)
        self.clock = StamplessClock()
        self.stamped_by = {"header": 0, "layout": 0, "receipt": 0}
        self.implausible = 0
        self.last_stamp_offset_us: int | None = None
        self.compressed: CompressedAudioStream | None = None  # MP3 (audio_capture's default)

    def decode(self, msg: Any, now_us: int, sent_us: int) -> AudioPiece:
        """The message's samples placed on the ROS clock; a compressed message may complete
        no frame yet (an empty piece)."""
        info = self.info or self.fallback
        if self.kind == "audio_data_stamped" and is_compressed(info):
            chunk = self._decode_compressed(msg, info)
            if not len(chunk.samples):
                return AudioPiece(chunk.samples, now_us, chunk.sample_rate or 1)
        elif self.kind == "audio_data_stamped":
            chunk = decode_audio_data_stamped(msg, info)
        elif self.kind == "audio_stamped":
            chunk = decode_audio_stamped(msg)
        else:
            chunk = decode_multiarray(msg, self.fallback.sample_rate, self.fallback.channels)
        samples, rate = chunk.samples, int(chunk.sample_rate)
        layout = getattr(msg, "layout", None)
        stamp_ns = chunk.stamp_ns or (multiarray_stamp_ns(layout.dim)
                                      if layout is not None else None)
        source = "header" if chunk.stamp_ns else "layout"
        if stamp_ns:
            off = check_stamp(stamp_ns // 1000, now_us, self.max_offset_us)
            if off is not None:
                self.implausible += 1
                self.last_stamp_offset_us = off
                stamp_ns = None
        if stamp_ns:
            self.stamped_by[source] += 1
            return AudioPiece(samples, stamp_ns // 1000, rate)
        # No usable time in the message: receipt time, continued by sample count, never moved
        # back over audio already placed (leading samples dropped instead, counted).
        start, skip = self.clock.place(sent_us, len(samples), rate)
        self.stamped_by["receipt"] += 1
        return AudioPiece(samples[skip:], start, rate)

    def _decode_compressed(self, msg: Any, info: Any) -> AudioChunk:
        coding = str(info.coding_format).strip().lower()
        if self.compressed is None or self.compressed.coding_format != coding:
            self.compressed = CompressedAudioStream(coding)
        header = getattr(msg, "header", None)
        stamp = stamp_to_ns(header) if header is not None else None
        return self.compressed.decode(getattr(msg, "audio", msg).data, stamp or None)

    def stats(self) -> dict[str, int]:
        c = self.clock
        extra = ({"compressed_resyncs": self.compressed.resyncs,
                  "compressed_bad_packets": self.compressed.bad_packets}
                 if self.compressed is not None else {})
        return {**extra,"stamp_resyncs": c.resyncs, "stamp_corrections": c.corrections,
                "stamp_dropped_samples": c.dropped_samples, "implausible_stamps": self.implausible,
                **{f"stamped_by_{k}": v for k, v in self.stamped_by.items()}}
