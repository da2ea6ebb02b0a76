"""``taaf_demo``: the pip-only path. Replay + perception in one process, live accuracy at the end.

Needs no ROS install beyond the PyPI rclpy and standard messages: no launch, no ros2 CLI. Both
nodes read the same ``config/perception.yaml`` as the launch files; the demo only overrides the
input types to the stock messages the replay publishes (PointCloud2, Int16MultiArray) and the
values that must agree between the two nodes (window, hop, rate, sensor size).

    taaf_demo --data-root DIR [--split test] [--model PATH] [--samples N] [--device cpu]

DIR is a dataset in the EAD layout, or a folder with FSDD + MNIST sources (``fsdd/recordings``
and ``mnist``; ``--download`` fetches them into an empty DIR), from which the AV-digits split
is built once and cached.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

from taaf_ros.apps.options import parser
from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.params import PERCEPTION_NODE, REPLAY_NODE


def find_config() -> Path:
    """config/perception.yaml: installed share dir, else the source tree."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("taaf_ros")) / "config")
    except (ImportError, LookupError, OSError, ValueError):
        pass  # no ament index here: plain pip install or source checkout
    candidates += [Path(sys.prefix) / "share" / "taaf_ros" / "config",
                   Path(__file__).resolve().parents[2] / "config"]
    for d in candidates:
        if (d / "perception.yaml").is_file():
            return d / "perception.yaml"
    raise FileNotFoundError("config/perception.yaml not found in "
                            + ", ".join(map(str, candidates)))


def load_params(path: Path, node: str) -> dict[str, Any]:
    """The ros__parameters of ``node`` (or of '/**', '/**/node') in a ROS parameters file."""
    import yaml

    doc = yaml.safe_load(path.read_text()) or {}
    out: dict[str, Any] = {}
    for key in ("/**", "/**/" + node, node, "/" + node):
        out.update((doc.get(key) or {}).get("ros__parameters", {}))
    return out


def resolve_dataset(root: Path, split: str, cache: Path | None, download: bool = False) -> Path:
    """An EAD-layout root holding ``split``: ``root`` itself, or AV-digits built from sources.

    The normal speaker-independent build: its test split is what the bundled model was
    evaluated on, so live accuracy is comparable to the model card.
    """
    try:
        out = ensure_ead_dataset(root, cache or "", download=download)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    if not (out / split).is_dir():
        raise SystemExit(f"error: {out} has no {split!r} split")
    return out


def echo(text: str) -> str:
    """A std_msgs/String as ``ros2 topic echo`` prints it (YAML single-quoted)."""
    return "data: '" + text.replace("'", "''") + "'\n---"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = parser("taaf_demo", __doc__.split("\n")[0].replace("``", ""))
    ap.add_argument("--data-root", type=Path, required=True,
                    help="EAD-layout dataset, or a folder with fsdd/recordings and mnist")
    ap.add_argument("--split", default="test", help="split to replay (default: test)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--samples", type=int, default=20, help="samples to replay (0 = all; "
                    "default: 20)")
    ap.add_argument("--gap-s", type=float, default=1.0, help="silence between samples (s): "
                    "the windows with no sample in them are where the node should abstain "
                    "(default: 1.0)")
    ap.add_argument("--device", default=None, help="auto, cpu, cuda:N (default: from config)")
    ap.add_argument("--config", type=Path, default=None,
                    help="parameters file (default: the package's config/perception.yaml)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="where AV-digits is built from sources (default: ~/.cache/taaf_ros)")
    ap.add_argument("--download", action="store_true",
                    help="download FSDD and MNIST (checksum-verified) if --data-root has neither")
    ap.add_argument("--quiet", action="store_true", help="do not echo every prediction")
    args = ap.parse_args(argv)
    if args.samples < 0:
        ap.error("--samples must be >= 0")
    if args.gap_s < 0:
        ap.error("--gap-s must be >= 0")
    return args


def demo_perception_params(pp: dict[str, Any], rp: dict[str, Any], ds: Any,
                           args: argparse.Namespace) -> dict[str, Any]:
    """The perception node's parameters for the replayed dataset: the replay's message types
    and topics, the dataset's audio rate and sensor, the model and device asked for."""
    rate = int(ds.meta.get("audio_rate", 0)) or ds[0].sample_rate
    pp = pp | {"events_type": "pointcloud2", "audio_type": "int16_multiarray",
               "events_topic": rp.get("events_topic", "/event_camera/events"),
               "audio_topic": rp.get("audio_topic", "/audio/audio"),
               "audio_sample_rate": rate, "audio_channels": 1,
               "sensor_width": ds.sensor_size[0], "sensor_height": ds.sensor_size[1]}
    if args.model:
        pp["model_path"] = str(args.model)
    if args.device:
        pp["device"] = args.device
    return pp


def spin_until_drained(executor: Any, perception: Any, replay: Any) -> Any:
    """Spin until the replay has finished and its last window had time to be published; the
    scheduler's counters of the replay itself (later windows hold no data, stale anyway).
    Ctrl-C and SIGTERM raise KeyboardInterrupt in here (``signals.init_rclpy``)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    done_at = snap_at = None
    stats = None
    while True:
        if not rclpy.ok():  # shut down elsewhere between two spins: spin_once would not say
            raise ExternalShutdownException()
        executor.spin_once(timeout_sec=0.05)
        if replay.finished and done_at is None:
            # After the last sample: one more window and the wait in force, then a margin.
            max_wait = perception.session.scheduler.max_wait_us / 1e6
            drain = perception.classifier.window_us / 1e6 + max_wait + 0.5
            done_at, snap_at = time.monotonic() + drain, time.monotonic() + max_wait
        if snap_at is not None and stats is None and time.monotonic() > snap_at:
            stats = copy.deepcopy(perception.session.scheduler.stats)
        if done_at is not None and time.monotonic() > done_at:
            break
    return stats or perception.session.scheduler.stats


DIAGNOSTICS_SHOWN = ("backend", "backend.reason", "dtype", "device", "inference_ms.p50",
                     "inference_ms.p99", "inference_ms.windows")
"""The node's /diagnostics keys the report repeats: what ran the network, at what cost."""


def print_report(s: dict[str, Any], stats: Any, perception: Any,
                 diagnostics: dict[str, str] | None = None) -> None:
    """Live accuracy, latency and the scheduler's counts, with a note where windows were lost;
    the node's last /diagnostics on what runs the network."""
    late = sum(stats.late.values())
    print(f"\nlive accuracy: {s['aligned_accuracy']:.3f} on {s['aligned_windows']} "
          f"sample-aligned windows ({s['samples']} samples); {s['majority_accuracy']:.3f} "
          f"over {s['majority_windows']} windows a sample covers at least half of; "
          f"{s['background_abstained']:.3f} of the {s['background_windows']} windows with no "
          f"sample abstained (smoothing_windows {perception.session.decision.smoothing_windows}"
          f", min_confidence {perception.session.decision.min_confidence:g})")
    print(f"window-end-to-publish latency: p50 {s['latency_ms_p50']:.1f} ms, "
          f"p99 {s['latency_ms_p99']:.1f} ms over {s['predictions']} predictions "
          f"({s['degraded']} degraded); inference (front ends + network) p50 "
          f"{s['inference_ms_p50']:.2f} ms, p99 {s['inference_ms_p99']:.2f} ms, "
          f"{perception.classifier.backend} on {perception.classifier.device}")
    print(f"windows during the replay: {stats.cut} classified, {stats.dropped} dropped "
          f"(inference behind), {late} cut late with an input missing after max_wait_s, "
          f"{stats.stale} without input")
    if diagnostics:
        print("/diagnostics (last, over its last 10 s): " + ", ".join(
            f"{k}={diagnostics[k]}" for k in DIAGNOSTICS_SHOWN if k in diagnostics))
    if stats.dropped or late:
        print(f"note: this machine did not keep up with a window every "
              f"{perception.p['hop_s']} s (other load, or inference slower than the hop); "
              f"aligned windows that were dropped or masked are missing from or lower the "
              f"live accuracy. A larger hop_s (--config) or an idle machine avoids it.")


def listener(truth_topic: str, board: Any, diagnostics: dict[str, str], quiet: bool) -> Any:
    """A node that scores the predictions against the replay's ground truth on ``board``,
    echoes them (unless ``quiet``) and keeps the perception node's last /diagnostics values."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    from taaf_ros.inference.prediction import parse_prediction
    from taaf_ros.inference.scoring import GroundTruth
    from taaf_ros.nodes.replay_node import GT_QOS

    node = rclpy.create_node("taaf_demo_listener")

    def on_pred(msg: String) -> None:
        board.add_prediction(parse_prediction(msg.data))
        if not quiet:
            print(echo(msg.data), flush=True)

    node.create_subscription(String, "/taaf/prediction", on_pred, QoSProfile(depth=100))
    node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: diagnostics.update((kv.key, kv.value) for st in m.status[:1]
                                     for kv in st.values), QoSProfile(depth=10))
    node.create_subscription(String, truth_topic,
                             lambda m: board.add_truth(GroundTruth.from_json(m.data)), GT_QOS)
    return node


def main(argv: list[str] | None = None) -> int:
    """Console script ``taaf_demo``; returns 0, or 2 when it cannot start."""
    args = parse_args(argv)
    # Before rclpy creates a context: discovery must stay on this machine.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    root = resolve_dataset(args.data_root, args.split, args.cache, args.download)
    config = args.config or find_config()

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.scoring import Scoreboard
    from taaf_ros.nodes.perception_node import PerceptionNode, StartupError
    from taaf_ros.nodes.replay_node import ReplayNode
    from taaf_ros.nodes.signals import ignore_signals, init_rclpy

    ds = EadDataset(root, args.split)
    rp = load_params(config, REPLAY_NODE)
    pp = demo_perception_params(load_params(config, PERCEPTION_NODE), rp, ds, args)

    def overrides(d: dict[str, Any]) -> list[Parameter]:
        return [Parameter(k, value=v) for k, v in d.items()]

    init_rclpy()
    nodes, executor = [], None
    try:
        try:
            perception = PerceptionNode(parameter_overrides=overrides(pp))
        except StartupError as exc:
            hint = ("" if pp.get("model_path") else
                    " (taaf_demo: pass --model PATH, e.g. the model.pt that train_ead.py wrote)")
            print(f"[taaf_demo] error: {exc}{hint}", file=sys.stderr)
            return 2
        nodes.append(perception)
        rp |= {"data_root": str(root), "split": args.split, "samples": args.samples,
               "loop": False, "gap_s": args.gap_s,
               "window_s": perception.classifier.window_us / 1e6, "hop_s": perception.p["hop_s"]}
        try:
            replay = ReplayNode(parameter_overrides=overrides(rp))
        except StartupError as exc:
            print(f"[taaf_demo] error: {exc}", file=sys.stderr)
            return 2
        nodes.append(replay)
        board = Scoreboard()
        diagnostics: dict[str, str] = {}  # the node's last /diagnostics values, for the report
        nodes.append(listener(replay.p["ground_truth_topic"], board, diagnostics, args.quiet))
        # One thread for every callback (decoding, replay timer, listener): inference runs in
        # the perception node's own thread, and rclpy's multi-threaded executor costs ~3x the
        # CPU per callback.
        executor = SingleThreadedExecutor()
        for n in nodes:
            executor.add_node(n)
        try:
            stats = spin_until_drained(executor, perception, replay)
        except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C, SIGTERM
            # What was replayed so far is still worth reporting (e.g. after --samples 0).
            print("\n[taaf_demo] interrupted: the figures below cover the samples replayed so "
                  "far", file=sys.stderr)
            print_report(board.summary(), perception.session.scheduler.stats, perception,
                         diagnostics)
            return 130
        print_report(board.summary(), stats, perception, diagnostics)
        return 0
    except KeyboardInterrupt:  # during start-up
        return 130
    finally:
        ignore_signals()
        if executor is not None:
            executor.shutdown()
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
