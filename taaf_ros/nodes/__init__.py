"""ROS 2 nodes and their wiring: ``perception_node`` and its lifecycle form
``managed_perception_node`` (what both do: ``perception_wiring``), ``replay_node``,
``bag_play`` and the pip-only ``demo``; ``params`` is the single table of every parameter,
``msg_imports`` the lazy imports of optional message packages, ``outputs`` the conversions to
messages. The logic they wire lives in :mod:`taaf_ros.stream` (message decoding and clocks in
``stream.inputs``) and :mod:`taaf_ros.inference`. Importing this package imports
no ROS module.
"""
