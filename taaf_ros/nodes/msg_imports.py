"""Lazy imports of message types, with a clear 'install X' message when a package is missing.

event_camera_msgs, dvs_msgs, audio_common_msgs and vision_msgs are not on PyPI: the pip-only
path must run without them, so nothing imports them at module import. A node asks for a type
only when its configuration needs it, and gets :class:`MissingMessagePackageError` saying what to
install if it is absent.
"""

from __future__ import annotations

import importlib
from typing import Any

# Parameter value -> (package, message class). The std/sensor ones always exist here.
EVENT_MSGS = {
    "event_packet": ("event_camera_msgs", "EventPacket"),
    "dvs_event_array": ("dvs_msgs", "EventArray"),
    "pointcloud2": ("sensor_msgs", "PointCloud2"),
}
AUDIO_MSGS = {
    "audio_data_stamped": ("audio_common_msgs", "AudioDataStamped"),
    "audio_stamped": ("audio_common_msgs", "AudioStamped"),
    "int16_multiarray": ("std_msgs", "Int16MultiArray"),
    "float32_multiarray": ("std_msgs", "Float32MultiArray"),
}

_HINTS = {
    "event_camera_msgs": "ros-<distro>-event-camera-msgs (github.com/ros-event-camera/"
                         "event_camera_msgs)",
    "dvs_msgs": "dvs_msgs from rpg_dvs_ros (a ROS 2 port, built in your workspace)",
    "audio_common_msgs": "ros-<distro>-audio-common-msgs (ros-drivers/audio_common, for "
                         "AudioDataStamped) or mgonzs13/audio_common (for AudioStamped)",
    "vision_msgs": "ros-<distro>-vision-msgs",
    "std_msgs": "ros-std-msgs (PyPI) or ros-<distro>-std-msgs",
    "sensor_msgs": "ros-sensor-msgs (PyPI) or ros-<distro>-sensor-msgs",
}


class MissingMessagePackageError(ImportError):
    """A configured input or output needs a message package that is not installed."""


def import_msg(package: str, name: str, needed_for: str = "") -> Any:
    """``package.msg.name``, or MissingMessagePackageError naming what to install."""
    try:
        module = importlib.import_module(f"{package}.msg")
        return getattr(module, name)
    except (ImportError, AttributeError) as exc:
        why = f" (needed for {needed_for})" if needed_for else ""
        raise MissingMessagePackageError(
            f"{package}/msg/{name} is not available{why}: install "
            f"{_HINTS.get(package, package)} and source its setup file, or choose a stock "
            f"message type (events_type:=pointcloud2, audio_type:=int16_multiarray)"
        ) from exc


def try_import_msg(package: str, name: str) -> Any | None:
    """The type, or None when its package is not installed (optional outputs)."""
    try:
        return import_msg(package, name)
    except MissingMessagePackageError:
        return None


def event_msg_type(events_type: str) -> Any:
    """Message class for an ``events_type`` parameter value."""
    pkg, name = EVENT_MSGS[events_type]
    return import_msg(pkg, name, f"events_type={events_type}")


def audio_msg_type(audio_type: str) -> Any:
    """Message class for an ``audio_type`` parameter value."""
    pkg, name = AUDIO_MSGS[audio_type]
    return import_msg(pkg, name, f"audio_type={audio_type}")
