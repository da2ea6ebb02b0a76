"""The console scripts of the nodes, light to import.

A node's imports (rclpy, numpy, torch, numba) and its model take seconds to load, more on a
small robot computer; a Ctrl-C or SIGTERM (``ros2 launch`` stopping) in that time must end
the process quietly, not with a KeyboardInterrupt traceback or a death by signal. So the
console scripts point here: the handlers are set before anything heavy is imported, and the
node's module is imported and run under them. Once the node runs, ``signals.init_rclpy``
takes over with the same behaviour.
"""

from __future__ import annotations

import importlib
import signal
from typing import Any


def _stop(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second one must not cut the exit short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _run(module: str, interrupted: int = 0) -> int:
    """``module.main()`` with SIGINT and SIGTERM raising KeyboardInterrupt from the first
    import on; stopped before ``main`` handles it: exit code ``interrupted``."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        return importlib.import_module(module).main()
    except KeyboardInterrupt:
        return interrupted


def perception_node() -> int:
    return _run("taaf_ros.nodes.perception_node")


def managed_perception_node() -> int:
    return _run("taaf_ros.nodes.managed_perception_node")


def replay_node() -> int:
    return _run("taaf_ros.nodes.replay_node")


def bag_play() -> int:
    return _run("taaf_ros.apps.bag_play")


def demo() -> int:
    """The demo reports what it saw when stopped; stopped before it replays: 130, as then."""
    return _run("taaf_ros.apps.demo", interrupted=130)
