"""Datasets: the DVS emulator, the AV-digits builder, event-file and EAD-layout readers.

No ROS import. The builder's CLI is ``taaf_build_avdigits`` (``taaf_ros.apps.build_avdigits:main``).
"""

from taaf_ros.data.emulator import DvsEmulatorConfig, emulate_saccades, emulate_video
from taaf_ros.data.readers import (
    EadDataset,
    EadSample,
    EventFileError,
    read_events,
    read_h5_events,
    read_nmnist_bin,
    read_npy_events,
    write_nmnist_bin,
)

__all__ = [
    "DvsEmulatorConfig",
    "EadDataset",
    "EadSample",
    "EventFileError",
    "emulate_saccades",
    "emulate_video",
    "read_events",
    "read_h5_events",
    "read_nmnist_bin",
    "read_npy_events",
    "write_nmnist_bin",
]
