"""bin_events against tonic's ToFrame (the oracle), audio binning, and fit_events."""

from __future__ import annotations

import numpy as np
import pytest
import tonic
from hypothesis import given, settings
from hypothesis import strategies as st

from taaf_ros.events.binning import (
    _bin_numpy,
    bin_audio_counts,
    bin_audio_events,
    bin_events,
    fit_events,
    tonic_bin_edges,
)
from taaf_ros.events.types import EVENT_DTYPE, empty_events, make_events

TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])


def tonic_frames(events, sensor_size, T, t0, t1):
    """The oracle: tonic 1.7 ToFrame on the same events in tonic's own dtype."""
    te = np.empty(len(events), dtype=TONIC_DTYPE)
    for f in "xytp":
        te[f] = events[f]
    frame = tonic.transforms.ToFrame(
        sensor_size, time_window=(t1 - t0) / T, start_time=t0, end_time=t1
    )
    return frame(te)


def brute_force(events, sensor_size, T, t0, t1):
    """Per-event loop over tonic's float edges: the reference where tonic returns T - 1 bins."""
    W, H, _ = sensor_size
    lo, hi = tonic_bin_edges(t0, t1, T)
    out = np.zeros((T, 2, H, W), dtype=np.int64)
    for e in events:
        if e["x"] >= W or e["y"] >= H:
            continue
        for k in range(T):
            if lo[k] <= float(e["t"]) < hi[k]:
                out[k, int(e["p"] != 0), e["y"], e["x"]] += 1
    return out


def assert_matches_tonic(events, sensor_size, T, t0, t1):
    ours = bin_events(events, sensor_size, T, t0, t1)
    ref = tonic_frames(events, sensor_size, T, t0, t1)
    assert ours.shape == (T, 2, sensor_size[1], sensor_size[0])
    assert ours.dtype == ref.dtype == np.int16
    # tonic's float slice count gives T - 1 frames for some (duration, T): see binning's docstring.
    assert len(ref) in (T, T - 1)
    assert np.array_equal(ours[: len(ref)], ref)
    if len(ref) == T - 1:
        assert np.array_equal(ours, brute_force(events, sensor_size, T, t0, t1))


def random_stream(rng, n, W, H, t0, t1, margin=0):
    t = np.sort(rng.integers(t0 - margin, t1 + margin, n))
    return make_events(rng.integers(0, W, n), rng.integers(0, H, n), t, rng.integers(0, 2, n))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sensor_size", [(34, 34, 2), (64, 48, 2), (7, 3, 2), (1, 1, 2)])
def test_random_streams_equal_tonic(seed, sensor_size):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 60))
    t0 = int(rng.integers(0, 2**40))
    t1 = t0 + int(rng.integers(1, 100_000))
    ev = random_stream(rng, 5000, sensor_size[0], sensor_size[1], t0, t1, margin=1000)
    assert_matches_tonic(ev, sensor_size, T, t0, t1)


@st.composite
def windows(draw):
    W = draw(st.integers(1, 12))
    H = draw(st.integers(1, 12))
    T = draw(st.integers(1, 64))
    t0 = draw(st.integers(0, 2**45))
    d = draw(st.integers(1, 400))
    # Times near the window and on the float edges (rounded both ways), in bursts.
    lo, hi = tonic_bin_edges(t0, t0 + d, T)
    edges = np.concatenate([np.floor(lo), np.ceil(lo), np.floor(hi), np.ceil(hi)]).astype(int)
    near = st.integers(t0 - 3, t0 + d + 3)
    times = draw(
        st.lists(st.one_of(near, st.sampled_from(sorted(set(edges.tolist())))), max_size=60)
    )
    reps = draw(st.lists(st.integers(1, 20), min_size=len(times), max_size=len(times)))
    t = np.sort(np.repeat(np.array(times, dtype=np.int64), reps))
    n = len(t)
    x = draw(st.lists(st.integers(0, W - 1), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, H - 1), min_size=n, max_size=n))
    p = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(x, y, t, p), (W, H, 2), T, t0, t0 + d


@settings(max_examples=300, deadline=None)
@given(windows())
def test_bursty_edges_equal_tonic(case):
    ev, sensor_size, T, t0, t1 = case
    if len(ev) == 0:
        out = bin_events(ev, sensor_size, T, t0, t1)
        assert out.shape == (T, 2, sensor_size[1], sensor_size[0]) and not out.any()
    else:
        assert_matches_tonic(ev, sensor_size, T, t0, t1)


def test_tonic_drops_last_bin_case_is_handled():
    # d = 3 µs, T = 13: tonic's slice count is 12 (float floor); we still give 13 bins.
    t0, t1, T = 0, 3, 13
    ev = make_events([0, 0, 0], [0, 0, 0], [0, 1, 2], [1, 1, 1])
    ref = tonic_frames(ev, (1, 1, 2), T, t0, t1)
    assert len(ref) == T - 1
    ours = bin_events(ev, (1, 1, 2), T, t0, t1)
    assert ours.shape[0] == T and ours.sum() == 3
    assert_matches_tonic(ev, (1, 1, 2), T, t0, t1)


@pytest.mark.parametrize(
    "t0, d, T",
    [
        (0, 14, 12),  # hi[i] > lo[i + 1] by one ulp on an integer: tonic counts it twice
        (0, 36, 28),  # hi[i] < lo[i + 1] on an integer: tonic counts it in no bin
        (0, 27, 21),  # (t - t0) / tw rounds below the bin tonic puts t in
        (1_700_000_000_123_456, 50_000, 7),
        (123, 1, 1),
    ],
)
def test_float_edge_cases_every_integer_time(t0, d, T):
    # One event at every integer time around the window, so every float-edge case is hit.
    t = np.arange(t0 - 2, t0 + d + 2)
    ev = make_events(t % 3, t % 2, t, t % 2)
    assert_matches_tonic(ev, (3, 2, 2), T, t0, t0 + d)


def test_single_event_and_window_bounds():
    for t, expected_bin in [(100, 0), (149, 0), (150, 1), (199, 1), (200, None), (99, None)]:
        ev = make_events([2], [1], [t], [1])
        out = bin_events(ev, (3, 2, 2), 2, 100, 200)
        if expected_bin is None:
            assert not out.any()
        else:
            assert out[expected_bin, 1, 1, 2] == 1 and out.sum() == 1
        assert_matches_tonic(ev, (3, 2, 2), 2, 100, 200)


def test_empty_input_shape_and_dtype():
    out = bin_events(empty_events(), (5, 3, 2), 4, 0, 1000)
    assert out.shape == (4, 2, 3, 5) and out.dtype == np.int16 and not out.any()


def test_out_of_range_pixels_dropped_and_unsorted_ok():
    ev = make_events([0, 5, 1, 0], [0, 0, 9, 1], [30, 10, 20, 0], [1, 1, 0, 0])
    out = bin_events(ev, (4, 2, 2), 2, 0, 40)
    assert out.sum() == 2 and out[1, 1, 0, 0] == 1 and out[0, 0, 1, 0] == 1


def test_max_count_clips():
    ev = make_events([1] * 10 + [0], [0] * 11, [0] * 11, [1] * 11)
    out = bin_events(ev, (2, 1, 2), 1, 0, 10, max_count=3)
    assert out[0, 1, 0, 1] == 3 and out[0, 1, 0, 0] == 1
    with pytest.raises(ValueError):
        bin_events(ev, (2, 1, 2), 1, 0, 10, max_count=0)


def test_tonic_dtype_input_accepted():
    rng = np.random.default_rng(3)
    ev = random_stream(rng, 500, 10, 8, 0, 1000)
    te = np.empty(len(ev), dtype=TONIC_DTYPE)
    for f in "xytp":
        te[f] = ev[f]
    assert np.array_equal(
        bin_events(te, (10, 8, 2), 7, 0, 1000), bin_events(ev, (10, 8, 2), 7, 0, 1000)
    )


def test_numpy_path_equals_numba_path():
    rng = np.random.default_rng(4)
    ev = random_stream(rng, 20_000, 16, 12, 0, 997, margin=50)
    T, t0, t1 = 9, 0, 997
    lo, hi = tonic_bin_edges(t0, t1, T)
    flat = np.zeros(T * 2 * 12 * 16, dtype=np.int16)
    _bin_numpy(ev["x"], ev["y"], ev["t"], ev["p"], lo, hi, 0.0, (t1 - t0) / T, 16, 12, 32767, flat)
    assert np.array_equal(flat.reshape(T, 2, 12, 16), bin_events(ev, (16, 12, 2), T, t0, t1))


def test_bad_arguments():
    ev = make_events([0], [0], [0], [1])
    with pytest.raises(ValueError):
        bin_events(ev, (4, 4, 1), 2, 0, 10)
    with pytest.raises(ValueError):
        bin_events(ev, (4, 4, 2), 0, 0, 10)
    with pytest.raises(ValueError):
        bin_events(ev, (4, 4, 2), 2, 10, 10)


def test_audio_binning_shape_and_values():
    C, T = 16, 5
    rng = np.random.default_rng(5)
    n = 3000
    ev = make_events(
        rng.integers(0, C, n),
        np.zeros(n),
        np.sort(rng.integers(0, 50_000, n)),
        rng.integers(0, 2, n),
    )
    out = bin_audio_events(ev, C, T, 0, 50_000)
    assert out.shape == (T, 2, C) and out.dtype == np.int16
    ref = tonic_frames(ev, (C, 1, 2), T, 0, 50_000)
    assert np.array_equal(out, ref[:, :, 0, :])
    # hand-checked counts: per (bin, polarity, channel)
    b = ev["t"] // 10_000
    for k, pol, c in [(0, 1, 3), (4, 0, 15), (2, 1, 0)]:
        assert out[k, pol, c] == np.sum((b == k) & (ev["p"] == pol) & (ev["x"] == c))


@pytest.mark.parametrize("seed", range(6))
def test_audio_counts_bin_as_their_events(seed):
    """bin_audio_counts(counts) == bin_audio_events(counts_to_events(counts)): tonic's float
    edges (windows and hops that put steps on an edge), saturation, a start time."""
    from taaf_ros.audio.cochlea import counts_to_events

    rng = np.random.default_rng(seed)
    for _ in range(40):
        K, C = int(rng.integers(1, 80)), int(rng.integers(1, 20))
        hop = int(rng.integers(1, 3000))
        T = int(rng.integers(1, 14))
        start = int(rng.integers(0, 2)) * int(rng.integers(0, 10**9))
        end = start + int(rng.integers(1, K * hop + 2 * hop))
        counts = rng.integers(-9, 10, (K, C)).astype(np.int16)
        counts[rng.random((K, C)) < 0.5] = 0
        cap = [None, 1, 3, 15][int(rng.integers(0, 4))]
        want = bin_audio_events(counts_to_events(counts, hop, start), C, T, start, end,
                                max_count=cap)
        got = bin_audio_counts(counts, hop, T, start, end, max_count=cap)
        assert got.dtype == np.int16 and np.array_equal(got, want), (K, C, hop, T, start, end)
    for t0, d, T in [(0, 14, 12), (0, 36, 28), (0, 27, 21), (1_700_000_000_123_456, 50, 7)]:
        counts = rng.integers(-3, 4, (d + 2, 2)).astype(np.int16)  # a step at every µs
        want = bin_audio_events(counts_to_events(counts, 1, t0), 2, T, t0, t0 + d)
        assert np.array_equal(bin_audio_counts(counts, 1, T, t0, t0 + d), want), (t0, d, T)
    with pytest.raises(ValueError, match="counts must be"):
        bin_audio_counts(np.zeros(4, np.int16), 1000, 2, 0, 4000)
    with pytest.raises(ValueError, match="max_count"):
        bin_audio_counts(np.zeros((4, 2), np.int16), 1000, 2, 0, 4000, max_count=0)


def test_fit_identity():
    rng = np.random.default_rng(6)
    ev = random_stream(rng, 1000, 34, 34, 0, 100)
    out, size = fit_events(ev, (34, 34, 2), (34, 34))
    assert size == (34, 34, 2) and out.dtype == EVENT_DTYPE
    assert np.array_equal(out, ev) and out is not ev


def test_fit_640x480_to_34x34_crop():
    W, H = 640, 480
    xs, ys = np.meshgrid(np.arange(W), np.arange(H))
    ev = make_events(xs.ravel(), ys.ravel(), np.arange(W * H), 1)
    out, size = fit_events(ev, (W, H, 2), (34, 34, 2))
    assert size == (34, 34, 2)
    assert len(out) == 480 * 480  # the centre 480 x 480 crop, columns 80..559
    assert out["x"].max() == 33 and out["y"].max() == 33 and out["x"].min() == 0
    counts = np.bincount(out["y"].astype(int) * 34 + out["x"], minlength=34 * 34)
    assert set(np.unique(counts)) <= {14 * 14, 14 * 15, 15 * 15}
    kept_src = ev[(ev["x"] >= 80) & (ev["x"] < 560)]
    assert np.array_equal(out["t"], kept_src["t"])
    assert np.array_equal(out["x"], (kept_src["x"].astype(int) - 80) * 34 // 480)


def test_fit_integer_factor_and_letterbox():
    ev = make_events([0, 1, 2, 3, 127], [0, 0, 1, 1, 63], [0, 1, 2, 3, 4], [1, 0, 1, 0, 1])
    out, size = fit_events(ev, (128, 64, 2), (64, 32))
    assert size == (64, 32, 2)
    assert out["x"].tolist() == [0, 0, 1, 1, 63] and out["y"].tolist() == [0, 0, 0, 0, 31]
    box, bsize = fit_events(ev, (128, 64, 2), (32, 32), mode="letterbox")
    assert bsize == (32, 32, 2)
    # content 32 x 16 centred vertically: rows 8..23
    assert box["x"].tolist() == [0, 0, 0, 0, 31] and box["y"].tolist() == [8, 8, 8, 8, 23]
    with pytest.raises(ValueError):
        fit_events(ev, (128, 64, 2), (32, 32), mode="stretch")


def _fit_reference(ev, W, H, w, h, mode):
    """fit_events' formulas applied event by event in int64 (its earlier implementation)."""
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    if mode == "crop":
        crop_w, crop_h = (H * w // h, H) if W * h > H * w else (W, W * h // w)
        x, y = x - (W - crop_w) // 2, y - (H - crop_h) // 2
        keep = (x >= 0) & (x < crop_w) & (y >= 0) & (y < crop_h)
        nx, ny = x[keep] * w // crop_w, y[keep] * h // crop_h
    else:
        cw, ch = (w, max(H * w // W, 1)) if W * h > H * w else (max(W * h // H, 1), h)
        keep = (x < W) & (y < H)
        nx, ny = x[keep] * cw // W + (w - cw) // 2, y[keep] * ch // H + (h - ch) // 2
    kept = ev[keep]
    return make_events(nx, ny, kept["t"], kept["p"])


@pytest.mark.parametrize("mode", ["crop", "letterbox"])
@pytest.mark.parametrize("W, H, w, h", [(640, 480, 34, 34), (346, 260, 34, 34),
                                        (1280, 720, 64, 48), (34, 34, 34, 34), (33, 100, 7, 5)])
def test_fit_tables_equal_the_formulas(mode, W, H, w, h):
    rng = np.random.default_rng(W * H + w)
    n = 5000  # a tenth outside the sensor: dropped in both
    ev = make_events(rng.integers(0, W + W // 10 + 1, n), rng.integers(0, H + H // 10 + 1, n),
                     np.arange(n), rng.integers(0, 2, n))
    out, size = fit_events(ev, (W, H, 2), (w, h), mode=mode)
    assert size == (w, h, 2) and out.dtype == EVENT_DTYPE
    assert np.array_equal(out, _fit_reference(ev, W, H, w, h, mode))
