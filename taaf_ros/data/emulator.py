"""DVS emulator: turn intensity frames into events (x, y, t [µs], p) like a real event camera.

Model (after v2e, Hu et al. 2021, and the ESIM idea of interpolating between frames):

- each pixel compares its log intensity ``L = log(I + log_eps)`` (``I`` in [0, 1]) with a
  remembered reference ``R``; when ``L - R`` reaches ``+theta_on`` it emits an ON event and moves
  ``R`` up by ``theta_on`` (likewise OFF with ``theta_off``), so a change of several thresholds
  within one frame step gives several events;
- thresholds differ per pixel (Gaussian mismatch, ``threshold_sigma``), fixed for one recording;
- event times are linearly interpolated between the two frames that bracket the crossing;
- after an event a pixel is blind for ``refractory_us``: crossings inside that time are delayed
  to its end (the change is not lost, it is reported late), as in a real pixel's reset;
- leak: the reference drifts down by ``leak_rate_hz * theta_on`` per second, so a static pixel
  fires ON events at about ``leak_rate_hz`` (random phase per pixel);
- shot noise: independent events at ``shot_noise_rate_hz`` per pixel, half ON half OFF, uniform
  in time and space; they do not touch the reference.

``emulate_video`` is the generic core (any frames); ``emulate_saccades`` moves a 28 x 28 digit in
the three-saccade triangle that the N-MNIST recordings used and feeds the frames to the core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np

from taaf_ros.events.types import empty_events


@dataclass(frozen=True)
class DvsEmulatorConfig:
    """Parameters of the emulated sensor.

    Attributes:
        theta_on: mean ON contrast threshold (natural-log intensity units). Default: 0.2.
        theta_off: mean OFF contrast threshold (natural-log intensity units). Default: 0.2.
        threshold_sigma: per-pixel standard deviation of both thresholds (log units), drawn once
            per recording; thresholds are clipped at ``min_threshold``. Default: 0.03.
        min_threshold: lower bound of any pixel's threshold (log units). Default: 0.01.
        refractory_us: dead time of a pixel after each of its events (µs). Default: 500.
        leak_rate_hz: rate of leak ON events of a static pixel (Hz per pixel). Default: 0.1.
        shot_noise_rate_hz: rate of shot-noise events (Hz per pixel, ON and OFF together).
            Default: 0.2.
        log_eps: offset inside the logarithm, ``log(I + log_eps)`` with ``I`` in [0, 1]
            (dimensionless). Larger values compress dark contrasts, like a sensor's dark
            current. Default: 0.1 (a black-to-white edge is log(11) = 2.4 log units, i.e.
            about 12 events per pixel at the default threshold).
        seed: seed used only when the caller passes no generator. Default: 0.
    """

    theta_on: float = 0.2
    theta_off: float = 0.2
    threshold_sigma: float = 0.03
    min_threshold: float = 0.01
    refractory_us: int = 500
    leak_rate_hz: float = 0.1
    shot_noise_rate_hz: float = 0.2
    log_eps: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.theta_on <= 0 or self.theta_off <= 0 or self.min_threshold <= 0:
            raise ValueError("thresholds must be positive")
        if min(self.threshold_sigma, self.refractory_us, self.leak_rate_hz,
               self.shot_noise_rate_hz) < 0:
            raise ValueError("sigma, refractory period and noise rates must be >= 0")
        if self.log_eps <= 0:
            raise ValueError("log_eps must be positive")

    def to_dict(self) -> dict:
        """Plain dict for meta.json."""
        return asdict(self)


@numba.njit(cache=True)
def _dvs_core(log_frames, times, theta_on, theta_off, ref, leak_per_us, refractory_us,
              out_x, out_y, out_t, out_p):  # pragma: no cover - compiled
    """Fill out_* with events; returns the count, or -1 if the buffers were too small."""
    n_frames, H, W = log_frames.shape
    n = 0
    cap = out_x.shape[0]
    last = np.full((H, W), -(2**62), dtype=np.int64)
    for k in range(1, n_frames):
        t0 = times[k - 1]
        t1 = times[k]
        dt = t1 - t0
        for y in range(H):
            for x in range(W):
                l0 = log_frames[k - 1, y, x]
                l1 = log_frames[k, y, x]
                ref[y, x] -= leak_per_us * theta_on[y, x] * dt
                r = ref[y, x]
                dl = l1 - l0
                # Several crossings in one step: emit them one by one, each at its own
                # interpolated time, until the change left is under one threshold.
                while True:
                    diff = l1 - r
                    if diff >= theta_on[y, x]:
                        level = r + theta_on[y, x]
                        pol = 1
                    elif -diff >= theta_off[y, x]:
                        level = r - theta_off[y, x]
                        pol = 0
                    else:
                        break
                    if dl != 0.0:
                        frac = (level - l0) / dl
                        frac = min(max(frac, 0.0), 1.0)
                    else:
                        frac = 1.0  # crossing caused by leak drift, not by the scene
                    te = t0 + np.int64(frac * dt)
                    earliest = last[y, x] + refractory_us
                    if te < earliest:
                        te = earliest
                    if te > t1:
                        break  # still refractory: report the change in a later step
                    if n >= cap:
                        return -1
                    out_x[n] = x
                    out_y[n] = y
                    out_t[n] = te
                    out_p[n] = pol
                    n += 1
                    last[y, x] = te
                    r = level
                ref[y, x] = r
    return n


def _pixel_thresholds(mean: float, config: DvsEmulatorConfig, shape: tuple[int, int],
                      rng: np.random.Generator) -> np.ndarray:
    th = mean + config.threshold_sigma * rng.standard_normal(shape)
    return np.maximum(th, config.min_threshold)


def _shot_noise(config: DvsEmulatorConfig, shape: tuple[int, int], t_start: int, t_end: int,
                rng: np.random.Generator) -> np.ndarray:
    H, W = shape
    duration_s = (t_end - t_start) * 1e-6
    n = int(rng.poisson(config.shot_noise_rate_hz * H * W * duration_s))
    ev = empty_events(n)
    if n:
        ev["x"] = rng.integers(0, W, n)
        ev["y"] = rng.integers(0, H, n)
        ev["t"] = rng.integers(t_start, max(t_end, t_start + 1), n)
        ev["p"] = rng.integers(0, 2, n)
    return ev


def emulate_video(frames: np.ndarray, times_us: np.ndarray,
                  config: DvsEmulatorConfig | None = None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Events that a DVS would emit watching ``frames``.

    Args:
        frames: intensities in [0, 1], shape (N, H, W), float; N >= 2. The first frame sets the
            pixels' references and makes no events.
        times_us: the frames' times, shape (N,), strictly increasing (µs). Finer steps give more
            faithful timestamps; about 1 ms suits saccades of a few pixels per 100 ms.
        config: sensor parameters. Default: ``DvsEmulatorConfig()``.
        rng: random generator for mismatch, leak phase and noise. Default: seeded from
            ``config.seed``.

    Returns:
        Events (``EVENT_DTYPE``, x = column, y = row) sorted by time (stable), with times in
        ``[times_us[0], times_us[-1]]``.
    """
    config = config or DvsEmulatorConfig()
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    frames = np.asarray(frames, dtype=np.float64)
    times = np.asarray(times_us, dtype=np.int64)
    if frames.ndim != 3 or frames.shape[0] < 2 or times.shape != (frames.shape[0],):
        raise ValueError("frames must be (N>=2, H, W) with one time per frame")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times_us must be strictly increasing")
    shape = frames.shape[1:]
    log_frames = np.log(np.clip(frames, 0.0, None) + config.log_eps)
    theta_on = _pixel_thresholds(config.theta_on, config, shape, rng)
    theta_off = _pixel_thresholds(config.theta_off, config, shape, rng)
    ref = log_frames[0].copy()
    leak_per_us = config.leak_rate_hz * 1e-6
    if leak_per_us > 0:
        # Random phase, so leak events of different pixels do not fire in step.
        ref -= rng.random(shape) * theta_on
    # Capacity guess: total absolute change in thresholds, plus slack; grown on overflow.
    cap = int(np.abs(np.diff(log_frames, axis=0)).sum() / min(config.theta_on, config.theta_off))
    cap = max(cap + 1024, 4096)
    while True:
        out_x = np.empty(cap, np.uint16)
        out_y = np.empty(cap, np.uint16)
        out_t = np.empty(cap, np.int64)
        out_p = np.empty(cap, np.uint8)
        n = _dvs_core(log_frames, times, theta_on, theta_off, ref.copy(), leak_per_us,
                      np.int64(config.refractory_us), out_x, out_y, out_t, out_p)
        if n >= 0:
            break
        cap *= 2
    ev = empty_events(n)
    ev["x"], ev["y"], ev["t"], ev["p"] = out_x[:n], out_y[:n], out_t[:n], out_p[:n]
    if config.shot_noise_rate_hz > 0:
        ev = np.concatenate([ev, _shot_noise(config, shape, int(times[0]), int(times[-1]), rng)])
    return ev[np.argsort(ev["t"], kind="stable")]


def saccade_offsets(times_us: np.ndarray, duration_us: int, amplitude_px: float) -> np.ndarray:
    """Sub-pixel (dx, dy) of the N-MNIST-like saccade path at ``times_us``.

    Three straight saccades of equal duration round a triangle with vertices (0, 0),
    (a/2, a), (a, 0) with ``a = amplitude_px``, back to the start, centred on (0, 0).

    Returns:
        Array (len(times_us), 2) of (dx, dy) in pixels.
    """
    a = amplitude_px
    verts = np.array([[0.0, 0.0], [a / 2, a], [a, 0.0], [0.0, 0.0]]) - [a / 2, a / 2]
    phase = np.clip(np.asarray(times_us, np.float64) / duration_us, 0.0, 1.0) * 3.0
    seg = np.minimum(phase.astype(np.int64), 2)
    frac = (phase - seg)[:, None]
    return verts[seg] * (1.0 - frac) + verts[seg + 1] * frac


@numba.njit(cache=True)
def _render(image, offsets, H, W, ox, oy):  # pragma: no cover - compiled
    """Bilinear placement of ``image`` at (ox + dx, oy + dy) on an H x W black sensor."""
    h, w = image.shape
    out = np.zeros((offsets.shape[0], H, W))
    for k in range(offsets.shape[0]):
        px = ox + offsets[k, 0]
        py = oy + offsets[k, 1]
        for y in range(H):
            sy = y - py
            y0 = int(np.floor(sy))
            fy = sy - y0
            for x in range(W):
                sx = x - px
                x0 = int(np.floor(sx))
                fx = sx - x0
                v = 0.0
                for j in range(2):
                    yy = y0 + j
                    if yy < 0 or yy >= h:
                        continue
                    wy = fy if j else 1.0 - fy
                    for i in range(2):
                        xx = x0 + i
                        if xx < 0 or xx >= w:
                            continue
                        wx = fx if i else 1.0 - fx
                        v += wy * wx * image[yy, xx]
                out[k, y, x] = v
    return out


def emulate_saccades(image: np.ndarray, config: DvsEmulatorConfig | None = None,
                     sensor_size: tuple[int, int] = (34, 34), duration_us: int = 300_000,
                     rng: np.random.Generator | None = None, step_us: int = 1000,
                     amplitude_px: float = 3.0) -> np.ndarray:
    """Events of a digit image seen by a DVS that makes three saccades (like N-MNIST).

    Args:
        image: grey image, uint8 (h, w) (MNIST: 28 x 28, white digit on black).
        config: sensor parameters. Default: ``DvsEmulatorConfig()``.
        sensor_size: (width, height) of the sensor in pixels (N-MNIST: 34 x 34). The image is
            centred on it.
        duration_us: length of the recording; the three saccades share it equally (µs).
        rng: random generator. Default: seeded from ``config.seed``.
        step_us: rendering step (µs); motion is sub-pixel (bilinear) between steps.
        amplitude_px: size of the saccade triangle (pixels).

    Returns:
        Events (``EVENT_DTYPE``) sorted by time, times in [0, duration_us].
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    W, H = sensor_size
    if image.shape[0] + amplitude_px > H or image.shape[1] + amplitude_px > W:
        raise ValueError("image plus saccade amplitude does not fit the sensor")
    times = np.arange(0, duration_us + 1, step_us, dtype=np.int64)
    offsets = saccade_offsets(times, duration_us, amplitude_px)
    intensity = image.astype(np.float64) / 255.0
    frames = _render(intensity, offsets, H, W, (W - image.shape[1]) / 2, (H - image.shape[0]) / 2)
    return emulate_video(frames, times, config, rng)
