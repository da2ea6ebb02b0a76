"""Sensor corruptions on raw samples: audio noise at an SNR, event background activity,
occlusion, a modality missing.

Each is a small frozen dataclass over the functions below (tonic's shape): its parameters are
its fields, ``label`` names it, and calling it on a sample's (events, pcm) returns the corrupted
pair. The robustness grid (``taaf_ros.studies.robustness``) builds them with fixed parameters;
the training augmentation (``taaf_ros.training.augment``) with random ones, so that what a
network is trained against and what it is tested on are the same operations.

    >>> WhiteNoise(10).label, Occlusion(0.5).label, MissingModality("audio").missing
    ('white 10 dB', 'occlusion 50 %', 'audio')
    >>> corruption("background", 2) == BackgroundActivity(2)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from taaf_ros.audio.cochlea import resample
from taaf_ros.events.types import EVENT_DTYPE

#: Audio noise families: white Gaussian noise, or babble (a sum of other recordings).
NOISE_FAMILIES: tuple[str, ...] = ("white", "babble")
#: Recordings summed into one babble noise.
BABBLE_TALKERS = 4


def mix_at_snr(pcm: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """pcm + noise scaled so that power(pcm) / power(noise) is snr_db (noise tiled or cut to
    length); clipped to [-1, 1] as a recording would be."""
    noise = np.resize(noise.astype(np.float64), pcm.shape)
    p_sig = float(np.mean(pcm.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise**2))
    if p_sig == 0 or p_noise == 0:
        return pcm.copy()
    gain = np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    return np.clip(pcm + gain * noise, -1, 1).astype(np.float32)


def babble(length: int, rate: int, pool: Sequence[tuple[np.ndarray, int]],
           rng: np.random.Generator) -> np.ndarray:
    """A babble noise of ``length`` samples at ``rate``: ``BABBLE_TALKERS`` recordings of
    ``pool`` ((pcm, rate) pairs), each from a random offset, resampled and summed."""
    if not pool:
        raise ValueError("babble needs a non-empty pool of recordings")
    picks = rng.choice(len(pool), size=min(BABBLE_TALKERS, len(pool)), replace=False)
    noise = np.zeros(length)
    for i in picks:
        clip, clip_rate = pool[int(i)]
        if clip_rate != rate:
            clip = resample(clip, clip_rate, rate)
        start = int(rng.integers(0, max(1, len(clip) - length + 1)))
        noise += np.resize(clip[start:start + length], length)
    return noise


def add_noise(pcm: np.ndarray, rate: int, family: str, snr_db: float,
              pool: Sequence[tuple[np.ndarray, int]], rng: np.random.Generator) -> np.ndarray:
    """``pcm`` with ``family`` noise (one of NOISE_FAMILIES) mixed in at ``snr_db``."""
    if family == "white":
        return mix_at_snr(pcm, rng.standard_normal(len(pcm)), snr_db)
    if family == "babble":
        return mix_at_snr(pcm, babble(len(pcm), rate, pool, rng), snr_db)
    raise ValueError(f"noise family must be one of {NOISE_FAMILIES}, got {family!r}")


def add_background_activity(events: np.ndarray, sensor_size: tuple[int, int],
                            duration_us: int, rate_hz: float, rng: np.random.Generator
                            ) -> np.ndarray:
    """Extra uniform events at ``rate_hz`` per pixel (ON and OFF alike), time-sorted."""
    W, H = sensor_size
    n = int(rng.poisson(rate_hz * W * H * duration_us * 1e-6))
    extra = np.zeros(n, EVENT_DTYPE)
    extra["x"], extra["y"] = rng.integers(0, W, n), rng.integers(0, H, n)
    extra["t"], extra["p"] = rng.integers(0, max(duration_us, 1), n), rng.integers(0, 2, n)
    out = np.concatenate([events, extra])
    return out[np.argsort(out["t"], kind="stable")]


def occlusion_patch(width: int, height: int, fraction: float, rng: np.random.Generator
                    ) -> tuple[int, int, int, int]:
    """A random square (x0, y0, side_x, side_y) covering ``fraction`` of a width x height
    sensor (clipped to the sensor where the square would not fit)."""
    side = int(round(np.sqrt(fraction * width * height)))
    side_x, side_y = min(side, width), min(side, height)
    x0 = int(rng.integers(0, width - side_x + 1))
    y0 = int(rng.integers(0, height - side_y + 1))
    return x0, y0, side_x, side_y


def occlude(events: np.ndarray, sensor_size: tuple[int, int], fraction: float,
            rng: np.random.Generator) -> np.ndarray:
    """Drop the events inside a random square patch covering ``fraction`` of the sensor."""
    x0, y0, side_x, side_y = occlusion_patch(sensor_size[0], sensor_size[1], fraction, rng)
    inside = ((events["x"] >= x0) & (events["x"] < x0 + side_x)
              & (events["y"] >= y0) & (events["y"] < y0 + side_y))
    return events[~inside]


@dataclass(frozen=True)
class Scene:
    """What a corruption may need beyond the sample: the sensor (width, height), the sample's
    duration, the sensor's own background activity (Hz per pixel) and recordings to mix into
    babble ((pcm, rate) pairs)."""

    sensor_size: tuple[int, int]
    duration_us: int
    background_rate_hz: float = 0.0
    babble_pool: Sequence[tuple[np.ndarray, int]] = ()


Sample = tuple[np.ndarray, np.ndarray]  # (events, pcm)


@dataclass(frozen=True)
class Clean:
    family: ClassVar[str] = "clean"
    missing: ClassVar[str | None] = None
    severity: ClassVar[float] = 0

    @property
    def label(self) -> str:
        return "clean"

    def __call__(self, events: np.ndarray, pcm: np.ndarray, rate: int, scene: Scene,
                 rng: np.random.Generator) -> Sample:
        return events, pcm


@dataclass(frozen=True)
class WhiteNoise:
    """White Gaussian noise mixed into the audio at ``snr_db``."""

    snr_db: float
    family: ClassVar[str] = "white"
    missing: ClassVar[str | None] = None

    @property
    def severity(self) -> float:
        return self.snr_db

    @property
    def label(self) -> str:
        return f"{self.family} {self.snr_db:g} dB"

    def __call__(self, events: np.ndarray, pcm: np.ndarray, rate: int, scene: Scene,
                 rng: np.random.Generator) -> Sample:
        return events, add_noise(pcm, rate, self.family, self.snr_db, scene.babble_pool, rng)


@dataclass(frozen=True)
class Babble(WhiteNoise):
    """Babble (``BABBLE_TALKERS`` recordings of the scene's pool, summed) at ``snr_db``."""

    family: ClassVar[str] = "babble"


@dataclass(frozen=True)
class BackgroundActivity:
    """The sensor's background activity raised to ``factor`` times its own rate."""

    factor: float
    family: ClassVar[str] = "background"
    missing: ClassVar[str | None] = None

    @property
    def severity(self) -> float:
        return self.factor

    @property
    def label(self) -> str:
        return f"background {self.factor:g}x"

    def __call__(self, events: np.ndarray, pcm: np.ndarray, rate: int, scene: Scene,
                 rng: np.random.Generator) -> Sample:
        extra = (float(self.factor) - 1) * scene.background_rate_hz
        return add_background_activity(events, scene.sensor_size, scene.duration_us, extra,
                                       rng), pcm


@dataclass(frozen=True)
class Occlusion:
    """A random square patch covering ``fraction`` of the sensor: its events dropped."""

    fraction: float
    family: ClassVar[str] = "occlusion"
    missing: ClassVar[str | None] = None

    @property
    def severity(self) -> float:
        return self.fraction

    @property
    def label(self) -> str:
        return f"occlusion {int(self.fraction * 100)} %"

    def patch(self, width: int, height: int, rng: np.random.Generator
              ) -> tuple[int, int, int, int]:
        """The patch (x0, y0, side_x, side_y): what this corruption drops, also on a tensor."""
        return occlusion_patch(width, height, self.fraction, rng)

    def __call__(self, events: np.ndarray, pcm: np.ndarray, rate: int, scene: Scene,
                 rng: np.random.Generator) -> Sample:
        return occlude(events, scene.sensor_size, self.fraction, rng), pcm


@dataclass(frozen=True)
class MissingModality:
    """``modality`` absent: the data stay, the network is told it is missing."""

    modality: str
    family: ClassVar[str] = "missing"

    @property
    def missing(self) -> str:
        return self.modality

    @property
    def severity(self) -> str:
        return self.modality

    @property
    def label(self) -> str:
        return f"missing {self.modality}"

    def __call__(self, events: np.ndarray, pcm: np.ndarray, rate: int, scene: Scene,
                 rng: np.random.Generator) -> Sample:
        return events, pcm


Corruption = Clean | WhiteNoise | Babble | BackgroundActivity | Occlusion | MissingModality
FAMILIES = {c.family: c for c in (Clean, WhiteNoise, Babble, BackgroundActivity, Occlusion,
                                  MissingModality)}


def corruption(family: str, severity: float | str = 0) -> Corruption:
    """The corruption of ``family`` (a key of FAMILIES) at ``severity``."""
    if family not in FAMILIES:
        raise ValueError(f"corruption family must be one of {list(FAMILIES)}, got {family!r}")
    return Clean() if family == "clean" else FAMILIES[family](severity)
