"""ROS 2 nodes and their wiring: ``perception_node`` and its lifecycle form
``managed_perception_node`` (what both do: ``perception_wiring``), ``replay_node``,
``bag_play`` and the pip-only ``demo``; ``params`` is the single table of every parameter,
``msg_imports`` the lazy imports of optional message packages, ``inputs`` the message decoding
and clocks, ``outputs`` and ``multiarray_stamp`` the message conversions. The logic they wire
lives in :mod:`taaf_ros.stream` and :mod:`taaf_ros.inference`. Importing this package imports
no ROS module.
"""
