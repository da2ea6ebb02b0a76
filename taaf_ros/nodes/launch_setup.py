"""What perception.launch.py and demo.launch.py declare and start, from the parameter table.

One source: every parameter of :data:`~taaf_ros.params.PERCEPTION_PARAMS` is a launch
argument of the same name, description and range. An argument overrides the parameters file
(``config:=``) only when the user gives it: its default is empty, and only the given ones are
passed to the node after the file. A user's file can therefore set ``model_path``, ``device``
or anything else, and ``ros2 launch ... device:=cpu`` still wins over it.

The inputs are node-private (``~/events``, ``~/audio``, ``~/audio_info``) and remapped here
onto the drivers' default topics (``events_topic:=``, ... to change them); the outputs are
relative to the namespace (``taaf/prediction``), so ``namespace:=robot1`` gives
``/robot1/taaf/prediction`` and two robots share one graph.

The argument table and the conversion of given values are ROS-free (tested without the launch
system); :func:`launch_description` builds the LaunchDescription.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taaf_ros.params import (
    PERCEPTION_NODE,
    PERCEPTION_PARAMS,
    REPLAY_NODE,
    TYPE_WORDS,
    ParamSpec,
    limits,
)

FROM_FILE = ""
"""Default of every parameter argument: not given, so the parameters file decides."""

# (launch argument, the node's private input it is remapped onto, the driver's default topic)
# Relative, as the drivers publish: /event_camera/events without a namespace, and
# /robot1/event_camera/events beside a driver started in namespace robot1.
INPUT_REMAPS: tuple[tuple[str, str, str], ...] = (
    ("events_topic", "~/events", "event_camera/events"),
    ("audio_topic", "~/audio", "audio/audio_stamped"),
    ("audio_info_topic", "~/audio_info", "audio/audio_info"),
)
_REMAPPED = {name for name, _, _ in INPUT_REMAPS}

# Arguments that are not node parameters: (name, default, description).
LAUNCH_ONLY: tuple[tuple[str, str, str], ...] = (
    ("config", "", "parameters file (ros__parameters for taaf_perception and taaf_replay); "
     "empty = share/taaf_ros/config/perception.yaml"),
    ("model", "", "checkpoint path: the same as model_path (when both are given, model wins)"),
    *((name, topic, f"topic to subscribe (relative names resolve in the namespace), "
      f"remapped onto the node's {private}") for name, private, topic in INPUT_REMAPS),
    ("namespace", "", "namespace of the nodes: inputs, outputs and services resolve in it "
     "(e.g. robot1 gives /robot1/taaf/prediction)"),
    ("use_sim_time", FROM_FILE, "true: the nodes follow /clock (play bags with --clock); "
     "empty = the parameters file, else false"),
    ("log_level", "info", "log level of the nodes: debug, info, warn, error or fatal"),
    ("respawn", "false", "restart the perception node if it exits"),
    ("managed", "false", "start the managed (lifecycle) perception node instead"),
    ("autostart", "false", "managed only: configure and activate it at start, as a lifecycle "
     "manager would (else it waits, unconfigured)"),
    ("use_replay", "false", "also start the replay node (a dataset split as live streams, "
     "with the perception node's events_type and audio_type)"),
    ("data_root", "", "replay: dataset root in the EAD layout"),
    ("split", "test", "replay: split to play"),
)

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
REPLAY_TYPES = {"events_type": ("pointcloud2", "event_packet"),
                "audio_type": ("int16_multiarray", "audio_data_stamped")}


def argument_table(defaults: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(name, default, description) of every launch argument; ``defaults`` replaces some
    (demo.launch.py: use_replay true and the replay's message types)."""
    defaults = dict(defaults or {})
    rows = [(name, default, desc) for name, default, desc in LAUNCH_ONLY]
    for s in PERCEPTION_PARAMS:
        if s.name not in _REMAPPED:
            rows.append((s.name, FROM_FILE, f"{_describe(s)} (empty = the parameters file, "
                                            f"else {_text(s.default)})"))
    return [(name, defaults.get(name, default), desc) for name, default, desc in rows]


def _describe(s: ParamSpec) -> str:
    lim = limits(s)
    return s.description + (f"; {lim[0]} {lim[1]}" if lim else "")


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, str) else str(v)


def _convert(s: ParamSpec, text: str) -> Any:
    """A launch argument's text as the parameter's type, checked against its range."""
    try:
        if s.type is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError("not true or false")
            value: Any = text.lower() == "true"
        else:
            value = s.type(text)
    except ValueError:
        raise ValueError(f"{s.name}:={text!r} is not {TYPE_WORDS[s.type]}") from None
    reason = s.check(value)
    if reason:
        raise ValueError(f"{s.name}:={text!r}: {reason}")
    return value


def given_parameters(values: Mapping[str, str]) -> dict[str, Any]:
    """The perception node's parameters that the user gave as launch arguments, typed.

    >>> given_parameters({"device": "cpu", "hop_s": "", "model": "m.pt", "top_k": "5"})
    {'device': 'cpu', 'top_k': 5, 'model_path': 'm.pt'}
    >>> given_parameters({"hop_s": "fast"})
    Traceback (most recent call last):
    ...
    ValueError: hop_s:='fast' is not a float
    """
    out: dict[str, Any] = {}
    for s in PERCEPTION_PARAMS:
        text = values.get(s.name, FROM_FILE)
        if s.name not in _REMAPPED and text != FROM_FILE:
            out[s.name] = _convert(s, text)
    if values.get("model", ""):
        out["model_path"] = values["model"]
    if values.get("use_sim_time", FROM_FILE) != FROM_FILE:
        out["use_sim_time"] = _convert(ParamSpec("use_sim_time", False, ""),
                                       values["use_sim_time"])
    return out


def replay_parameters(values: Mapping[str, str], perception: Mapping[str, Any]
                      ) -> dict[str, Any]:
    """The replay node's parameters: its topics and message types are the perception node's,
    so the two always agree (the perception node's defaults where not given)."""
    defaults = {s.name: s.default for s in PERCEPTION_PARAMS}
    out: dict[str, Any] = {"data_root": values.get("data_root", ""),
                           "split": values.get("split", "test")}
    for key, allowed in REPLAY_TYPES.items():
        kind = perception.get(key, defaults[key])
        if kind not in allowed:
            raise ValueError(f"use_replay: the replay node publishes {key} "
                             f"{' or '.join(allowed)}, not {kind}")
        out[key] = kind
    for name, _, topic in INPUT_REMAPS:
        out[name] = values.get(name) or topic
    if "use_sim_time" in perception:
        out["use_sim_time"] = perception["use_sim_time"]
    return out


def launch_description(defaults: Mapping[str, str] | None = None) -> Any:
    """The LaunchDescription of perception.launch.py (demo.launch.py: other ``defaults``)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in argument_table(defaults)]
    return LaunchDescription([*args, OpaqueFunction(function=_nodes)])


EXTERNAL_ARGUMENTS = ("launch-prefix", "launch-prefix-filter")
"""Arguments ``ros2 launch`` itself adds to the command line (its --launch-prefix options)."""


def unknown_arguments(given: list[str], known: list[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for command-line ``name:=value`` arguments that are no argument of
    the launch file: launch ignores those silently, so a typo would leave the default on. One
    close to a known name is an error naming it; any other only a warning (a launch file that
    includes this one passes its own command line too).

    >>> errors, warnings = unknown_arguments(["modle_path:=x.pt", "robot:=r2", "hop_s:=0.1"],
    ...                                      ["model_path", "hop_s"])
    >>> errors
    ["unknown launch argument 'modle_path' (did you mean 'model_path'?)"]
    >>> warnings
    ["ignoring launch argument 'robot': perception.launch.py has no such argument"]
    """
    import difflib

    errors, warnings = [], []
    for arg in given:
        name = arg.split(":=", 1)[0]
        if ":=" not in arg or name in known or name in EXTERNAL_ARGUMENTS:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            errors.append(f"unknown launch argument {name!r} (did you mean {close[0]!r}?)")
        else:
            warnings.append(f"ignoring launch argument {name!r}: perception.launch.py has no "
                            "such argument")
    return errors, warnings


def _nodes(context: Any) -> list[Any]:
    """The nodes, once the arguments are known (the given ones only override the file)."""
    from ament_index_python.packages import get_package_share_directory
    from launch.logging import get_logger
    from launch_ros.actions import LifecycleNode, Node

    errors, warnings = unknown_arguments(list(context.argv),
                                         [name for name, _, _ in argument_table()])
    for line in warnings:
        get_logger("taaf_ros").warning(line)
    if errors:
        raise ValueError("; ".join(errors) + ": `ros2 launch taaf_ros perception.launch.py "
                         "--show-args` lists them")
    values = {name: context.launch_configurations.get(name, default)
              for name, default, _ in argument_table()}
    config = values["config"] or (f"{get_package_share_directory('taaf_ros')}/config/"
                                  "perception.yaml")
    params = given_parameters(values)
    if values["log_level"] not in LOG_LEVELS:
        raise ValueError(f"log_level:={values['log_level']!r}: one of {', '.join(LOG_LEVELS)}")
    flag = lambda name: _convert(ParamSpec(name, False, ""), values[name])  # noqa: E731
    common: dict[str, Any] = dict(
        package="taaf_ros", name=PERCEPTION_NODE, namespace=values["namespace"],
        output="screen", parameters=[config, params],
        remappings=[(private, values[name] or topic) for name, private, topic in INPUT_REMAPS],
        ros_arguments=["--log-level", values["log_level"]], respawn=flag("respawn"))
    actions: list[Any] = []
    if flag("managed"):
        node = LifecycleNode(executable="managed_perception_node", **common)
        actions.append(node)
        if flag("autostart"):
            actions += _autostart(node)
    else:
        node = Node(executable="perception_node", **common)
        actions.append(node)
    if not flag("respawn"):
        actions.append(_required(node))
    if flag("use_replay"):
        actions.append(Node(package="taaf_ros", executable="replay_node", name=REPLAY_NODE,
                            namespace=values["namespace"], output="screen",
                            parameters=[config, replay_parameters(values, params)],
                            ros_arguments=["--log-level", values["log_level"]]))
    return actions


def _required(node: Any) -> Any:
    """The perception node is what the launch is for: when it exits with an error (it could
    not start: a bad model or parameter) the launch ends with exit code 1, naming it, instead
    of idling on with exit code 0."""
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnProcessExit

    def on_exit(event: Any, context: Any) -> None:
        if event.returncode not in (0, None) and not context.is_shutdown:
            raise RuntimeError(f"{PERCEPTION_NODE} exited with code {event.returncode} (its "
                               "error is above): the launch ends")

    return RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit))


def _autostart(node: Any) -> list[Any]:
    """configure now, activate once it is inactive (what nav2's lifecycle manager does)."""
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change(transition: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition))

    return [RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
                entities=[change(Transition.TRANSITION_ACTIVATE)])),
            change(Transition.TRANSITION_CONFIGURE)]


def render_markdown() -> str:
    """The launch-argument table of docs/ros.md (a test keeps the two equal)."""
    rows = ["| argument | default | description |", "|---|---|---|"]
    for name, default, desc in argument_table():
        shown = f"`{default}`" if default else "(not given)"
        rows.append(f"| `{name}` | {shown} | {desc} |")
    return "\n".join(rows)
