"""Live perception node: DVS events + microphone audio -> TAAF network -> /taaf/prediction.

The node starts working at construction; ``managed_perception_node`` is the lifecycle form. What
both do (threads, inputs, outputs, diagnostics) is ``perception_wiring.PerceptionWiring``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from taaf_ros.nodes.perception_wiring import PerceptionWiring, StartupError
from taaf_ros.nodes.signals import ignore_signals, init_rclpy, spin
from taaf_ros.params import PERCEPTION_NODE

__all__ = ["PerceptionNode", "StartupError", "main", "spin_node"]


class PerceptionNode(PerceptionWiring, Node):
    """Subscribes to events and audio, publishes predictions, attention and diagnostics;
    starts at construction (see ``managed_perception_node`` for the lifecycle one)."""

    def __init__(self, **kwargs: Any) -> None:
        self._init_wiring()
        super().__init__(PERCEPTION_NODE, **kwargs)
        self._declare_parameters()
        self._make_diagnostics()
        self._load()
        self._make_publishers()
        self._start()
        self.get_logger().info(self._started_line())


def spin_node(make: Callable[[], Node], name: str) -> int:
    """Run one perception node until Ctrl-C or SIGTERM (rclpy started by
    :func:`~taaf_ros.nodes.signals.init_rclpy`); exit code 2 when it cannot start."""
    try:
        node = make()
    except StartupError as exc:
        print(f"[{name}] error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # stopped while loading the model
        rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor()  # inference has its own thread (see the module doc)
    executor.add_node(node)
    try:
        spin(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_signals()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """Console script ``perception_node``; non-zero exit when it cannot start."""
    init_rclpy(args)
    return spin_node(PerceptionNode, PERCEPTION_NODE)


if __name__ == "__main__":
    sys.exit(main())
