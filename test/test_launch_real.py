"""The launch files and the nodes driven as a ROS user drives them: the real ``ros2 launch``,
``ros2 param``, ``ros2 lifecycle``, ``ros2 topic`` (installed from ../shared/vendor by
``make ros2-tools``; see the ``ros2_install`` fixture), over Fast DDS on loopback.

Every launch gets a namespace of its own (``/t<pid>_<n>``), so tests, and sessions that share
a ROS_DOMAIN_ID, never hear each other. Inputs are published from this process with rclpy.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from itertools import count
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from ros_graph import Spinner  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_msgs.msg import Int16MultiArray, MultiArrayDimension, String  # noqa: E402

from taaf_ros.audio.multiarray_stamp import stamped_layout_dims  # noqa: E402
from taaf_ros.events import events_to_pointcloud2, make_events  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parent.parent
STOCK = ["events_type:=pointcloud2", "audio_type:=int16_multiarray", "device:=cpu",
         "audio_sample_rate:=8000"]
_names = count()


def namespace() -> str:
    return f"t{os.getpid()}_{next(_names)}"


class Launch:
    """``ros2 launch taaf_ros FILE args...`` in a process group of its own; its output kept."""

    def __init__(self, env: dict[str, str], file: str, *args: str,
                 cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(["ros2", "launch", "taaf_ros", file, *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, cwd=cwd)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            if text in self.output:
                return True
            time.sleep(0.1)
        return text in self.output

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def ros2(env: dict[str, str], *args: str, timeout: float = 30) -> str:
    """Run one ``ros2`` CLI command without the CLI's daemon (none is left behind); its
    stdout (fails the test on a non-zero exit)."""
    # Without the daemon, each command discovers the graph itself: give it time to. On a
    # loaded machine (CI runs the suite beside other work) discovery within the spin time can
    # miss a node or a topic that is there ("Node not found", "Could not determine the type
    # for the passed topic": both seen): the command never reached it, so it is run again, at
    # most three times in all.
    extra = ["--spin-time", "3"] if args[0] in ("param", "lifecycle") else []
    missed = ("Node not found", "Could not determine the type for the passed topic")
    for _ in range(3):
        r = subprocess.run(["ros2", *args, "--no-daemon", *extra], env=env,
                           capture_output=True, text=True, timeout=timeout, check=False)
        if r.returncode == 0 or not any(m in r.stdout + r.stderr for m in missed):
            break
    assert r.returncode == 0, f"ros2 {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r.stdout


def retry(fn: Callable[[], str], ok: Callable[[str], bool], timeout: float = 30) -> str:
    """Call ``fn`` until ``ok`` of its result (a node still starting), at most ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        try:
            out = fn()
            if ok(out):
                return out
        except AssertionError:
            if time.monotonic() > end:
                raise
        if time.monotonic() > end:
            return out
        time.sleep(0.5)


class Graph(Spinner):
    """The test's own rclpy context, spun by one thread (``ros_graph.Spinner``)."""

    def __init__(self) -> None:
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        super().__init__(ctx)
        self.start()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.context.try_shutdown()


@pytest.fixture(scope="module")
def graph():
    """One rclpy context and executor thread for the test's own publishers and listeners."""
    g = Graph()
    yield g
    g.close()


class Sensors:
    """A stock-message camera and microphone: 10 ms PointCloud2 packets and stamped audio."""

    def __init__(self, graph, events_topic: str, audio_topic: str, frame_id: str = "") -> None:
        self.graph = graph
        self.node = graph.create_node(f"sensors_{next(_names)}")
        self.events = self.node.create_publisher(PointCloud2, events_topic,
                                                 qos_profile_sensor_data)
        self.audio = self.node.create_publisher(Int16MultiArray, audio_topic,
                                                qos_profile_sensor_data)
        self.frame_id = frame_id
        self.rng = np.random.default_rng(0)
        self.node.create_timer(0.01, self._tick)
        graph.add(self.node)

    def _tick(self) -> None:
        now = self.node.get_clock().now().nanoseconds // 1000
        t = np.sort(self.rng.integers(now - 10_000, now, 200))
        ev = make_events(self.rng.integers(0, 34, 200), self.rng.integers(0, 34, 200), t, 1)
        msg = events_to_pointcloud2(ev, frame_id=self.frame_id)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(t[0]) * 1000, 10**9)
        self.events.publish(msg)
        au = Int16MultiArray(data=(2000 * np.sin(np.arange(80) * 0.3)).astype(int).tolist())
        au.layout.dim = [MultiArrayDimension(label=a, size=b, stride=c)
                         for a, b, c in stamped_layout_dims(80, (now - 10_000) * 1000)]
        self.audio.publish(au)

    def close(self) -> None:
        self.graph.remove(self.node)


class Listener:
    """Collects the JSON predictions of one topic."""

    def __init__(self, graph, topic: str) -> None:
        self.graph = graph
        self.node = graph.create_node(f"listener_{next(_names)}")
        self.got: list[dict] = []
        self.node.create_subscription(String, topic, lambda m: self.got.append(
            json.loads(m.data)), QoSProfile(depth=100))
        graph.add(self.node)

    def wait(self, n: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.got) < n:
            time.sleep(0.1)
        return len(self.got) >= n

    def close(self) -> None:
        self.graph.remove(self.node)


def play_on_sim_time(env: dict[str, str], bag: Path, ns: str, timeout: float = 300) -> None:
    """``taaf_bag_play BAG --clock`` into namespace ``ns`` (the drivers' topics remapped);
    fails the test on a non-zero exit."""
    topics = ("/event_camera/events", "/audio/audio_stamped", "/audio/audio_info")
    r = subprocess.run(["taaf_bag_play", str(bag), "--clock", "--wait-for-subscribers", "20",
                        "--remap", *(f"{t}:=/{ns}{t}" for t in topics)], env=dict(env),
                       capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def windows_heard(heard: Listener, starts: Collection[int],
                  timeout: float = 30) -> dict[int, dict]:
    """The predictions heard for the windows starting at ``starts`` (ns), by start; waits up to
    ``timeout`` for all of them."""
    def got() -> dict[int, dict]:
        return {p["window"]["start_ns"]: p for p in heard.got if p["window"]["start_ns"] in starts}

    end = time.monotonic() + timeout
    while len(got()) < len(starts) and time.monotonic() < end:
        time.sleep(0.2)
    return got()


@pytest.fixture(scope="module")
def my_model(tmp_path_factory) -> Path:
    """The bundled model under a name of the user's own (so where it came from shows)."""
    path = tmp_path_factory.mktemp("models") / "mine.pt"
    shutil.copy(REPO / "models" / "taaf_avdigits.pt", path)
    return path


def test_a_parameters_file_sets_what_no_argument_overrides(ros2_install, my_model, tmp_path):
    """Row 3: config:= can set model_path, device and types; a given argument still wins."""
    ns = namespace()
    mine = tmp_path / "mine.yaml"
    # /**/: any namespace (a bare taaf_perception: would only match the root namespace).
    mine.write_text(f"/**/taaf_perception:\n  ros__parameters:\n    model_path: '{my_model}'\n"
                    "    device: cpu\n    events_type: pointcloud2\n"
                    "    audio_type: int16_multiarray\n    top_k: 2\n    hop_s: 0.1\n")
    launch = Launch(ros2_install, "perception.launch.py", f"namespace:={ns}",
                    f"config:={mine}", "hop_s:=0.05")
    try:
        node = f"/{ns}/taaf_perception"
        got = retry(lambda: ros2(ros2_install, "param", "get", node, "model_path"),
                    lambda out: "mine.pt" in out)
        assert str(my_model) in got, launch.output
        assert "2" in ros2(ros2_install, "param", "get", node, "top_k")
        assert "pointcloud2" in ros2(ros2_install, "param", "get", node, "events_type")
        assert "0.05" in ros2(ros2_install, "param", "get", node, "hop_s")  # the argument
        assert launch.wait_for_line(f"model {my_model}", 120), launch.output
    finally:
        assert launch.stop() == 0, launch.output[-3000:]
    assert "Traceback" not in launch.output, launch.output[-3000:]


def test_two_robots_in_namespaces_share_one_graph(ros2_install, graph):
    """Rows 7 and 8: inputs and outputs resolve in the namespace; the log names them."""
    ns1, ns2 = namespace(), namespace()
    launches = [Launch(ros2_install, "perception.launch.py", f"namespace:={ns}", *STOCK,
                       "audio_topic:=audio/audio") for ns in (ns1, ns2)]
    sensors = Sensors(graph, f"/{ns1}/event_camera/events", f"/{ns1}/audio/audio",
                      frame_id="robot1_camera")
    heard = [Listener(graph, f"/{ns}/taaf/prediction") for ns in (ns1, ns2)]
    try:
        assert heard[0].wait(10, 60), launches[0].output[-3000:]
        assert not heard[1].got  # robot 2 has no sensors: nothing crosses over
        for ns, launch in zip((ns1, ns2), launches, strict=True):
            assert launch.wait_for_line(f"on /{ns}/event_camera/events", 10), launch.output
            assert f"predictions on /{ns}/taaf/prediction" in launch.output
        topics = ros2(ros2_install, "topic", "list", "--spin-time", "5")
        assert f"/{ns1}/taaf/prediction" in topics and f"/{ns2}/taaf/prediction" in topics
        echo = ros2(ros2_install, "topic", "echo", f"/{ns1}/taaf/prediction", "--once",
                    "--full-length", timeout=30)
        data = echo.split("data: ", 1)[1].strip().splitlines()[0].strip("'\"")
        assert json.loads(data.replace("''", "'"))["label"]
    finally:
        sensors.close()
        for h in heard:
            h.close()
        for launch in launches:
            assert launch.stop() == 0, launch.output[-3000:]


def test_use_sim_time_and_a_bad_hop_reach_the_node(ros2_install):
    """Row 2: use_sim_time:= is a launch argument; row 11: a hop longer than the model's
    window is refused at start-up with the reason."""
    ns = namespace()
    launch = Launch(ros2_install, "perception.launch.py", f"namespace:={ns}", *STOCK,
                    "use_sim_time:=true")
    try:
        got = retry(lambda: ros2(ros2_install, "param", "get", f"/{ns}/taaf_perception",
                                 "use_sim_time"), lambda out: "True" in out)
        assert "True" in got
    finally:
        launch.stop()
    bad = Launch(ros2_install, "perception.launch.py", f"namespace:={namespace()}", *STOCK,
                 "hop_s:=0.7")
    bad.proc.wait(timeout=60)
    assert "hop_s (0.7 s) exceeds the window (0.6 s" in bad.output, bad.output[-3000:]
    # the node could not start: the launch ends with an error, not idle with exit code 0
    assert bad.proc.returncode == 1, bad.output[-3000:]
    assert "taaf_perception exited with code 2" in bad.output, bad.output[-3000:]
    wrong = Launch(ros2_install, "perception.launch.py", "top_k:=many")
    wrong.proc.wait(timeout=60)
    assert wrong.proc.returncode != 0 and "top_k:='many' is not an integer" in wrong.output
    typo = Launch(ros2_install, "perception.launch.py", "modle_path:=x.pt")
    typo.proc.wait(timeout=60)
    assert typo.proc.returncode != 0, typo.output[-3000:]
    assert "unknown launch argument 'modle_path' (did you mean 'model_path'?)" in typo.output


def test_managed_node_autostarts_and_takes_parameters_while_unconfigured(ros2_install,
                                                                          my_model):
    """Row 10 and the autostart argument, through ros2 lifecycle and ros2 param."""
    ns = namespace()
    node = f"/{ns}/taaf_perception"
    launch = Launch(ros2_install, "perception.launch.py", f"namespace:={ns}", *STOCK,
                    "managed:=true")
    try:
        state = retry(lambda: ros2(ros2_install, "lifecycle", "get", node),
                      lambda out: "unconfigured" in out)
        assert "unconfigured" in state, launch.output[-2000:]
        ros2(ros2_install, "param", "set", node, "model_path", str(my_model))
        ros2(ros2_install, "lifecycle", "set", node, "configure")
        assert launch.wait_for_line(f"configured: {my_model}", 120), launch.output[-3000:]
        for _ in range(3):  # a refusal is expected: retried only where discovery missed
            refused = subprocess.run(["ros2", "param", "set", node, "hop_s", "0.1",
                                      "--no-daemon", "--spin-time", "3"],
                                     env=ros2_install, capture_output=True, text=True,
                                     timeout=30)
            if "Node not found" not in refused.stdout + refused.stderr:
                break
        assert "read at start-up" in refused.stdout + refused.stderr
    finally:
        launch.stop()
    assert "exiting from inactive: stopped, model released" in launch.output, \
        launch.output[-3000:]
    ns = namespace()
    auto = Launch(ros2_install, "perception.launch.py", f"namespace:={ns}", *STOCK,
                  "managed:=true", "autostart:=true")
    try:
        state = retry(lambda: ros2(ros2_install, "lifecycle", "get", f"/{ns}/taaf_perception"),
                      lambda out: out.startswith("active"), timeout=60)
        assert state.startswith("active"), auto.output[-3000:]
    finally:
        auto.stop()


def test_replay_gets_the_perception_types(ros2_install, graph, avdigits):
    """Row 4: use_replay:=true with the drivers' types (the default) predicts."""
    ns = namespace()
    heard = Listener(graph, f"/{ns}/taaf/prediction")
    launch = Launch(ros2_install, "perception.launch.py", f"namespace:={ns}", "device:=cpu",
                    "use_replay:=true", f"data_root:={avdigits}",
                    "audio_sample_rate:=8000")
    try:
        assert heard.wait(5, 90), launch.output[-3000:]
        assert "events event_packet" in launch.output
    finally:
        heard.close()
        launch.stop()


def test_launch_testing_runs_the_perception_launch(ros2_install):
    """launch_testing's own runner on the perception launch file (STALE without input)."""
    env = dict(ros2_install, TAAF_TEST_NAMESPACE=namespace())
    r = subprocess.run(["launch_test", str(REPO / "test" / "launch_tests" /
                                           "perception_diagnostics.py")],
                       env=env, capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "OK" in r.stdout + r.stderr


def test_the_activated_venv_is_enough_for_the_ros2_tools(ros2_install):
    """Pip only: `source .venv/bin/activate` (the ros2_install environment is made that way)
    lets `ros2 interface show` and `ros2 pkg` see the PyPI wheels' and the driver messages
    built into the venv, with no variable set by hand."""
    def run(*args: str) -> str:
        r = subprocess.run(["ros2", *args], env=ros2_install, capture_output=True, text=True,
                           timeout=60, check=False)
        assert r.returncode == 0, (args, r.stdout + r.stderr)
        return r.stdout

    assert "uint8[] events" in run("interface", "show", "event_camera_msgs/msg/EventPacket")
    assert "audio_common_msgs/AudioData audio" in run("interface", "show",
                                    "audio_common_msgs/msg/AudioDataStamped")
    assert run("pkg", "prefix", "std_msgs").strip() == str(Path(sys.prefix))
    assert "taaf_ros" in run("pkg", "list").split()


def test_the_docs_ros2_run_lines_work_pasted_into_bash(ros2_install, tmp_path):
    """Every ``ros2 run`` line of the docs' bash blocks, run by bash as a user pastes it: the
    remaps it makes are the topics the node subscribes (an unquoted ``~`` is expanded by bash
    to the home folder, and the remap silently matches nothing)."""
    import re

    text = "".join((REPO / f).read_text() for f in ("README.md", "docs/ros.md", "docs/data.md"))
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.splitlines() if line.startswith("ros2 run ")]
    assert lines, "no ros2 run line in the docs' bash blocks"
    for line in lines:
        want = re.findall(r"~/\w+:=(/[\w/]+)", line)
        proc = subprocess.Popen(["bash", "-c", f"exec {line} -p device:=cpu"],
                                env=ros2_install | {"HOME": str(tmp_path)}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out: list[str] = []
        threading.Thread(target=lambda p=proc, o=out: o.extend(p.stdout), daemon=True).start()
        try:
            end = time.monotonic() + 120
            while "predictions on" not in "".join(out) and time.monotonic() < end:
                assert proc.poll() is None, "".join(out)
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
        started = next((s for s in out if "predictions on" in s), "".join(out))
        assert want and all(f"on {topic}" in started for topic in want), (line, started)


def test_the_same_bag_played_twice_predicts_the_same_both_times(ros2_install, graph,
                                                                avdigits, tmp_path):
    """A robot bag played with --clock into a sim-time node, then again (what everyone does
    while tuning): the node's clock goes back by the bag's length; the second play's windows
    are the first play's, on the same bag times, and the console says what happened."""
    from recordings import bag_messages, timeline

    from taaf_ros.data.bags import write_bag
    from taaf_ros.data.readers import EadDataset

    ds = EadDataset(avdigits, "test")
    tl = timeline([(ds[i], ds.classes[ds[i].label]) for i in range(6)])
    bag = write_bag(tmp_path / "twice", bag_messages(tl))
    ns = namespace()
    heard = Listener(graph, f"/{ns}/taaf/prediction")
    launch = Launch(ros2_install, "perception.launch.py", f"namespace:={ns}", "device:=cpu",
                    "use_sim_time:=true", "smoothing_windows:=1",
                    "min_confidence:=0.0")
    plays = []
    try:
        assert launch.wait_for_line("predictions on", 120), launch.output[-3000:]
        for _ in range(2):
            play_on_sim_time(ros2_install, bag, ns, timeout=120)
            time.sleep(1.5)  # the last windows: one window and the wait after the bag's end
            plays.append({p["window"]["start_ns"]: p for p in heard.got})
            heard.got.clear()
        assert launch.wait_for_line("the node's clock went back", 10), launch.output[-3000:]
    finally:
        heard.close()
        assert launch.stop() == 0, launch.output[-3000:]
    first, second = plays
    assert len(first) > 100, len(first)
    common = set(first) & set(second)
    assert len(common) >= 0.9 * len(first), (len(common), len(first), len(second))
    same = sum(first[s]["label"] == second[s]["label"] for s in common)
    assert same >= 0.95 * len(common), (same, len(common))
    assert all(second[s]["present"] == ["events", "audio"] for s in common)
    assert "WARN" in launch.output and "use_sim_time: the bag was played again" in launch.output


def test_own_data_from_a_bag_to_a_deployed_model(ros2_install, graph, avdigits,
                                                 tmp_path):
    """Your own data, end to end as a user goes: a bag recorded as a robot records it
    (EventPacket evt3, AudioDataStamped MP3 + AudioInfo) and a labels CSV of three classes ->
    taaf_dataset -> train_ead.py --init-from the bundled model, two epochs -> ros2 launch with
    model:= -> the bag played into it with its clock: for every labelled window the node's
    prediction equals the offline evaluation of that window's training sample."""
    from recordings import bag_messages, offline_evaluation, timeline

    from taaf_ros.data.bags import write_bag
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.classifier import Classifier

    ds = EadDataset(avdigits, "train")
    names = {"0": "zero", "1": "one", "2": "two"}
    picked = [(ds[i], names[ds.classes[label]]) for i, (_, _, label, _) in enumerate(ds.samples)
              if ds.classes[label] in names]
    tl = timeline(picked)
    bag = write_bag(tmp_path / "kitchen", bag_messages(tl, coding="mp3"))
    labels = tmp_path / "labels.csv"
    labels.write_text("recording,start,end,label,group\n" + "\n".join(
        f"kitchen,{a},{b},{lab},take{i % 3}" for i, (a, b, lab) in enumerate(tl.spans)) + "\n")
    env = dict(ros2_install)
    run = lambda *cmd: subprocess.run(cmd, env=env, capture_output=True, text=True,  # noqa: E731
                                      timeout=600, check=False)
    r = run("taaf_dataset", "bag", str(labels), "--out-dir", str(tmp_path / "ds"), "--quiet")
    assert r.returncode == 0, r.stderr
    r = run(sys.executable, str(REPO / "train_ead.py"), "--data-root", str(tmp_path / "ds"),
            "--init-from", str(REPO / "models" / "taaf_avdigits.pt"), "--epochs", "2", "--out-dir",
            str(tmp_path / "run"), "--no-progress", "--num-threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    model = tmp_path / "run" / "model.pt"
    ns = namespace()
    heard = Listener(graph, f"/{ns}/taaf/prediction")
    # The wait as launched by default (measured): an MP3 frame is 72 ms and the decoder lags
    # another frame; a window waits for all of its audio, as the dataset's windows do. Each
    # window's own argmax: the network's output is what is compared.
    launch = Launch(ros2_install, "perception.launch.py", f"namespace:={ns}", f"model:={model}",
                    "device:=cpu", "use_sim_time:=true",
                    "smoothing_windows:=1", "min_confidence:=0.0")
    try:
        assert launch.wait_for_line(f"model {model}", 120), launch.output[-3000:]
        play_on_sim_time(env, bag, ns)
        rows = list(csv.DictReader((tmp_path / "ds" / "samples.csv").read_text().splitlines()))
        starts = {int(r["start_ns"]) for r in rows}
        live = windows_heard(heard, starts)
    finally:
        heard.close()
        launch.stop()
    assert len(live) == len(starts), (sorted(starts - live.keys()), launch.output[-3000:])
    offline = Classifier(model, "cpu")
    for start_ns, sid, probs in offline_evaluation(tmp_path / "ds", offline):
        p = live[start_ns]
        assert p["present"] == ["events", "audio"] and not p["degraded"], p
        assert p["inputs"]["audio_coverage"] == 1.0, (sid, p["window"], p["inputs"])
        assert p["label"] == offline.classes[int(np.argmax(probs))], sid
        scores = {c["label"]: c["score"] for c in p["top_k"]}
        for label, score in scores.items():
            assert abs(score - float(probs[offline.classes.index(label)])) < 1e-4
    assert offline.classes == ["one", "two", "zero"]


def readme_block(heading: str) -> list[str]:
    """The commands of the README's first code block under ``heading``, continuation lines
    joined, comments dropped."""
    text = (REPO / "README.md").read_text().split(f"## {heading}\n", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("  #", 1)[0].rstrip() for line in block.replace("\\\n", " ").splitlines()]
    return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


@pytest.mark.slow
def test_your_own_data_from_a_robot_bag_set_as_the_readme_says(ros2_install, graph, avdigits,
                                                               tmp_path):
    """Three recordings as a robot records them (mcap; EventPacket evt3 with sensor noise;
    MP3 AudioDataStamped delivered 107 ms after its stamps, with AudioInfo), a labels CSV of
    three classes with the third recording for test, background between the spans: the
    README's "Your own data" lines verbatim, then its launch line (in a namespace, on sim time)
    with the test recording played into it. Every test window the node cuts has both inputs
    whole and the network output of the dataset's sample; the rule training stored is no
    worse than each window's own argmax and names the background; taaf_stream_eval's aligned
    accuracy is the offline test accuracy. (A fixed max_wait_s 0.05 passes here too: on sim
    time this replay never made the audio late against the node's clock. The measured wait
    against a late MP3 microphone is test_time_jumps's.)"""
    from recordings import T0_NS, bag_messages, offline_results, timeline

    from taaf_ros.data.bags import write_bag
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.classifier import Classifier

    names = {"0": "zero", "1": "one", "2": "two"}

    def digits(split: str) -> list:
        ds = EadDataset(avdigits, split)
        return [(ds[i], names[ds.classes[label]]) for i, (_, _, label, _) in
                enumerate(ds.samples) if ds.classes[label] in names]

    rows = []
    for k, (rec, picked, split) in enumerate((("kitchen", digits("train"), "train"),
                                              ("hall", digits("train")[::-1], "train"),
                                              ("lab", digits("test"), "test"))):
        tl = timeline(picked, gap_s=1.5, noise_hz=600.0, seed=k)
        write_bag(tmp_path / rec, bag_messages(tl, coding="mp3", audio_delay_ms=35.0,
                                               t0_ns=T0_NS + k * 3600 * 10**9), "mcap")
        rows += [f"{rec},{a},{b},{lab},{split},{rec}" for a, b, lab in tl.spans]
    (tmp_path / "labels.csv").write_text("recording,start,end,label,split,group\n"
                                         + "\n".join(rows) + "\n")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    for name in ("train_ead.py", "models"):
        (tmp_path / name).symlink_to(REPO / name)
    commands = readme_block("Your own data")
    assert commands[0].startswith("ros2 bag record") and commands[-1].startswith("ros2 launch")
    for command in commands[1:-1]:  # the bag is written above
        r = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=ros2_install,
                           capture_output=True, text=True, timeout=900, check=False)
        assert r.returncode == 0, (command, r.stdout[-3000:], r.stderr[-3000:])
    model = tmp_path / "runs" / "kitchen" / "model.pt"
    card = Classifier(model, "cpu").card
    assert card["decision_rule"]["smoothing_windows"] >= 1, card.get("decision_rule")

    ns = namespace()
    heard = Listener(graph, f"/{ns}/taaf/prediction")
    launch = Launch(ros2_install, *commands[-1].split()[3:], f"namespace:={ns}",
                    "use_sim_time:=true", cwd=tmp_path)
    try:
        assert launch.wait_for_line("decision rule:", 120), launch.output[-3000:]
        play_on_sim_time(ros2_install, tmp_path / "lab", ns)
        test = {int(r["start_ns"]): r for r in csv.DictReader(
            (tmp_path / "data" / "kitchen" / "samples.csv").read_text().splitlines())
            if r["split"] == "test"}
        live = windows_heard(heard, test)
    finally:
        heard.close()
        launch.stop()
    assert "smoothing_windows" in launch.output and "the model card's" in launch.output
    assert {r["label"] for r in test.values()} >= {"background", "zero"}
    assert len(live) == len(test), (sorted(test.keys() - live.keys()), launch.output[-3000:])
    offline = Classifier(model, "cpu")
    for start_ns, sid, res in offline_results(tmp_path / "data" / "kitchen", offline):
        if start_ns not in test:
            continue
        p = live[start_ns]
        assert p["present"] == ["events", "audio"] and not p["degraded"], (sid, p)
        assert p["inputs"]["audio_coverage"] == 1.0, (sid, p["window"], p["inputs"])
        att = [p["modality_attention"][m] for m in ("events", "audio")]
        assert np.allclose(att, res.modality_attention, atol=1e-4), (sid, att)

    r = subprocess.run(["taaf_stream_eval", "labels.csv", "--model", str(model), "--dataset",
                        "data/kitchen", "--split", "test"], cwd=tmp_path, env=ros2_install,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    print(r.stdout, card["decision_rule"], sep="\n")  # the figures, with -s
    table = [line.split("|") for line in r.stdout.splitlines()[2:4]]
    raw, rule = ({"aligned": float(c[2]), "majority": float(c[3]), "background": float(c[4])}
                 for c in table)
    assert rule["majority"] >= raw["majority"] and rule["aligned"] >= raw["aligned"] - 1e-9
    assert rule["background"] >= max(raw["background"], 0.95)  # the goal of the issue
    labelled = [(s, r) for s, r in test.items() if r["label"] != "background"]
    right = {s: offline.classes[int(np.argmax(res.probs))] == test[s]["label"]
             for s, _, res in offline_results(tmp_path / "data" / "kitchen", offline)
             if s in test and test[s]["label"] != "background"}
    assert len(right) == len(labelled)
    assert raw["aligned"] == pytest.approx(np.mean(list(right.values())), abs=5e-4)
