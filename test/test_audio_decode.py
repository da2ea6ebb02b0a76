"""Audio message decoders (taaf_ros.audio.decode) and the WAV reader: no ROS graph needed.

audio_common_msgs (both the ros-drivers and the mgonzs13 package of that name) is not on PyPI,
so its messages are replaced by stand-ins below with exactly the fields of the .msg files and
the Python types rclpy gives them (``array.array`` for numeric sequences). std_msgs is real.
"""

from __future__ import annotations

import array
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taaf_ros.audio.decode import (
    PA_FLOAT32,
    PA_INT8,
    PA_INT16,
    PA_INT24,
    PA_INT32,
    PA_UINT8,
    AudioFormatError,
    PcmInfo,
    decode_audio_data_stamped,
    decode_audio_stamped,
    decode_multiarray,
    decode_pcm_bytes,
)
from taaf_ros.audio.wav import read_wav


# ---- stand-ins shaped like the message definitions -----------------------------------------
@dataclass
class Time:
    sec: int = 0
    nanosec: int = 0


@dataclass
class Header:
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class AudioData:  # ros-drivers audio_common_msgs/AudioData: uint8[] data
    data: array.array = field(default_factory=lambda: array.array("B"))


@dataclass
class AudioDataStamped:  # ros-drivers: std_msgs/Header header, AudioData audio
    header: Header = field(default_factory=Header)
    audio: AudioData = field(default_factory=AudioData)


@dataclass
class AudioInfo:  # ros-drivers: channels, sample_rate, sample_format, bitrate, coding_format
    channels: int = 1
    sample_rate: int = 16000
    sample_format: str = "S16LE"
    bitrate: int = 0
    coding_format: str = "wave"


@dataclass
class MgAudioData:  # mgonzs13 audio_common_msgs/AudioData
    float32_data: array.array = field(default_factory=lambda: array.array("f"))
    int32_data: array.array = field(default_factory=lambda: array.array("i"))
    int24_data: array.array = field(default_factory=lambda: array.array("i"))
    int16_data: array.array = field(default_factory=lambda: array.array("h"))
    int8_data: array.array = field(default_factory=lambda: array.array("b"))
    uint8_data: array.array = field(default_factory=lambda: array.array("B"))


@dataclass
class MgAudioInfo:  # mgonzs13 audio_common_msgs/AudioInfo
    format: int = PA_INT16
    channels: int = 1
    rate: int = 16000
    chunk: int = 512


@dataclass
class MgAudio:  # mgonzs13 audio_common_msgs/Audio: AudioData audio_data, AudioInfo info
    audio_data: MgAudioData = field(default_factory=MgAudioData)
    info: MgAudioInfo = field(default_factory=MgAudioInfo)


@dataclass
class MgAudioStamped:  # mgonzs13: std_msgs/Header header, Audio audio
    header: Header = field(default_factory=Header)
    audio: MgAudio = field(default_factory=MgAudio)


def s16_bytes(values) -> array.array:
    return array.array("B", np.asarray(values, dtype="<i2").tobytes())


# ---- ros-drivers AudioDataStamped ----------------------------------------------------------
def test_s16le_mono_values_and_stamp():
    msg = AudioDataStamped(Header(Time(12, 345)), AudioData(s16_bytes([0, 16384, -32768, 32767])))
    chunk = decode_audio_data_stamped(msg, AudioInfo(sample_rate=8000))
    np.testing.assert_allclose(chunk.samples, [0.0, 0.5, -1.0, 32767 / 32768])
    assert chunk.samples.dtype == np.float32
    assert chunk.sample_rate == 8000
    assert chunk.stamp_ns == 12_000_000_345
    assert (chunk.truncated, chunk.sanitised) == (0, 0)


def test_s16le_stereo_is_averaged_to_mono():
    # frames (L, R): (16384, 0), (-16384, -16384), (8192, -8192)
    msg = AudioDataStamped(audio=AudioData(s16_bytes([16384, 0, -16384, -16384, 8192, -8192])))
    chunk = decode_audio_data_stamped(msg, AudioInfo(channels=2))
    np.testing.assert_allclose(chunk.samples, [0.25, -0.5, 0.0])


def test_partial_frame_and_odd_byte_are_truncated_and_counted():
    payload = s16_bytes([100, 200, 300])  # 3 samples = 1.5 stereo frames
    payload.append(7)  # plus half a sample
    chunk = decode_audio_data_stamped(AudioDataStamped(audio=AudioData(payload)),
                                      AudioInfo(channels=2))
    assert chunk.samples.shape == (1,)
    assert chunk.truncated == 2  # one whole sample of the partial frame + one partial sample


def test_bare_audio_data_has_no_stamp():
    chunk = decode_audio_data_stamped(AudioData(s16_bytes([1, 2])), PcmInfo(sample_rate=16000))
    assert chunk.stamp_ns is None and chunk.samples.shape == (2,)


@pytest.mark.parametrize("coding", ["mp3", "MP3", "opus"])
def test_compressed_payload_is_refused(coding):
    msg = AudioDataStamped(audio=AudioData(array.array("B", b"\xff\xfb\x90\x00" * 10)))
    with pytest.raises(AudioFormatError, match="compressed"):
        decode_audio_data_stamped(msg, AudioInfo(coding_format=coding))


@pytest.mark.parametrize(
    "info",
    [
        AudioInfo(channels=0),
        AudioInfo(channels=200),
        AudioInfo(sample_rate=0),
        AudioInfo(sample_rate=10**9),
        AudioInfo(sample_format="S24_3BE"),
        AudioInfo(channels=None),
    ],
)
def test_bad_info_is_refused(info):
    with pytest.raises(AudioFormatError):
        decode_audio_data_stamped(AudioDataStamped(audio=AudioData(s16_bytes([1, 2]))), info)


def test_absurd_size_is_refused_before_conversion():
    big = bytes(2 * 8000 * 61)  # 61 s of 8 kHz S16LE mono in one message
    with pytest.raises(AudioFormatError, match="exceeds"):
        decode_pcm_bytes(big, 1, 8000)


def test_other_raw_formats():
    u8 = decode_pcm_bytes(bytes([128, 255, 0]), 1, 8000, "U8").samples
    np.testing.assert_allclose(u8, [0.0, 127 / 128, -1.0])
    f32 = np.array([0.5, np.nan, 3.0, -np.inf], dtype="<f4").tobytes()
    chunk = decode_pcm_bytes(f32, 1, 8000, "F32LE")
    np.testing.assert_allclose(chunk.samples, [0.5, 0.0, 1.0, 0.0])
    assert chunk.sanitised == 3


@settings(max_examples=150, deadline=None)
@given(
    payload=st.binary(max_size=2000),
    channels=st.integers(1, 8),
    fmt=st.sampled_from(["S16LE", "S32LE", "F32LE", "S8", "U8"]),
)
def test_fuzz_raw_bytes_never_crash(payload, channels, fmt):
    chunk = decode_pcm_bytes(array.array("B", payload), channels, 16000, fmt)
    width = {"S16LE": 2, "S32LE": 4, "F32LE": 4, "S8": 1, "U8": 1}[fmt]
    n_values = len(payload) // width
    assert chunk.samples.shape == (n_values // channels,)
    assert chunk.truncated == n_values % channels + (len(payload) % width != 0)
    assert chunk.samples.dtype == np.float32
    assert np.all(np.isfinite(chunk.samples)) and np.all(np.abs(chunk.samples) <= 1.0)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-300, 300), max_size=50), channels=st.integers(-2, 300))
def test_fuzz_list_payloads_and_channel_counts(values, channels):
    # A hand-made message may carry a list (even with out-of-range "bytes") and any channel count.
    msg = AudioDataStamped(audio=AudioData(values))
    try:
        chunk = decode_audio_data_stamped(msg, AudioInfo(channels=channels))
    except AudioFormatError:
        assert not 1 <= channels <= 64 or any(not 0 <= v <= 255 for v in values)
    else:
        assert chunk.samples.shape == (len(values) // 2 // channels,)


# ---- mgonzs13 AudioStamped -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "field_name", "values", "expected"),
    [
        (PA_FLOAT32, "float32_data", array.array("f", [0.5, -0.25]), [0.5, -0.25]),
        (PA_INT32, "int32_data", array.array("i", [2**30, -(2**31)]), [0.5, -1.0]),
        (PA_INT24, "int24_data", array.array("i", [2**22, -(2**23)]), [0.5, -1.0]),
        (PA_INT16, "int16_data", array.array("h", [16384, -32768]), [0.5, -1.0]),
        (PA_INT8, "int8_data", array.array("b", [64, -128]), [0.5, -1.0]),
        (PA_UINT8, "uint8_data", array.array("B", [192, 0]), [0.5, -1.0]),
    ],
)
def test_audio_stamped_each_format(fmt, field_name, values, expected):
    data = MgAudioData(**{field_name: values})
    msg = MgAudioStamped(Header(Time(3, 4)), MgAudio(data, MgAudioInfo(format=fmt, rate=16000)))
    chunk = decode_audio_stamped(msg)
    np.testing.assert_allclose(chunk.samples, expected)
    assert chunk.stamp_ns == 3_000_000_004 and chunk.sample_rate == 16000


def test_portaudio_constants_match_portaudio_h():
    # portaudio.h: paFloat32 0x01, paInt32 0x02, paInt24 0x04, paInt16 0x08, paInt8 0x10,
    # paUInt8 0x20.
    assert (PA_FLOAT32, PA_INT32, PA_INT24, PA_INT16, PA_INT8, PA_UINT8) == (
        0x01, 0x02, 0x04, 0x08, 0x10, 0x20,
    )


def test_audio_stamped_stereo_float_with_nan():
    data = MgAudioData(float32_data=array.array("f", [1.0, 0.0, float("nan"), 0.5, 2.0]))
    msg = MgAudioStamped(audio=MgAudio(data, MgAudioInfo(format=PA_FLOAT32, channels=2)))
    chunk = decode_audio_stamped(msg)
    np.testing.assert_allclose(chunk.samples, [0.5, 0.25])
    assert chunk.truncated == 1 and chunk.sanitised == 1


def test_audio_stamped_format_and_data_disagree():
    data = MgAudioData(float32_data=array.array("f", [0.1, 0.2]))
    msg = MgAudioStamped(audio=MgAudio(data, MgAudioInfo(format=PA_INT16)))
    with pytest.raises(AudioFormatError, match="float32_data"):
        decode_audio_stamped(msg)


@pytest.mark.parametrize("fmt", [0, 3, 64, "x"])
def test_audio_stamped_unknown_format(fmt):
    msg = MgAudioStamped(audio=MgAudio(MgAudioData(), MgAudioInfo(format=fmt)))
    with pytest.raises(AudioFormatError):
        decode_audio_stamped(msg)


def test_audio_stamped_empty_is_empty_chunk():
    chunk = decode_audio_stamped(MgAudioStamped())
    assert chunk.samples.shape == (0,) and chunk.truncated == 0


# ---- std_msgs MultiArrays (real messages) ---------------------------------------------------
@pytest.fixture(scope="module")
def std_msgs():
    return pytest.importorskip("std_msgs.msg")


def test_int16_multiarray_stereo(std_msgs):
    msg = std_msgs.Int16MultiArray(data=[16384, 0, -32768, -32768])
    chunk = decode_multiarray(msg, sample_rate=8000, channels=2)
    np.testing.assert_allclose(chunk.samples, [0.25, -1.0])
    assert chunk.stamp_ns is None and chunk.sample_rate == 8000


def test_float32_multiarray_sanitised(std_msgs):
    msg = std_msgs.Float32MultiArray(data=[0.5, float("inf"), -7.0])
    chunk = decode_multiarray(msg, sample_rate=16000)
    np.testing.assert_allclose(chunk.samples, [0.5, 0.0, -1.0])
    assert chunk.sanitised == 2


def test_unsupported_multiarray_type(std_msgs):
    with pytest.raises(AudioFormatError, match="String"):
        decode_multiarray(std_msgs.String(data="hello"), sample_rate=16000)


def test_multiarray_bad_rate(std_msgs):
    with pytest.raises(AudioFormatError):
        decode_multiarray(std_msgs.Int16MultiArray(data=[1]), sample_rate=-5)


# ---- WAV files -----------------------------------------------------------------------------
def write_wav(path: Path, frames: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())


def test_read_wav_stereo_and_resample(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    left = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    write_wav(tmp_path / "a.wav", np.stack([left, left], axis=1), rate)
    chunk = read_wav(tmp_path / "a.wav")
    assert chunk.sample_rate == rate and chunk.samples.shape == (rate,)
    np.testing.assert_allclose(chunk.samples, left / 32768, atol=1e-6)
    down = read_wav(tmp_path / "a.wav", target_rate=8000)
    assert down.sample_rate == 8000 and down.samples.shape == (8000,)
    assert abs(np.sqrt(np.mean(down.samples[100:-100] ** 2)) - 0.5 / np.sqrt(2)) < 0.01


def test_read_wav_garbage(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF not really")
    with pytest.raises(AudioFormatError):
        read_wav(tmp_path / "x.wav")


def test_read_real_fsdd_wav(fsdd_wav):
    chunk = read_wav(fsdd_wav)
    assert chunk.sample_rate == 8000
    assert 0.2 < chunk.duration_s < 1.5
    assert 0.01 < np.abs(chunk.samples).max() <= 1.0
