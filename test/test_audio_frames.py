"""The streaming audio front end: resampled once, each cochlea frame computed once, and every
window's tensor equal to the offline ``audio_tensor`` (on real FSDD speech and on noise)."""

import numpy as np
import pytest
from scipy import signal

from taaf_ros.audio.stream_resample import StreamResampler
from taaf_ros.audio.wav import read_wav
from taaf_ros.frontend import FrontEndConfig, audio_tensor
from taaf_ros.stream.audio_frames import StreamingCochlea

FE = FrontEndConfig()
HOP_US = 50_000
T0 = 3_000_000


@pytest.fixture(scope="module")
def speech(data_root) -> np.ndarray:
    """Twelve real recordings of three speakers back to back: ~5 s at 8 kHz."""
    rec = data_root / "fsdd" / "recordings"
    names = [f"{d}_{s}_{i}.wav" for s in ("jackson", "george", "theo") for d, i in
             ((1, 3), (4, 7), (7, 12), (9, 30))]
    return np.concatenate([read_wav(rec / n).samples for n in names]).astype(np.float32)


def _stream(cochlea: StreamingCochlea, x: np.ndarray, rate: int, rng, check,
            gaps: tuple[int, ...] = ()) -> int:
    """Push x in random chunks (stamped by sample count, skipping the chunk indices in gaps);
    after each chunk, cut every window that has wholly arrived and call check(start, got)."""
    i, k, next_start, n_checked = 0, 0, T0, 0
    while i < len(x):
        n = int(rng.integers(rate // 200, rate // 8))
        if k not in gaps:
            cochlea.push(x[i : i + n], T0 + i * 1_000_000 // rate, rate)
        i, k = i + n, k + 1
        ready = cochlea.latest_time
        while ready is not None and next_start + FE.window_us <= ready:
            got, coverage = cochlea.window_tensor(next_start, next_start + FE.window_us)
            assert 0.0 <= coverage <= 1.0
            check(next_start, got)
            next_start += HOP_US
            n_checked += 1
    return n_checked


@pytest.mark.parametrize("rates", [(16000, 8000), (48000, 8000), (44100, 8000),
                                   (8000, 16000), (22050, 8000)])
def test_stream_resampler_equals_resampling_the_whole_stream(rates):
    rng = np.random.default_rng(sum(rates))
    x = rng.standard_normal(rates[0] * 2).astype(np.float32)
    r = StreamResampler(*rates)
    want = signal.resample_poly(x, r.up, r.down).astype(np.float32)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, rates[0] // 20))
        out.append(r.push(x[i : i + n]))
        i = min(i + n, len(x))
        # Latency: all but the filter's half length (10 * max(up, down) / up inputs) is out.
        behind = i * r.up / r.down - r.samples_out
        assert behind <= 10 * max(r.up, r.down) / r.down + 1
    got = np.concatenate(out)
    assert len(want) - len(got) <= 10 * max(r.up, r.down) / r.down + 1
    assert np.array_equal(got, want[: len(got)])  # bit for bit


def test_streaming_cochlea_equals_offline_on_real_speech(speech):
    cochlea = StreamingCochlea(FE, buffer_s=2.0)

    def check(start, got):
        pcm = cochlea.buffer.window(start, start + FE.window_us)
        assert np.array_equal(got, audio_tensor(pcm, 8000, FE)), start

    n = _stream(cochlea, speech, 8000, np.random.default_rng(0), check)
    assert n >= 80
    st = cochlea.stats
    # The mechanism is on: most frames are shared, each new hop's frames computed once.
    assert st.frames_reused > 5 * st.frames_computed
    assert st.resampler_restarts == 0


def test_streaming_cochlea_equals_offline_across_gaps_and_noise():
    rng = np.random.default_rng(5)
    x = (0.05 * rng.standard_normal(8000 * 4)).astype(np.float32)
    x[8000:12000] *= 20  # a loud burst
    cochlea = StreamingCochlea(FE, buffer_s=1.0)

    def check(start, got):
        pcm = cochlea.buffer.window(start, start + FE.window_us)
        assert np.array_equal(got, audio_tensor(pcm, 8000, FE)), start

    assert _stream(cochlea, x, 8000, rng, check, gaps=(5, 6, 20)) >= 40
    assert cochlea.buffer_stats.gaps >= 2


def test_window_cut_before_its_audio_arrived_does_not_poison_the_cache(speech):
    cochlea = StreamingCochlea(FE)
    half = round(0.3 * 8000)
    cochlea.push(speech[:half], T0, 8000)
    early, coverage = cochlea.window_tensor(T0, T0 + FE.window_us)  # half of it missing
    assert coverage == pytest.approx(0.5, abs=0.01)
    cochlea.push(speech[half : 2 * half + 8000], T0 + half * 125, 8000)
    for start in (T0, T0 + HOP_US):
        got, coverage = cochlea.window_tensor(start, start + FE.window_us)
        assert coverage == 1.0
        want = audio_tensor(cochlea.buffer.window(start, start + FE.window_us), 8000, FE)
        assert np.array_equal(got, want)
    assert not np.array_equal(early, got)


def test_streaming_cochlea_at_16k_equals_offline_of_the_resampled_stream(speech):
    x = signal.resample_poly(speech, 2, 1).astype(np.float32)  # a 16 kHz microphone
    resampled = signal.resample_poly(x, 1, 2).astype(np.float32)
    cochlea = StreamingCochlea(FE)
    n_win = round(FE.window_s * 8000)
    diffs = []

    def check(start, got):
        k0 = (start - T0) * 8000 // 1_000_000
        assert np.array_equal(got, audio_tensor(resampled[k0 : k0 + n_win], 8000, FE)), start
        # Against resampling the 16 kHz window on its own: only the edges can differ.
        raw = x[2 * k0 : 2 * k0 + 2 * n_win]
        diffs.append(np.abs(audio_tensor(raw, 16000, FE) - got).sum() / max(got.sum(), 1))

    assert _stream(cochlea, x, 16000, np.random.default_rng(2), check) >= 80
    assert np.median(diffs) < 0.01 and max(diffs) < 0.05


def test_rate_change_restarts_the_resampler():
    cochlea = StreamingCochlea(FE)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    cochlea.push(tone[:8000], T0, 16000)
    cochlea.push(tone[:24000:3][:4000], T0 + 500_000, 48000)  # the driver switched rates
    assert cochlea.stats.resampler_restarts == 1
    assert cochlea.latest_time is not None and cochlea.latest_time > T0 + 500_000


def test_overlapping_chunk_at_another_rate_is_trimmed_not_restarted():
    cochlea = StreamingCochlea(FE)
    x = np.random.default_rng(3).standard_normal(16000).astype(np.float32)
    cochlea.push(x[:8000], T0, 16000)
    # The next chunk claims to start 10 ms early: its first 160 samples are already placed.
    cochlea.push(x[7840:], T0 + 490_000, 16000)
    st = cochlea.stats
    assert st.resampler_restarts == 0 and st.overlap_dropped == 160
