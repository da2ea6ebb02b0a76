"""Time that does not run forward, as a robot's streams meet it: a bag played again under sim
time, a driver restarted with its stamps 2 s back, event stamps stepped back 10 s, a camera
whose time base restarts, a driver on another machine's clock, a subscriber stalled for 1.5 s,
stamps that are wrong for a while and then right again.

A robot-style recording (EventPacket evt3 + AudioDataStamped + AudioInfo, built from real
AV-digits samples as ``ros2 bag record`` writes it) is played message by message into the
perception node's live core exactly as the node's callbacks do (``LiveSession.receive_*``
with the node's own inputs), on a node clock the test controls, with the network polled every
10 ms and /diagnostics read every second. Each fault is compared with the same recording
played without it: after recovery the node must give the same windows, within one window and
the waits, and say what happened; while an input is missing from windows it never says OK.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from recordings import AUDIO_TOPIC, EVENTS_TOPIC, INFO_TOPIC, T0_NS, bag_messages, timeline

from taaf_ros.inference.session import LiveSession
from taaf_ros.params import PERCEPTION_PARAMS, defaults
from taaf_ros.stream.inputs import AudioInput, EventInput
from taaf_ros.stream.scheduler import OK, WARN

P = defaults(PERCEPTION_PARAMS) | {"device": "cpu", "smoothing_windows": 1,
                                   "min_confidence": 0.0}
T0_US = T0_NS // 1000
WINDOW_US, HOP_US, WAIT_US = 600_000, 50_000, 100_000
RECOVERY_US = WINDOW_US + WAIT_US + 2 * HOP_US  # the bound: one window, the waits, a poll


@pytest.fixture(scope="module")
def recording(avdigits_two_per_class: Path):
    """16 real samples (digits of the test split) on a quiet background, as bag messages."""
    from taaf_ros.data.readers import EadDataset

    ds = EadDataset(avdigits_two_per_class, "test")
    picked = [(ds[i], ds.classes[ds[i].label]) for i in range(16)]
    return timeline(picked, sensor=ds.sensor_size)


@pytest.fixture(scope="module")
def classifier():
    return LiveSession.load_classifier(P)


class Node:
    """The perception node's live core, fed as its callbacks feed it, on a simulated clock."""

    def __init__(self, classifier, start_us: int, **params) -> None:
        self.mono = 0.0  # a steady clock for holds (s): simulated, only ever moves on
        self.session = LiveSession.from_params(P | params, start_us, classifier,
                                               monotonic=lambda: self.mono)
        size = self.session.sensor_size
        self.events_in = EventInput("event_packet", size, 5_000_000)
        self.audio_in = AudioInput("audio_data_stamped", 16000, 1, 5_000_000)
        self.preds: dict[int, dict] = {}  # window start (µs) -> prediction
        self.play_of: dict[int, int] = {}
        self.diagnostics: list[tuple[int, int, str, dict]] = []  # (now, level, message, values)
        self.published: list[tuple[float, int, dict]] = []  # (mono, window start, prediction)
        self.handled: list[tuple[int, int, float]] = []  # (play, log µs, mono) per message
        self.said: list[tuple[float, str]] = []  # (mono, /diagnostics message)
        self.plays = 0
        self._next_tick_us: int | None = None

    def play(self, msgs, clock_us=lambda log_us: log_us, edit=None) -> None:
        """Every message at node time ``clock_us(log time)``, through ``edit`` (msg, log µs)
        -> msg; polls every 10 ms and diagnostics every second of node time in between."""
        self.plays += 1
        for topic, _, log_ns, msg in msgs:
            now = clock_us(log_ns // 1000)
            self.handled.append((self.plays, log_ns // 1000, self.mono))  # before the ticks
            self._tick_to(now)
            if edit is not None:
                msg = edit(topic, msg, log_ns // 1000)
            if topic == INFO_TOPIC:
                self.audio_in.set_info(msg, now)
            elif topic == EVENTS_TOPIC:
                self.session.receive_events(self.events_in, msg, now, now)
            elif topic == AUDIO_TOPIC:
                self.session.receive_audio(self.audio_in, msg, now, now)
        self._tick_to(now + RECOVERY_US)

    def _tick_to(self, now: int) -> None:
        """Polls on the 10 ms grid of the node's clock up to ``now``, diagnostics on whole
        seconds; a clock that went back starts the grid again there."""
        tick = self._next_tick_us
        if tick is None or now < tick - 10_000:
            tick = (now // 10_000 + 1) * 10_000
        while tick <= now:
            self.mono += 0.01
            self._poll(tick)
            if tick % 1_000_000 == 0:
                self._diagnose(tick)
            tick += 10_000
        self._next_tick_us = tick

    def _poll(self, now: int) -> None:
        def publish(out, pred):
            start = pred["window"]["start_ns"] // 1000
            self.preds[start] = pred
            self.play_of[start] = self.plays
            self.published.append((self.mono, start, pred))

        assert self.session.run_once(lambda: now, publish) is None

    def _diagnose(self, now: int) -> None:
        offsets = {"event": self.events_in.timeline.last_stamp_offset_us,
                   "audio": self.audio_in.last_stamp_offset_us}
        level, message, values = self.session.diagnostics(
            now, device="cpu", event_stats=self.events_in.stats(),
            audio_stats=self.audio_in.stats(), stamp_offsets=offsets)
        self.diagnostics.append((now, level, message, dict(values)))
        self.said.append((self.mono, message))

    def windows(self, lo_us: int, hi_us: int, play: int | None = None) -> dict[int, dict]:
        return {s: p for s, p in self.preds.items() if lo_us <= s < hi_us
                and (play is None or self.play_of[s] == play)}

    def counter(self, key: str) -> int:
        return int(self.diagnostics[-1][3].get(key, 0))


def shifted(msg, shift_us: int):
    """The message with its header stamp moved by shift_us."""
    ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + shift_us * 1000
    stamp = type(msg.header.stamp)(sec=ns // 10**9, nanosec=ns % 10**9)
    return dataclasses.replace(msg, header=dataclasses.replace(msg.header, stamp=stamp))


@pytest.fixture(scope="module")
def baseline(recording, classifier):
    node = Node(classifier, T0_US)
    node.play(bag_messages(recording))
    return node


def same(a: dict, b: dict) -> bool:
    return (a["label"] == b["label"] and a["present"] == b["present"]
            and all(abs(x["score"] - y["score"]) < 1e-5 for x, y in zip(a["top_k"], b["top_k"],
                                                                         strict=True)))


def assert_recovers(node: Node, baseline: Node, fault_us: tuple[int, int], what: str,
                    end_us: int, exact: bool = True) -> None:
    """From the fault's end + the bound every window of the baseline is there, with both
    inputs, and the same (``exact``) or with the same label in 95 % of them (a re-anchoring
    by receipt times is off by their jitter: a few ms); before the fault every window is the
    same; only windows in between may differ or be missing."""
    after = baseline.windows(fault_us[1] + RECOVERY_US, end_us)
    assert len(after) > 100
    got = node.windows(fault_us[1] + RECOVERY_US, end_us)
    missing = sorted(set(after) - set(got))
    assert not missing, (what, [(m - T0_US) / 1e6 for m in missing[:5]])
    assert all(got[s]["present"] == ["events", "audio"] for s in after)
    if exact:
        differ = [s for s in after if not same(after[s], got[s])]
        assert not differ, (what, [(s - T0_US) / 1e6 for s in differ[:5]])
    else:
        agree = sum(got[s]["label"] == after[s]["label"] for s in after) / len(after)
        assert agree >= 0.95, (what, agree)
    before = baseline.windows(T0_US, fault_us[0] - WINDOW_US)
    assert all(same(before[s], node.preds[s]) for s in before)


def assert_warned_while_missing(node: Node) -> None:
    """Never OK in a second whose windows lacked an input."""
    for now, level, message, _ in node.diagnostics:
        lacking = [p for s, p in node.preds.items() if now - 1_000_000 <= s + WINDOW_US < now
                   and p["present"] != ["events", "audio"]]
        if lacking:
            assert level >= WARN, ((now - T0_US) / 1e6, message)


def test_the_baseline_recording_has_both_inputs_in_every_window(recording, baseline):
    full = [p for p in baseline.preds.values() if p["present"] == ["events", "audio"]]
    assert len(baseline.preds) > 400 and len(full) == len(baseline.preds)
    assert baseline.counter("time.clock_back") == 0 and baseline.session.time.stamp_jumps == {}
    end = T0_US + int(recording.events["t"][-1])  # then the inputs stop: WARN, rightly
    during = [(lvl, m) for now, lvl, m, _ in baseline.diagnostics
              if T0_US + 2_000_000 < now < end - 1_000_000]
    assert len(during) > 15 and all(lvl == OK for lvl, _ in during), during[:1]


def test_a_bag_played_again_predicts_as_it_did_the_first_time(recording, classifier, baseline):
    """use_sim_time and the same bag played twice: the node's clock goes back by the bag's
    length; the second play gives the first play's windows on the same bag times."""
    node = Node(classifier, T0_US)
    msgs = bag_messages(recording)
    node.play(msgs)
    first = dict(node.preds)
    node.play(msgs)  # the same log times again: the clock goes back
    second = node.windows(T0_US, T0_US + 10**9, play=2)
    bound = T0_US + int(recording.events["t"][0]) + RECOVERY_US
    want = {s: p for s, p in first.items() if s >= bound}
    assert len(want) > 400 and set(want) <= set(second)
    assert all(same(want[s], second[s]) for s in want)
    assert node.counter("time.clock_back") == 1
    text = " ".join(m for _, _, m, _ in node.diagnostics[len(node.diagnostics) // 2:])
    assert "the node's clock went back" in text and "windows, buffers and smoothing" in text


@pytest.mark.parametrize("name, topic, shift_us", [("audio", AUDIO_TOPIC, -2_000_000),
                                                    ("events", EVENTS_TOPIC, -10_000_000)])
def test_stamps_that_jump_back_are_re_anchored(recording, classifier, baseline, name, topic,
                                               shift_us):
    """A driver restarted with its stamps 2 s back (audio), or event stamps stepped back 10 s,
    and going on from there: re-anchored at receipt, the windows across the jump dropped, the
    same windows as without the fault after one window and the waits, WARN naming it."""
    jump = T0_US + 6_000_000
    node = Node(classifier, T0_US)
    node.play(bag_messages(recording),
              edit=lambda t, m, log: shifted(m, shift_us) if t == topic and log >= jump else m)
    end = T0_US + int(recording.events["t"][-1])
    # audio chunks are as regular as their receipts here: re-anchored to the microsecond
    assert_recovers(node, baseline, (jump, jump), name, end, exact=name == "audio")
    assert node.session.time.stamp_jumps == {name: 1}
    assert node.counter("windows.straddling_a_jump") >= WINDOW_US // HOP_US - 1
    warned = [m for now, _, m, _ in node.diagnostics if jump + 100_000 < now < jump + 10_000_000]
    assert warned and all(f"{name} stamps jumped {-shift_us / 1e6:.1f} s back" in m
                          for m in warned), warned[:2]
    assert_warned_while_missing(node)


def test_a_camera_whose_time_base_restarts_is_followed(recording, classifier, baseline):
    """The camera's clock starts again from 0 under a running driver (header stamps go on):
    events stay in their windows."""
    reset = 6_000_000
    node = Node(classifier, T0_US)
    node.play(bag_messages(recording, sensor_reset_us=reset))
    after = node.windows(T0_US + reset + RECOVERY_US, T0_US + 10**9)
    want = baseline.windows(T0_US + reset + RECOVERY_US, T0_US + 10**9)
    assert set(want) <= set(after)
    agree = sum(after[s]["label"] == want[s]["label"] for s in want) / len(want)
    assert agree > 0.95 and all(after[s]["present"] == ["events", "audio"] for s in want)
    assert node.counter("events.clock_resyncs") >= 1
    assert any("the camera's time base jumped against its header stamps" in m
               for _, _, m, _ in node.diagnostics)


def test_a_driver_on_another_clock_is_anchored_at_receipt(recording, classifier, baseline):
    """Audio stamped 3 s behind the node's clock from the start (a driver on another machine,
    beyond the history the node keeps): both inputs in every window, the labels of the
    baseline (the audio placed at receipt, a few ms off)."""
    node = Node(classifier, T0_US)
    node.play(bag_messages(recording),
              edit=lambda t, m, log: shifted(m, -3_000_000) if t == AUDIO_TOPIC else m)
    end = T0_US + int(recording.events["t"][-1]) - WINDOW_US  # then the recording ends
    want = baseline.windows(T0_US + RECOVERY_US, end)
    got = node.windows(T0_US + RECOVERY_US, end)
    assert set(want) <= set(got) and all(got[s]["present"] == ["events", "audio"] for s in want)
    agree = sum(got[s]["label"] == want[s]["label"] for s in want) / len(want)
    assert agree > 0.9, agree
    assert not any("overloaded" in m for _, _, m, _ in node.diagnostics)
    assert node.session.time.stamp_jumps == {"audio": 1}
    assert "audio stamps are 3.0 s behind their receipt times from the start" in \
        node.diagnostics[0][2]


def test_a_stalled_subscriber_is_not_a_jump(recording, classifier, baseline):
    """Nothing delivered for 1.5 s, then the backlog at once: stamps are right, delivery was
    late. No jump; the same windows as without the stall once it has drained."""
    stall, until = T0_US + 6_000_000, T0_US + 7_500_000
    node = Node(classifier, T0_US)
    node.play(bag_messages(recording),
              clock_us=lambda log: until if stall <= log < until else log)
    assert node.session.time.stamp_jumps == {} and node.counter("time.clock_back") == 0
    assert_recovers(node, baseline, (stall, until), "stall", T0_US + 10**9)


def test_a_stamp_warning_clears_when_the_stamps_are_right_again(recording, classifier):
    """Audio stamps 8 s behind (implausible) for 4 s, then right: named while wrong, gone once
    the hold of the jumps has passed."""
    lo, hi = T0_US + 4_000_000, T0_US + 8_000_000
    node = Node(classifier, T0_US)
    node.play(bag_messages(recording),
              edit=lambda t, m, log: shifted(m, -8_000_000) if t == AUDIO_TOPIC and lo <= log < hi
              else m)
    during = [m for now, _, m, _ in node.diagnostics if lo + 1_000_000 < now < hi]
    assert during and all("audio header stamps are 8.0 s behind the ROS clock" in m
                          for m in during), during[:1]
    end = T0_US + int(recording.events["t"][-1])
    late = [(lvl, m) for now, lvl, m, _ in node.diagnostics
            if hi + 11_000_000 < now < end - 1_000_000]
    assert late and all(lvl == OK for lvl, _ in late), late[:1]
    assert node.session.time.stamp_jumps == {"audio": 2}


def test_stamp_timeline_alone():
    """The rules of StampTimeline on bare numbers: what is a jump and what is not."""
    from taaf_ros.stream.clock import StampTimeline

    tl = StampTimeline()
    t = [tl.map(s, s + 20_000) for s in range(0, 3_000_000, 10_000)]
    assert np.array_equal(t, np.arange(0, 3_000_000, 10_000)) and tl.jumps == 0
    # stamps and receipts back together (the node's clock went back with them): no jump
    assert tl.map(100_000, 120_000) == 100_000 and tl.jumps == 0
    # stamps ahead of their receipt by 2 s: no delivery does that
    assert tl.map(2_110_000, 130_000) == 110_000 and tl.jumps == 1  # on by the receipt


def delivered_late(msgs, topic: str, delay_us: int):
    """The messages of ``topic`` received ``delay_us`` after they were logged (their stamps
    unchanged), as audio_capture's MP3 frames arrive ~0.1 s after their stamps."""
    return sorted(((t, ty, log + delay_us * 1000 if t == topic else log, m)
                   for t, ty, log, m in msgs), key=lambda m: m[2])


@pytest.mark.slow
def test_the_wait_follows_the_measured_delay_of_an_mp3_microphone(recording, classifier):
    """audio_capture's MP3 arriving 0.1 s after its stamps (more than the fixed 0.1 s wait of
    the past): with the default (max_wait_s -1, measured) every window has its audio, the
    same as waiting a whole second; a wait of 0 still predicts, from what has come, and says
    the audio is late."""
    msgs = delivered_late(bag_messages(recording, coding="mp3"), AUDIO_TOPIC, 100_000)
    runs = {}
    for name, wait in (("generous", 1.0), ("measured", -1.0), ("fixed 0.1 s", 0.1),
                       ("none", 0.0)):
        runs[name] = node = Node(classifier, T0_US, max_wait_s=wait)
        node.play(msgs)
    end = T0_US + int(recording.events["t"][-1]) - WINDOW_US
    ref = runs["generous"].windows(T0_US + 1_000_000, end)
    assert len(ref) > 400 and all(p["present"] == ["events", "audio"] for p in ref.values())
    got = runs["measured"].windows(T0_US + 1_000_000, end)
    equal = sum(s in got and same(ref[s], got[s]) for s in ref) / len(ref)
    assert equal >= 0.995, equal
    wait = int(runs["measured"].diagnostics[-1][3]["windows.wait_ms"])
    assert 100 < wait < 400, wait  # the MP3 delay and its frames, not the bound
    full = lambda node: sum(p["present"] == ["events", "audio"]  # noqa: E731
                            for p in node.windows(T0_US + 1_000_000, end).values())
    assert full(runs["fixed 0.1 s"]) < 0.9 * len(ref)  # the past default masked the audio
    none = runs["none"].windows(T0_US + 1_000_000, end)
    assert len(none) >= 0.95 * len(ref)  # max_wait_s 0 predicts
    assert any("audio: missing from" in m and "raise max_wait_s above that, or set it to -1"
               in m for _, _, m, _ in runs["none"].diagnostics)
