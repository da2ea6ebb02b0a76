"""The launch files' table and rules without the launch system (test_launch_real.py runs them
with the real ``ros2 launch``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from taaf_ros.nodes import launch_setup
from taaf_ros.params import PERCEPTION_PARAMS

REPO = Path(__file__).resolve().parent.parent
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))


def test_launch_files_build_from_the_table():
    assert {p.name for p in LAUNCH} == {"perception.launch.py", "demo.launch.py"}
    for path in LAUNCH:
        tree = ast.parse(path.read_text())
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name)}
        assert "launch_description" in calls, path.name
    setup = (REPO / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup and 'glob("config/*.yaml")' in setup


def test_every_parameter_is_an_argument_with_its_description():
    args = {name: (default, desc) for name, default, desc in launch_setup.argument_table()}
    remapped = {n for n, _, _ in launch_setup.INPUT_REMAPS}
    for s in PERCEPTION_PARAMS:
        default, desc = args[s.name]
        if s.name in remapped:  # the topic to remap the node's private input onto
            assert "remapped onto the node's ~/" in desc
        else:
            assert s.description in desc
            assert default == launch_setup.FROM_FILE  # never overrides the file unless given
    for name in ("config", "model", "namespace", "use_sim_time", "log_level", "respawn",
                 "managed", "autostart", "use_replay", "sensor_width", "sensor_height"):
        assert name in args


def test_docs_list_every_argument():
    assert launch_setup.render_markdown() in (REPO / "docs" / "ros.md").read_text()


def test_only_given_arguments_reach_the_node_typed_and_checked():
    assert launch_setup.given_parameters({}) == {}
    got = launch_setup.given_parameters({"device": "cpu", "publish_debug_image": "True",
                                         "sensor_width": "1280", "use_sim_time": "true",
                                         "events_topic": "/prophesee/events"})
    assert got == {"device": "cpu", "publish_debug_image": True, "sensor_width": 1280,
                   "use_sim_time": True}
    for bad, reason in ((("hop_s", "-1"), "hop_s must be >= 0.005"),
                        (("device", "gpu"), "device must be one of"),
                        (("publish_debug_image", "yes"), "is not a bool")):
        with pytest.raises(ValueError, match=reason):
            launch_setup.given_parameters(dict([bad]))


def test_replay_follows_the_perception_types_or_says_why_not():
    p = launch_setup.replay_parameters({"data_root": "/d"}, {})
    assert (p["events_type"], p["audio_type"]) == ("event_packet", "audio_data_stamped")
    assert p["events_topic"] == "event_camera/events"
    with pytest.raises(ValueError, match="publishes events_type pointcloud2 or event_packet"):
        launch_setup.replay_parameters({}, {"events_type": "dvs_event_array"})
