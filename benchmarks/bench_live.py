"""Benchmark the live path: events + audio over DDS -> perception node -> prediction.

    python benchmarks/bench_live.py                          # CPU, bundled model, < 2 min
    python benchmarks/bench_live.py --wire event_packet      # the camera driver's evt3 packets
    python benchmarks/bench_live.py --model run/model.pt --rates 0.5,1,2,4,8

A perception node runs in its own process, as it does on a robot (``perception_node``), with
the model on the CPU and a window ending every ``--hop`` seconds. This process plays the sensors
on a wall-clock schedule: a synthetic event camera (``--width`` x ``--height``, uniformly random
pixels) publishing ``sensor_msgs/PointCloud2`` packets (16 bytes per event) every
``--packet-ms`` or, with ``--wire event_packet``, ``event_camera_msgs/EventPacket`` packets in
EVT 3.0 as metavision_driver sends them (built by ``taaf_build_interfaces``; the whole schedule
is encoded before the node starts, so publishing costs a copy, as for PointCloud2; the bytes per
event of this stream and of the real evt3 bag, ``--bag``, are printed), and a microphone
publishing ``std_msgs/Int16MultiArray`` chunks of the same period at the model's audio rate,
stamped with the taaf_ros ``t_ns=`` layout dim (docs/ros.md). Each event rate of ``--rates``
(million events/s) is held for ``--seconds`` after ``--warmup`` seconds, and measured:

* window-end-to-publish latency p50/p99: the node's ``latency_ms`` (window end -> publish, ROS
  clock), and the same at this subscriber (-> receipt);
* the node's inference time (window cut + front end + network, ``inference_ms``);
* windows: expected (measured time / hop) vs predicted; dropped (inference fell behind), late or
  stale (an input missed ``max_wait_s``), degraded; events received vs published.
A rate is *sustained* when no window is dropped, late, stale or degraded and >= 99 % of the events
arrive. Reference, measured in this process before the node starts (same threads, no ROS): the
network alone on precomputed tensors, and front end + network on a window of the same events.
The ratio end-to-end / reference shows what ROS transport, buffering and scheduling add.

Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, set here) in a domain
of its own (``--domain-id``; default: ROS_DOMAIN_ID, else one derived from the process id), and
every topic is private to this run. Numbers depend on what else the machine runs: compare rows of
the same run, not across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

SHM_SEGMENT = 512 * 1024
"""Fast DDS's default shared-memory segment (bytes): larger samples cannot use that transport."""


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="checkpoint (default: the bundled models/*.pt; "
                    "if there is none, an untrained model: latency does not depend on weights)")
    ap.add_argument("--rates", default="0.5,1,2,4",
                    help="event rates to step through, million events/s (default: 0.5,1,2,4)")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured time per rate (s)")
    ap.add_argument("--warmup", type=float, default=2.0, help="settling time per rate (s)")
    ap.add_argument("--hop", type=float, default=0.05, help="perception hop_s (s)")
    ap.add_argument("--packet-ms", type=float, default=10.0,
                    help="event packet and audio chunk period (ms)")
    ap.add_argument("--width", type=int, default=640, help="sensor width (px)")
    ap.add_argument("--height", type=int, default=480, help="sensor height (px)")
    ap.add_argument("--max-events-per-window", type=int, default=200_000,
                    help="the node's max_events_per_window (default: the node's default)")
    ap.add_argument("--front-ends", default="auto,per_window",
                    help="the node's event_front_end values to run, one node each (default: "
                    "auto,per_window: the streaming front end, then the per-window reference)")
    ap.add_argument("--wire", choices=["pointcloud2", "event_packet"], default="pointcloud2",
                    help="event message type (default: pointcloud2)")
    ap.add_argument("--bag", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data"
                    / "event_bags" / "test_data_evt3_trigger",
                    help="a real evt3 bag whose bytes per event are printed beside the "
                    "synthetic stream's (--wire event_packet)")
    ap.add_argument("--backend", choices=("auto", "eager", "onnxruntime"), default="auto",
                    help="the node's inference_backend, and the reference's (the node runs on "
                         "the CPU here; auto, the node's default, picks ONNX Runtime there)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="the node's torch_threads, and this process's for the reference")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (0-101)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="also write the summary tables here (e.g. docs/bench/live_<wire>.md)")
    record.add_argument(ap)
    args = ap.parse_args()
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.front_ends = [f.strip() for f in args.front_ends.split(",") if f.strip()]
    if not set(args.front_ends) <= {"auto", "per_window"}:
        ap.error("--front-ends takes auto and/or per_window")
    if not args.rates or min(args.rates) <= 0:
        ap.error("--rates needs positive numbers")
    if not 0 <= (args.domain_id if args.domain_id is not None else 0) <= 101:
        ap.error("--domain-id must be in [0, 101]")
    return args


def set_ros_env(domain_id: int | None) -> str:
    """Discovery on loopback only, in a domain of this run's own (before rclpy is imported)."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    else:
        os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
    return os.environ["ROS_DOMAIN_ID"]


def resolve_model(path: str, tmp: Path) -> tuple[Path, str]:
    """(checkpoint, what it is): --model, else the bundled one, else an untrained one."""
    from taaf_ros.model.bundled import find_bundled_model

    if path:
        return Path(path), "given"
    try:
        return find_bundled_model(), "bundled"
    except FileNotFoundError:
        import torch

        from taaf_ros.frontend import FrontEndConfig
        from taaf_ros.model import ModelConfig, TAAFNet, make_model_card, save_checkpoint

        torch.manual_seed(0)
        model = TAAFNet(ModelConfig()).eval()
        fe = FrontEndConfig()
        card = make_model_card(model, classes=[str(i) for i in range(10)],
                               window_s=fe.window_s, audio_rate=fe.cochlea.sample_rate,
                               frontend=fe.to_dict())
        return save_checkpoint(tmp / "untrained.pt", model, card), "untrained (no bundled model)"


def percentiles(v: list[float]) -> tuple[float, float]:
    if not v:
        return float("nan"), float("nan")
    a = np.asarray(v, float)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def timeit(fn: Any, n: int, gap_s: float = 0.0) -> float:
    """Median wall time of fn() (ms) after two warm-up calls; ``gap_s``: a sleep before each
    call, as the node's windows come (one per hop, not back to back)."""
    fn(), fn()
    times = []
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def reference(model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Network alone, and front end + network, on windows like the live ones (no ROS)."""
    import torch

    from taaf_ros.events.types import make_events
    from taaf_ros.inference.classifier import Classifier

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    clf = Classifier(model, "cpu", backend=args.backend)
    clf.warm_up()
    print(f"reference: {clf.describe()}", flush=True)
    rng = np.random.default_rng(0)
    w_us, rate = clf.window_us, clf.frontend.cochlea.sample_rate
    pcm = (0.1 * rng.standard_normal(round(w_us * rate / 1e6))).astype(np.float32)
    sensor = (args.width, args.height)
    out: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "backend": clf.backend}
    res = clf.classify(make_events([0], [0], [0], [1]), sensor, pcm, rate, 0)
    ev_t = torch.from_numpy(res.events_frame)[:, None]
    au_t = torch.from_numpy(res.audio_frame)[:, None]
    present = torch.tensor([[True, True]])

    def network() -> None:
        if clf.runner is not None:  # the exported graph, as the node runs it
            clf.runner(res.events_frame[:, None], res.audio_frame[:, None], present.numpy())
            return
        with torch.inference_mode():
            clf.model(ev_t, au_t, present)

    out["network_ms"] = timeit(network, 15)
    a = torch.rand(256, 256)  # the machine alone: does a pause slow the next call down?
    out["matmul_ms"] = [timeit(lambda: a @ a, 15), timeit(lambda: a @ a, 15, gap_s=args.hop)]
    out["frontend_network_ms"] = {}
    out["event_front_end_ms"] = {}
    out["pipeline_ms"] = {}
    out["pipeline_hop_ms"] = {}
    hop_us = round(args.hop * 1e6)
    fe = clf.frontend
    for r in args.rates:
        n_all = int(r * 1e6 * w_us / 1e6)
        n = min(n_all, args.max_events_per_window)
        ev = make_events(rng.integers(0, args.width, n), rng.integers(0, args.height, n),
                         np.sort(rng.integers(0, w_us, n)), rng.integers(0, 2, n))
        out["frontend_network_ms"][r] = timeit(
            lambda ev=ev: clf.classify(ev, sensor, pcm, rate, 0), 5)
        out["event_front_end_ms"][r] = event_front_end_cost(fe, sensor, n_all, hop_us, args, rng)
        out["pipeline_ms"][r], out["pipeline_hop_ms"][r] = pipeline_cost(
            clf, sensor, r, hop_us, args, rng)
    out["window_s"], out["audio_rate"] = w_us / 1e6, rate
    return out


def event_front_end_cost(fe: Any, sensor: tuple[int, int], n_window: int, hop_us: int,
                         args: argparse.Namespace, rng: np.random.Generator) -> dict[str, float]:
    """Event front-end cost of one window (ms) at a rate giving n_window events per window:
    per-window (ring buffer -> subsampled copy -> fit + bin, the reference path) vs streaming
    (one hop's new events binned on arrival + the window summed from sub-bins)."""
    from taaf_ros.events.types import make_events
    from taaf_ros.frontend import event_tensor
    from taaf_ros.stream.buffers import EventRingBuffer
    from taaf_ros.stream.event_frames import StreamingEventFrames, streaming_step

    w_us = fe.window_us
    n_hop = max(1, n_window * hop_us // w_us)
    ev = make_events(rng.integers(0, args.width, n_window), rng.integers(0, args.height, n_window),
                     np.sort(rng.integers(0, w_us, n_window)), rng.integers(0, 2, n_window))
    buf = EventRingBuffer(n_window + 1)
    buf.push(ev)

    def per_window() -> None:
        got = buf.window(0, w_us, args.max_events_per_window)
        event_tensor(got, sensor, 0, fe)

    out = {"per_window": timeit(per_window, 5)}
    step = streaming_step(w_us, fe.n_time_bins, hop_us)
    if step is not None:
        frames = StreamingEventFrames(sensor, fe.input_size, fe.fit_mode, w_us, fe.n_time_bins,
                                      step, w_us + 1_000_000)
        frames.push(ev)
        new = ev[-n_hop:]

        def streaming() -> None:
            frames.push(new)  # the hop's arrivals (counted twice here: same cost)
            frames.window_tensor(0, fe.max_count)

        out["streaming"] = timeit(streaming, 9)
    return out


def pipeline_cost(clf: Any, sensor: tuple[int, int], rate_m: float, hop_us: int,
                  args: argparse.Namespace, rng: np.random.Generator) -> tuple[float, float]:
    """What the node's inference_ms times, in this process: the live front end (streaming
    event front end, streaming cochlea, network) classifying one window after a window and
    a hop of events at rate_m M events/s and audio came in 10 ms packets (median, ms): calls
    back to back, and one call per hop (after a sleep of one hop, as in the node; on the
    2-core machine of docs/bench the same work takes longer after a pause, a plain matrix
    product too, whatever the node does)."""
    from taaf_ros.events.types import make_events
    from taaf_ros.stream.live_frontend import LiveFrontEnd, LiveSettings
    from taaf_ros.stream.scheduler import WindowCut

    w_us, rate = clf.window_us, clf.frontend.cochlea.sample_rate
    live = LiveFrontEnd(clf.frontend, sensor, LiveSettings(
        hop_us, w_us + 1_000_000, max_events_per_window=args.max_events_per_window))
    n, t = round(rate_m * 1e6 * 0.01), 0
    while t < w_us + hop_us:
        live.push_events(make_events(rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n),
                                     np.sort(rng.integers(t, t + 10_000, n)),
                                     rng.integers(0, 2, n)), sensor)
        live.push_audio((0.1 * rng.standard_normal(rate // 100)).astype(np.float32), t, rate)
        t += 10_000
    w = WindowCut(hop_us, hop_us + w_us, (True, True), False)

    def classify() -> object:  # what LiveSession.classify_window does
        ev, _, au, _ = live.window_tensors(w)
        return clf.classify_tensors(ev, au)

    return timeit(classify, 15), timeit(classify, 15, gap_s=hop_us / 1e6)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (s), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sensors:
    """Publishes the event camera and the microphone on a wall-clock schedule (own thread).

    Every packet [a, b) goes out once the clock has passed b; after a stall, all due packets
    are published (catch-up), so the offered rate is kept and stamps stay true.
    """

    def __init__(self, node: Any, events_topic: str, audio_topic: str, args: argparse.Namespace,
                 audio_rate: int) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import PointCloud2
        from std_msgs.msg import Int16MultiArray, MultiArrayDimension

        from taaf_ros.audio.multiarray_stamp import stamped_layout_dims
        from taaf_ros.events import events_to_pointcloud2, make_events

        self.node, self.args = node, args
        self.wire = args.wire
        if self.wire == "event_packet":
            from taaf_ros.nodes.msg_imports import import_msg

            self._Packet = import_msg("event_camera_msgs", "EventPacket", "--wire event_packet")
        self.pub_ev = node.create_publisher(self._Packet if self.wire == "event_packet"
                                            else PointCloud2, events_topic,
                                            qos_profile_sensor_data)
        self.pub_au = node.create_publisher(Int16MultiArray, audio_topic, qos_profile_sensor_data)
        self.packet_us = round(args.packet_ms * 1000)
        self.audio_rate = audio_rate
        self._dims, self._Dim, self._Audio = stamped_layout_dims, MultiArrayDimension, \
            Int16MultiArray
        n_max = int(max(args.rates) * 1e6 * self.packet_us / 1e6) + 1
        rng = np.random.default_rng(1)
        # One template cloud (the library's layout), and a pool of random events whose times
        # are rewritten for each packet: building a packet costs one copy, not an encoding.
        tmpl = events_to_pointcloud2(make_events([0], [0], [0], [1]))
        self._fields, self._step = tmpl.fields, tmpl.point_step
        self._rec = np.zeros(n_max, dtype=np.dtype({
            "names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "u1", "<i8"],
            "offsets": [0, 2, 4, 8], "itemsize": tmpl.point_step}))
        self._rec["x"] = rng.integers(0, args.width, n_max)
        self._rec["y"] = rng.integers(0, args.height, n_max)
        self._rec["p"] = rng.integers(0, 2, n_max)
        n_au = audio_rate * self.packet_us // 1_000_000
        tone = 3000 * np.sin(2 * np.pi * 440 * np.arange(20 * n_au) / audio_rate)
        self._audio = (tone + 500 * rng.standard_normal(tone.shape)).astype(np.int16)
        self._n_au = n_au
        self.rate = 0.0
        self.published = 0  # events
        self.history: list[tuple[int, int]] = []  # (time µs, events published before it)
        self.lag_ms: list[float] = []  # publish time - packet end
        self.build_ms: list[float] = []
        self._schedule: list[tuple[float, bytes, int]] = []  # event_packet: (rate, evt3, n)
        self.schedule_s = args.warmup + args.seconds + 1.5  # per rate, event_packet only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def encode_schedule(self) -> float:
        """EVT 3.0 packets for every rate in turn (``schedule_s`` each), the sensor clock
        running on from packet to packet as a camera's does; -> bytes per event."""
        from taaf_ros.events import encode_evt3, make_events

        p, last, size, events = self.packet_us, 0, 0, 0
        for rate in self.args.rates:
            n = int(round(rate * 1e6 * p / 1e6))
            rec = self._rec[:n]
            for _ in range(int(self.schedule_s * 1e6 / p)):
                a = len(self._schedule) * p
                t = a + (np.arange(n, dtype=np.int64) * p) // max(n, 1)
                data = encode_evt3(make_events(rec["x"], rec["y"], t, rec["p"]), last) \
                    if n else b""
                last = int(t[-1]) if n else last
                self._schedule.append((rate, data, n))
                size, events = size + len(data), events + n
        return size / max(events, 1)

    def wait_for_rate(self, rate: float, timeout: float = 60.0) -> None:
        """event_packet: the schedule sets the rate; wait until it has reached this one."""
        end = time.monotonic() + timeout
        while self.rate != rate and time.monotonic() < end:
            time.sleep(0.01)

    def now_us(self) -> int:
        return time.time_ns() // 1000  # the node's ROS clock is system time here

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from sensor_msgs.msg import PointCloud2

        p = self.packet_us
        k = k0 = self.now_us() // p + 1
        while not self._stop.is_set():
            a, b = k * p, (k + 1) * p
            wait = (b - self.now_us()) / 1e6
            if wait > 0:
                time.sleep(wait)
            t0 = time.perf_counter()
            if self.wire == "event_packet":
                if k - k0 >= len(self._schedule):
                    break
                self.rate, data, n = self._schedule[k - k0]
                msg = self._Packet(height=self.args.height, width=self.args.width, seq=k - k0,
                                   encoding="evt3")
                msg.events = data  # sensor time (k - k0) * p at the packet's start
            else:
                n = int(round(self.rate * 1e6 * p / 1e6))
                rec = self._rec[:n]
                rec["t"] = a + (np.arange(n, dtype=np.int64) * p) // max(n, 1)  # in [a, b)
                msg = PointCloud2(height=1, width=n, fields=self._fields, is_bigendian=False,
                                  point_step=self._step, row_step=self._step * n, is_dense=True)
                msg.data = rec.tobytes()  # bytes: an ndarray is converted element by element
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(a * 1000, 1_000_000_000)
            chunk = self._Audio()
            chunk.layout.dim = [self._Dim(label=lab, size=s, stride=st)
                                for lab, s, st in self._dims(self._n_au, a * 1000)]
            off = (k % 20) * self._n_au
            chunk.data = self._audio[off:off + self._n_au].tolist()
            self.build_ms.append((time.perf_counter() - t0) * 1e3)
            self.pub_ev.publish(msg)
            self.pub_au.publish(chunk)
            self.history.append((self.now_us(), self.published))
            self.published += n
            self.lag_ms.append((self.now_us() - b) / 1e3)
            k += 1

    def published_before(self, t_us: int) -> int:
        """Events whose packets were published before t_us."""
        i = int(np.searchsorted([t for t, _ in self.history], t_us))
        return self.history[i][1] if i < len(self.history) else self.published


def main() -> int:
    args = parse_args()
    domain = set_ros_env(args.domain_id)
    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    model, what = resolve_model(args.model, tmp)
    print(f"model: {model} ({what}); domain {domain}; CPU ({os.cpu_count()} cores, load "
          f"average {os.getloadavg()[0]:.1f} before start); hop {args.hop} s; sensor "
          f"{args.width}x{args.height}; packets every {args.packet_ms} ms; torch threads "
          f"{args.torch_threads}; inference_backend:={args.backend}", flush=True)
    print(f"events as {args.wire}", flush=True)
    bytes_per_event = 16.0
    if args.wire == "event_packet":
        bytes_per_event = encoded_bytes_per_event(args)
    for r in args.rates:
        size = r * 1e6 * args.packet_ms / 1e3 * bytes_per_event
        if size > SHM_SEGMENT:
            print(f"note: at {r:g} M ev/s a {args.packet_ms:g} ms {args.wire} packet is "
                  f"{size / 1024:.0f} KiB, more than Fast DDS's default shared-memory segment "
                  f"({SHM_SEGMENT // 1024} KiB): it goes over UDP fragments instead and best "
                  "effort loses most of them (use a smaller --packet-ms)", flush=True)
    ref = reference(model, args)
    print(f"reference (this process, no ROS): network alone {ref['network_ms']:.1f} ms; front "
          f"end + network " + ", ".join(f"{v:.1f} ms at {r:g} M ev/s"
                                        for r, v in ref["frontend_network_ms"].items()),
          flush=True)

    import rclpy

    rclpy.init()
    results = {}
    try:
        for front_end in args.front_ends:
            print(f"\n== event_front_end:={front_end}", flush=True)
            rows = run_node(front_end, model, ref, args, tmp)
            if rows is None:
                return 2
            results[front_end] = rows
    finally:
        rclpy.try_shutdown()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for front_end, rows in results.items():
            summary(front_end, rows, ref, args)
        compare(results, ref)
    print(out.getvalue(), end="")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(
            f"# Live benchmark: {args.wire} events\n\nWritten by `python "
            f"{' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}` on "
            f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPU cores, no GPU; model {what}; "
            f"inference_backend:={args.backend}). "
            f"Compare rows of one run, not across machines.\n{out.getvalue()}")
    shutil.rmtree(tmp, ignore_errors=True)  # the node's log (kept above when it fails)
    record.write(args.record, f"Live: {args.wire} events and audio over Fast DDS into the "
                 f"perception node (hop {args.hop} s, {args.width} x {args.height}, "
                 f"{args.packet_ms:g} ms packets, inference_backend:={args.backend})",
                 live_rows(results, ref, args), [f"model {what}; the publisher and the node "
                                                 "share the machine's cores"])
    if args.json:
        args.json.write_text(json.dumps({"reference": ref, "rows": results, "args": {
            k: v for k, v in vars(args).items() if k != "json"}}, indent=1, default=str))
    return 0


def live_rows(results: dict[str, list[dict[str, Any]]], ref: dict[str, Any],
              args: argparse.Namespace) -> list[record.Row]:
    """The page's rows (record.py): per rate, the node's inference against the same pipeline
    in a plain process called once per hop, and the latency against the per-window front end
    where it ran; the highest rate sustained."""
    R = record.Row
    rows = []
    stream = {r["rate_M"]: r for r in results.get("auto", [])}
    per_window = {r["rate_M"]: r for r in results.get("per_window", [])}
    backend = ref["backend"]
    # the README's short table: the node as launched by default, with the camera's messages
    headline = args.backend == "auto" and args.wire == "event_packet"
    for rate, r in stream.items():
        p50, p99 = r["inference_ms"]
        hop = ref["pipeline_hop_ms"][rate]
        rows.append(R(f"{rate:g} M events/s: the node's inference per window (front ends + "
                      f"network, {backend})", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                      f"the same pipeline in a plain process, one call per hop: {hop:.2f} ms "
                      f"(back to back {ref['pipeline_ms'][rate]:.2f} ms)", hop / p50,
                      headline=headline and rate == args.rates[0]))
        lat = f"latency p50 {r['latency_ms'][0]:.1f} ms, p99 {r['latency_ms'][1]:.1f} ms"
        pw = per_window.get(rate)
        if pw is not None:
            rows.append(R(f"{rate:g} M events/s: window end to publish, streaming event front "
                          "end", lat, f"per-window front end: p50 {pw['latency_ms'][0]:.1f} ms, "
                          f"p99 {pw['latency_ms'][1]:.1f} ms", pw["latency_ms"][1]
                          / r["latency_ms"][1]))
        else:
            rows.append(R(f"{rate:g} M events/s: window end to publish", lat,
                          f"{r['predictions']}/{r['windows_expected']} windows, "
                          + ("sustained" if r["sustained"] else "NOT sustained")))
        cost = ref["event_front_end_ms"][rate]
        if "streaming" in cost:
            rows.append(R(f"{rate:g} M events/s: event front end per window, streaming",
                          f"{cost['streaming']:.3f} ms", f"binning each window: "
                          f"{cost['per_window']:.2f} ms", cost["per_window"] / cost["streaming"]))
    sustained = []
    for r in stream.values():
        if not r["sustained"]:
            break
        sustained.append(r["rate_M"])
    rows.append(R("highest event rate sustained (no window dropped, late or degraded)",
                  f"{max(sustained):g} M events/s" if sustained else "none",
                  f"rates tried: {', '.join(f'{x:g}' for x in args.rates)} M events/s",
                  headline=headline))
    return rows


def encoded_bytes_per_event(args: argparse.Namespace) -> float:
    """evt3 bytes per event of the synthetic stream, and of the real bag where there is one."""
    from taaf_ros.events import encode_evt3, make_events

    rng = np.random.default_rng(1)
    n = int(max(args.rates) * 1e6 * args.packet_ms / 1e3)
    t = (np.arange(n, dtype=np.int64) * round(args.packet_ms * 1000)) // n
    synthetic = len(encode_evt3(make_events(rng.integers(0, args.width, n),
                                            rng.integers(0, args.height, n), t,
                                            rng.integers(0, 2, n)))) / n
    line = f"evt3: {synthetic:.2f} bytes per event in this synthetic stream (uniform pixels)"
    if args.bag.exists():
        from taaf_ros.data.bags import read_bag
        from taaf_ros.events import EventDecoder

        size = events = 0
        decoder = None  # one per stream: evt3 state carries across packets
        for item in read_bag(args.bag):
            if getattr(item.msg, "encoding", "") == "evt3":
                decoder = decoder or EventDecoder("evt3", item.msg.width, item.msg.height)
                size += len(item.msg.events)
                events += len(decoder.decode(item.msg.events))
        if events:
            line += f"; {size / events:.2f} in the real bag {args.bag.name} ({events} events)"
    print(line, flush=True)
    return synthetic


def run_node(front_end: str, model: Path, ref: dict[str, Any], args: argparse.Namespace,
             tmp: Path) -> list[dict[str, Any]] | None:
    """One perception node process with this event front end, stepped through the rates."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    ns = f"/bench_live_{os.getpid()}_{front_end}"
    window_s = ref["window_s"]
    capacity = int(max(args.rates) * 1e6 * (window_s + 0.6)) + 100_000
    params = {
        "model_path": str(model), "device": "cpu", "torch_threads": args.torch_threads,
        "events_type": args.wire, "events_topic": f"{ns}/events",
        "audio_type": "int16_multiarray", "audio_topic": f"{ns}/audio",
        "audio_sample_rate": ref["audio_rate"], "sensor_width": args.width,
        "sensor_height": args.height, "hop_s": args.hop, "event_front_end": front_end,
        "event_buffer_capacity": min(capacity, 200_000_000),
        "max_events_per_window": args.max_events_per_window, "diagnostics_period_s": 0.25,
        "inference_backend": args.backend}
    cmd = [sys.executable, "-m", "taaf_ros.nodes.perception_node", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={json.dumps(v) if isinstance(v, str) else v}"]
    for out in ("/taaf/prediction", "/taaf/attention", "/taaf/debug_image", "/diagnostics"):
        cmd += ["-r", f"{out}:={ns}{out}"]
    log_path = tmp / f"perception_node_{front_end}.log"
    node_log = open(log_path, "w")  # noqa: SIM115 - closed at the end
    proc = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=os.environ.copy())

    node = rclpy.create_node(f"bench_live_{os.getpid()}_{front_end}")
    lock = threading.Lock()
    preds: list[tuple[dict[str, Any], int]] = []
    diags: list[tuple[int, dict[str, str]]] = []

    def on_pred(m: String) -> None:
        with lock:
            preds.append((json.loads(m.data), time.time_ns()))

    def on_diag(m: DiagnosticArray) -> None:
        kv = {v.key: v.value for v in m.status[0].values}
        stamp_us = m.header.stamp.sec * 1_000_000 + m.header.stamp.nanosec // 1000
        with lock:
            diags.append((stamp_us, kv))  # when the node took the snapshot

    node.create_subscription(String, f"{ns}/taaf/prediction", on_pred, QoSProfile(depth=500))
    node.create_subscription(DiagnosticArray, f"{ns}/diagnostics", on_diag, QoSProfile(depth=50))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    sensors = Sensors(node, f"{ns}/events", f"{ns}/audio", args, ref["audio_rate"])
    if args.wire == "event_packet":
        t_enc = time.perf_counter()
        bpe = sensors.encode_schedule()
        print(f"schedule: {len(sensors._schedule)} evt3 packets ({bpe:.2f} bytes per event) "
              f"encoded in {time.perf_counter() - t_enc:.1f} s", flush=True)
    rows = []
    try:
        t_end = time.monotonic() + 120
        while not diags:  # the node is up (model loaded, warmed up) once it reports
            if proc.poll() is not None or time.monotonic() > t_end:
                print(log_path.read_text(), file=sys.stderr)
                print("error: the perception node did not start", file=sys.stderr)
                return None
            time.sleep(0.2)
        sensors.start()
        for rate in args.rates:
            if args.wire == "event_packet":
                sensors.wait_for_rate(rate)
            else:
                sensors.rate = rate
            time.sleep(args.warmup)
            rows.append(measure(rate, sensors, preds, diags, lock, args, proc.pid))
            rows[-1]["front_end"] = diags[-1][1].get("buffer.events.front_end", front_end)
            print_row(rows[-1])
    finally:
        sensors.stop()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        node_log.close()
        executor.shutdown()
        node.destroy_node()
    return rows


def _diag_at(diags: list, lock: threading.Lock, t_us: int, timeout: float = 3.0
             ) -> tuple[int, dict[str, str]]:
    """The first diagnostics snapshot (stamp µs, values) taken at or after t_us (waits)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with lock:
            later = [d for d in diags if d[0] >= t_us]
        if later:
            return later[0]
        time.sleep(0.05)
    with lock:
        return diags[-1]


def measure(rate: float, sensors: Sensors, preds: list, diags: list, lock: threading.Lock,
            args: argparse.Namespace, pid: int) -> dict[str, Any]:
    hop_us = round(args.hop * 1e6)
    cpu0 = cpu_seconds(pid)
    t0 = sensors.now_us()
    (s0, d0), pub0, lag0 = _diag_at(diags, lock, t0), sensors.published, len(sensors.lag_ms)
    time.sleep(args.seconds)
    t1 = sensors.now_us()
    cpu1 = cpu_seconds(pid)
    pub1 = sensors.published
    s1, d1 = _diag_at(diags, lock, t1 + hop_us + 300_000)  # after the last window was cut
    first, last = -(-t0 // hop_us) * hop_us, (t1 // hop_us) * hop_us  # window ends in range
    with lock:
        got = [(p, r) for p, r in preds if first <= p["stamp_ns"] // 1000 <= last]

    def delta(key: str) -> int:
        return int(d1.get(key, 0)) - int(d0.get(key, 0))

    lat = [p["latency_ms"] for p, _ in got]
    rx = [(r - p["stamp_ns"]) / 1e6 for p, r in got]
    inf = [p["inference_ms"] for p, _ in got]
    lag = sensors.lag_ms[lag0:]
    row = {
        "rate_M": rate,
        "published_ev_s": (pub1 - pub0) / ((t1 - t0) / 1e6),
        # Decoded by the node vs published, between the two snapshots' times.
        "received_frac": delta("events.decoded") / max(
            1, sensors.published_before(s1) - sensors.published_before(s0)),
        "windows_expected": (last - first) // hop_us + 1,
        "predictions": len(got),
        "degraded": sum(bool(p["degraded"]) for p, _ in got),
        "dropped": delta("windows.dropped"),
        "late": delta("windows.late.events") + delta("windows.late.audio"),  # per input
        "load_average": os.getloadavg()[0],
        "stale": delta("windows.stale"),
        "latency_ms": percentiles(lat),
        "receipt_latency_ms": percentiles(rx),
        "inference_ms": percentiles(inf),
        "events_per_window": float(np.median([p["inputs"]["events"] for p, _ in got]))
        if got else 0.0,
        "publisher_lag_ms_p99": percentiles(lag)[1],
        "publisher_build_ms_p50": percentiles(sensors.build_ms[lag0:])[0],
        "node_cpu_cores": (cpu1 - cpu0) / ((t1 - t0) / 1e6),
    }
    row["node_cpu_s_per_M_events"] = (cpu1 - cpu0) / max(1e-9, (pub1 - pub0) / 1e6)
    row["sustained"] = (row["dropped"] == 0 and row["late"] == 0 and row["stale"] == 0
                        and row["degraded"] == 0 and row["received_frac"] >= 0.99
                        and row["predictions"] >= row["windows_expected"] - 1)
    return row


def print_row(r: dict[str, Any]) -> None:
    print(f"{r['rate_M']:>5g} M ev/s: published {r['published_ev_s'] / 1e6:.2f} M/s, received "
          f"{100 * r['received_frac']:.1f} %; windows {r['predictions']}/"
          f"{r['windows_expected']} (dropped {r['dropped']}, inputs late {r['late']}, stale "
          f"{r['stale']}, degraded {r['degraded']}); latency p50/p99 "
          f"{r['latency_ms'][0]:.1f}/{r['latency_ms'][1]:.1f} ms (at subscriber "
          f"{r['receipt_latency_ms'][0]:.1f}/{r['receipt_latency_ms'][1]:.1f}); node inference "
          f"p50/p99 {r['inference_ms'][0]:.1f}/{r['inference_ms'][1]:.1f} ms; "
          f"{r['events_per_window']:.0f} events/window; publisher lag p99 "
          f"{r['publisher_lag_ms_p99']:.1f} ms; node CPU {r['node_cpu_cores']:.2f} cores "
          f"({r['node_cpu_s_per_M_events']:.3f} s per M events); load average "
          f"{r['load_average']:.1f} -> "
          + ("sustained" if r["sustained"] else "NOT sustained"), flush=True)


def summary(front_end: str, rows: list[dict[str, Any]], ref: dict[str, Any],
            args: argparse.Namespace) -> None:
    print(f"\nevent_front_end:={front_end} ({rows[0]['front_end'] if rows else '?'})")
    print("| M ev/s | windows | dropped | inputs late + stale | degraded | latency p50 / p99 "
          "(ms) | node inference p50 / p99 (ms) | node CPU (cores) | CPU s per M events |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rate_M']:g} | {r['predictions']}/{r['windows_expected']} | {r['dropped']} "
              f"| {r['late'] + r['stale']} | {r['degraded']} | {r['latency_ms'][0]:.1f} / "
              f"{r['latency_ms'][1]:.1f} | {r['inference_ms'][0]:.1f} / "
              f"{r['inference_ms'][1]:.1f} | {r['node_cpu_cores']:.2f} | "
              f"{r['node_cpu_s_per_M_events']:.3f} |")
    below = []
    for r in rows:  # the highest rate with every rate up to it sustained
        if not r["sustained"]:
            break
        below.append(r["rate_M"])
    if below:
        print(f"highest event rate sustained (every rate up to it without a dropped, late or "
              f"degraded window): {max(below):g} M events/s (hop {args.hop} s, "
              f"{args.width}x{args.height}, CPU)")
    else:
        print(f"no rate was sustained: already at {rows[0]['rate_M']:g} M events/s windows "
              "were dropped, late or degraded (rows above)" if rows else "no rows")


def compare(results: dict[str, list[dict[str, Any]]], ref: dict[str, Any]) -> None:
    """Reference figures of this process and the goals' ratios, per rate."""
    print(f"\nnetwork alone (this process, no ROS): {ref['network_ms']:.2f} ms per window; "
          "pipeline alone: what the node's inference_ms times (streaming front ends + network), "
          "in this process, calls back to back and one call per hop (a sleep of one hop before "
          "each, as the node's windows come)")
    back, hop = ref["matmul_ms"]
    print(f"this machine after a pause: a 256 x 256 matrix product takes {back:.3f} ms back to "
          f"back, {hop:.3f} ms after a sleep of one hop ({hop / back:.1f}x)")
    print("| M ev/s | event front end per window: per-window / streaming (ms) | ratio | "
          "pipeline alone (ms): back to back / one per hop | streaming node: inference p50 / "
          "pipeline alone, one per hop | inference p50 / network alone | "
          "latency p99 / inference p99 |")
    print("|---|---|---|---|---|---|---|")
    stream_rows = {r["rate_M"]: r for r in results.get("auto", [])}
    for rate, cost in ref["event_front_end_ms"].items():
        pw, st = cost["per_window"], cost.get("streaming", float("nan"))
        pipe, pipe_hop = ref["pipeline_ms"][rate], ref["pipeline_hop_ms"][rate]
        r = stream_rows.get(rate)
        inf_p = f"{r['inference_ms'][0] / pipe_hop:.2f}x" if r else "-"
        inf = f"{r['inference_ms'][0] / ref['network_ms']:.2f}x" if r else "-"
        lat = f"{r['latency_ms'][1] / r['inference_ms'][1]:.2f}x" if r else "-"
        print(f"| {rate:g} | {pw:.2f} / {st:.3f} | {pw / st:.0f}x | {pipe:.2f} / {pipe_hop:.2f} "
              f"| {inf_p} | {inf} | {lat} |")


if __name__ == "__main__":
    sys.exit(main())
