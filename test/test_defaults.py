"""One source per default: the window, the hop, FSDD's rate and the learning rates are written
once (taaf_ros/defaults.py, training/optim.py); everything else reads them."""

from __future__ import annotations

import ast

from conftest import REPO_ROOT

from taaf_ros.defaults import FSDD_RATE_HZ, HOP_S, STREAM_AUDIO_RATE_HZ, WINDOW_S
from taaf_ros.training.optim import PEAK_LR

#: Where a default is written, and the literals that mean something else there.
HOMES = {"taaf_ros/defaults.py", "taaf_ros/training/optim.py"}
OTHER_MEANINGS = {
    ("taaf_ros/inference/rule_choice.py", 0.6),  # a confidence in the grid searched
    ("taaf_ros/data/recording.py", 0.05),  # the chunk read from a file at a time
    ("taaf_ros/apps/bag_play.py", 0.05),  # a poll interval
    ("taaf_ros/apps/demo.py", 0.05),  # a spin timeout
    ("taaf_ros/inference/backends.py", 0.05),  # a backend's tolerance in reduced precision
    ("taaf_ros/inference/stats.py", 0.05),  # a share of windows
}


def literals(values: set[float]) -> list[tuple[str, int, float]]:
    found = []
    files = [*(REPO_ROOT / "taaf_ros").rglob("*.py"), *(REPO_ROOT / "launch").glob("*.py"),
             REPO_ROOT / "train_ead.py"]
    for path in files:
        rel = path.relative_to(REPO_ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and type(node.value) in (int, float)
                    and node.value in values and rel not in HOMES
                    and (rel, node.value) not in OTHER_MEANINGS):
                found.append((rel, node.lineno, node.value))
    return found


def test_no_second_literal_of_a_shared_default() -> None:
    window_us = round(WINDOW_S * 1e6)
    values = {WINDOW_S, window_us, HOP_S, round(HOP_S * 1e6), FSDD_RATE_HZ, STREAM_AUDIO_RATE_HZ,
              *PEAK_LR.values()}
    values.discard(0.01)  # SGD's rate is also a common tolerance and period: checked below
    assert literals(values) == []


def test_the_defaults_are_read_where_they_are_used() -> None:
    from taaf_ros.audio.cochlea import CochleaConfig
    from taaf_ros.data.avdigits import BuildConfig
    from taaf_ros.frontend import FrontEndConfig
    from taaf_ros.params import PERCEPTION_PARAMS, REPLAY_PARAMS, defaults
    from taaf_ros.stream.live_frontend import LiveSettings
    from taaf_ros.training.config import METHOD_OPTIMIZERS, TrainConfig

    node, replay = defaults(PERCEPTION_PARAMS), defaults(REPLAY_PARAMS)
    assert FrontEndConfig().window_s == replay["window_s"] == WINDOW_S
    assert node["hop_s"] == replay["hop_s"] == HOP_S
    assert CochleaConfig().sample_rate == BuildConfig().audio_rate == FSDD_RATE_HZ
    live = LiveSettings(hop_us=1, history_us=1)
    for key in ("event_front_end", "event_buffer_capacity", "max_events_per_window",
                "audio_buffer_s"):
        assert getattr(live, key) == node[key], key
    assert TrainConfig().optim.lr == PEAK_LR["adamw"]
    assert {o["lr"] for o in METHOD_OPTIMIZERS.values()} == {PEAK_LR["sgd"]}


def test_the_demo_launch_sets_the_dataset_rate() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_launch",
                                                  REPO_ROOT / "launch" / "demo.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.DEMO_DEFAULTS["audio_sample_rate"] == str(FSDD_RATE_HZ)
