"""Live perception: ``ros2 launch taaf_ros perception.launch.py [arg:=value ...]``.

Every parameter of the perception node is an argument of the same name (``--show-args`` lists
them with their descriptions); one given here overrides the parameters file (``config:=``),
one not given leaves the file's value. The node's inputs are remapped onto the drivers' default
topics (``events_topic:=``, ``audio_topic:=``, ``audio_info_topic:=`` to change them); its
outputs live in ``namespace:=`` (``/taaf/prediction`` without one). ``managed:=true`` starts
the lifecycle node (``autostart:=true`` configures and activates it); ``use_replay:=true``
adds the replay node. The table and the rules: taaf_ros/nodes/launch_setup.py.
"""

from taaf_ros.nodes.launch_setup import launch_description


def generate_launch_description():
    """perception.launch.py's arguments and nodes."""
    return launch_description()
