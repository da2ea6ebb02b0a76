"""The streaming event front end equals the offline one (and so tonic's ToFrame) window by
window, on random, bursty and real recorded streams."""

import numpy as np
import pytest

from taaf_ros.data.bags import read_bag_events
from taaf_ros.events.types import make_events
from taaf_ros.frontend import FrontEndConfig, event_tensor
from taaf_ros.stream import event_frames
from taaf_ros.stream.event_frames import StreamingEventFrames, streaming_step


def _replay_and_compare(packets, sensor, config: FrontEndConfig, hop_us: int,
                        fit_mode: str = "crop") -> int:
    """Push packets one by one; after each, cut every window that has ended and compare."""
    step = streaming_step(config.window_us, config.n_time_bins, hop_us)
    assert step is not None
    frames = StreamingEventFrames(sensor, config.input_size, fit_mode, config.window_us,
                                  config.n_time_bins, step, config.window_us + 4 * hop_us)
    seen = []
    next_end = None
    compared = 0
    for ev in packets:
        frames.push(ev)
        seen.append(ev)
        if not len(ev):
            continue
        latest = int(ev["t"][-1])
        if next_end is None:
            next_end = -(-(int(ev["t"][0]) + config.window_us) // hop_us) * hop_us
        while next_end <= latest:
            start = next_end - config.window_us
            got, n = frames.window_tensor(start, config.max_count)
            allev = np.concatenate(seen)
            want = event_tensor(allev, sensor, start, config)
            assert np.array_equal(got, want), f"window [{start}, {next_end})"
            inside = (allev["t"] >= start) & (allev["t"] < next_end)
            assert n <= int(inside.sum())  # events outside the crop are not counted
            compared += 1
            next_end += hop_us
    return compared


def _split(ev, packet_us):
    edges = np.arange(ev["t"][0], ev["t"][-1] + packet_us, packet_us)
    idx = np.searchsorted(ev["t"], edges)
    return [ev[a:b] for a, b in zip(idx[:-1], idx[1:], strict=True)]


@pytest.mark.parametrize("window_s, T, hop_us", [(0.6, 8, 50_000), (0.3, 6, 20_000),
                                                 (0.25, 5, 30_000)])
def test_random_stream_equals_offline(window_s, T, hop_us):
    rng = np.random.default_rng(T)
    n = 60_000
    t = np.sort(rng.integers(10_000_000, 11_500_000, n))
    ev = make_events(rng.integers(0, 640, n), rng.integers(0, 480, n), t, rng.integers(0, 2, n))
    config = FrontEndConfig(window_s=window_s, n_time_bins=T, max_count=15)
    assert _replay_and_compare(_split(ev, 10_000), (640, 480), config, hop_us) > 10


@pytest.mark.parametrize("fit_mode", ["crop", "letterbox"])
def test_bursty_stream_equals_offline(fit_mode):
    """Bursts on a few pixels saturate the count clip; quiet stretches leave empty bins;
    events on bin and window edges exactly."""
    rng = np.random.default_rng(1)
    parts = []
    for k in range(12):
        t0 = 5_000_000 + k * 100_000
        m = 20_000 if k % 3 == 0 else 50
        parts.append(make_events(rng.integers(300, 310, m), rng.integers(200, 205, m),
                                 np.sort(rng.integers(t0, t0 + 5_000, m)), rng.integers(0, 2, m)))
        edges = t0 + np.array([0, 25_000, 75_000, 75_000, 99_999])
        parts.append(make_events([0, 639, 320, 5, 600], [0, 479, 240, 5, 400], edges, 1))
    ev = np.concatenate(parts)
    ev = ev[np.argsort(ev["t"], kind="stable")]
    config = FrontEndConfig(window_s=0.6, n_time_bins=8, max_count=15, fit_mode=fit_mode)
    assert _replay_and_compare(_split(ev, 10_000), (640, 480), config, 50_000,
                               fit_mode) > 5


@pytest.mark.parametrize("name", ["test_data_evt3_trigger", "test_data_libcaer_rollover",
                                  "test_events_2"])
def test_real_bag_stream_equals_offline(event_bags, name):
    chunks = list(read_bag_events(event_bags / name))
    config = FrontEndConfig(window_s=0.3, n_time_bins=6, max_count=15)
    compared = _replay_and_compare([c.events for c in chunks], chunks[0].sensor_size, config,
                                   50_000)
    assert compared >= 8


def test_streaming_step_rules():
    assert streaming_step(600_000, 8, 50_000) == 25_000
    assert streaming_step(600_000, 8, 75_000) == 75_000
    assert streaming_step(500_000, 3, 50_000) is None  # tonic's float edges
    assert streaming_step(600_000, 8, 50_001) is None  # gcd 1 µs: 600,000 sub-bins
    with pytest.raises(ValueError, match="streaming_step"):
        StreamingEventFrames((34, 34), (34, 34), "crop", 600_000, 8, 7_000, 1_000_000)


def test_late_outside_and_resize_are_counted():
    fr = StreamingEventFrames((34, 34), (34, 34), "crop", 100, 2, 50, 200)
    fr.push(make_events([0, 40, 1], [0, 0, 1], [10_000, 10_001, 10_002], 1))
    fr.push(make_events([2], [2], [9_000], 1))  # 20 sub-bins behind the head: gone
    st = fr.stats
    assert (st.binned, st.outside_sensor, st.too_late) == (2, 1, 1)
    # A far jump forward clears the whole ring once, without looping over the gap.
    fr.push(make_events([3], [3], [10**15], 0))
    frames, n = fr.window_tensor(10_000, 15)
    assert n == 0 and frames.sum() == 0
    # Another sensor size maps its own events only and keeps the ring.
    fr.push(make_events([66], [66], [10**15 + 1], 1), (68, 68))
    fr.push(make_events([33], [33], [10**15 + 2], 1), (34, 34))
    frames, n = fr.window_tensor(10**15, 15)
    assert n == 3 and frames[0, 1, 33, 33] == 2 and fr.stats.size_changes == 2
    with pytest.raises(ValueError, match="grid"):
        fr.window_tensor(10_001, 15)


def test_doctests():
    import doctest

    assert doctest.testmod(event_frames).failed == 0
