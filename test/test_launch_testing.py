"""launch_testing: perception.launch.py starts and publishes diagnostics (needs a ROS install).

Skipped only where launch_testing / launch_ros are truly absent (the pip-only environment).
Run with ``launch_test test/test_launch_testing.py`` or pytest with launch_testing's plugin.
"""

from __future__ import annotations

import unittest

import pytest

launch_testing = pytest.importorskip("launch_testing.actions")
launch_ros = pytest.importorskip("launch_ros")

import launch  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    share = get_package_share_directory("taaf_ros")
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(f"{share}/launch/perception.launch.py"),
        launch_arguments={"device": "cpu", "events_type": "pointcloud2",
                          "audio_type": "int16_multiarray"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestPerceptionLaunch(unittest.TestCase):
    def test_diagnostics_published(self):
        rclpy.init()
        try:
            node = rclpy.create_node("launch_test_listener")
            got = []
            node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
            end = node.get_clock().now().nanoseconds + 30 * 10**9
            while not got and node.get_clock().now().nanoseconds < end:
                rclpy.spin_once(node, timeout_sec=0.2)
            self.assertTrue(got, "no /diagnostics from the perception node")
            # No input yet: the node reports STALE, it does not die.
            self.assertEqual(got[-1].status[0].level, b"\x03")
        finally:
            rclpy.shutdown()
