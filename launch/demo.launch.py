"""Demo: replay a dataset split into the perception node.

``ros2 launch taaf_ros demo.launch.py data_root:=/path/to/avdigits [model:=...]``

perception.launch.py with other defaults: the replay node on, the stock message types it
publishes (``events_type:=event_packet`` / ``audio_type:=audio_data_stamped`` switch both
nodes to the drivers' types) and the AV-digits audio rate; every other argument is the same.
"""

from taaf_ros.defaults import FSDD_RATE_HZ
from taaf_ros.nodes.launch_setup import launch_description

DEMO_DEFAULTS = {"use_replay": "true", "events_type": "pointcloud2",
                 "audio_type": "int16_multiarray", "audio_sample_rate": str(FSDD_RATE_HZ)}


def generate_launch_description():
    """demo.launch.py's arguments (perception.launch.py's, other defaults) and nodes."""
    return launch_description(DEMO_DEFAULTS)
