"""The perception node's live core without a ROS graph: decoded data in, classified windows
out, bad input counted, a failing window reported and survived."""

from __future__ import annotations

import numpy as np
import pytest

from taaf_ros.audio.wav import read_wav
from taaf_ros.events.types import make_events
from taaf_ros.inference.session import LiveSession
from taaf_ros.params import PERCEPTION_PARAMS
from taaf_ros.stream.scheduler import ERROR, OK

T0 = 1_700_000_000_000_000  # a ROS time (µs)
CHUNK_US = 10_000


class Feed:
    """Pushes 10 ms of events and audio at a time into a session, on a simulated ROS clock."""

    def __init__(self, session: LiveSession, pcm: np.ndarray, rate: int) -> None:
        self.session, self.pcm, self.rate = session, pcm, rate
        self.now = T0
        self.rng = np.random.default_rng(0)
        self.pushed: list[np.ndarray] = []

    def step(self, n_chunks: int) -> None:
        for _ in range(n_chunks):
            t0 = self.now
            n = 300
            ev = make_events(self.rng.integers(0, 34, n), self.rng.integers(0, 34, n),
                             np.sort(self.rng.integers(t0, t0 + CHUNK_US, n)),
                             self.rng.integers(0, 2, n))
            self.pushed.append(ev)
            self.now += CHUNK_US
            self.session.push_events(ev, self.now, (34, 34), self.now)
            k0 = (t0 - T0) * self.rate // 1_000_000
            k1 = (self.now - T0) * self.rate // 1_000_000
            self.session.push_audio(np.resize(self.pcm, k1)[k0:k1], t0, self.rate, self.now)

    def clock(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def speech(fsdd_wav):
    chunk = read_wav(fsdd_wav)
    return chunk.samples, chunk.sample_rate


def _session(**overrides) -> LiveSession:
    p = {s.name: s.default for s in PERCEPTION_PARAMS} | {"device": "cpu"} | overrides
    return LiveSession.from_params(p, T0)


def test_windows_are_classified_with_their_events_and_audio(speech):
    session = _session()
    feed = Feed(session, *speech)
    got: list[dict] = []
    for _ in range(30):  # 1.5 s, polled every hop as the node's worker does
        feed.step(5)
        assert session.run_once(feed.clock, lambda out, pred: got.append(pred)) is None
    assert len(got) >= 15 and session.scheduler.stats.jumps == 0
    allev = np.concatenate(feed.pushed)
    for k, pred in enumerate(got):
        assert pred["seq"] == k
        start, end = pred["window"]["start_ns"] // 1000, pred["window"]["end_ns"] // 1000
        assert end - start == session.classifier.window_us and end % 50_000 == 0
        inside = int(((allev["t"] >= start) & (allev["t"] < end)).sum())
        assert pred["inputs"]["events"] == inside
        assert pred["present"] == ["events", "audio"] and not pred["degraded"]
        assert pred["inputs"]["audio_coverage"] == pytest.approx(1.0)
        assert len(pred["top_k"]) == 3
    c = session.inputs
    assert c["events"].messages == c["audio"].messages == 150
    assert c["events"].decoded == len(allev)
    frames = session.front_end.audio.stats
    assert frames.frames_reused > frames.frames_computed
    level, _, values = session.diagnostics(feed.now, device="cpu", event_stats={},
                                           audio_stats={}, stamp_offsets={})
    kv = dict(values)
    assert level == OK and kv["predictions"] == str(len(got))
    assert float(kv["inference_ms.p50"]) > 0 and int(kv["inference_ms.windows"]) == len(got)
    # the default backend (auto) on a CPU, and why
    assert kv["backend"] == "onnxruntime" and kv["dtype"] == "float32"
    assert kv["backend.reason"].startswith("auto: the fastest at batch 1 on a CPU")


def test_bad_input_is_counted_and_named():
    session = _session()
    line = session.bad("events", ValueError("payload ends inside a word"))
    assert "payload ends inside a word" in line and "1 so far" in line
    c = session.inputs["events"]
    assert (c.messages, c.bad, c.decoded) == (1, 1, 0)
    assert c.last_error == "ValueError: payload ends inside a word"


def test_a_failing_window_is_reported_and_the_next_ones_still_come(speech):
    session = _session(top_k=2)
    feed = Feed(session, *speech)
    feed.step(80)
    calls = {"n": 0}
    got: list[dict] = []

    def publish(out, pred):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("publisher went away")
        got.append(pred)

    error = session.run_once(feed.clock, publish)
    assert error is not None and "publisher went away" in error
    level, message, values = session.diagnostics(feed.now, device="cpu", event_stats={},
                                                  audio_stats={}, stamp_offsets={})
    assert level == ERROR and "publisher went away" in message
    assert dict(values)["worker.errors"] == "1"
    session.reconfigure(max_events_per_window=1000, max_wait_us=100_000, timeout_us=500_000,
                        top_k=4)
    feed.step(20)
    assert session.run_once(feed.clock, publish) is None
    assert got and all(len(p["top_k"]) == 4 for p in got)
    assert got[0]["seq"] > 0  # the failed window kept its number


def test_the_session_runs_the_model_cards_rule_unless_a_parameter_is_given():
    from taaf_ros.inference.rule_choice import card_rule

    session = _session()
    card = card_rule(session.classifier.card)
    assert card is not None  # the bundled model carries one
    rule = session.decision
    assert (rule.smoothing_windows, rule.min_confidence) == card
    session.reconfigure(max_events_per_window=1000, max_wait_us=-1, timeout_us=500_000,
                        top_k=3, smoothing_windows=1, min_confidence=-1.0)
    assert (rule.smoothing_windows, rule.min_confidence) == (1, card[1])
    session.reconfigure(max_events_per_window=1000, max_wait_us=-1, timeout_us=500_000,
                        top_k=3)  # back to the card's
    assert (rule.smoothing_windows, rule.min_confidence) == card
    assert _session(smoothing_windows=2, min_confidence=0.0).decision.smoothing_windows == 2
