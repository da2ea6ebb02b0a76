"""Demo: replay a dataset split into the perception node.

``ros2 launch taaf_ros demo.launch.py data_root:=/path/to/avdigits [model:=...]``

The same as perception.launch.py with ``use_replay:=true`` and the stock message types the
replay node publishes (PointCloud2 events, Int16MultiArray audio at the dataset's rate).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

ARGS = [
    ("data_root", "", "dataset root in the EAD layout (required)"),
    ("split", "test", "split to play"),
    ("model", "", "checkpoint path; empty = the bundled model"),
    ("device", "auto", "inference device: auto, cpu, cuda or cuda:N"),
    ("events_topic", "/event_camera/events", "topic between replay and perception (events)"),
    ("audio_topic", "/audio/audio", "topic between replay and perception (audio)"),
    ("audio_sample_rate", "8000", "audio rate of the dataset (Hz; AV-digits: 8000)"),
]


def generate_launch_description() -> LaunchDescription:
    """Declared arguments, then perception.launch.py with the replay node switched on."""
    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGS]
    cfg = LaunchConfiguration
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("taaf_ros"), "launch",
                                  "perception.launch.py"])),
        launch_arguments={
            "use_replay": "true",
            "data_root": cfg("data_root"),
            "split": cfg("split"),
            "model": cfg("model"),
            "device": cfg("device"),
            "events_topic": cfg("events_topic"),
            "audio_topic": cfg("audio_topic"),
            "events_type": "pointcloud2",
            "audio_type": "int16_multiarray",
            "audio_sample_rate": cfg("audio_sample_rate"),
        }.items(),
    )
    return LaunchDescription([*args, include])
