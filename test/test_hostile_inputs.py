"""Hostile or broken messages against the node's input path, without a ROS graph: one message
must not blind a stream, stall decoding, or size an allocation; /diagnostics must name it.

Each test is one row of the hostile-input table (F1-F6) replayed through the same objects the
node uses (EventInput / AudioInput -> LiveSession), with duck-typed messages.
"""

from __future__ import annotations

import time
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from taaf_ros.events.evt3 import encode_evt3
from taaf_ros.events.types import make_events
from taaf_ros.inference.session import LiveSession
from taaf_ros.params import PERCEPTION_PARAMS
from taaf_ros.stream.inputs import AudioInput, EventInput
from taaf_ros.stream.scheduler import OK, WARN

T0 = 1_700_000_000_000_000  # ROS time (µs)
STEP_US = 10_000
RATE = 8000


def _stamp(t_us: int) -> SimpleNamespace:
    return SimpleNamespace(stamp=SimpleNamespace(sec=t_us // 1_000_000,
                                                 nanosec=(t_us % 1_000_000) * 1000))


def evt3_packet(events: np.ndarray, stamp_us: int, seq: int, width: int = 34,
                height: int = 34) -> SimpleNamespace:
    return SimpleNamespace(header=_stamp(stamp_us), width=width, height=height, seq=seq,
                           time_base=0, encoding="evt3", events=encode_evt3(events))


def dvs_array(events: np.ndarray, stamp_us: int, width: int, height: int) -> SimpleNamespace:
    items = [SimpleNamespace(x=int(e["x"]), y=int(e["y"]), polarity=bool(e["p"]),
                             ts=SimpleNamespace(sec=int(e["t"]) // 1_000_000,
                                                nanosec=int(e["t"]) % 1_000_000 * 1000))
             for e in events]
    return SimpleNamespace(header=_stamp(stamp_us), width=width, height=height, events=items)


def audio_msg(samples: np.ndarray, stamp_us: int) -> SimpleNamespace:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    return SimpleNamespace(header=_stamp(stamp_us), audio=SimpleNamespace(data=pcm.tobytes()))


def audio_info(rate: int) -> SimpleNamespace:
    return SimpleNamespace(channels=1, sample_rate=rate, sample_format="S16LE",
                           coding_format="wave", bitrate=0)


class Stream:
    """A legitimate 100 Hz evt3 + AudioDataStamped stream into a live session, as the node's
    callbacks would deliver it, with room to slip a hostile message in between."""

    def __init__(self, events_type: str = "event_packet") -> None:
        p = {s.name: s.default for s in PERCEPTION_PARAMS} | {"device": "cpu"}
        self.session = LiveSession.from_params(p, T0)
        self.events_in = EventInput(events_type, self.session.sensor_size, 5_000_000)
        self.audio_in = AudioInput("audio_data_stamped", RATE, 1, 5_000_000)
        self.audio_in.set_info(audio_info(RATE), T0)
        self.now = T0
        self.sensor_us = 5_000_000  # the camera's own clock
        self.seq = 0
        self.rng = np.random.default_rng(0)
        self.predictions: list[dict] = []

    def events(self, msg) -> None:
        self.session.push_events(*self.events_in.decode(msg, self.now, self.now), self.now)

    def audio(self, msg) -> None:
        self.session.push_audio(*self.audio_in.decode(msg, self.now, self.now), self.now)

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            t0, k = self.sensor_us, 200
            ev = make_events(self.rng.integers(0, 34, k), self.rng.integers(0, 34, k),
                             np.sort(self.rng.integers(t0, t0 + STEP_US, k)), 1)
            self.seq += 1
            self.events(evt3_packet(ev, self.now, self.seq))
            tone = np.sin(np.arange(RATE * STEP_US // 1_000_000) * 0.3) * 0.3
            self.audio(audio_msg(tone, self.now))
            self.sensor_us += STEP_US
            self.now += STEP_US
            self.session.run_once(lambda: self.now, lambda w, p: self.predictions.append(p))

    def recent(self, n: int = 5) -> list[dict]:
        return self.predictions[-n:]

    def diagnostics(self) -> tuple[int, str, dict[str, str]]:
        level, message, values = self.session.diagnostics(
            self.now, device="cpu", event_stats=self.events_in.stats(),
            audio_stats=self.audio_in.stats(), stamp_offsets={})
        return level, message, dict(values)


def _healthy(stream: Stream) -> None:
    """The last predictions saw events and audio, as a clean stream gives them."""
    for p in stream.recent():
        assert p["inputs"]["events"] > 500, p["inputs"]
        assert p["inputs"]["audio_coverage"] > 0.9, p["inputs"]


@pytest.fixture
def stream() -> Stream:
    s = Stream()
    s.step(100)
    _healthy(s)
    assert s.diagnostics()[0] == OK
    return s


def test_f1_empty_packet_declaring_another_size_does_not_outlive_itself(stream):
    stream.events(evt3_packet(make_events([], [], [], 1), stream.now, stream.seq + 1, 640, 480))
    stream.seq += 1
    stream.step(100)
    _healthy(stream)
    assert stream.events_in.sensor_size == (34, 34)
    assert stream.events_in.stats()["format_changes"] == 2  # into 640 x 480 and back


def test_f2_one_event_an_hour_later_is_an_outlier_not_the_clock(stream):
    t = stream.sensor_us
    ev = make_events([1, 2], [1, 2], [t, t + 3_600_000_000], 1)
    stream.seq += 1
    stream.events(evt3_packet(ev, stream.now, stream.seq))
    stream.step(100)
    _healthy(stream)
    assert stream.events_in.stats()["time_outliers"] == 1
    assert stream.session.front_end.stats()["events.too_late"] == 0
    level, message, _ = stream.diagnostics()
    assert level == WARN and "time_outliers" in message


def test_f2_pointcloud_whose_first_event_is_the_outlier():
    """The reference is the first event that agrees with the running clock, not the first."""
    pytest.importorskip("sensor_msgs")
    from taaf_ros.events.messages import events_to_pointcloud2

    events_in = EventInput("pointcloud2", (34, 34), 5_000_000)
    now, t = T0, 5_000_000
    for _ in range(50):
        cloud = events_to_pointcloud2(make_events([1, 2], [1, 2], [t, t + 5], 1))
        cloud.header.stamp.sec, cloud.header.stamp.nanosec = divmod(now * 1000, 10**9)
        events_in.decode(cloud, now, now)
        now, t = now + STEP_US, t + STEP_US
    offset = events_in.clock.current
    cloud = events_to_pointcloud2(make_events([1, 2, 3], [1, 2, 3],
                                              [t - 3_600_000_000, t, t + 5], 1))
    cloud.header.stamp.sec, cloud.header.stamp.nanosec = divmod(now * 1000, 10**9)
    piece = events_in.decode(cloud, now, now)
    assert piece.events["t"].tolist() == [t + offset, t + 5 + offset]
    assert events_in.clock.current == offset and events_in.clock.resyncs == 0
    assert events_in.stats()["time_outliers"] == 1


@pytest.mark.parametrize("width", [100_000_000, 2**32 - 1])
def test_f3_huge_declared_size_is_refused_before_any_allocation(width):
    s = Stream("dvs_event_array")
    tracemalloc.start()
    with pytest.raises(ValueError, match="declared sensor"):
        s.events_in.decode(dvs_array(make_events([1], [1], [T0], 1), T0, width, 480), T0, T0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10_000_000


def test_f3_largest_legal_size_maps_without_a_sensor_sized_frame():
    s = Stream("dvs_event_array")
    ev = make_events([65_535, 3], [65_535, 3], [5_000_000, 5_000_001], 1)
    tracemalloc.start()
    s.events(dvs_array(ev, T0, 65_536, 65_536))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50_000_000  # tables O(width + height), no W x H array


def test_f4_one_long_chunk_does_not_claim_the_later_audio(stream):
    stream.audio(audio_msg(np.zeros(60 * RATE), stream.now))
    trimmed = stream.audio_in.stats()["ahead_trimmed_samples"]
    assert trimmed >= 59 * RATE
    stream.step(150)
    _healthy(stream)
    level, message, _ = stream.diagnostics()
    assert level == WARN and "ahead_trimmed_samples" in message


def test_f5_flapping_audio_info_costs_nothing_and_is_named(stream):
    t = time.process_time()
    for i in range(100):  # 10 Hz for 10 s of stream time
        stream.audio_in.set_info(audio_info(383_999 if i % 2 else 383_993), stream.now)
        stream.step(10)
    cost = time.process_time() - t
    st = stream.audio_in.stats()
    assert st["info_changes"] <= 11 and st["info_changes_held"] >= 40
    assert cost < 60  # before: ~1.7 s of filter design per change, 170 s here
    level, message, _ = stream.diagnostics()
    assert level == WARN and "AudioInfo" in message


def test_f6_many_formats_keep_memory_and_the_stream(stream):
    for i in range(2000):
        stream.events(evt3_packet(make_events([1], [1], [stream.sensor_us], 1), stream.now,
                                  stream.seq, 40 + i, 40))
        if i % 20 == 0:
            stream.step()
    stream.step(100)
    _healthy(stream)
    assert len(stream.events_in.decoders) <= stream.events_in.max_formats
    assert "34x34" in "".join(stream.events_in.decoders)
    level, message, _ = stream.diagnostics()
    assert level == WARN and "format_changes" in message


def test_absurd_seq_is_an_outlier_not_a_loss(stream):
    stream.events(evt3_packet(make_events([], [], [], 1), stream.now, 2**64 - 1))
    stream.step(3)
    st = stream.events_in.stats()
    assert st["lost_packets"] == 0 and st["seq_outliers"] == 1 and st["seq_resets"] == 0


def test_most_events_outside_the_sensor_is_a_warning_naming_the_size():
    """A 1280 x 720 camera's PointCloud2 events on a node left at the model's 34 x 34."""
    pytest.importorskip("sensor_msgs")
    from taaf_ros.events.messages import events_to_pointcloud2

    s = Stream("pointcloud2")
    rng = np.random.default_rng(1)
    for _ in range(100):
        ev = make_events(rng.integers(0, 1280, 300), rng.integers(0, 720, 300),
                         np.sort(rng.integers(s.sensor_us, s.sensor_us + STEP_US, 300)), 1)
        cloud = events_to_pointcloud2(ev)
        cloud.header.stamp.sec, cloud.header.stamp.nanosec = divmod(s.now * 1000, 10**9)
        s.events(cloud)
        s.sensor_us += STEP_US
        s.now += STEP_US
    level, message, _ = s.diagnostics()
    assert level == WARN and "events.outside_sensor" in message
    assert "sensor size in use (34 x 34)" in message and "sensor_width" in message


@pytest.mark.parametrize("field, value, named", [
    ("sample_rate", 0, "sample rate must be in [1000, 384000] Hz, got 0"),
    ("sample_rate", 10**9, "got 1000000000"), ("channels", 0, "channels must be in [1, "),
    ("coding_format", "opus", "coding_format 'opus' is not supported"),
    ("sample_format", "S24BE", "sample_format 'S24BE' not supported")])
def test_a_bad_audio_info_is_refused_and_the_good_one_stays(stream, field, value, named):
    """A driver that latches one bad AudioInfo must not leave the node deaf: it is refused,
    named with what stays in force, counted, and the audio keeps coming."""
    from taaf_ros.audio import AudioFormatError

    stream.step(80)
    bad = audio_info(RATE)
    setattr(bad, field, value)
    with pytest.raises(AudioFormatError, match="AudioInfo refused") as err:
        stream.audio_in.set_info(bad, stream.now)
    assert named in str(err.value) and f"still decoding as {RATE} Hz, 1 ch, S16LE wave" in \
        str(err.value)
    stream.session.bad("audio", err.value)  # what the node's AudioInfo callback does
    stream.step(100)
    _healthy(stream)
    assert stream.audio_in.stats()["info_refused"] == 1
    level, message, values = stream.diagnostics()
    assert level == WARN and "1 AudioInfo refused" in message, message
    assert named in values["audio.last_error"]


def test_an_event_message_far_beyond_any_camera_is_refused_unread(stream):
    """A 200 MB EventPacket once took 4.9 GB to decode (and, through taaf_dataset, made a
    1.3 GB sample): refused by its size before anything is decoded, the stream goes on."""
    from taaf_ros.events import EventFormatError

    stream.step(80)
    huge = evt3_packet(make_events([1], [1], [stream.sensor_us], 1), stream.now, stream.seq)
    huge.events = bytes(65 * 2**20)
    tracemalloc.start()
    with pytest.raises(EventFormatError, match="an event message of 65 MiB: more than 64 MiB"):
        stream.events(huge)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20
    stream.step(100)
    _healthy(stream)
