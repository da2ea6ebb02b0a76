"""Cochlea front end (taaf_ros.audio.cochlea): golden encoder values, filter bank, real speech."""

from __future__ import annotations

import numpy as np
import pytest

from taaf_ros.audio.cochlea import (
    CochleaConfig,
    band_power,
    counts_to_events,
    encode_audio,
    log_envelope,
    mel_filterbank,
    resample,
    send_on_delta,
)
from taaf_ros.audio.wav import read_wav
from taaf_ros.events.types import EVENT_DTYPE

CFG = CochleaConfig()


def bin_tc(events: np.ndarray, n_channels: int, n_bins: int, t0: int, t1: int) -> np.ndarray:
    """(T, 2, C) counts: the project's binning if present, else tonic's ToFrame (the oracle)."""
    try:
        from taaf_ros.events.binning import bin_audio_events
    except ImportError:
        import tonic

        frame = tonic.transforms.ToFrame(
            sensor_size=(n_channels, 1, 2), time_window=(t1 - t0) / n_bins,
            start_time=t0, end_time=t1,
        )
        return frame(events)[:, :, 0, :]
    return bin_audio_events(events, n_channels, n_bins, t0, t1)


# ---- send-on-delta golden values -----------------------------------------------------------
def test_send_on_delta_golden():
    # Two channels, threshold 2 dB, cap 3, reference from -10 dB.
    env = np.array(
        [
            [-10.0, -10.0],
            [-9.0, -4.0],  # ch0 +1 dB: nothing; ch1 +6 dB: 3 up
            [-8.0, 4.0],  # ch0 +2 dB: 1 up; ch1 +12 dB but capped at 3 up (ref -4 -> 2)
            [-8.0, 4.0],  # ch1 still 2 dB short of 4: 1 up (ref 4)
            [-11.5, -1.0],  # ch0 -3.5 from -8: 1 down (ref -10); ch1 -5: 2 down (ref 0)
            [-11.9, -1.0],  # ch0 -1.9: nothing (hysteresis)
        ]
    )
    counts, ref = send_on_delta(env, 2.0, -10.0, 3)
    assert counts.tolist() == [[0, 0], [0, 3], [1, 3], [0, 1], [-1, -2], [0, 0]]
    assert ref.tolist() == [-10.0, 0.0]


def test_send_on_delta_resumes_without_seam():
    rng = np.random.default_rng(0)
    env = np.cumsum(rng.normal(0, 1.5, size=(200, 4)), axis=0)
    whole, ref_whole = send_on_delta(env, 1.0, 0.0, 2)
    first, ref = send_on_delta(env[:77], 1.0, 0.0, 2)
    second, ref2 = send_on_delta(env[77:], 1.0, ref, 2)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    np.testing.assert_array_equal(ref2, ref_whole)


def test_counts_to_events_golden():
    counts = np.array([[0, 2], [-1, 0], [0, -3]], dtype=np.int16)
    ev = counts_to_events(counts, hop_us=1000, start_time_us=5_000)
    assert ev.dtype == EVENT_DTYPE
    assert ev["t"].tolist() == [5000, 5000, 6000, 7000, 7000, 7000]
    assert ev["x"].tolist() == [1, 1, 0, 1, 1, 1]
    assert ev["p"].tolist() == [1, 1, 0, 0, 0, 0]
    assert np.all(ev["y"] == 0)


# ---- configuration and filter bank ---------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"fmax_hz": 5000.0},  # above Nyquist at 8 kHz
        {"fmin_hz": 500.0, "fmax_hz": 400.0},
        {"hop_ms": 0.3},  # 2.4 samples
        {"threshold_db": 0.0},
        {"max_events_per_step": 0},
        {"window_ms": 0.5},
    ],
)
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        CochleaConfig(**kwargs)


def test_default_geometry():
    assert (CFG.hop_samples, CFG.hop_us, CFG.window_samples, CFG.n_fft) == (8, 1000, 200, 256)
    fb = mel_filterbank(CFG)
    assert fb.shape == (32, 129)
    assert np.all(fb.max(axis=1) > 0), "every channel must see some FFT bin"
    centres = fb.argmax(axis=1)
    assert np.all(np.diff(centres) >= 0), "channels ordered low to high frequency"


@pytest.mark.parametrize("channel", [0, 12, 31])
def test_sine_at_channel_centre_is_about_0_db_there(channel):
    fb = mel_filterbank(CFG)
    f = fb[channel].argmax() * CFG.sample_rate / CFG.n_fft
    t = np.arange(CFG.sample_rate // 2) / CFG.sample_rate
    env = log_envelope(band_power(np.sin(2 * np.pi * f * t), CFG), CFG)
    steady = env[100:-100]
    assert np.all(steady.argmax(axis=1) == channel)
    assert -3.0 < steady[:, channel].mean() < 3.0


def test_resample_length_and_level():
    t = np.arange(44100) / 44100
    y = resample(np.sin(2 * np.pi * 300 * t), 44100, 8000)
    assert y.dtype == np.float32 and y.shape == (8000,)
    assert abs(np.sqrt(np.mean(y[200:-200] ** 2)) - np.sqrt(0.5)) < 0.01


# ---- encoder on synthetic signals ----------------------------------------------------------
def test_digital_silence_and_empty_make_no_events():
    assert encode_audio(np.zeros(8000, np.float32), 8000, CFG).shape == (0,)
    assert encode_audio(np.zeros(0, np.float32), 8000, CFG).shape == (0,)


def test_tone_burst_onset_up_offset_down_in_its_channel():
    sr = 8000
    x = np.zeros(sr, np.float32)
    t = np.arange(sr // 2) / sr
    ramp = np.sin(np.linspace(0, np.pi / 2, 160)) ** 2  # 20 ms fades: no broadband clicks
    burst = 0.3 * np.sin(2 * np.pi * 1000 * t)
    burst[:160] *= ramp
    burst[-160:] *= ramp[::-1]
    x[2000:6000] = burst  # 250..750 ms
    ev = encode_audio(x, sr, CFG, start_time_us=1_000_000)
    assert ev.size > 0 and np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() >= 1_000_000 + 200_000 and ev["t"].max() < 1_000_000 + 800_000
    per_channel = np.bincount(ev["x"], minlength=CFG.n_channels)
    peak = per_channel.argmax()
    f_peak = mel_filterbank(CFG)[peak].argmax() * sr / CFG.n_fft
    assert abs(f_peak - 1000) < 100
    mine = ev[ev["x"] == peak]
    ups, downs = mine[mine["p"] == 1], mine[mine["p"] == 0]
    assert ups["t"].max() < 1_000_000 + 300_000, "up-events at the onset only"
    assert downs["t"].min() > 1_000_000 + 700_000, "down-events at the offset only"
    assert abs(ups.size - downs.size) <= 1, "back to the floor: as many downs as ups"


def test_nan_input_does_not_poison_the_encoder():
    x = np.full(800, np.nan, np.float32)
    assert encode_audio(x, 8000, CFG).shape == (0,)


# ---- real speech (FSDD) --------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech(fsdd_wav):
    return read_wav(fsdd_wav)


def test_real_speech_events_are_plausible(speech):
    x, sr = speech.samples, speech.sample_rate
    pad = np.zeros(int(0.3 * sr), np.float32)
    padded = np.concatenate([pad, x, pad])
    ev = encode_audio(padded, sr, CFG, start_time_us=10_000_000)
    t_rel = ev["t"] - 10_000_000
    duration_us = padded.size * 1_000_000 // sr
    assert np.all((t_rel >= 0) & (t_rel < duration_us))
    # Digital silence before and after the word: nothing beyond the analysis window's reach.
    assert np.sum(t_rel < 250_000) == 0
    assert np.sum(t_rel > 300_000 + speech.duration_s * 1e6 + 60_000) == 0
    # Both polarities, roughly balanced (the envelope ends where it started: at the floor).
    n_up, n_down = int(np.sum(ev["p"] == 1)), int(np.sum(ev["p"] == 0))
    assert n_up > 100 and n_down > 100 and 0.3 < n_up / (n_up + n_down) < 0.7
    # Events follow the energy: the most energetic channels fire more than the least.
    energy = band_power(x, CFG).sum(axis=0)
    per_channel = np.bincount(ev["x"], minlength=CFG.n_channels)
    order = np.argsort(energy)
    assert per_channel[order[-8:]].mean() > 1.5 * per_channel[order[:8]].mean()


@pytest.mark.parametrize(("rms_db", "quiet"), [(-75.0, True), (-62.0, True), (-40.0, False)])
def test_noise_below_the_floor_is_silent(rms_db, quiet):
    noise = np.random.default_rng(1).normal(size=8000) * 10 ** (rms_db / 20)
    n = encode_audio(noise.astype(np.float32), 8000, CFG).size
    assert (n == 0) if quiet else (n > 500)


def test_quiet_stretches_of_a_real_recording_are_almost_silent(data_root):
    # This take has ~80 dB between its quiet lead-in/out and the word.
    chunk = read_wav(data_root / "fsdd" / "recordings" / "3_lucas_7.wav")
    x = chunk.samples
    ev = encode_audio(x, chunk.sample_rate, CFG)
    frame_rms = np.sqrt(np.convolve(x**2, np.ones(200) / 200, "same"))[:: CFG.hop_samples]
    quiet = frame_rms < 10 ** (-65 / 20)
    assert quiet.mean() > 0.1, "the take should have quiet stretches"
    assert quiet[ev["t"] // CFG.hop_us].mean() < 0.02


def test_louder_makes_more_events(speech):
    x, sr = speech.samples, speech.sample_rate
    n = [encode_audio(x * g, sr, CFG).size for g in (0.03, 0.3, 1.0)]
    assert n[0] < n[1] < n[2]


def test_deterministic_and_rate_independent(speech):
    x, sr = speech.samples, speech.sample_rate
    a, b = encode_audio(x, sr, CFG), encode_audio(x, sr, CFG)
    np.testing.assert_array_equal(a, b)
    up = resample(x, sr, 16000)  # a 16 kHz microphone saying the same thing
    c = encode_audio(up, 16000, CFG)
    assert abs(c.size - a.size) < 0.1 * a.size


def test_binned_spike_tensor(speech):
    x, sr = speech.samples, speech.sample_rate
    ev = encode_audio(x, sr, CFG, start_time_us=0)
    t1 = int(round(speech.duration_s * 1e6))
    frames = np.asarray(bin_tc(ev, CFG.n_channels, 50, 0, t1))
    assert frames.shape == (50, 2, CFG.n_channels)
    assert frames.sum() == ev.size, "every event lands in a bin"
    fill = np.mean(frames > 0)
    assert 0.05 < fill < 0.8
    assert frames[:, 1].sum() > 0 and frames[:, 0].sum() > 0


def test_the_smoothing_kernel_is_scipy_lfilter_bit_for_bit():
    """log_envelope's one-pole low-pass, a numba loop, against the lfilter it replaced, on
    powers spanning many decades, zeros and several time constants."""
    import math

    from scipy import signal

    from taaf_ros.audio.cochlea import _one_pole_kernel

    rng = np.random.default_rng(3)
    for _ in range(50):
        K, C = int(rng.integers(1, 700)), int(rng.integers(1, 40))
        p = rng.random((K, C)) ** int(rng.integers(1, 8)) * 10.0 ** int(rng.integers(-12, 3))
        p[rng.random((K, C)) < 0.2] = 0.0
        a = math.exp(-rng.uniform(0.1, 3.0))
        z0 = a * 10.0 ** rng.uniform(-12, -2)
        want, _ = signal.lfilter([1.0 - a], [1.0, -a], p, axis=0, zi=np.full((1, C), z0))
        assert np.array_equal(_one_pole_kernel(p, 1.0 - a, a, z0), want)


def test_audio_tensor_equals_binning_the_encoders_events(data_root):
    """audio_tensor bins the level-crossing counts directly; on real speech (FSDD, every
    speaker) it must be the frames of the events encode_audio makes."""
    from taaf_ros.frontend import FrontEndConfig, audio_tensor

    cfg = FrontEndConfig()
    wavs = sorted((data_root / "fsdd" / "recordings").glob("*.wav"))[::150]
    assert len(wavs) >= 10
    for wav in wavs:
        chunk = read_wav(wav)
        n = round(cfg.window_s * chunk.sample_rate)
        pcm = np.pad(chunk.samples[:n], (0, max(0, n - len(chunk.samples))))
        events = encode_audio(pcm, chunk.sample_rate, cfg.cochlea)
        want = bin_tc(events, cfg.cochlea.n_channels, cfg.n_time_bins, 0, cfg.window_us)
        got = audio_tensor(chunk.samples, chunk.sample_rate, cfg)
        assert np.array_equal(got, np.minimum(want, cfg.max_count).astype(np.float32)), wav.name
        assert got.sum() > 0
