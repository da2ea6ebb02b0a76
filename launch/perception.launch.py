"""Live perception: ``ros2 launch taaf_ros perception.launch.py [arg:=value ...]``.

Parameters come from config/perception.yaml (``config:=`` another file); the arguments below
override the common ones. ``use_replay:=true`` adds the replay node (see demo.launch.py).
``managed:=true`` starts the managed (lifecycle) perception node instead: it waits,
unconfigured, for its lifecycle manager (or ``ros2 lifecycle set /taaf_perception configure``,
then ``activate``).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

ARGS = [
    ("config", PathJoinSubstitution([FindPackageShare("taaf_ros"), "config", "perception.yaml"]),
     "parameters file for both nodes (ros__parameters)"),
    ("model", "", "checkpoint path; empty = the bundled model in share/taaf_ros/models"),
    ("device", "auto", "inference device: auto, cpu, cuda or cuda:N"),
    ("dtype", "float32", "inference precision: float32, float16 (CUDA) or bfloat16"),
    ("events_topic", "/event_camera/events", "event camera topic (remapped onto the input)"),
    ("events_type", "event_packet", "event_packet, dvs_event_array or pointcloud2"),
    ("audio_topic", "/audio/audio_stamped", "microphone topic (remapped onto the input)"),
    ("audio_type", "audio_data_stamped",
     "audio_data_stamped, audio_stamped, int16_multiarray or float32_multiarray"),
    ("audio_info_topic", "/audio/audio_info", "AudioInfo topic (audio_data_stamped)"),
    ("audio_sample_rate", "16000", "input rate (Hz) for audio messages that do not carry it"),
    ("managed", "false", "start the managed (lifecycle) perception node instead"),
    ("use_replay", "false", "also start the replay node (dataset as live streams)"),
    ("data_root", "", "replay: dataset root in the EAD layout"),
    ("split", "test", "replay: split to play"),
]


def generate_launch_description() -> LaunchDescription:
    """Declared arguments, then the perception node (and the replay node if asked)."""
    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGS]
    cfg = LaunchConfiguration
    common = dict(
        package="taaf_ros",
        name="taaf_perception",
        output="screen",
        parameters=[cfg("config"), {
            "model_path": cfg("model"),
            "device": cfg("device"),
            "dtype": cfg("dtype"),
            "events_type": cfg("events_type"),
            "audio_type": cfg("audio_type"),
            "audio_sample_rate": cfg("audio_sample_rate"),
            # Topic parameters keep their defaults; the driver topics are remapped onto them.
        }],
        remappings=[
            ("/event_camera/events", cfg("events_topic")),
            ("/audio/audio_stamped", cfg("audio_topic")),
            ("/audio/audio_info", cfg("audio_info_topic")),
        ],
    )
    perception = Node(executable="perception_node", condition=UnlessCondition(cfg("managed")),
                      **common)
    managed = LifecycleNode(executable="managed_perception_node", namespace="",
                            condition=IfCondition(cfg("managed")), **common)
    replay = Node(
        package="taaf_ros",
        executable="replay_node",
        name="taaf_replay",
        output="screen",
        condition=IfCondition(cfg("use_replay")),
        parameters=[cfg("config"), {
            "data_root": cfg("data_root"),
            "split": cfg("split"),
            "events_topic": cfg("events_topic"),
            "audio_topic": cfg("audio_topic"),
        }],
    )
    return LaunchDescription([*args, perception, managed, replay])
