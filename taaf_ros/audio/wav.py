"""Read WAV files into the same mono float form the message decoders produce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import wavfile

from taaf_ros.audio.cochlea import resample
from taaf_ros.audio.decode import AudioChunk, AudioFormatError

# Integer WAV full scale per sample dtype; 8-bit WAV is unsigned with its zero at 128.
_INT_FULL_SCALE = {
    np.dtype("uint8"): (128.0, 128.0),
    np.dtype("int16"): (32768.0, 0.0),
    np.dtype("int32"): (2147483648.0, 0.0),  # scipy left-aligns 24-bit samples in int32
}


def read_wav(path: str | Path, target_rate: int | None = None) -> AudioChunk:
    """Read a PCM or float WAV file as mono float32 in [-1, 1].

    path: the file. target_rate: resample to this rate (Hz) if given (polyphase, see
    :func:`taaf_ros.audio.cochlea.resample`). Channels are averaged to mono; NaN/inf in a float
    file become 0 and out-of-range values are clipped, both counted in ``sanitised``.
    ``stamp_ns`` is ``None``. Raises :class:`AudioFormatError` for a file scipy cannot read.
    """
    try:
        rate, data = wavfile.read(str(path))
    except (ValueError, EOFError) as err:
        raise AudioFormatError(f"{path}: not a readable WAV file: {err}") from None
    x = np.asarray(data)
    if x.ndim == 2:
        x = x.astype(np.float64).mean(axis=1) if x.dtype.kind == "f" else x
    sanitised = 0
    if x.dtype.kind == "f":
        y = np.asarray(x, dtype=np.float64)
        bad = ~np.isfinite(y)
        y[bad] = 0.0
        sanitised = int(bad.sum()) + int((np.abs(y) > 1.0).sum())
    elif x.dtype in _INT_FULL_SCALE:
        scale, offset = _INT_FULL_SCALE[x.dtype]
        y = (x.astype(np.float64) - offset) / scale
        y = y.mean(axis=1) if y.ndim == 2 else y
    else:
        raise AudioFormatError(f"{path}: unsupported WAV sample type {x.dtype}")
    samples = np.clip(y, -1.0, 1.0).astype(np.float32)
    if target_rate is not None and target_rate != rate:
        samples = np.clip(resample(samples, rate, target_rate), -1.0, 1.0)
        rate = target_rate
    return AudioChunk(samples, int(rate), None, 0, sanitised)
