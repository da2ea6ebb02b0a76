"""Event streams: decoding driver payloads, binning into spike tensors (no ROS import)."""

from taaf_ros.events.types import EVENT_DTYPE, empty_events, make_events

__all__ = ["EVENT_DTYPE", "empty_events", "make_events"]
