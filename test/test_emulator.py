"""DVS emulator: noise floor, edge polarity, threshold dependence, determinism."""

import numpy as np
import pytest

from taaf_ros.data.emulator import (
    DvsEmulatorConfig,
    emulate_saccades,
    emulate_video,
    saccade_offsets,
)
from taaf_ros.events.types import EVENT_DTYPE

NOISELESS = DvsEmulatorConfig(leak_rate_hz=0.0, shot_noise_rate_hz=0.0)


def _digit() -> np.ndarray:
    """A synthetic '7'-like stroke image, uint8 28 x 28."""
    img = np.zeros((28, 28), np.uint8)
    img[5:8, 6:22] = 255
    for i in range(16):
        img[8 + i, 20 - i // 2 : 23 - i // 2] = 230
    return img


def _moving_bar(speed_px_per_ms: float = 0.02, width: int = 4, n: int = 201) -> tuple:
    """A bright vertical bar moving right (+x) on a dark 32 x 16 background, 1 ms steps."""
    times = np.arange(n, dtype=np.int64) * 1000
    xs = np.arange(32)[None, None, :]
    left = 8.0 + speed_px_per_ms * (times / 1000.0)[:, None, None]
    # Anti-aliased coverage of [left, left + width) for each pixel [x, x + 1).
    cover = np.clip(np.minimum(xs + 1, left + width) - np.maximum(xs, left), 0, 1)
    frames = np.broadcast_to(cover, (n, 16, 32)).astype(np.float64)
    return frames, times, left[-1, 0, 0]


def test_static_scene_without_noise_makes_no_events():
    frames = np.repeat(_digit()[None].astype(float) / 255, 50, axis=0)
    ev = emulate_video(frames, np.arange(50) * 1000, NOISELESS, np.random.default_rng(0))
    assert ev.dtype == EVENT_DTYPE and len(ev) == 0


def test_static_scene_makes_only_noise_at_the_configured_rate():
    cfg = DvsEmulatorConfig(leak_rate_hz=2.0, shot_noise_rate_hz=3.0)
    n_frames, H, W = 1001, 34, 34
    frames = np.full((n_frames, H, W), 0.5)
    ev = emulate_video(frames, np.arange(n_frames) * 1000, cfg, np.random.default_rng(1))
    duration_s = 1.0
    leak = (cfg.leak_rate_hz * H * W * duration_s)
    shot = cfg.shot_noise_rate_hz * H * W * duration_s
    # Leak events are ON only, shot noise half ON half OFF.
    n_on, n_off = int(ev["p"].sum()), int((ev["p"] == 0).sum())
    assert abs(n_off - shot / 2) < 5 * np.sqrt(shot / 2)
    assert abs(n_on - (leak + shot / 2)) < 0.1 * leak + 5 * np.sqrt(shot / 2)


def test_bright_bar_moving_right_is_on_at_leading_and_off_at_trailing_edge():
    frames, times, left_end = _moving_bar()
    ev = emulate_video(frames, times, NOISELESS, np.random.default_rng(2))
    assert len(ev) > 50
    on_x = ev["x"][ev["p"] == 1].astype(float)
    off_x = ev["x"][ev["p"] == 0].astype(float)
    # The bar moved from [8, 12) to [left_end, left_end + 4): ON where it arrives (right
    # edge, x >= 11), OFF where it leaves (left edge, x <= left_end).
    assert on_x.size and off_x.size
    assert on_x.min() >= 11 and off_x.max() <= np.ceil(left_end)
    assert on_x.mean() > off_x.mean() + 3


def test_events_are_time_sorted_and_inside_the_recording():
    ev = emulate_saccades(_digit(), rng=np.random.default_rng(3))
    assert len(ev) > 500
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() >= 0 and ev["t"].max() <= 300_000
    assert ev["x"].max() < 34 and ev["y"].max() < 34
    assert set(np.unique(ev["p"])) == {0, 1}


def test_event_rate_falls_as_threshold_rises():
    counts = []
    for theta in (0.1, 0.2, 0.4, 0.8):
        cfg = DvsEmulatorConfig(theta_on=theta, theta_off=theta, threshold_sigma=0.0,
                                leak_rate_hz=0.0, shot_noise_rate_hz=0.0, refractory_us=0)
        counts.append(len(emulate_saccades(_digit(), cfg, rng=np.random.default_rng(4))))
    assert all(a > b for a, b in zip(counts, counts[1:], strict=False))
    # Count ~ total log change / threshold: doubling the threshold roughly halves the count.
    for a, b in zip(counts, counts[1:], strict=False):
        assert 1.5 < a / b < 2.6


def test_multiple_events_per_step_for_a_large_change():
    frames = np.zeros((2, 1, 1))
    frames[1] = 1.0  # log(1.1) - log(0.1) = 2.40 log units = 12 thresholds of 0.2
    cfg = DvsEmulatorConfig(threshold_sigma=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0,
                            refractory_us=0)
    ev = emulate_video(frames, np.array([0, 1000]), cfg)
    assert len(ev) == 11 or len(ev) == 12  # floor(2.398 / 0.2) = 11
    assert np.all(ev["p"] == 1)
    assert np.all(np.diff(ev["t"]) > 0)  # interpolated, not all stamped at the frame


def test_refractory_period_spaces_a_pixels_events():
    frames = np.zeros((2, 1, 1))
    frames[1] = 1.0
    cfg = DvsEmulatorConfig(threshold_sigma=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0,
                            refractory_us=300)
    ev = emulate_video(frames, np.array([0, 1000]), cfg)
    assert np.all(np.diff(ev["t"]) >= 300)
    assert 1 <= len(ev) <= 4


def test_same_rng_seed_gives_identical_events():
    a = emulate_saccades(_digit(), rng=np.random.default_rng(7))
    b = emulate_saccades(_digit(), rng=np.random.default_rng(7))
    c = emulate_saccades(_digit(), rng=np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_saccade_path_is_a_closed_triangle():
    off = saccade_offsets(np.array([0, 100_000, 200_000, 300_000]), 300_000, 3.0)
    np.testing.assert_allclose(off, [[-1.5, -1.5], [0, 1.5], [1.5, -1.5], [-1.5, -1.5]])


@pytest.mark.parametrize("kwargs", [dict(theta_on=0), dict(refractory_us=-1), dict(log_eps=0)])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        DvsEmulatorConfig(**kwargs)


def test_bad_frames_are_refused():
    with pytest.raises(ValueError):
        emulate_video(np.zeros((3, 2, 2)), np.array([0, 1000, 1000]))
    with pytest.raises(ValueError):
        emulate_video(np.zeros((1, 2, 2)), np.array([0]))
