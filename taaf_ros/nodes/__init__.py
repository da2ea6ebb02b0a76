"""ROS 2 nodes: live perception, dataset replay, and the pip-only demo.

One node per module (``perception_node``, ``replay_node``); the logic they share and that can
be tested without a ROS graph lives in one module per concept (``timing``,
``multiarray_stamp``, ``windowing``, ``prediction``, ``scoring``, ``stats``, ``classifier``,
``replay_plan``); ``params`` is the single table of every parameter. Importing this package
imports no ROS module.
"""
