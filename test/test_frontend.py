"""The shared front end: one window of raw data -> the tensors the network reads."""

from __future__ import annotations

import numpy as np
import pytest
import tonic

from taaf_ros.audio.cochlea import CochleaConfig
from taaf_ros.audio.wav import read_wav
from taaf_ros.events.types import make_events
from taaf_ros.frontend import FrontEndConfig, audio_tensor, event_tensor, sample_tensors


def test_config_round_trip_and_validation():
    cfg = FrontEndConfig(window_s=0.5, n_time_bins=5, cochlea=CochleaConfig(n_channels=16))
    assert FrontEndConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.window_us == 500_000
    with pytest.raises(ValueError, match="unknown"):
        FrontEndConfig.from_dict({**cfg.to_dict(), "windw_s": 1})
    with pytest.raises(ValueError):
        FrontEndConfig(window_s=0)
    with pytest.raises(ValueError, match="fit_mode"):
        FrontEndConfig(fit_mode="stretch")


def test_event_tensor_equals_tonic_on_the_model_grid():
    rng = np.random.default_rng(0)
    n = 5000
    start = 1_000_000
    ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n),
                     np.sort(rng.integers(start - 50_000, start + 650_000, n)),
                     rng.integers(0, 2, n))
    cfg = FrontEndConfig(max_count=10_000)
    out = event_tensor(ev, (34, 34), start, cfg)
    tev = np.zeros(n, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    for f in "xytp":
        tev[f] = ev[f]
    ref = tonic.transforms.ToFrame((34, 34, 2), time_window=cfg.window_us / cfg.n_time_bins,
                                   start_time=start, end_time=start + cfg.window_us)(tev)
    assert out.dtype == np.float32 and out.shape == (8, 2, 34, 34)
    np.testing.assert_array_equal(out, ref.astype(np.float32))


def test_event_tensor_clips_and_downsamples_a_large_sensor():
    # 10 events on one pixel of a 640 x 480 sensor land in one bin of the 34 x 34 input.
    ev = make_events([320] * 40, [240] * 40, [1000] * 40, [1] * 40)
    out = event_tensor(ev, (640, 480), 0, FrontEndConfig(max_count=15))
    assert out.shape == (8, 2, 34, 34)
    assert out.sum() == 15 and out[0, 1].max() == 15


def test_audio_tensor_pads_and_cuts_to_the_window(fsdd_wav):
    chunk = read_wav(fsdd_wav)
    cfg = FrontEndConfig()
    full = audio_tensor(chunk.samples, chunk.sample_rate, cfg)
    assert full.shape == (cfg.n_time_bins, 2, cfg.cochlea.n_channels)
    assert full.sum() > 50  # speech makes events
    padded = audio_tensor(np.concatenate([chunk.samples, np.zeros(8000, np.float32)]),
                          chunk.sample_rate, cfg)
    np.testing.assert_array_equal(full, padded)  # trailing silence past the window is cut
    assert audio_tensor(np.zeros(100, np.float32), 8000, cfg).sum() == 0


def test_sample_tensors_match_the_parts(fsdd_wav):
    chunk = read_wav(fsdd_wav)
    rng = np.random.default_rng(1)
    ev = make_events(rng.integers(0, 34, 300), rng.integers(0, 34, 300),
                     np.sort(rng.integers(0, 300_000, 300)), rng.integers(0, 2, 300))
    cfg = FrontEndConfig()
    e, a = sample_tensors(ev, (34, 34), chunk.samples, chunk.sample_rate, cfg)
    np.testing.assert_array_equal(e, event_tensor(ev, (34, 34), 0, cfg))
    np.testing.assert_array_equal(a, audio_tensor(chunk.samples, chunk.sample_rate, cfg))
