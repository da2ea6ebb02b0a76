"""The driver message types, as their maintainers publish them, and a builder for them.

``event_camera_msgs``, ``audio_common_msgs``, ``vision_msgs`` and ``dvs_msgs`` are not on PyPI.
Their ``.msg`` files live here, one folder per package (``<package>/msg/*.msg``, copied from the
maintainers' repositories; vision_msgs only the four types this node publishes). They serve two
uses: the bag reader registers them with ``rosbags`` (:func:`msg_definitions`), and
:mod:`taaf_ros.interfaces.build` turns them into real ROS 2 message packages with the rosidl
generators from PyPI, installed into the running virtual environment.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

# Where each package's .msg files were copied from, and the packages their fields use.
SOURCES: dict[str, str] = {
    "event_camera_msgs": "github.com/ros-event-camera/event_camera_msgs msg_ros2/",
    "audio_common_msgs": "github.com/ros-drivers/audio_common (ros2) audio_common_msgs/msg/",
    "vision_msgs": "github.com/ros-perception/vision_msgs (ros2) vision_msgs/msg/ (four types)",
    "dvs_msgs": "uzh-rpg/rpg_dvs_ros dvs_msgs/msg/ as its ROS 2 ports define it",
}
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "event_camera_msgs": ("std_msgs",),
    "audio_common_msgs": ("std_msgs",),
    "vision_msgs": ("std_msgs",),
    "dvs_msgs": ("builtin_interfaces", "std_msgs"),
}
PACKAGES: tuple[str, ...] = tuple(SOURCES)


def msg_files(package: str) -> dict[str, str]:
    """``{type name: .msg text}`` of one package, sorted by name."""
    if package not in SOURCES:
        raise KeyError(f"unknown interface package {package!r} (known: {', '.join(PACKAGES)})")
    return {p.stem: p.read_text() for p in sorted((HERE / package / "msg").glob("*.msg"))}


def msg_definitions() -> dict[str, str]:
    """``{"package/msg/Type": .msg text}`` for every packaged type (the rosbags naming)."""
    return {f"{pkg}/msg/{name}": text for pkg in PACKAGES for name, text in msg_files(pkg).items()}
