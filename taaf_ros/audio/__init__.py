"""Audio input: message decoding, WAV reading and the cochlea front end (no ROS imports)."""

from taaf_ros.audio.cochlea import CochleaConfig, encode_audio, resample
from taaf_ros.audio.decode import (
    AudioChunk,
    AudioFormatError,
    PcmInfo,
    decode_audio_data_stamped,
    decode_audio_stamped,
    decode_multiarray,
)
from taaf_ros.audio.wav import read_wav

__all__ = [
    "AudioChunk",
    "AudioFormatError",
    "CochleaConfig",
    "PcmInfo",
    "decode_audio_data_stamped",
    "decode_audio_stamped",
    "decode_multiarray",
    "encode_audio",
    "read_wav",
    "resample",
]
