"""Event streams: decoding driver payloads, binning into spike tensors (no ROS import)."""

from taaf_ros.events.binning import bin_audio_events, bin_events, fit_events
from taaf_ros.events.decoder import (
    SUPPORTED_ENCODINGS,
    DecoderStats,
    EventDecoder,
    EventFormatError,
)
from taaf_ros.events.evt3 import encode_evt3
from taaf_ros.events.libcaer import encode_libcaer, encode_libcaer_cmp
from taaf_ros.events.messages import (
    events_from_dvs_event_array,
    events_from_pointcloud2,
    events_to_pointcloud2,
)
from taaf_ros.events.mono import encode_mono
from taaf_ros.events.types import EVENT_DTYPE, empty_events, make_events

__all__ = ["EVENT_DTYPE", "empty_events", "make_events"]
__all__ += ["bin_audio_events", "bin_events", "fit_events"]
__all__ += ["SUPPORTED_ENCODINGS", "DecoderStats", "EventDecoder", "EventFormatError",
            "encode_evt3", "encode_libcaer", "encode_libcaer_cmp", "encode_mono",
            "events_from_dvs_event_array", "events_from_pointcloud2", "events_to_pointcloud2"]
