"""The perception node as a managed (lifecycle) node: the robot decides when it runs.

Transitions (``ros2 lifecycle set /taaf_perception configure`` etc., or the node's
``~/change_state`` service):

- configure: load and warm up the model, create the publishers. A missing or corrupt model,
  or a configured message type whose package is absent, fails the transition (the node stays
  unconfigured and says why); nothing is subscribed.
- activate: a fresh live session (empty buffers, clocks unset) on the loaded model; subscribe,
  start the diagnostics timer and the inference thread.
- deactivate: stop inference after the window in hand, unsubscribe. The model stays loaded.
- cleanup: drop the publishers and the model. shutdown: all of it, from any state.

The parameters are those of ``perception_node`` (declared at construction, so a bad value
still refuses to start the process), and so are the topics and the messages published.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from taaf_ros.nodes.perception_node import spin_node
from taaf_ros.nodes.perception_wiring import PerceptionWiring, StartupError
from taaf_ros.nodes.signals import init_rclpy
from taaf_ros.params import PERCEPTION_NODE


class ManagedPerceptionNode(PerceptionWiring, LifecycleNode):
    """The perception node, doing its work only between activate and deactivate. Every
    parameter can be set while unconfigured (configure reads them); /diagnostics report the
    lifecycle state in every state."""

    managed = True

    def __init__(self, **kwargs: Any) -> None:
        self._init_wiring()
        super().__init__(PERCEPTION_NODE, **kwargs)
        self._declare_parameters()
        self._make_diagnostics()
        self.get_logger().info("unconfigured: waiting for configure")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._check_message_types()
            self._load()
        except StartupError as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        self._make_publishers()
        self.get_logger().info(f"configured: {self.classifier.path} loaded and warmed up")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._load()  # fresh stream state; the model is kept
            self._start()
        except StartupError as exc:
            self.get_logger().error(str(exc))
            self._halt()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"active: {self._started_line()}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt()
        self.get_logger().info("inactive: unsubscribed, model kept")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt()
        self._drop_publishers()
        self.classifier = self.session = None
        self.get_logger().info("unconfigured: model and publishers released")
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """On exit (Ctrl-C, SIGTERM) without a shutdown transition: say what is released."""
        if self.classifier is not None:
            self.get_logger().info(f"exiting from {self._lifecycle_state() or 'a state'}: "
                                   "stopped, model released")
        super().destroy_node()

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt()
        self._drop_publishers()
        self.classifier = self.session = None
        self.get_logger().info(f"finalized (from {state.label}): stopped, model released")
        return TransitionCallbackReturn.SUCCESS


def main(args: list[str] | None = None) -> int:
    """Console script ``managed_perception_node``; non-zero exit when it cannot start."""
    init_rclpy(args)
    return spin_node(ManagedPerceptionNode, PERCEPTION_NODE)


if __name__ == "__main__":
    sys.exit(main())
