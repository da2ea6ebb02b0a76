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
from taaf_ros.audio.compressed import CODECS, CompressedAudioStream
from taaf_ros.audio.decode import (
    AudioChunk,
    AudioFormatError,
    check_audio_info,
    decode_audio_data_stamped,
    decode_audio_stamped,
    decode_multiarray,
    is_compressed,
    stamp_to_ns,
)
from taaf_ros.audio.multiarray_stamp import multiarray_stamp_ns
from taaf_ros.events import (
    EventDecoder,
    EventFormatError,
    events_from_dvs_event_array,
    events_from_pointcloud2,
)
from taaf_ros.stream.clock import (
    SensorClock,
    SeqTracker,
    StamplessClock,
    StampTimeline,
    stamp_to_us,
)


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


MAX_SENSOR_DIM = 65536
"""Largest sensor width or height a message may declare (event coordinates are 16-bit)."""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""An event message larger than this is refused: a camera's 10 ms packet is a few MB at the
highest rates (evt3 at 100 M events/s: about 2 MB), while a 200 MB one would take gigabytes to
decode (the audio's equivalent limit is a message's seconds)."""


class EventPiece(NamedTuple):
    """One message's events on the ROS clock, how far the stream now reaches (µs), and the
    sensor (width, height) of that message, which sizes nothing beyond it."""

    events: np.ndarray
    reach_us: int
    sensor_size: tuple[int, int]


class EventInput:
    """Event messages of one topic -> events with ROS-clock times (µs).

    kind: the ``events_type`` parameter. fallback_size: (width, height) for messages that do
    not carry the sensor size (PointCloud2; zero fields of the others). max_offset_us: header
    stamps further than this from their receipt are named (see :class:`StampTimeline`, which
    maps the header stamps onto the node's clock across jumps; :class:`SensorClock` then maps
    the sensor's event times through them).
    max_formats: decoders kept (one per encoding and sensor size; the least used is dropped).

    A message's declared size and encoding hold for that message only: a packet of another
    size is decoded and mapped with its own size and counted as a format change; it changes
    nothing for the packets after it (``sensor_size`` reports the latest message's).
    """

    def __init__(self, kind: str, fallback_size: tuple[int, int], max_offset_us: int,
                 max_formats: int = 4) -> None:
        self.kind = kind
        self.fallback_size = (int(fallback_size[0]), int(fallback_size[1]))
        self.sensor_size = self.fallback_size
        self.timeline = StampTimeline(max_offset_us=max_offset_us)
        self.clock = SensorClock(max_offset_us=max_offset_us)
        self.seq = SeqTracker()
        self.max_formats = max(1, int(max_formats))
        self.decoders: dict[str, EventDecoder] = {}
        self._retired: dict[str, int] = {}  # counters of dropped decoders
        self.format_changes = 0
        self._format: str | None = None

    def decode(self, msg: Any, now_us: int, sent_us: int) -> EventPiece:
        """One message's events on the ROS clock (outliers in time dropped, see
        :meth:`SensorClock.place`).

        now_us: ROS time of receipt; sent_us: best estimate of the send time (the DDS source
        timestamp), used where the header carries no stamp.
        """
        stamp = stamp_to_us(msg.header.stamp.sec, msg.header.stamp.nanosec)
        if stamp <= 0:
            stamp = sent_us  # an unstamped driver
        ev, size = self._events(msg)
        stamp = self.timeline.map(stamp, sent_us)
        self.sensor_size = size
        if len(ev):
            offset, keep = self.clock.place(ev["t"], stamp, now_us)
            if not keep.all():
                ev = ev.compress(keep)
            ev["t"] += offset
            return EventPiece(ev, int(ev["t"].max()), size)
        # An empty packet says "nothing until its stamp": the stream is alive and moving.
        return EventPiece(ev, stamp, size)

    def _declared_size(self, msg: Any) -> tuple[int, int]:
        width, height = int(msg.width), int(msg.height)
        if not (0 <= width <= MAX_SENSOR_DIM and 0 <= height <= MAX_SENSOR_DIM):
            raise EventFormatError(f"declared sensor {width} x {height}: width and height must "
                                   f"be in [0, {MAX_SENSOR_DIM}]")
        return width, height

    def _events(self, msg: Any) -> tuple[np.ndarray, tuple[int, int]]:
        payload = getattr(msg, "data" if self.kind == "pointcloud2" else "events", ())
        n = len(payload) * (1 if self.kind != "dvs_event_array" else 16)
        if n > MAX_MESSAGE_BYTES:
            raise EventFormatError(f"an event message of {n / 2**20:.0f} MiB: more than "
                                   f"{MAX_MESSAGE_BYTES // 2**20} MiB, far beyond a camera's "
                                   "packet; refused")
        if self.kind == "pointcloud2":
            return events_from_pointcloud2(msg), self.fallback_size
        width, height = self._declared_size(msg)
        if self.kind == "dvs_event_array":
            size = (width or self.fallback_size[0], height or self.fallback_size[1])
            self._note_format(f"dvs/{size[0]}x{size[1]}")
            return events_from_dvs_event_array(msg), size  # outside it: counted in binning
        key = f"{msg.encoding}/{width}x{height}"
        decoder = self.decoders.get(key)
        if decoder is None:
            # One decoder per stream format: evt3 keeps state from packet to packet.
            if len(self.decoders) >= self.max_formats:
                self._retire_least_used()
            decoder = self.decoders[key] = EventDecoder(str(msg.encoding), width, height)
        self._note_format(key)
        self.seq.update(int(msg.seq))
        return decoder.decode(msg.events, int(msg.time_base)), (width, height)

    def _retire_least_used(self) -> None:
        """Drop the decoder with the fewest packets (a stream's own keeps its state however
        many one-off formats a hostile publisher sends); its counters are kept."""
        key = min(self.decoders, key=lambda k: self.decoders[k].stats.packets)
        for k, v in self.decoders.pop(key).stats.as_dict().items():
            self._retired[k] = self._retired.get(k, 0) + v

    def _note_format(self, key: str) -> None:
        self.format_changes += int(self._format is not None and key != self._format)
        self._format = key

    def stats(self) -> dict[str, int]:
        out = {"lost_packets": self.seq.lost, "seq_resets": self.seq.resets,
               "seq_outliers": self.seq.outliers,
               "clock_resyncs": self.clock.resyncs,
               "implausible_stamps": self.timeline.implausible + self.clock.implausible,
               "stamp_jumps": self.timeline.jumps,
               "time_outliers": self.clock.outliers, "format_changes": self.format_changes}
        totals = dict(self._retired)
        for d in self.decoders.values():
            for k, v in d.stats.as_dict().items():
                totals[k] = totals.get(k, 0) + v
        return out | {f"decoder.{k}": v for k, v in totals.items()}


class AudioPiece(NamedTuple):
    """Decoded mono samples, the ROS time of the first (µs) and the sample rate (Hz)."""

    samples: np.ndarray
    start_us: int
    sample_rate: int


class AudioInput:
    """Audio messages of one topic -> mono PCM placed on the ROS clock.

    kind: the ``audio_type`` parameter; rate/channels: fallbacks where the message (or its
    AudioInfo) does not say. Header and ``t_ns`` layout stamps are mapped onto the node's clock
    by :class:`StampTimeline` (across jumps of the driver's time base); chunks without one are
    placed by :class:`StamplessClock` from their receipt times, back to back by sample count.
    """

    def __init__(self, kind: str, sample_rate: int, channels: int, max_offset_us: int,
                 max_ahead_us: int = 500_000, info_hold_us: int = 1_000_000) -> None:
        self.kind = kind
        self.fallback = PcmInfo(channels=int(channels), sample_rate=int(sample_rate))
        self.info: Any = None  # the AudioInfo in force (audio_data_stamped)
        self.max_ahead_us, self.info_hold_us = int(max_ahead_us), int(info_hold_us)
        self.ahead_trimmed = 0  # samples past their send time, trimmed
        self.info_changes = 0
        self.info_changes_held = 0
        self.info_refused = 0
        self._pending_info: Any = None
        self._info_since_us: int | None = None
        self.max_offset_us = int(max_offset_us)
        self.clock = StamplessClock()
        self.stamped_by = {"header": 0, "layout": 0, "receipt": 0}
        self.timeline = StampTimeline(max_offset_us=max_offset_us)
        self.compressed: CompressedAudioStream | None = None  # MP3 (audio_capture's default)

    def set_info(self, info: Any, now_us: int) -> None:
        """A new AudioInfo. One that cannot be decoded (rate 0, no channels, an unknown format)
        is refused with AudioFormatError naming it, and the last good one stays in force: a
        driver that latches a bad AudioInfo once must not leave the node deaf. A change of
        format takes effect at most once per ``info_hold_us`` (a flapping publisher would
        restart decoding and resampling on every message); a change inside that time is held
        (counted) and applied when the time is up."""
        try:
            check_audio_info(info, tuple(CODECS))
        except AudioFormatError as exc:
            self.info_refused += 1
            current = self.info or self.fallback
            raise AudioFormatError(
                f"AudioInfo refused ({exc}); still decoding as {_describe_info(current)}"
            ) from None
        if self.info is not None and _info_key(info) == _info_key(self.info):
            self._pending_info = None
            return
        if self._info_since_us is not None and now_us - self._info_since_us < self.info_hold_us:
            self.info_changes_held += int(self._pending_info is None)
            self._pending_info = info
            return
        self.info_changes += int(self.info is not None)
        self.info, self._pending_info, self._info_since_us = info, None, int(now_us)

    def decode(self, msg: Any, now_us: int, sent_us: int) -> AudioPiece:
        """The message's samples placed on the ROS clock; a compressed message may complete
        no frame yet (an empty piece). Samples that would lie more than ``max_ahead_us``
        past the message's send time (or its own stamp, if later) cannot have been recorded
        yet: they are trimmed and counted, so that one long chunk cannot claim the time that
        the stream's later audio belongs to."""
        if self._pending_info is not None:
            self.set_info(self._pending_info, now_us)
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
            self.stamped_by[source] += 1
            start = self.timeline.map(stamp_ns // 1000, sent_us)
            limit = (max(sent_us, start) + self.max_ahead_us - start) * rate // 1_000_000
            if len(samples) > limit:
                self.ahead_trimmed += len(samples) - limit
                samples = samples[:limit]
            return AudioPiece(samples, start, rate)
        # No usable time in the message: receipt time, continued by sample count, never moved
        # back over audio already placed (leading samples dropped instead, counted).
        start, skip = self.clock.place(sent_us, len(samples), rate)
        self.stamped_by["receipt"] += 1
        return AudioPiece(samples[skip:], start, rate)

    @property
    def implausible(self) -> int:
        """Stamps further than max_offset_us from their receipt."""
        return self.timeline.implausible

    @property
    def last_stamp_offset_us(self) -> int | None:
        """The last stamp's offset from its receipt (µs) where it was implausible, else
        None: cleared as soon as the stamps are right again."""
        return self.timeline.last_stamp_offset_us

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
        return {**extra, "stamp_resyncs": c.resyncs, "stamp_corrections": c.corrections,
                "ahead_trimmed_samples": self.ahead_trimmed, "info_changes": self.info_changes,
                "info_changes_held": self.info_changes_held, "info_refused": self.info_refused,
                "stamp_dropped_samples": c.dropped_samples, "implausible_stamps": self.implausible,
                "stamp_jumps": self.timeline.jumps,
                **{f"stamped_by_{k}": v for k, v in self.stamped_by.items()}}


def _describe_info(info: Any) -> str:
    """'16000 Hz, 1 ch, S16LE wave' of an AudioInfo or the fallback."""
    return (f"{getattr(info, 'sample_rate', '?')} Hz, {getattr(info, 'channels', '?')} ch, "
            f"{getattr(info, 'sample_format', 'S16LE')} {getattr(info, 'coding_format', 'wave')}")


def _info_key(info: Any) -> tuple[Any, ...]:
    """What of an AudioInfo decoding depends on."""
    return tuple(getattr(info, k, None) for k in ("channels", "sample_rate", "sample_format",
                                                  "coding_format", "bitrate"))
