"""Every node parameter, declared once: name, default, description, allowed values or range.

This table is the single source: the nodes declare their parameters from it (with a
``ParameterDescriptor`` carrying the description and range), ``config/perception.yaml`` and
``docs/ros.md`` are tested against it, and :func:`validate` is what both the start-up check and
the run-time parameters callback use. No ROS import here, so the table is usable (and testable)
without rclpy.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taaf_ros.defaults import HOP_S, INFERENCE_CHOICES, STREAM_AUDIO_RATE_HZ, WINDOW_S

EVENT_TYPES = ("event_packet", "dvs_event_array", "pointcloud2")
AUDIO_TYPES = ("audio_data_stamped", "audio_stamped", "int16_multiarray", "float32_multiarray")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    name: parameter name. default: value and type (bool, int, float or str). description: one
    line for users, with units. choices: allowed string values (None: any). low/high: inclusive
    numeric range (None: unbounded). runtime: may change while the node runs (the others need a
    restart because they build subscriptions, buffers or the model).
    """

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    runtime: bool = False

    @property
    def type(self) -> type:
        return type(self.default)

    def check(self, value: Any) -> str | None:
        """None if ``value`` is acceptable, else the reason it is refused."""
        want = self.type
        # bool is a subclass of int: refuse True for an int parameter and 1 for a bool one.
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            return (f"{self.name} must be {TYPE_WORDS[want]} (e.g. {self.name}:="
                    f"{_example(self.default)}), got {type(value).__name__} {value!r}")
        if (self.choices is not None and value not in self.choices
                and not (self.name == "device" and _is_cuda_index(value))):
            return f"{self.name} must be one of {list(self.choices)}, got {value!r}"
        if self.low is not None and value < self.low:
            return f"{self.name} must be >= {self.low}, got {value!r}"
        if self.high is not None and value > self.high:
            return f"{self.name} must be <= {self.high}, got {value!r}"
        return None


TYPE_WORDS = {bool: "a bool", int: "an integer", float: "a float",
              str: "a string"}


def _example(value: Any) -> str:
    """A value as typed after ``:=`` on a command line (the default, so a valid one)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _is_cuda_index(value: str) -> bool:
    return value.startswith("cuda:") and value[5:].isdigit()


P = ParamSpec
PERCEPTION_NODE = "taaf_perception"
REPLAY_NODE = "taaf_replay"

PERCEPTION_PARAMS: tuple[ParamSpec, ...] = (
    P("model_path", "", "checkpoint (.pt with model card); '' = the bundled model in "
      "share/taaf_ros/models (falls back to the source tree's models/)"),
    P("device", "auto", "inference device: auto (CUDA if present), cpu, cuda or cuda:N",
      choices=("auto", "cpu", "cuda")),
    P("dtype", "float32", "inference precision: float32, float16 (CUDA only) or bfloat16 "
      "(autocast; LIF state and norms stay float32; at batch 1 on the development CPU bfloat16 "
      "is 1.4x slower than float32, see benchmarks/bench_network.py --dtype bfloat16)",
      choices=("float32", "float16", "bfloat16")),
    P("inference_backend", "auto", "auto: the fastest backend that gives the eager "
      "network's outputs (ONNX Runtime on a CPU in float32, the CUDA graph on CUDA, else "
      "eager; the start-up line and /diagnostics say which and why); eager: the network in "
      "PyTorch; onnxruntime: its exported float32 graph in ONNX Runtime (no Python per op; "
      "<model>.onnx beside the checkpoint from taaf_export, else exported once into "
      "~/.cache/taaf_ros/onnx, keyed by the checkpoint's hash); cuda_graph: the network "
      "captured once as a CUDA graph and replayed (device cuda only). A backend that cannot "
      "run the dtype is refused", choices=INFERENCE_CHOICES),
    P("torch_threads", 1, "CPU threads for inference (torch intra-op, process-wide, and ONNX "
      "Runtime's); 0 = their default (one per core). 1 suits a batch-1 network beside "
      "decoding and other processes",
      low=0, high=1024),
    P("events_topic", "~/events", "event camera input topic (the launch files remap ~/events "
      "onto the driver's /event_camera/events)"),
    P("events_type", "event_packet", "event message type: event_packet "
      "(event_camera_msgs), dvs_event_array (dvs_msgs) or pointcloud2 (sensor_msgs)",
      choices=EVENT_TYPES),
    P("audio_topic", "~/audio", "microphone input topic (the launch files remap ~/audio onto "
      "audio_capture's /audio/audio_stamped)"),
    P("audio_type", "audio_data_stamped", "audio message type: audio_data_stamped "
      "(ros-drivers audio_common_msgs), audio_stamped (mgonzs13 audio_common_msgs), "
      "int16_multiarray or float32_multiarray (std_msgs: the t_ns layout stamp if present, "
      "else the receipt time)",
      choices=AUDIO_TYPES),
    P("audio_info_topic", "~/audio_info", "AudioInfo topic (audio_data_stamped only; the "
      "launch files remap it onto /audio/audio_info); until one arrives the "
      "audio_sample_rate/audio_channels fallbacks are used"),
    P("audio_sample_rate", STREAM_AUDIO_RATE_HZ, "input sample rate (Hz) when the message "
      "does not carry it",
      low=1000, high=384000),
    P("audio_channels", 1, "interleaved input channels when the message does not carry them "
      "(mixed to mono)", low=1, high=64),
    P("sensor_width", 0, "event sensor width (px) when the message does not carry it; "
      "0 = the model's input width", low=0, high=65535),
    P("sensor_height", 0, "event sensor height (px) when the message does not carry it; "
      "0 = the model's input height", low=0, high=65535),
    P("max_stamp_offset_s", 5.0, "header stamps further than this (s) from their receipt are "
      "named in /diagnostics as implausible (a bag with recorded stamps, a driver on sensor "
      "or boot time); stamps more than 1 s off their receipt for over 1 s are placed at "
      "receipt time whatever this is", low=0.1, high=1e9),
    P("window_s", 0.0, "window length (s); 0 = from the model card (what it was trained on)",
      low=0.0, high=10.0),
    P("hop_s", HOP_S, "a window ends every hop_s (s), on multiples of hop_s of the ROS clock",
      low=0.005, high=10.0),
    P("max_wait_s", -1.0, "longest wait (s) past a window's end for its data; then a late "
      "input counts as missing for that window (all late: the window is cut with what has "
      "come). -1 = measured: the inputs' delivery delay (99th percentile, over their last "
      "256 messages, of a message's receipt minus how far the input's data reached before "
      "it) plus 20 ms, at least 0.1 s, at most max_wait_bound_s", low=-1.0, high=10.0,
      runtime=True),
    P("max_wait_bound_s", 1.0, "with max_wait_s -1, the longest the measured wait may be (s); "
      "also waited until the delays are measured", low=0.0, high=10.0),
    P("modality_timeout_s", 0.5, "a modality with no message for this long (s) is missing: "
      "masked (degraded); both missing: no prediction, STALE", low=0.01, high=60.0,
      runtime=True),
    P("event_front_end", "auto", "auto: bin each event once on arrival into sub-bins shared by "
      "all windows (where window_s / T and hop_s share a step of at least window_s / 480); "
      "per_window: bin every window from an event ring buffer (the reference path)",
      choices=("auto", "per_window")),
    P("max_events_per_window", 200000, "per-window event front end only (window_s / T and "
      "hop_s share no common step): events per window beyond this are uniformly subsampled "
      "(counted); the streaming front end counts every event", low=1, high=100_000_000,
      runtime=True),
    P("event_buffer_capacity", 2000000, "per-window event front end only: events held in the "
      "ring buffer (oldest overwritten, counted); 21 bytes each", low=1000, high=200_000_000),
    P("audio_buffer_s", 5.0, "audio held in the ring buffer (s, at the model's rate)",
      low=0.5, high=600.0),
    P("top_k", 3, "number of best classes listed in each prediction", low=1, high=1000,
      runtime=True),
    P("smoothing_windows", 0, "the label is the argmax of the mean probabilities of this "
      "many consecutive windows (1 = each window's own; a gap starts afresh); 0 = the model "
      "card's rule, chosen when the model was trained on its validation data (a card without "
      "one: 1)", low=0, high=100, runtime=True),
    P("min_confidence", -1.0, "below this smoothed confidence the node abstains: label '' "
      "and class_id -1, and Classification carries no hypothesis (0 = never); -1 = the model "
      "card's rule (a card without one: 0)", low=-1.0, high=1.0, runtime=True),
    P("publish_debug_image", False, "publish taaf/debug_image: the window's events at the "
      "sensor's resolution, the audio raster, attention bars, label and confidence (keeps "
      "the last million raw events while on)", runtime=True),
    P("diagnostics_period_s", 1.0, "period of /diagnostics messages (s)", low=0.1, high=60.0),
)

REPLAY_PARAMS: tuple[ParamSpec, ...] = (
    P("data_root", "", "dataset root in the EAD layout (holds meta.json and split folders)"),
    P("split", "test", "split folder to replay"),
    P("order", "interleaved", "sample order: interleaved (round robin over the classes, so the "
      "first N samples are class-balanced) or listed (the dataset's order, class by class)",
      choices=("interleaved", "listed")),
    P("samples", 0, "number of samples to replay (0 = all)", low=0, high=10_000_000),
    P("start_index", 0, "first sample index (in that order)", low=0, high=10_000_000),
    P("loop", False, "start over after the last sample (else the node exits after it; its "
      "latched ground truth goes with it)"),
    P("window_s", WINDOW_S, "slot content length (s): each sample's first window_s seconds are "
      "played; set to the model's window", low=0.01, high=10.0),
    P("hop_s", HOP_S, "the perception hop (s): slots start on multiples of it", low=0.005,
      high=10.0),
    P("gap_s", 0.2, "silence after each sample (s), rounded up so a slot is whole hops",
      low=0.0, high=10.0),
    P("start_delay_s", 1.0, "wait before the first sample (s), for discovery", low=0.0,
      high=60.0),
    P("packet_s", 0.01, "event packet and audio chunk period (s)", low=0.001, high=1.0),
    P("events_topic", "/event_camera/events", "events output topic"),
    P("events_type", "pointcloud2", "pointcloud2, or event_packet (evt3; needs "
      "event_camera_msgs)", choices=("pointcloud2", "event_packet")),
    P("audio_topic", "/audio/audio", "audio output topic"),
    P("audio_type", "int16_multiarray", "int16_multiarray (stamped with the t_ns layout "
      "dim), or audio_data_stamped (needs audio_common_msgs)",
      choices=("int16_multiarray", "audio_data_stamped")),
    P("audio_info_topic", "/audio/audio_info", "AudioInfo output topic (audio_data_stamped)"),
    P("ground_truth_topic", "/taaf/ground_truth", "ground truth output topic (String JSON)"),
)

TABLES: dict[str, tuple[ParamSpec, ...]] = {
    PERCEPTION_NODE: PERCEPTION_PARAMS,
    REPLAY_NODE: REPLAY_PARAMS,
}


def spec(table: Iterable[ParamSpec], name: str) -> ParamSpec:
    """The entry called ``name`` (KeyError if there is none)."""
    for s in table:
        if s.name == name:
            return s
    raise KeyError(name)


def defaults(table: Iterable[ParamSpec]) -> dict[str, Any]:
    """name -> default."""
    return {s.name: s.default for s in table}


def validate(table: Iterable[ParamSpec], values: Mapping[str, Any]) -> list[str]:
    """Reasons why ``values`` (a subset of the table's names) are refused; empty if none.

    Checks each value, then rules between parameters.
    """
    table = tuple(table)
    errors = []
    for name, value in values.items():
        try:
            reason = spec(table, name).check(value)
        except KeyError:
            reason = f"unknown parameter {name!r}"
        if reason:
            errors.append(reason)
    wait = values.get("max_wait_s", -1.0)
    if not errors and -1.0 < wait < 0.0:
        errors.append(f"max_wait_s must be -1 (measured) or >= 0, got {wait!r}")
    confidence = values.get("min_confidence", -1.0)
    if not errors and -1.0 < confidence < 0.0:
        errors.append(f"min_confidence must be -1 (the model card's) or in [0, 1], got "
                      f"{confidence!r}")
    if not errors and {"window_s", "hop_s"} <= values.keys():
        w, h = values["window_s"], values["hop_s"]
        if w and h > w:
            errors.append(f"hop_s ({h}) must not exceed window_s ({w})")
    return errors


def runtime_update(table: Iterable[ParamSpec], current: Mapping[str, Any],
                   changes: Mapping[str, Any], unconfigured: bool = False
                   ) -> tuple[dict[str, Any] | None, str]:
    """A set-parameters request: (all values after it, "") or (None, why it is refused).

    unconfigured: a managed node that has not loaded yet, which accepts every parameter (it
    reads them at configure).

    Refused: an unknown name, a parameter read only at start-up, a value out of its range,
    or a rule between parameters broken by the change (window_s and hop_s are re-checked).
    """
    table = tuple(table)
    for name in changes:
        try:
            if not spec(table, name).runtime and not unconfigured:
                return None, (f"{name} is read at start-up: restart the node (managed node: "
                              "set it while unconfigured, it is read at configure)")
        except KeyError:
            return None, f"unknown parameter {name}"
    merged = {**current, **changes}
    errors = validate(table, {k: merged[k] for k in changes} |
                      {k: merged[k] for k in ("window_s", "hop_s") if k in merged})
    return (None, "; ".join(errors)) if errors else (merged, "")


def limits(s: ParamSpec) -> tuple[str, str] | None:
    """("one of", "a, b") or ("range", "[low, high]") of a parameter, None where unlimited."""
    if s.choices:
        return "one of", ", ".join(s.choices) + (" or cuda:N" if s.name == "device" else "")
    if s.low is not None or s.high is not None:
        return "range", f"[{s.low}, {s.high}]"
    return None


def describe(s: ParamSpec) -> str:
    """Description plus the range or choices, as shown in the ParameterDescriptor."""
    lim = limits(s)
    extra = f" {lim[0].capitalize()}: {lim[1]}." if lim else ""
    return s.description + "." + extra + ("" if s.runtime else " Read at start-up.")


def ignored_overrides(table: Iterable[ParamSpec], given: Iterable[str]) -> list[str]:
    """A warning for each given parameter the node does not have: ROS ignores those silently,
    so a typo (or a launch argument's name passed with ``-p``) would leave the default on.

    >>> ignored_overrides(PERCEPTION_PARAMS, ["model", "hop_s", "qos_overrides./x.depth"])
    ["ignoring parameter 'model': the node has no such parameter (did you mean 'model_path'?)"]
    """
    known = [s.name for s in table]
    lines = []
    for name in sorted(given):
        # qos_overrides.* are declared by rclpy itself when the publishers are made.
        if name in known or name.startswith("qos_overrides."):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "`ros2 param list` shows its parameters"
        lines.append(f"ignoring parameter {name!r}: the node has no such parameter ({hint})")
    return lines


def declare_all(node: Any, table: Iterable[ParamSpec], all_settable: bool = False
                ) -> dict[str, Any]:
    """Declare every parameter of ``table`` on an rclpy node; return the validated values.

    Each gets a ParameterDescriptor with the description, its range (IntegerRange or
    FloatingPointRange, so tools show it) and ``read_only`` unless it may change at run time
    (``all_settable``: none is read-only; a managed node refuses changes itself once
    configured).
    Raises ValueError listing every refused value, with the reason, so a node refuses to start
    on a bad configuration instead of running with a surprise.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import (
        InvalidParameterTypeException,
        InvalidParameterValueException,
    )

    table = tuple(table)
    values: dict[str, Any] = {}
    errors: list[str] = []
    for s in table:
        # dynamic_typing: the type is checked by ParamSpec.check, whose refusal names the
        # parameter, the type and an example (rclpy's reads "expected '2' got '4'"), and which
        # takes an integer for a float (`ros2 param set ... max_wait_s 1` means 1.0)
        desc = ParameterDescriptor(description=describe(s), dynamic_typing=True,
                                   read_only=not (s.runtime or all_settable))
        # Ranges are checked by validate() with our messages; the descriptor ones tell tools.
        if s.type is int and (s.low is not None or s.high is not None):
            desc.integer_range = [IntegerRange(from_value=int(s.low), to_value=int(s.high))]
        elif s.type is float and (s.low is not None or s.high is not None):
            desc.floating_point_range = [FloatingPointRange(from_value=float(s.low),
                                                            to_value=float(s.high))]
        try:
            values[s.name] = node.declare_parameter(s.name, s.default, desc).value
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            override = getattr(node, "_parameter_overrides", {}).get(s.name)
            value = getattr(override, "value", override)
            errors.append(s.check(value) or f"{s.name}: {exc}")
    # rclpy keeps the overrides (command line, parameters files) only in this attribute.
    given = [n for n in getattr(node, "_parameter_overrides", {}) if not node.has_parameter(n)]
    for line in ignored_overrides(table, given):
        node.get_logger().warning(line)
    if not errors:
        errors = validate(table, values)
    if errors:
        raise ValueError("invalid parameters: " + "; ".join(errors))
    return values


def render_yaml() -> str:
    """config/perception.yaml as generated from the tables (a test keeps the file equal)."""
    import json

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v) if isinstance(v, str) else repr(v)

    lines = ["# Parameters of the taaf_ros nodes (ros__parameters). Generated from, and tested",
             "# against, taaf_ros/params.py (render_yaml): change a default there, then",
             "# regenerate: python -c 'from taaf_ros.params import render_yaml as r; "
             "print(r(), end=\"\")' > config/perception.yaml",
             "# Use: ros2 run taaf_ros perception_node --ros-args --params-file "
             "config/perception.yaml", ""]
    for node, table in TABLES.items():
        # /**/: the node in any namespace (namespace:=robot1 in the launch files).
        lines += [f"/**/{node}:", "  ros__parameters:"]
        for s in table:
            lines += [f"    # {s.description}", f"    {s.name}: {fmt(s.default)}"]
        lines.append("")
    return "\n".join(lines)
