"""taaf_ros: event-camera and audio recognition with a TAAF spiking neural network.

The library is a functional core with no ROS import (``events``, ``audio``, ``buffers``,
``model``, ``data``, ``training``); the ROS 2 nodes in ``taaf_ros.nodes`` only wire it to topics.
"""

__version__ = "0.1.0"
