"""Decode ROS 2 audio messages into mono float PCM, without importing any message package.

Three message families carry microphone audio (docs/ros.md, "Audio codings"); each decoder
reads only the fields it needs (duck typing), so the audio message packages, which are not on
PyPI, are never imported here:

* ``audio_common_msgs/AudioDataStamped`` + ``AudioInfo`` (ros-drivers/audio_common, ROS 2
  branch): ``header``, ``audio.data`` (uint8[], raw interleaved PCM); the info gives
  ``channels``, ``sample_rate``, ``sample_format`` (e.g. ``S16LE``) and ``coding_format``
  (``wave`` or ``mp3``). Raw PCM is decoded here; MP3 (audio_capture's default) by
  :mod:`taaf_ros.audio.compressed`, which keeps the stream's state.
* ``audio_common_msgs/AudioStamped`` (mgonzs13/audio_common): ``header`` +
  ``audio{audio_data{float32_data, int32_data, int24_data, int16_data, int8_data, uint8_data},
  info{format, channels, rate, chunk}}``; ``format`` is a PortAudio sample-format constant.
* ``std_msgs/Int16MultiArray`` / ``Float32MultiArray``: interleaved samples, no header.

Every decoder returns an :class:`AudioChunk` or raises :class:`AudioFormatError`; recoverable
defects (a partial trailing frame, NaN/inf, out-of-range floats) are repaired and counted.
"""

from __future__ import annotations

import array
from typing import Any, NamedTuple

import numpy as np

from taaf_ros.defaults import STREAM_AUDIO_RATE_HZ

# PortAudio sample formats (portaudio.h: paFloat32 0x01, paInt32 0x02, paInt24 0x04,
# paInt16 0x08, paInt8 0x10, paUInt8 0x20); mgonzs13/audio_common stores them in info.format.
PA_FLOAT32 = 1
PA_INT32 = 2
PA_INT24 = 4
PA_INT16 = 8
PA_INT8 = 16
PA_UINT8 = 32

MAX_CHANNELS = 64
"""More interleaved channels than this is taken as a corrupt message, not a microphone array."""
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
"""Sample rates outside [1 kHz, 384 kHz] are refused (Hz)."""
MAX_CHUNK_SECONDS = 60.0
"""A single message longer than this (s of audio) is refused: it would stall the window logic."""


class AudioFormatError(ValueError):
    """A message that cannot be decoded: unsupported coding, bad metadata, absurd size."""


class AudioChunk(NamedTuple):
    """One decoded message.

    samples: mono PCM, float32, shape (N,), values in [-1, 1] (full scale = 1).
    sample_rate: samples per second of ``samples`` (Hz).
    stamp_ns: header stamp of the first sample (ns since the epoch of the ROS clock), or
        ``None`` when the message has no header (the caller stamps it at receipt).
    truncated: input samples dropped because the payload ended inside a frame (a partial
        sample of a byte stream counts as one).
    sanitised: samples repaired: NaN/inf set to 0, out-of-range floats clipped to [-1, 1].
    """

    samples: np.ndarray
    sample_rate: int
    stamp_ns: int | None
    truncated: int = 0
    sanitised: int = 0

    @property
    def duration_s(self) -> float:
        """Length of the chunk (s)."""
        return self.samples.shape[0] / self.sample_rate


class PcmInfo(NamedTuple):
    """Stand-in for ``AudioInfo`` when rate and layout come from node parameters instead.

    Shaped like ros-drivers ``audio_common_msgs/AudioInfo`` so it can be passed wherever one is.
    """

    channels: int = 1
    sample_rate: int = STREAM_AUDIO_RATE_HZ
    sample_format: str = "S16LE"
    coding_format: str = "wave"
    bitrate: int = 0


# sample_format (GStreamer names, as audio_capture uses) -> (numpy dtype, full-scale divisor,
# offset subtracted before dividing).
_RAW_FORMATS: dict[str, tuple[str, float, float]] = {
    "S16LE": ("<i2", 32768.0, 0.0),
    "S32LE": ("<i4", 2147483648.0, 0.0),
    "F32LE": ("<f4", 1.0, 0.0),
    "S8": ("i1", 128.0, 0.0),
    "U8": ("u1", 128.0, 128.0),
}
_PCM_CODINGS = {"wave", "wav", "pcm", "raw", ""}

# PortAudio format -> (AudioData field, numpy dtype, full-scale divisor, offset).
_PA_FORMATS: dict[int, tuple[str, str, float, float]] = {
    PA_FLOAT32: ("float32_data", "f4", 1.0, 0.0),
    PA_INT32: ("int32_data", "i4", 2147483648.0, 0.0),
    PA_INT24: ("int24_data", "i4", 8388608.0, 0.0),  # 24-bit values in int32 containers
    PA_INT16: ("int16_data", "i2", 32768.0, 0.0),
    PA_INT8: ("int8_data", "i1", 128.0, 0.0),
    PA_UINT8: ("uint8_data", "u1", 128.0, 128.0),
}


def stamp_to_ns(header: Any) -> int:
    """``builtin_interfaces/Time`` of a header as integer nanoseconds."""
    stamp = header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _check_layout(channels: Any, sample_rate: Any) -> tuple[int, int]:
    try:
        channels, sample_rate = int(channels), int(sample_rate)
    except (TypeError, ValueError) as err:
        raise AudioFormatError(f"channels/sample rate not integers: {err}") from None
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"channels must be in [1, {MAX_CHANNELS}], got {channels}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            f"sample rate must be in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz, got {sample_rate}"
        )
    return channels, sample_rate


def _check_size(n_values: int, channels: int, sample_rate: int) -> None:
    # Checked before any conversion, so a hostile message costs no more than its own length.
    if n_values > MAX_CHUNK_SECONDS * sample_rate * channels:
        raise AudioFormatError(
            f"{n_values} samples at {sample_rate} Hz x {channels} ch exceeds "
            f"{MAX_CHUNK_SECONDS} s per message"
        )


def _field_array(values: Any, dtype: str) -> np.ndarray:
    """A message sequence field (bytes, array.array, list, ndarray) as a 1-D array of ``dtype``.

    rclpy delivers numeric sequences as ``array.array`` (``uint8[]`` as bytes-like): read those
    through the buffer protocol without copying; lists (stand-ins, hand-made messages) are
    converted and must fit the type.
    """
    target = np.dtype(dtype)
    if isinstance(values, (bytes, bytearray, memoryview)) and target.itemsize == 1:
        return np.frombuffer(values, dtype=target)
    if isinstance(values, array.array) and values.itemsize == target.itemsize:
        kind_ok = (values.typecode in "fd") == (target.kind == "f")
        if kind_ok:
            return np.frombuffer(values, dtype=target)
    try:
        out = np.asarray(values)
        if out.ndim != 1:
            out = out.reshape(-1)
        if out.dtype.kind not in "iufb":
            raise AudioFormatError(f"expected numeric samples, got {out.dtype}")
        if out.size and target.kind != "f":
            if out.dtype.kind not in "iub":
                raise AudioFormatError(f"expected integer samples, got {out.dtype}")
            info = np.iinfo(target)
            if out.min() < info.min or out.max() > info.max:
                raise AudioFormatError(f"sample values outside the {target} range")
        return out.astype(target, copy=False)
    except (TypeError, ValueError, OverflowError) as err:
        if isinstance(err, AudioFormatError):
            raise
        raise AudioFormatError(f"cannot read samples as {target}: {err}") from None


def _to_mono(
    raw: np.ndarray,
    channels: int,
    scale: float,
    offset: float,
    sample_rate: int,
    stamp_ns: int | None,
    truncated: int = 0,
) -> AudioChunk:
    """Interleaved samples -> mono float32 in [-1, 1], repairing and counting defects."""
    n_frames = raw.shape[0] // channels
    truncated += raw.shape[0] - n_frames * channels
    frames = raw[: n_frames * channels].reshape(n_frames, channels)
    x = frames.astype(np.float64)
    sanitised = 0
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(x)
        n_bad = int(bad.sum())
        if n_bad:
            x[bad] = 0.0
        over = np.abs(x) > 1.0
        sanitised = n_bad + int(over.sum())
    x = ((x - offset) / scale).mean(axis=1) if channels > 1 else (x[:, 0] - offset) / scale
    # Integer full scale is asymmetric (-32768..32767): clipping keeps the [-1, 1] promise.
    samples = np.clip(x, -1.0, 1.0).astype(np.float32)
    return AudioChunk(samples, sample_rate, stamp_ns, truncated, sanitised)


def decode_pcm_bytes(
    data: Any,
    channels: int,
    sample_rate: int,
    sample_format: str = "S16LE",
    stamp_ns: int | None = None,
) -> AudioChunk:
    """Decode a raw interleaved PCM byte payload.

    data: bytes-like or sequence of ints 0..255 (a ``uint8[]`` field).
    channels: interleaved channels, mixed to mono by averaging.
    sample_rate: Hz. sample_format: one of S16LE, S32LE, F32LE, S8, U8.
    A trailing partial sample or partial frame is dropped and counted in ``truncated``.
    """
    channels, sample_rate = _check_layout(channels, sample_rate)
    fmt = str(sample_format).upper()
    if fmt not in _RAW_FORMATS:
        raise AudioFormatError(
            f"sample_format {sample_format!r} not supported (use one of {sorted(_RAW_FORMATS)})"
        )
    dtype, scale, offset = _RAW_FORMATS[fmt]
    buf = _field_array(data, "u1")
    width = np.dtype(dtype).itemsize
    _check_size(buf.shape[0] // width, channels, sample_rate)
    n_whole = buf.shape[0] // width
    partial = int(buf.shape[0] % width != 0)
    raw = np.frombuffer(buf[: n_whole * width].tobytes(), dtype=dtype)
    return _to_mono(raw, channels, scale, offset, sample_rate, stamp_ns, truncated=partial)


def check_audio_info(info: Any, compressed: tuple[str, ...] = ()) -> None:
    """Raise AudioFormatError naming what of an ``AudioInfo`` this package cannot decode: its
    channels or rate out of range, an unknown sample format for raw PCM, or a coding that is
    neither raw PCM nor one of ``compressed``.

    >>> try:
    ...     check_audio_info(PcmInfo(channels=1, sample_rate=0))
    ... except AudioFormatError as exc:
    ...     print(exc)
    sample rate must be in [1000, 384000] Hz, got 0
    """
    _check_layout(getattr(info, "channels", None), getattr(info, "sample_rate", None))
    coding = str(getattr(info, "coding_format", "wave")).strip().lower()
    if coding in _PCM_CODINGS:
        fmt = str(getattr(info, "sample_format", "S16LE") or "S16LE").upper()
        if fmt not in _RAW_FORMATS:
            raise AudioFormatError(f"sample_format {fmt!r} not supported (use one of "
                                   f"{sorted(_RAW_FORMATS)})")
    elif coding not in compressed:
        raise AudioFormatError(f"coding_format {coding!r} is not supported (raw PCM: wave; "
                               f"compressed: {', '.join(compressed) or 'none'})")


def is_compressed(info: Any) -> bool:
    """True when an ``AudioInfo`` says its stream is not raw PCM (e.g. audio_capture's mp3)."""
    return str(getattr(info, "coding_format", "wave")).strip().lower() not in _PCM_CODINGS


def decode_audio_data_stamped(msg: Any, info: Any) -> AudioChunk:
    """Decode ros-drivers ``AudioDataStamped`` (or a bare ``AudioData``) using ``AudioInfo``.

    msg: has ``header`` and ``audio.data`` (uint8[]); a bare ``AudioData`` (``data`` only,
        no header) gives ``stamp_ns=None``.
    info: ``AudioInfo`` or :class:`PcmInfo`: channels, sample_rate (Hz), sample_format,
        coding_format. Only raw PCM (``wave``) is decoded here: a compressed stream (``mp3``)
        needs the state of :class:`taaf_ros.audio.compressed.CompressedAudioStream`.
    """
    coding = str(getattr(info, "coding_format", "wave")).strip().lower()
    if coding not in _PCM_CODINGS:
        raise AudioFormatError(
            f"coding_format {coding!r} is compressed: decode it with "
            "taaf_ros.audio.compressed.CompressedAudioStream"
        )
    audio = getattr(msg, "audio", msg)
    header = getattr(msg, "header", None)
    stamp = stamp_to_ns(header) if header is not None else None
    return decode_pcm_bytes(
        audio.data,
        getattr(info, "channels", None),
        getattr(info, "sample_rate", None),
        getattr(info, "sample_format", "S16LE") or "S16LE",
        stamp,
    )


def decode_audio_stamped(msg: Any) -> AudioChunk:
    """Decode mgonzs13 ``AudioStamped`` (or a bare ``Audio``).

    msg: ``header`` + ``audio`` (an ``Audio``: ``audio_data`` typed arrays + ``info``
        {format: PortAudio constant, channels, rate (Hz), chunk}). The array named by
        ``info.format`` is read; if that one is empty while exactly one other is not, the
        message is inconsistent and refused rather than guessed.
    """
    audio = getattr(msg, "audio", msg)
    header = getattr(msg, "header", None)
    stamp = stamp_to_ns(header) if header is not None else None
    info = audio.info
    channels, rate = _check_layout(info.channels, info.rate)
    try:
        fmt = int(info.format)
    except (TypeError, ValueError):
        raise AudioFormatError(f"info.format not an integer: {info.format!r}") from None
    if fmt not in _PA_FORMATS:
        raise AudioFormatError(
            f"info.format {fmt} is not a PortAudio sample format "
            "(1 float32, 2 int32, 4 int24, 8 int16, 16 int8, 32 uint8)"
        )
    field, dtype, scale, offset = _PA_FORMATS[fmt]
    values = getattr(audio.audio_data, field, None)
    if values is None:
        raise AudioFormatError(f"audio_data has no field {field!r}")
    n = len(values)
    if n == 0:
        others = [
            name
            for name, *_ in _PA_FORMATS.values()
            if name != field and len(getattr(audio.audio_data, name, ()) or ()) > 0
        ]
        if others:
            raise AudioFormatError(f"info.format says {field} but the samples are in {others}")
    _check_size(n, channels, rate)
    raw = _field_array(values, dtype)
    if fmt == PA_INT24 and raw.size and (raw.min() < -(2**23) or raw.max() >= 2**23):
        raise AudioFormatError("int24_data holds values outside the 24-bit range")
    return _to_mono(raw, channels, scale, offset, rate, stamp)


_MULTIARRAY_TYPES: dict[str, tuple[str, float, float]] = {
    "Int16MultiArray": ("i2", 32768.0, 0.0),
    "Float32MultiArray": ("f4", 1.0, 0.0),
    "Float64MultiArray": ("f8", 1.0, 0.0),
    "Int32MultiArray": ("i4", 2147483648.0, 0.0),
    "Int8MultiArray": ("i1", 128.0, 0.0),
    "UInt8MultiArray": ("u1", 128.0, 128.0),
}
_TYPECODE_TYPES = {"h": "Int16MultiArray", "f": "Float32MultiArray", "d": "Float64MultiArray"}


def decode_multiarray(msg: Any, sample_rate: int, channels: int = 1) -> AudioChunk:
    """Decode ``std_msgs/Int16MultiArray`` or ``Float32MultiArray`` (interleaved samples).

    The sample type comes from the message class name (or, for a stand-in, the typecode of an
    ``array.array`` ``data`` field). sample_rate (Hz) and channels come from node parameters:
    these messages carry neither, and no header, so ``stamp_ns`` is ``None``.
    """
    channels, sample_rate = _check_layout(channels, sample_rate)
    # rclpy's class is Int16MultiArray, a bag reader's (rosbags) std_msgs__msg__Int16MultiArray.
    name = type(msg).__name__.rsplit("__", 1)[-1]
    data = msg.data
    if name not in _MULTIARRAY_TYPES and isinstance(data, array.array):
        name = _TYPECODE_TYPES.get(data.typecode, name)
    if name not in _MULTIARRAY_TYPES:
        raise AudioFormatError(f"{name} is not a supported audio MultiArray type")
    dtype, scale, offset = _MULTIARRAY_TYPES[name]
    _check_size(len(data), channels, sample_rate)
    raw = _field_array(data, dtype)
    return _to_mono(raw, channels, scale, offset, sample_rate, None)
