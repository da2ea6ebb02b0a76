"""What the DDS tests share: a spinning executor that nodes may join and leave safely, the
graph that listens to a perception node's outputs, and this session's topic names.

Every topic a test makes lives under ``/t<pid>/<test>/``: tests do not hear each other, nor
another session that happens to use the same ROS_DOMAIN_ID (conftest keeps discovery on
loopback and picks one domain per session).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_msgs.msg import String

UNIQUE = f"t{os.getpid()}"


def topic(prefix: str, name: str) -> str:
    """This session's name for a test's topic."""
    return f"/{UNIQUE}/{prefix}/{name}"


class Spinner:
    """An executor spun by one thread of its own. Nodes join and leave under the lock the
    spinning holds: a node destroyed between the executor picking its timer and running it
    would raise in the spin thread and end it, deafening every later listener. An error in the
    thread is kept and raised by :meth:`close`."""

    def __init__(self, context) -> None:
        self.context = context
        self.executor = SingleThreadedExecutor(context=context)
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.nodes: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                with self.lock:
                    self.executor.spin_once(timeout_sec=0.05)
            except Exception as exc:  # kept for close() to raise
                self.errors.append(exc)
            time.sleep(0.001)  # outside the lock: add and remove get their turn

    def start(self):
        self._thread.start()
        return self

    def create_node(self, name: str):
        return rclpy.create_node(name, context=self.context)

    def add(self, node):
        with self.lock:
            self.executor.add_node(node)
            self.nodes.append(node)
        return node

    def remove(self, node) -> None:
        with self.lock:
            self.executor.remove_node(node)
            self.nodes.remove(node)
            node.destroy_node()

    def wait_for(self, cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()  # waits for callbacks still running in its thread pool
        for n in self.nodes:
            n.destroy_node()
        if self.errors:
            raise self.errors[0]


class Graph(Spinner):
    """A spinner with a listener on a perception node's prediction and /diagnostics topics
    under ``prefix`` (the perception node infers in a thread of its own, as in its main)."""

    def __init__(self, context, prefix: str) -> None:
        super().__init__(context)
        from diagnostic_msgs.msg import DiagnosticArray

        self.prefix = prefix
        self.predictions: list[dict] = []
        self.truths: list = []
        self.diagnostics: list = []
        self.listener = self.add(self.create_node(f"listener_{prefix}"))
        self.listener.create_subscription(
            String, topic(prefix, "prediction"),
            lambda m: self.predictions.append(json.loads(m.data)), QoSProfile(depth=200))
        self.listener.create_subscription(DiagnosticArray, topic(prefix, "diagnostics"),
                                          self.diagnostics.append, QoSProfile(depth=50))

    def last_status(self):
        return self.diagnostics[-1].status[0] if self.diagnostics else None


def perception(context, ckpt: Path, prefix: str, **extra):
    """A perception node on the test's topics: stock-message inputs, outputs remapped under
    ``prefix``, a fast /diagnostics period; ``extra`` parameters override."""
    from taaf_ros.nodes.perception_node import PerceptionNode

    p = {"model_path": str(ckpt), "device": "cpu", "events_type": "pointcloud2",
         "audio_type": "int16_multiarray", "events_topic": topic(prefix, "events"),
         "audio_topic": topic(prefix, "audio"), "audio_sample_rate": 8000,
         "diagnostics_period_s": 0.2} | extra
    remap = ["--ros-args"]
    for out in ("/taaf/prediction", "/taaf/attention", "/taaf/debug_image", "/diagnostics",
                "/taaf/classification", "/taaf/label_info"):
        remap += ["-r", f"{out}:={topic(prefix, out.rsplit('/', 1)[1])}"]
    return PerceptionNode(context=context,
                          parameter_overrides=[Parameter(k, value=v) for k, v in p.items()],
                          cli_args=remap)
