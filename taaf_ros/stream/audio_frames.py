"""The streaming audio front end: each sample is resampled once and each cochlea frame is
computed once, however many overlapping windows read it.

Audio arrives in chunks at the microphone's rate. :class:`StreamingCochlea` resamples the
stream to the model rate on arrival (:class:`~taaf_ros.audio.stream_resample.StreamResampler`,
equal to ``resample_poly`` of the whole stream, 1.25 ms of latency) into a model-rate
:class:`~taaf_ros.stream.buffers.AudioRingBuffer`. A window's tensor is then computed as the
offline :func:`taaf_ros.frontend.audio_tensor` computes it from that window's PCM, except that
the mel band power of an analysis frame that lies wholly inside the window and wholly in audio
that has already arrived is taken from a cache keyed by the frame's first sample. A 0.6 s
window cut every 50 ms shares 11/12 of its frames with the window before it.

What cannot be shared is recomputed for every window, because the network was trained on
windows that start in silence: the frames within half an analysis window of either edge (they
see the window's zero padding), and the envelope smoothing and level crossings, whose state
starts at the floor at each window's first sample (see :mod:`taaf_ros.audio.cochlea`).

Result: for audio at the model rate, the tensor is bit-for-bit ``audio_tensor`` of the window's
PCM (tests). For audio at another rate it is ``audio_tensor`` of the window cut from the stream
resampled as a whole, which differs from resampling each window on its own only within the
filter's half length (1.25 ms) of the window's edges.

Stamps: a chunk within ``max_jitter_us`` of where the stream should go on continues it; one
stamped earlier has its overlap trimmed (counted); one stamped later (a gap) or at a new rate
restarts the resampler (counted), and the buffer marks the gap as missing audio.

Threads: ``push`` runs on the decode thread and only touches the resampler and the buffer
(which has its own lock); ``window_tensor`` runs on the inference thread and owns the cache.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from taaf_ros.audio.cochlea import analysis_frames, frame_power
from taaf_ros.audio.stream_resample import StreamResampler
from taaf_ros.frontend import FrontEndConfig, audio_tensor_from_power
from taaf_ros.stream.buffers import AudioBufferStats, AudioRingBuffer

__all__ = ["AudioFrameStats", "StreamingCochlea"]


@dataclass
class AudioFrameStats:
    """Counters of the streaming audio front end."""

    frames_computed: int = 0
    """Cochlea analysis frames computed (an FFT and a filter bank each)."""
    frames_reused: int = 0
    """Frames taken from the cache instead."""
    resampler_restarts: int = 0
    """Times the input stream broke (a gap or a new rate) and resampling restarted."""
    overlap_dropped: int = 0
    """Input samples dropped because their time was already resampled (stamps going back)."""


class StreamingCochlea:
    """Audio chunks in (any rate), per-window ``(T, 2, C)`` spike tensors out.

    Args:
        frontend: the model's front end (window length, T, the cochlea).
        buffer_s: model-rate audio held (s).
        max_jitter_us: a chunk whose stamp is within this of where the stream should go on is
            taken as contiguous (as in :class:`AudioRingBuffer`). Default 1000.
    """

    def __init__(self, frontend: FrontEndConfig, buffer_s: float = 5.0,
                 max_jitter_us: int = 1000) -> None:
        self.frontend = frontend
        cfg = frontend.cochlea
        self.sample_rate = cfg.sample_rate
        self.max_jitter_us = int(max_jitter_us)
        self.buffer = AudioRingBuffer(max(1, round(buffer_s * self.sample_rate)),
                                      self.sample_rate, max_jitter_us)
        self._resampler: StreamResampler | None = None
        self._origin_us = 0  # time of the resampler's first input sample
        self._hop, self._win = cfg.hop_samples, cfg.window_samples
        window_samples = round(frontend.window_s * self.sample_rate)
        self._n_slots = 2 * (window_samples // self._hop + 1)
        self._tags = np.full(self._n_slots, -1, dtype=np.int64)
        self._cache = np.zeros((self._n_slots, cfg.n_channels), dtype=np.float32)
        self._stats = AudioFrameStats()

    @property
    def stats(self) -> AudioFrameStats:
        return dataclasses.replace(self._stats)

    @property
    def buffer_stats(self) -> AudioBufferStats:
        return self.buffer.stats

    @property
    def latest_time(self) -> int | None:
        """Time (µs) up to which model-rate audio is present, or None before any."""
        return self.buffer.latest_time

    def push(self, samples: np.ndarray, start_us: int, sample_rate: int) -> None:
        """Append one mono chunk whose first sample is at ``start_us`` (µs)."""
        x = np.nan_to_num(np.asarray(samples, dtype=np.float32).ravel())
        if sample_rate == self.sample_rate:
            self._resampler = None
            if len(x):
                self.buffer.push(x, start_us)
            return
        r = self._resampler
        if r is not None and r.from_rate == sample_rate:
            late_us = int(start_us) - (self._origin_us + r.samples_in * 1_000_000 // sample_rate)
            if late_us < -self.max_jitter_us:
                # Audio already resampled (a stamp going back): drop what overlaps, as the
                # ring buffer does, and go on without a seam.
                dup = min(len(x), (-late_us * sample_rate + 500_000) // 1_000_000)
                self._stats.overlap_dropped += dup
                x = x[dup:]
                if not len(x):
                    return
            elif late_us > self.max_jitter_us:  # a gap: the stream starts again after it
                r = None
                self._stats.resampler_restarts += 1
        elif r is not None:
            r = None
            self._stats.resampler_restarts += 1
        if r is None:
            r = self._resampler = StreamResampler(sample_rate, self.sample_rate)
            self._origin_us = int(start_us)
        out_start = self._origin_us + r.samples_out * 1_000_000 // self.sample_rate
        out = r.push(x)
        if len(out):
            self.buffer.push(out, out_start)

    def window_tensor(self, t0: int, t1: int) -> tuple[np.ndarray, float]:
        """The ``(T, 2, C)`` float32 tensor of ``[t0, t1)`` and its audio coverage (0-1)."""
        fe = self.frontend
        w = self.buffer.window_with_coverage(t0, t1)
        n = round(fe.window_s * self.sample_rate)
        pcm = w.samples[:n]
        if len(pcm) < n:
            pcm = np.pad(pcm, (0, n - len(pcm)))
        return audio_tensor_from_power(self._band_power(pcm, w.first, w.held), fe), w.coverage

    def _band_power(self, pcm: np.ndarray, first: int, held: tuple[int, int]) -> np.ndarray:
        """``band_power(pcm)``, with the frames that other windows share taken from the cache."""
        hop, win, n = self._hop, self._win, len(pcm)
        k = np.arange(-(-n // hop))
        lo = k * hop - win // 2  # first sample of frame k in the window
        view = analysis_frames(pcm, self.frontend.cochlea)
        key = first + lo
        shareable = (lo >= 0) & (lo + win <= n) & (key >= held[0]) & (key + win <= held[1])
        slot = (key // hop) % self._n_slots
        hit = shareable & (self._tags[slot] == key)
        power = np.empty((len(k), self._cache.shape[1]), dtype=np.float32)
        power[hit] = self._cache[slot[hit]]
        miss = ~hit
        if miss.any():
            power[miss] = frame_power(view[miss], self.frontend.cochlea)
        store = miss & shareable
        self._cache[slot[store]] = power[store]
        self._tags[slot[store]] = key[store]
        self._stats.frames_computed += int(np.count_nonzero(miss))
        self._stats.frames_reused += int(np.count_nonzero(hit))
        return power
