"""Real-time factor of the cochlea front end (processing time / audio duration; goal < 0.02).

Runs over real FSDD recordings and a long synthetic signal, and times librosa's
``melspectrogram`` with the same FFT size, hop and channel count in the same run, as a
reference for the filter-bank stage (it produces no events, so it is a lower bar, not an
equivalent). Then the live node's audio front end per window (0.6 s windows every 50 ms):
the streaming cochlea (resampled once, frames shared between windows) against running each
window through ``audio_tensor`` on its own, on the real recordings at 8, 16 and 48 kHz::

    python benchmarks/bench_cochlea.py --files 50 --data-root ../shared/data

(with the package installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` from the repo root).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import record
from scipy import signal

from taaf_ros.audio.cochlea import CochleaConfig, encode_audio
from taaf_ros.audio.wav import read_wav
from taaf_ros.frontend import FrontEndConfig, audio_tensor
from taaf_ros.stream.audio_frames import StreamingCochlea

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_root() -> Path:
    env = os.environ.get("TAAF_DATA_ROOT")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls (s): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def synthetic(seconds: float, rate: int) -> np.ndarray:
    """Chirps with a syllable-like 4 Hz amplitude envelope plus weak noise, full scale ~0.3."""
    t = np.arange(int(seconds * rate)) / rate
    chirp = np.sin(2 * np.pi * (200 * t + 150 * np.sin(2 * np.pi * 0.5 * t)))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    noise = np.random.default_rng(0).normal(0, 1e-3, t.size)
    return (0.3 * env * chirp + noise).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root(),
                        help="folder holding fsdd/recordings (default: TAAF_DATA_ROOT or "
                             "../shared/data beside the repository)")
    parser.add_argument("--files", type=int, default=50, help="FSDD files to time")
    parser.add_argument("--seconds", type=float, default=10.0, help="synthetic signal length")
    parser.add_argument("--repeats", type=int, default=5, help="timings per input (min kept)")
    parser.add_argument("--no-reference", action="store_true", help="skip librosa")
    record.add_argument(parser)
    args = parser.parse_args(argv)
    rows: list[record.Row] = []

    cfg = CochleaConfig()
    encode_audio(np.zeros(cfg.sample_rate, np.float32), cfg.sample_rate, cfg)  # JIT warm-up

    mel: Callable[[np.ndarray], object] | None = None
    if not args.no_reference:
        try:
            import librosa

            def mel(x: np.ndarray) -> object:
                return librosa.feature.melspectrogram(
                    y=x, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_samples,
                    win_length=cfg.window_samples, n_mels=cfg.n_channels, fmin=cfg.fmin_hz,
                    fmax=cfg.fmax_hz,
                )

            mel(np.zeros(cfg.sample_rate, np.float32))
        except ImportError:
            print("librosa not installed: no reference timing")

    inputs: list[tuple[str, list[tuple[np.ndarray, int]]]] = []
    wavs = sorted((args.data_root / "fsdd" / "recordings").glob("*.wav"))
    if wavs:
        step = max(1, len(wavs) // args.files)
        chunks = [read_wav(p) for p in wavs[::step][: args.files]]
        inputs.append((f"FSDD x{len(chunks)}", [(c.samples, c.sample_rate) for c in chunks]))
    else:
        print(f"no FSDD recordings under {args.data_root}: synthetic signal only")
    inputs.append((f"synthetic {args.seconds:g} s", [(synthetic(args.seconds, 8000), 8000)]))
    inputs.append((f"synthetic {args.seconds:g} s @48k",
                   [(synthetic(args.seconds, 48000), 48000)]))

    print(f"{'input':<22}{'audio s':>9}{'events':>9}{'cochlea s':>11}{'RTF':>9}"
          f"{'librosa s':>11}{'ratio':>8}")
    for name, items in inputs:
        audio_s = sum(x.size / sr for x, sr in items)
        n_events = sum(encode_audio(x, sr, cfg).size for x, sr in items)
        ours = sum(best_time(lambda x=x, sr=sr: encode_audio(x, sr, cfg), args.repeats)
                   for x, sr in items)
        line = f"{name:<22}{audio_s:>9.2f}{n_events:>9d}{ours:>11.4f}{ours / audio_s:>9.4f}"
        if mel is not None and all(sr == cfg.sample_rate for _, sr in items):
            ref = sum(best_time(lambda x=x: mel(x), args.repeats) for x, _ in items)
            line += f"{ref:>11.4f}{ours / ref:>8.2f}"
            rows.append(record.Row(f"cochlea front end, {name} ({audio_s:.1f} s of audio)",
                                   f"real-time factor {ours / audio_s:.4f}", f"librosa's mel "
                                   f"spectrogram alone: {ref / audio_s:.4f}", ref / ours))
        print(line)
    print("RTF = processing time / audio duration (goal < 0.02); ratio = cochlea / librosa "
          "melspectrogram (same FFT, hop, channels; 8 kHz inputs only)")
    speech = np.concatenate([x for x, sr in inputs[0][1]]) if wavs else inputs[-2][1][0][0]
    rows += live_windows(speech, args.repeats)
    record.write(args.record, "The audio front end (cochlea: filterbank, envelopes, "
                 "level-crossing events)", rows)


def live_windows(speech: np.ndarray, repeats: int, hop_us: int = 50_000,
                 chunk_s: float = 0.02) -> list[record.Row]:
    """Per-window cost of the live audio front end, streaming vs each window on its own."""
    fe = FrontEndConfig()
    print(f"\nlive windows ({fe.window_s:g} s every {hop_us / 1000:g} ms, "
          f"{len(speech) / 8000:.1f} s of speech, {chunk_s * 1000:g} ms chunks)")
    rows = []
    print(f"{'rate':<8}{'windows':>8}{'per-window ms':>15}{'streaming ms':>14}{'ratio':>8}"
          f"{'frames computed':>17}")
    for rate in (8000, 16000, 48000):
        x = speech if rate == 8000 else signal.resample_poly(speech, rate // 8000, 1)
        n_win, a, b, computed = _live_rate(x.astype(np.float32), rate, fe, hop_us, chunk_s,
                                           repeats)
        print(f"{rate:<8}{n_win:>8}{a:>15.3f}{b:>14.3f}{a / b:>7.1f}x{computed:>16.0%}")
        rows.append(record.Row(
            f"live audio front end per window ({fe.window_s:g} s every {hop_us / 1000:g} ms), "
            f"{rate / 1000:g} kHz speech", f"{b:.2f} ms", f"each window on its own: {a:.2f} ms",
            a / b, headline=rate == 16000))
    print("streaming includes resampling and pushing every chunk; per-window resamples each "
          "window; frames computed = share of cochlea frames not taken from the cache")
    return rows


def _live_rate(x: np.ndarray, rate: int, fe: FrontEndConfig, hop_us: int, chunk_s: float,
               repeats: int) -> tuple[int, float, float, float]:
    """(windows, per-window ms, streaming ms, share of frames computed) at one rate."""
    chunk, n_win = round(chunk_s * rate), round(fe.window_s * rate)
    starts = range(0, len(x) - n_win, hop_us * rate // 1_000_000)

    def per_window() -> None:
        for k in starts:
            audio_tensor(x[k : k + n_win], rate, fe)

    def streaming() -> StreamingCochlea:
        sc, next_start = StreamingCochlea(fe), 0
        for i in range(0, len(x), chunk):
            sc.push(x[i : i + chunk], i * 1_000_000 // rate, rate)
            while next_start + fe.window_us <= (sc.latest_time or 0):
                sc.window_tensor(next_start, next_start + fe.window_us)
                next_start += hop_us
        return sc

    st = streaming().stats  # warm-up, and the frame counters
    a = best_time(per_window, repeats) / len(starts) * 1e3
    b = best_time(streaming, repeats) / len(starts) * 1e3
    return len(starts), a, b, st.frames_computed / (st.frames_computed + st.frames_reused)


if __name__ == "__main__":
    main()
