"""Sensor corruptions on raw samples: audio noise at an SNR, event background activity, occlusion.

Shared by the test-time robustness protocol (``taaf_ros.studies.robustness``) and the
training-time corruption augmentation (``taaf_ros.training.augment``), so that what a network
is trained against and what it is tested on are the same operations.
"""

from __future__ import annotations

from collections.abc import Sequence

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
