"""launch_testing: perception.launch.py starts and publishes diagnostics.

Run by test/test_launch_real.py through the ``launch_test`` command (launch_testing's pytest
plugin predates the pytest this project uses), or by hand: ``launch_test FILE``.
"""

from __future__ import annotations

import os
import unittest

import launch
import launch_testing.actions
import rclpy
from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from launch.launch_description_sources import PythonLaunchDescriptionSource

NAMESPACE = os.environ.get("TAAF_TEST_NAMESPACE", "launch_test")


def generate_test_description():
    share = get_package_share_directory("taaf_ros")
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(f"{share}/launch/perception.launch.py"),
        launch_arguments={"device": "cpu", "events_type": "pointcloud2",
                          "audio_type": "int16_multiarray", "namespace": NAMESPACE}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestPerceptionLaunch(unittest.TestCase):
    def test_diagnostics_published(self):
        rclpy.init()
        try:
            node = rclpy.create_node("launch_test_listener")
            got = []
            mine = f"{NAMESPACE}/taaf_perception: perception"
            node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: got.extend(
                s for s in m.status if s.name == mine), 10)
            # No input: once the modality timeout has passed the node reports STALE and names
            # the topics nobody publishes; it does not die.
            stale = lambda: [s for s in got if s.level == b"\x03"]  # noqa: E731
            end = node.get_clock().now().nanoseconds + 30 * 10**9
            while not stale() and node.get_clock().now().nanoseconds < end:
                rclpy.spin_once(node, timeout_sec=0.2)
            self.assertTrue(got, "no /diagnostics from the perception node")
            self.assertTrue(stale(), [s.message for s in got])
            self.assertIn("no input", stale()[-1].message)
        finally:
            rclpy.shutdown()
