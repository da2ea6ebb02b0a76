"""MP3 microphone streams (audio_capture's default) decoded chunk by chunk.

The stream is made the way audio_capture makes it: a real FSDD recording at 16 kHz mono, LAME
at 192 kbit/s CBR (audio_capture's lamemp3enc settings), one message per encoder buffer (one
MP3 frame), each stamped with the capture time of its first sample. PyAV's own libmp3lame
encodes it here; the decoder under test is PyAV's FFmpeg MP3 decoder.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

av = pytest.importorskip("av")

from scipy.signal import resample_poly  # noqa: E402

from taaf_ros.audio.compressed import CompressedAudioStream  # noqa: E402
from taaf_ros.audio.decode import AudioFormatError  # noqa: E402
from taaf_ros.audio.wav import read_wav  # noqa: E402
from taaf_ros.stream.inputs import AudioInput  # noqa: E402

RATE = 16_000
T0_NS = 1_700_000_000_123_456_789
LAME_PLUS_FFMPEG_DELAY = 1105  # samples: LAME's encoder delay (576 + 529 decoder delay)


def encode_mp3(pcm: np.ndarray, rate: int = RATE, kbps: int = 192) -> list[tuple[bytes, int]]:
    """[(one MP3 frame, pts in samples)] as lamemp3enc hands them to audio_capture."""
    enc = av.CodecContext.create("libmp3lame", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = rate, "mono", "s16p", kbps * 1000
    enc.open()
    s16 = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    out = []
    for i in range(0, len(s16), 1024):  # alsasrc-like capture blocks
        frame = av.AudioFrame.from_ndarray(s16[None, i:i + 1024], format="s16p", layout="mono")
        frame.sample_rate, frame.pts = rate, i
        out += [(bytes(p), int(p.pts)) for p in enc.encode(frame)]
    out += [(bytes(p), int(p.pts)) for p in enc.encode(None)]
    return out


@pytest.fixture(scope="module")
def speech(data_root: Path) -> np.ndarray:
    """Three real recordings back to back, at audio_capture's default 16 kHz."""
    names = ["3_jackson_7.wav", "0_george_0.wav", "7_theo_3.wav"]
    parts = [read_wav(data_root / "fsdd" / "recordings" / n) for n in names]
    x = np.concatenate([resample_poly(p.samples, RATE, p.sample_rate) for p in parts])
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def messages(speech) -> list[tuple[bytes, int]]:
    """(payload, header stamp ns) per message: one frame each, stamped at its first sample."""
    return [(data, T0_NS + max(pts, 0) * 10**9 // RATE) for data, pts in encode_mp3(speech)]


def decode_all(msgs, stream=None):
    stream = stream or CompressedAudioStream("mp3")
    return stream, [stream.decode(data, stamp) for data, stamp in msgs]


def test_frames_decode_to_the_recording_delayed_by_the_codec(speech, messages):
    _, chunks = decode_all(messages)
    y = np.concatenate([c.samples for c in chunks])
    assert all(c.sample_rate == RATE for c in chunks if len(c.samples))
    lag = int(np.argmax(np.correlate(y, speech, "full"))) - (len(speech) - 1)
    assert lag == LAME_PLUS_FFMPEG_DELAY
    aligned = y[lag:lag + len(speech)]
    snr = 10 * np.log10(np.sum(speech**2) / np.sum((aligned - speech) ** 2))
    assert snr > 20, snr  # 192 kbit/s on speech


def test_samples_follow_the_first_stamp_by_count(messages):
    stream, chunks = decode_all(messages)
    placed = [c for c in chunks if len(c.samples)]
    assert placed[0].stamp_ns == T0_NS
    n = 0
    for c in placed:
        assert c.stamp_ns == T0_NS + n * 10**9 // RATE  # no drift, no gap, jitter ignored
        n += len(c.samples)
    assert stream.resyncs == 0 and stream.bad_packets == 0


def test_any_split_of_the_bytes_gives_the_same_samples(messages):
    """audio_capture's buffers need not be whole frames: random cuts, one frame held back."""
    _, whole = decode_all(messages)
    want = np.concatenate([c.samples for c in whole])
    stream_bytes = b"".join(d for d, _ in messages)
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, len(stream_bytes)), 300, replace=False))
    pieces = np.split(np.frombuffer(stream_bytes, np.uint8), cuts)
    stream = CompressedAudioStream("mp3")
    got, pos = [], 0
    for p in pieces:
        # Each piece stamped at the time of its first byte (CBR: bytes are time).
        stamp = T0_NS + int(pos / len(stream_bytes) * len(want) * 10**9 // RATE)
        got.append(stream.decode(p.tobytes(), stamp))
        pos += len(p)
    np.testing.assert_array_equal(np.concatenate([c.samples for c in got]), want)
    assert stream.resyncs == 0


def test_a_dropped_message_resyncs_to_the_next_stamp(messages):
    kept = messages[:10] + messages[20:]  # 10 frames (360 ms) lost
    stream, chunks = decode_all(kept)
    assert stream.resyncs == 1
    after = next(c for (_, s), c in zip(kept[10:], chunks[10:], strict=True) if len(c.samples))
    # Placed at (about) its own stamp again, not back to back with the frames before the gap.
    assert abs(after.stamp_ns - kept[10][1]) <= 2 * 576 * 10**9 // RATE


def test_garbage_is_refused_or_skipped_and_the_stream_goes_on(messages):
    stream = CompressedAudioStream("mp3")
    rng = np.random.default_rng(0)
    for data, stamp in messages[:20]:
        stream.decode(data, stamp)
    for _ in range(5):
        try:
            c = stream.decode(rng.integers(0, 256, 700, dtype=np.uint8).tobytes(), None)
            assert np.all(np.abs(c.samples) <= 1)
        except AudioFormatError:
            pass
    tail = [stream.decode(d, s) for d, s in messages[20:]]
    assert sum(len(c.samples) for c in tail) > 0.9 * 576 * len(tail)
    with pytest.raises(AudioFormatError, match="exceeds"):
        stream.decode(b"\0" * (5 * 1024 * 1024), None)
    with pytest.raises(AudioFormatError, match="not supported"):
        CompressedAudioStream("opus")


def test_node_input_decodes_audio_captures_mp3(speech, messages):
    """The perception node's audio input, told by AudioInfo that the stream is MP3."""
    audio_in = AudioInput("audio_data_stamped", 16000, 1, max_offset_us=10**12)
    audio_in.info = SimpleNamespace(channels=1, sample_rate=RATE, sample_format="S16LE",
                                    bitrate=192, coding_format="mp3")
    pieces = []
    for data, stamp in messages:
        sec, ns = divmod(stamp, 10**9)
        msg = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=ns)),
                              audio=SimpleNamespace(data=data))
        pieces.append(audio_in.decode(msg, stamp // 1000, stamp // 1000))
    full = [p for p in pieces if len(p.samples)]
    assert full[0].start_us == T0_NS // 1000 and all(p.sample_rate == RATE for p in full)
    assert sum(len(p.samples) for p in full) >= len(speech)
    assert audio_in.stamped_by["header"] == len(full) and audio_in.stamped_by["receipt"] == 0
    assert audio_in.stats()["compressed_resyncs"] == 0
