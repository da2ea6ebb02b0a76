"""One window of raw sensor data -> the spike tensors the network reads.

The same two functions serve training (a dataset sample is one window starting at t = 0) and the
live node (a window cut from the ring buffers), so training sees exactly the tensors the live
node sees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from taaf_ros.audio.cochlea import (
    CochleaConfig,
    band_power,
    log_envelope,
    resample,
    send_on_delta,
)
from taaf_ros.defaults import WINDOW_S
from taaf_ros.events.binning import bin_audio_counts, bin_events, fit_events


@dataclass(frozen=True)
class FrontEndConfig:
    """Windowing and binning settings shared by training and the live node.

    Attributes:
        window_s: window length (s). 0.6 holds 90 % of the spoken digits of FSDD whole and
            the three 100 ms saccades of an N-MNIST-style recording.
        n_time_bins: T, equal time bins per window (the network's time steps).
        input_size: (width, height) of the event input of the network (pixels).
        fit_mode: how a larger sensor is mapped onto input_size: crop (centre crop to the
            aspect ratio, then downsample) or letterbox.
        max_count: every bin count is clipped to this (a burst must not blow up the input
            scale).
        cochlea: the audio front end (rate, channels, threshold); see CochleaConfig.
    """

    window_s: float = WINDOW_S
    n_time_bins: int = 8
    input_size: tuple[int, int] = (34, 34)
    fit_mode: str = "crop"
    max_count: int = 15
    cochlea: CochleaConfig = field(default_factory=CochleaConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if isinstance(self.cochlea, dict):
            object.__setattr__(self, "cochlea", CochleaConfig(**self.cochlea))
        if self.window_s <= 0 or self.n_time_bins < 1 or self.max_count < 1:
            raise ValueError("need window_s > 0, n_time_bins >= 1 and max_count >= 1")
        if self.fit_mode not in ("crop", "letterbox"):
            raise ValueError(f"fit_mode must be 'crop' or 'letterbox', got {self.fit_mode!r}")

    @property
    def window_us(self) -> int:
        """Window length in microseconds."""
        return round(self.window_s * 1e6)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (stored in the model card)."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontEndConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown front-end keys: {sorted(unknown)}")
        return cls(**d)


def event_tensor(
    events: np.ndarray, sensor_size: tuple[int, int], start_us: int, config: FrontEndConfig
) -> np.ndarray:
    """Events of the window ``[start_us, start_us + window)`` -> float32 ``(T, 2, h, w)``.

    ``sensor_size`` is the camera's ``(width, height)``; events are mapped onto
    ``config.input_size`` first, then binned with tonic's ``ToFrame`` semantics and clipped.
    """
    fitted, size = fit_events(
        events, (int(sensor_size[0]), int(sensor_size[1]), 2), config.input_size,
        mode=config.fit_mode,
    )
    frames = bin_events(
        fitted, size, config.n_time_bins, start_us, start_us + config.window_us,
        max_count=config.max_count,
    )
    return frames.astype(np.float32)


def audio_tensor(pcm: np.ndarray, sample_rate: int, config: FrontEndConfig) -> np.ndarray:
    """Mono PCM of one window (first sample at the window start) -> float32 ``(T, 2, C)``.

    PCM shorter than the window is padded with silence, longer PCM is cut at the window end.
    """
    n = round(config.window_s * sample_rate)
    pcm = np.asarray(pcm, dtype=np.float32)[:n]
    if pcm.shape[0] < n:
        pcm = np.pad(pcm, (0, n - pcm.shape[0]))
    pcm = resample(np.nan_to_num(pcm), sample_rate, config.cochlea.sample_rate)
    return audio_tensor_from_power(band_power(pcm, config.cochlea), config)


def audio_tensor_from_power(power: np.ndarray, config: FrontEndConfig) -> np.ndarray:
    """The (K, C) mel band power of one window at the model rate -> float32 ``(T, 2, C)``.

    Equal to :func:`audio_tensor` of that window's PCM when ``power`` is its ``band_power``.
    The cochlea's level crossings are binned as counts: the frames of its events
    (``encode_audio``) binned by ``bin_audio_events``, without the events.
    """
    c = config.cochlea
    counts, _ = send_on_delta(log_envelope(power, c), c.threshold_db, c.floor_db,
                              c.max_events_per_step)
    frames = bin_audio_counts(counts, c.hop_us, config.n_time_bins, 0, config.window_us,
                              max_count=config.max_count)
    return frames.astype(np.float32)


def sample_tensors(
    events: np.ndarray,
    sensor_size: tuple[int, int],
    pcm: np.ndarray,
    sample_rate: int,
    config: FrontEndConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """A dataset sample (event times and audio both starting at 0) -> (events, audio) tensors."""
    return (
        event_tensor(events, sensor_size, 0, config),
        audio_tensor(pcm, sample_rate, config),
    )


def frontend_from_card(card: dict[str, Any]) -> FrontEndConfig:
    """The FrontEndConfig the model was trained with, from its model card.

    Raises ValueError where the card has none: guessing the window, bins or cochlea settings
    would feed the network tensors unlike the ones it learned from, silently.
    """
    fe = card.get("frontend")
    if not isinstance(fe, dict) or not fe:
        raise ValueError("the model card has no front-end settings ('frontend'): re-save the "
                         "checkpoint with train_ead.py, which records them")
    return FrontEndConfig.from_dict(dict(fe))
