"""Compressed microphone streams (audio_capture's default MP3), decoded chunk by chunk with PyAV.

audio_capture (ros-drivers/audio_common) encodes with GStreamer's lamemp3enc and publishes each
encoder buffer as one ``AudioData`` message, stamped with that buffer's capture time. Nothing
guarantees that a message holds whole MP3 frames, so the bytes go through FFmpeg's frame
parser first (a frame split across messages is joined, at most one frame is held back), then
through one long-lived decoder (MP3's bit reservoir reaches into earlier frames).

Timing: the first decoded sample is placed at the first message's stamp, and every later
sample follows by sample count, so message jitter moves nothing. A message whose stamp is more
than ``resync_ns`` away from where the running count has got to (a dropped message, a pause,
a clock jump) restarts the count at its stamp, counted in ``resyncs``. The codec's own delay is
not removed: LAME's encoder delay plus FFmpeg's decoder delay is 1105 samples (69 ms at
16 kHz), measured in test/test_audio_compressed.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taaf_ros.audio.decode import (
    MAX_CHUNK_SECONDS,
    AudioChunk,
    AudioFormatError,
    _check_layout,
)

CODECS = {"mp3": "mp3"}
"""``AudioInfo.coding_format`` (lower case) -> FFmpeg decoder name."""

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""A compressed message larger than this is refused (MAX_CHUNK_SECONDS of 320 kbit/s MP3 is
2.4 MB)."""


class CompressedAudioStream:
    """One compressed audio stream, decoded incrementally into mono float32 chunks."""

    def __init__(self, coding_format: str = "mp3", resync_ns: int = 200_000_000) -> None:
        import av  # a runtime dependency, imported where it is needed

        name = CODECS.get(str(coding_format).strip().lower())
        if name is None:
            raise AudioFormatError(f"coding_format {coding_format!r} is not supported "
                                   f"(compressed: {', '.join(CODECS)}; uncompressed: wave)")
        self.coding_format = str(coding_format).strip().lower()
        self._av = av
        self._codec = av.CodecContext.create(name, "r")
        self.resync_ns = int(resync_ns)
        self.rate: int | None = None
        self._anchor_ns: int | None = None  # stamp of sample 0 of the running count
        self._count = 0  # samples placed since the anchor
        self._first_stamp_ns: int | None = None  # of the bytes that began the first frame
        self.resyncs = 0
        self.bad_packets = 0

    @property
    def next_ns(self) -> int | None:
        """Where the next decoded sample goes (ns), None before the first."""
        if self._anchor_ns is None or self.rate is None:
            return None
        return self._anchor_ns + self._count * 1_000_000_000 // self.rate

    def decode(self, data: Any, stamp_ns: int | None) -> AudioChunk:
        """The samples the bytes of one message complete (possibly none: a partial frame).

        stamp_ns: the message's capture stamp, or None (the caller places the chunk by receipt;
        ``stamp_ns`` of the result is then None too).
        """
        buf = bytes(data)
        if len(buf) > MAX_MESSAGE_BYTES:
            raise AudioFormatError(f"{len(buf)} bytes of {self.coding_format} in one message "
                                   f"exceeds {MAX_MESSAGE_BYTES}")
        frames = []
        try:
            for packet in self._codec.parse(buf):
                try:
                    frames.extend(self._codec.decode(packet))
                except self._av.error.InvalidDataError:
                    self.bad_packets += 1  # one corrupt frame; the stream goes on
        except self._av.error.FFmpegError as exc:
            raise AudioFormatError(f"{self.coding_format} stream: {exc}") from None
        samples, rate = self._to_mono(frames)
        if rate is not None and rate != self.rate:
            self.rate, self._anchor_ns, self._count = rate, None, 0
        start = self._place(stamp_ns, len(samples))
        return AudioChunk(samples, int(self.rate or 0), start)

    def _place(self, stamp_ns: int | None, n: int) -> int | None:
        if stamp_ns is not None and self._anchor_ns is None and self._first_stamp_ns is None:
            self._first_stamp_ns = int(stamp_ns)  # its frame may complete only in a later one
        if stamp_ns is None or self.rate is None or n == 0:
            return None if stamp_ns is None else self.next_ns
        if self._anchor_ns is None and self._first_stamp_ns is not None:
            stamp_ns, self._first_stamp_ns = self._first_stamp_ns, None
        expected = self.next_ns
        if expected is None or abs(int(stamp_ns) - expected) > self.resync_ns:
            self.resyncs += int(expected is not None)
            self._anchor_ns, self._count = int(stamp_ns), 0
        start = self.next_ns
        self._count += n
        return start

    def _to_mono(self, frames: list[Any]) -> tuple[np.ndarray, int | None]:
        if not frames:
            return np.zeros(0, np.float32), None
        rate = int(frames[-1].sample_rate)
        channels = len(frames[-1].layout.channels)
        _check_layout(channels, rate)
        parts = []
        for fr in frames:
            if int(fr.sample_rate) != rate:
                continue  # a rate change inside one message: keep the newest rate's frames
            x = fr.to_ndarray()
            if fr.format.is_planar:
                x = x.astype(np.float64).mean(axis=0)
            else:
                x = x.reshape(-1, channels).astype(np.float64).mean(axis=1)
            if fr.format.name.startswith("s16"):
                x = x / 32768.0
            elif fr.format.name.startswith("s32"):
                x = x / 2147483648.0
            parts.append(x)
        samples = np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32)
        if len(samples) > MAX_CHUNK_SECONDS * rate:
            raise AudioFormatError(f"{len(samples)} samples decoded from one message exceeds "
                                   f"{MAX_CHUNK_SECONDS} s")
        return samples, rate
