"""EventRingBuffer and AudioRingBuffer: bounded memory, exact windows, counters."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from taaf_ros.events.types import make_events
from taaf_ros.stream.buffers import AudioRingBuffer, EventRingBuffer


def events_at(t, x=None):
    t = np.asarray(t, dtype=np.int64)
    x = np.arange(len(t)) % 1000 if x is None else x
    return make_events(x, np.zeros(len(t)), t, np.ones(len(t)))


def brute_window(all_events, t0, t1):
    return all_events[(all_events["t"] >= t0) & (all_events["t"] < t1)]


def test_window_exact_vs_brute_force_with_wrap():
    rng = np.random.default_rng(0)
    buf = EventRingBuffer(1000)
    chunks = [
        np.sort(rng.integers(i * 100, (i + 1) * 100, rng.integers(0, 150))) for i in range(40)
    ]
    pushed = []
    for c in chunks:
        ev = events_at(c, x=rng.integers(0, 500, len(c)))
        buf.push(ev)
        pushed.append(ev)
    allev = np.concatenate(pushed)
    held = allev[-1000:]  # the ring keeps the newest `capacity` events
    assert len(buf) == 1000 and buf.stats.overwritten == len(allev) - 1000
    for _ in range(50):
        t0 = int(rng.integers(held["t"][0], 4100))
        t1 = t0 + int(rng.integers(0, 800))
        got = buf.window(t0, t1)
        assert np.array_equal(got, brute_window(held, t0, t1))
    assert buf.latest_time == allev["t"].max()


def test_burst_memory_bounded_and_counted():
    cap = 512
    buf = EventRingBuffer(cap)
    nbytes = buf._ev.nbytes + buf._t.nbytes
    ids = [id(buf._ev), id(buf._t)]
    burst = events_at(np.arange(100 * cap))
    buf.push(burst)
    assert len(buf) == cap and buf.stats.overwritten == 99 * cap
    for i in range(10):  # steady pushes past capacity
        buf.push(events_at(np.arange(100 * cap + i * 100, 100 * cap + (i + 1) * 100)))
    assert len(buf) == cap and buf.stats.overwritten == 99 * cap + 1000
    assert buf.stats.pushed == 100 * cap + 1000
    assert buf._ev.nbytes + buf._t.nbytes == nbytes and [id(buf._ev), id(buf._t)] == ids
    w = buf.window(0, 10**9)
    assert np.array_equal(w["t"], np.arange(100 * cap + 1000 - cap, 100 * cap + 1000))


def test_subsampling_uniform_and_counted():
    buf = EventRingBuffer(10_000)
    buf.push(events_at(np.arange(10_000)))
    w = buf.window(1000, 9000, max_events=1000)
    assert len(w) == 1000 and np.all(np.diff(w["t"]) == 8)
    assert w["t"][0] == 1000
    assert buf.stats.subsampled == 7000 and buf.stats.subsampled_windows == 1
    assert len(buf.window(1000, 2000, max_events=1000)) == 1000
    assert buf.stats.subsampled == 7000  # not subsampled when within the limit


def test_unsorted_push_is_sorted():
    buf = EventRingBuffer(100)
    buf.push(events_at([5, 3, 9, 1]))
    assert buf.window(0, 100)["t"].tolist() == [1, 3, 5, 9]
    assert buf.stats.unsorted_pushes == 1


def test_late_packet_merged_in_order():
    buf = EventRingBuffer(100)
    buf.push(events_at([0, 10, 20, 30]))
    buf.push(events_at([15, 25]))
    assert buf.window(0, 100)["t"].tolist() == [0, 10, 15, 20, 25, 30]
    assert buf.stats.late_pushes == 1 and buf.stats.late_dropped == 0
    assert buf.latest_time == 30


def test_events_older_than_evicted_are_dropped():
    buf = EventRingBuffer(4)
    buf.push(events_at([0, 10, 20, 30, 40, 50]))  # 0 and 10 overwritten
    buf.push(events_at([5, 10, 45]))  # 5 is older than evicted 10: dropped
    assert buf.stats.late_dropped == 1
    # 10 and 45 merged; capacity 4 keeps the newest four
    assert buf.window(0, 100)["t"].tolist() == [30, 40, 45, 50]
    assert buf.stats.overwritten == 2 + 2


def test_discard_before():
    buf = EventRingBuffer(100)
    buf.push(events_at(np.arange(0, 100, 10)))
    assert buf.discard_before(35) == 4 and len(buf) == 6
    assert buf.window(0, 1000)["t"][0] == 40
    buf.push(events_at([20]))  # older than the discarded horizon
    assert buf.stats.late_dropped == 1 and len(buf) == 6
    assert buf.stats.discarded == 4


def test_concurrent_push_and_window():
    buf = EventRingBuffer(5000)
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            w = buf.window(0, 10**9)
            if len(w) and np.any(np.diff(w["t"]) < 0):
                errors.append("unsorted window")

    th = threading.Thread(target=reader)
    th.start()
    for i in range(300):
        buf.push(events_at(np.arange(i * 100, (i + 1) * 100)))
    stop.set()
    th.join()
    assert not errors and len(buf) == 5000


# -- audio -------------------------------------------------------------------------------------
SR = 16_000  # 16 samples per ms


def test_audio_contiguous_window_exact():
    buf = AudioRingBuffer(16_000, SR)
    x = np.arange(8000, dtype=np.float32)
    for i in range(0, 8000, 800):  # 50 ms chunks stamped from t = 1 s
        buf.push(x[i : i + 800], 1_000_000 + i * 1_000_000 // SR)
    assert buf.latest_time == 1_500_000
    w = buf.window_with_coverage(1_100_000, 1_200_000)
    assert np.array_equal(w.samples, x[1600:3200]) and w.coverage == 1.0
    assert buf.stats.gaps == 0 and buf.stats.overlaps == 0


def test_audio_gap_filled_with_zeros_and_coverage():
    buf = AudioRingBuffer(16_000, SR)
    buf.push(np.ones(160, np.float32), 0)  # [0, 10 ms)
    buf.push(np.full(160, 2, np.float32), 20_000)  # [20, 30 ms): a 10 ms gap
    assert buf.stats.gaps == 1 and buf.stats.gap_samples == 160
    w = buf.window_with_coverage(0, 40_000)
    assert len(w.samples) == 640
    assert np.all(w.samples[:160] == 1) and np.all(w.samples[160:320] == 0)
    assert np.all(w.samples[320:480] == 2) and np.all(w.samples[480:] == 0)
    assert w.coverage == pytest.approx(320 / 640)


def test_audio_overlap_and_backwards_counted():
    buf = AudioRingBuffer(16_000, SR)
    buf.push(np.ones(160, np.float32), 0)
    buf.push(np.full(160, 2, np.float32), 5_000)  # overlaps the last 5 ms (80 samples)
    assert buf.stats.overlaps == 1 and buf.stats.overlap_dropped == 80
    assert buf.latest_time == 15_000
    buf.push(np.full(16, 3, np.float32), 0)  # fully old: dropped
    assert buf.stats.overlaps == 2 and buf.stats.overlap_dropped == 96
    w = buf.window(0, 15_000)
    assert np.all(w[:160] == 1) and np.all(w[160:240] == 2)


def test_audio_jitter_tolerated():
    buf = AudioRingBuffer(16_000, SR, max_jitter_us=1000)
    buf.push(np.ones(160, np.float32), 0)
    buf.push(np.ones(160, np.float32), 10_400)  # 0.4 ms late stamp: still contiguous
    assert buf.stats.gaps == 0 and buf.latest_time == 20_000


def test_audio_bounded_under_burst():
    buf = AudioRingBuffer(1600, SR)
    nbytes = buf._pcm.nbytes + buf._valid.nbytes
    x = np.arange(160_000, dtype=np.float32)
    buf.push(x, 0)
    assert len(buf) == 1600 and buf.stats.overwritten == 160_000 - 1600
    assert buf._pcm.nbytes + buf._valid.nbytes == nbytes
    w = buf.window_with_coverage(9_900_000, 10_000_000)
    assert np.array_equal(w.samples, x[-1600:]) and w.coverage == 1.0
    # before the buffered span: zeros, coverage 0
    assert buf.window_with_coverage(0, 100_000).coverage == 0.0
    buf.push(np.ones(10, np.float32), 10**12)  # huge gap: still bounded
    assert len(buf) == 1600 and buf._pcm.nbytes + buf._valid.nbytes == nbytes


def test_audio_rejects_multichannel():
    with pytest.raises(ValueError):
        AudioRingBuffer(100, SR).push(np.zeros((10, 2)), 0)
