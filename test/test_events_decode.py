"""Event payload decoders: hand-built streams from the published formats, round trips, fuzzing."""

from __future__ import annotations

import array

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taaf_ros.events.decoder import (
    SUPPORTED_ENCODINGS,
    EventDecoder,
    EventFormatError,
)
from taaf_ros.events.evt3 import decode_evt3_reference, encode_evt3
from taaf_ros.events.libcaer import encode_libcaer, encode_libcaer_cmp
from taaf_ros.events.mono import encode_mono
from taaf_ros.events.types import EVENT_DTYPE, make_events

W, H = 640, 480
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def words16(ws: list[int]) -> bytes:
    return np.asarray(ws, dtype="<u2").tobytes()


def rows(ev: np.ndarray) -> list[tuple[int, int, int, int]]:
    return list(zip(ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist(), ev["p"].tolist(),
                    strict=True))


# ---------------------------------------------------------------- EVT 3.0, built by hand
# Each word: code in bits 12-15, payload in bits 0-11 (Prophesee EVT 3.0 format description).
EVT3_STREAM = [
    0x0007,  # EVT_ADDR_Y      y=7, system type 0
    0x2805,  # EVT_ADDR_X      x=5 pol=1 -> dropped: no TIME_HIGH seen yet (untimed)
    0x8123,  # EVT_TIME_HIGH   0x123
    0x6456,  # EVT_TIME_LOW    0x456 -> t = 0x123456
    0x2805,  # EVT_ADDR_X      x=5 pol=1           -> (5, 7, 0x123456, 1)
    0xA001,  # EXT_TRIGGER     edge 1, id 0        -> ignored
    0x0809,  # EVT_ADDR_Y      y=9, system type 1 (bit 11 is not part of y)
    0x300A,  # VECT_BASE_X     x=10 pol=0
    0x4805,  # VECT_12         mask 1000_0000_0101 -> x=10, 12, 21; base x -> 22
    0x5081,  # VECT_8          mask 1000_0001      -> x=22, 29;     base x -> 30
    0x4001,  # VECT_12         mask 1              -> x=30;         base x -> 42
    0xE019,  # OTHERS          subtype 0x019 (end of frame) -> ignored
    0x7003,  # CONTINUED_4     -> ignored
    0xF123,  # CONTINUED_12    -> ignored
    0x1234,  # code 0x1: not an EVT 3.0 type -> unknown word
    0x3A7E,  # VECT_BASE_X     x=0x27E=638 pol=1
    0x500F,  # VECT_8          mask 1111 -> x=638, 639 kept; 640, 641 outside width 640
    0x0FFF,  # EVT_ADDR_Y      y=0x7FF=2047 -> outside height 480
    0x2001,  # EVT_ADDR_X      x=1 -> dropped (y out of range)
    0x0003,  # EVT_ADDR_Y      y=3
    0x6FFF,  # EVT_TIME_LOW    0xFFF
    0x8FFF,  # EVT_TIME_HIGH   0xFFF -> t = 0xFFFFFF
    0x2801,  # EVT_ADDR_X      x=1 pol=1 -> (1, 3, 0xFFFFFF, 1)
    0x8000,  # EVT_TIME_HIGH   0x000 < 0xFFF: 24-bit wrap -> t = 1<<24 | 0x000FFF
    0x2002,  # EVT_ADDR_X      x=2 pol=0 -> (2, 3, (1<<24) + 0xFFF, 0)
    0x6002,  # EVT_TIME_LOW    2 -> t = (1<<24) + 2
    0x8005,  # EVT_TIME_HIGH   5 -> t = (1<<24) + 0x5002
    0x8003,  # EVT_TIME_HIGH   3: back by 2 only, not a wrap -> t = (1<<24) + 0x3002
    0x2003,  # EVT_ADDR_X      x=3 pol=0 -> (3, 3, (1<<24) + 0x3002, 0)
]
T0 = 0x123456
EVT3_EXPECTED = [
    (5, 7, T0, 1),
    (10, 9, T0, 0), (12, 9, T0, 0), (21, 9, T0, 0), (22, 9, T0, 0), (29, 9, T0, 0),
    (30, 9, T0, 0),
    (638, 9, T0, 1), (639, 9, T0, 1),
    (1, 3, 0xFFFFFF, 1),
    (2, 3, (1 << 24) + 0xFFF, 0),
    (3, 3, (1 << 24) + 0x3002, 0),
]


def test_evt3_hand_built_stream_every_word_type():
    dec = EventDecoder("evt3", W, H)
    out = dec.decode(words16(EVT3_STREAM))
    assert out.dtype == EVENT_DTYPE
    assert rows(out) == EVT3_EXPECTED
    s = dec.stats
    assert (s.decoded, s.dropped_untimed, s.dropped_out_of_range) == (12, 1, 3)
    assert (s.unknown_words, s.time_rollovers, s.truncated_bytes) == (1, 1, 0)
    assert (s.packets, s.bytes) == (1, 2 * len(EVT3_STREAM))


def test_evt3_reference_agrees_with_hand_expectation():
    assert rows(decode_evt3_reference(words16(EVT3_STREAM), W, H)) == EVT3_EXPECTED


@pytest.mark.parametrize("cut", range(len(EVT3_STREAM) + 1))
def test_evt3_state_carries_across_packets(cut):
    dec = EventDecoder("evt3", W, H)
    first = dec.decode(words16(EVT3_STREAM[:cut]))
    second = dec.decode(words16(EVT3_STREAM[cut:]))
    assert rows(first) + rows(second) == EVT3_EXPECTED
    assert dec.stats.time_rollovers == 1 and dec.stats.packets == 2


def test_evt3_rollover_count_survives_packets_and_reset_forgets():
    dec = EventDecoder("evt3", W, H)
    for _ in range(3):  # three full turns of the 24-bit clock, one packet each
        dec.decode(words16([0x8800, 0x8FFF, 0x8000]))
    out = dec.decode(words16([0x6001, 0x0000, 0x2000]))
    assert out["t"].tolist() == [(3 << 24) + 1]
    dec.reset()
    assert dec.stats.decoded == 0
    assert dec.decode(words16([0x2000])).size == 0 and dec.stats.dropped_untimed == 1


def test_evt3_odd_trailing_byte_is_counted():
    dec = EventDecoder("evt3", W, H)
    out = dec.decode(words16([0x8000, 0x6001, 0x2003]) + b"\x07")
    assert rows(out) == [(3, 0, 1, 0)] and dec.stats.truncated_bytes == 1


# ---------------------------------------------------------------- EVT 3.0 round trips
def random_events(rng: np.random.Generator, n: int, w: int, h: int, t_max: int) -> np.ndarray:
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n),
                       np.sort(rng.integers(0, t_max, n)), rng.integers(0, 2, n))


def canonical(ev: np.ndarray) -> np.ndarray:
    """The order encode_evt3 writes: (t, y, p, x)."""
    return ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]


@pytest.mark.parametrize(("n", "t_max"), [(1, 10), (500, 50), (3000, 1 << 27), (2000, 1 << 40)])
def test_evt3_encode_decode_round_trip(n, t_max):
    rng = np.random.default_rng(n)
    ev = random_events(rng, n, 64, 32, t_max)  # a small sensor: many vectors and duplicates
    dec = EventDecoder("evt3", 64, 32)
    out = dec.decode(encode_evt3(ev))
    np.testing.assert_array_equal(out, canonical(ev))
    assert dec.stats.decoded == n and dec.stats.unknown_words == 0


def test_evt3_encoder_uses_vectors_for_dense_rows():
    x = np.arange(0, 600)
    ev = make_events(x, np.full(x.size, 5), np.full(x.size, 7), np.ones(x.size))
    stream = np.frombuffer(encode_evt3(ev), dtype="<u2")
    codes = set((stream >> 12).tolist())
    assert {0x3, 0x4} <= codes and 0x2 not in codes
    assert stream.size < x.size // 10
    np.testing.assert_array_equal(EventDecoder("evt3", W, H).decode(stream.tobytes()), ev)


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 1 << 26),
                          st.integers(0, 1)), max_size=60))
@FUZZ
def test_evt3_round_trip_property(items):
    ev = make_events(*zip(*items, strict=True)) if items else make_events([], [], [], [])
    out = EventDecoder("evt3", 41, 4).decode(encode_evt3(ev))
    np.testing.assert_array_equal(out, canonical(ev))


def test_evt3_packets_of_a_long_stream_continue_the_clock():
    """A live stream cut into 10 ms packets over 40 s (past two 24-bit wraps, 16.8 s each):
    each packet encoded after the last time of the one before decodes, with one decoder, to
    exactly the stream; restarting each packet at TIME_HIGH 0 instead counts false wraps."""
    rng = np.random.default_rng(3)
    ev = canonical(random_events(rng, 40_000, 64, 32, 40_000_000))
    edges = np.searchsorted(ev["t"], np.arange(0, 40_000_001, 10_000))
    packets = [ev[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    dec, fresh, last, got, wrong = (EventDecoder("evt3", 64, 32), EventDecoder("evt3", 64, 32),
                                    0, [], [])
    for pk in packets:
        got.append(dec.decode(encode_evt3(pk, last)))
        wrong.append(fresh.decode(encode_evt3(pk)))
        last = int(pk["t"][-1])
    np.testing.assert_array_equal(np.concatenate(got), ev)
    assert not np.array_equal(np.concatenate(wrong)["t"], ev["t"])
    with pytest.raises(ValueError, match="after_us"):
        encode_evt3(packets[1], int(packets[1]["t"][0]) + 1)


def test_evt3_encoder_rejects_what_it_cannot_write():
    with pytest.raises(ValueError, match="11 bits"):
        encode_evt3(make_events([2048], [0], [0], [1]))
    with pytest.raises(ValueError, match="negative"):
        encode_evt3(make_events([0], [0], [-1], [1]))


# ---------------------------------------------------------------- mono, libcaer, libcaer_cmp
def test_mono_hand_built_words():
    # dt=1500 ns, x=3, y=4, ON; then dt=999 ns, x=639, y=479, OFF; then x=640 (outside).
    w = [1500 | 3 << 32 | 4 << 48 | 1 << 63, 999 | 639 << 32 | 479 << 48, 0 | 640 << 32]
    dec = EventDecoder("mono", W, H)
    out = dec.decode(np.asarray(w, dtype="<u8").tobytes(), time_base=1_000_000_500)
    assert rows(out) == [(3, 4, 1_000_002, 1), (639, 479, 1_000_001, 0)]
    assert (dec.stats.decoded, dec.stats.dropped_out_of_range) == (2, 1)


def test_libcaer_hand_built_events():
    def event(x: int, y: int, p: int, ts: int, valid: int = 1) -> list[int]:
        return [valid | p << 1 | y << 2 | x << 17, ts]  # uint32 data, int32 µs timestamp

    words = (event(3, 4, 1, 1000) + event(5, 6, 0, 1001, valid=0) + event(7, 8, 0, 2**31 - 1)
             + event(9, 10, 1, 5) + event(700, 0, 1, 6))
    dec = EventDecoder("libcaer", W, H)
    out = dec.decode(np.asarray(words, dtype="<u4").tobytes(), time_base=5_000_000_123)
    base = 5_000_000
    assert rows(out) == [(3, 4, base + 1000, 1), (7, 8, base + 2**31 - 1, 0),
                         (9, 10, base + 2**31 + 5, 1)]
    s = dec.stats
    assert (s.decoded, s.dropped_invalid, s.dropped_out_of_range, s.time_rollovers) == (3, 1, 1, 1)


def test_libcaer_cmp_hand_built_words():
    words = [
        0x0001,  # TIME_HIGH 1
        0x1002,  # TIME_LOW 2     -> dt = 0x1002 µs
        0x2005,  # ADDR_X x=5
        0x3803,  # ADDR_Y y=3 pol=1 -> (5, 3)
        0x4808,  # VECT_BASE_Y y=8 pol=1
        0x5081,  # VECT_8 mask 1000_0001 -> y=8, 15; base y -> 16
        0x5002,  # VECT_8 mask 10 -> y=17
        0x9000,  # code 9: unknown
        0x2300,  # ADDR_X x=0x300=768 -> outside width
        0x3004,  # ADDR_Y y=4 -> dropped
    ]
    dec = EventDecoder("libcaer_cmp", W, H)
    out = dec.decode(words16(words), time_base=2_000_000)
    t = 2000 + 0x1002
    assert rows(out) == [(5, 3, t, 1), (5, 8, t, 1), (5, 15, t, 1), (5, 17, t, 1)]
    assert (dec.stats.unknown_words, dec.stats.dropped_out_of_range) == (1, 1)


@pytest.mark.parametrize(("encoding", "encode", "tb"), [
    ("mono", encode_mono, 123_456_789_000), ("libcaer", encode_libcaer, 1_700_000_000_000_001),
    ("libcaer_cmp", encode_libcaer_cmp, 42_000_999)])
def test_round_trip(encoding, encode, tb):
    rng = np.random.default_rng(7)
    ev = random_events(rng, 2000, W, H, 4_000_000)  # 4 s: fits mono's 32-bit ns offsets
    ev["t"] += tb // 1000
    dec = EventDecoder(encoding, W, H)
    np.testing.assert_array_equal(dec.decode(encode(ev, tb), time_base=tb), ev)
    assert dec.stats.decoded == ev.size


@pytest.mark.parametrize("as_type", ["bytes", "bytearray", "memoryview", "array", "u8", "u16",
                                     "unaligned"])
def test_payload_types_decode_alike(as_type):
    raw = words16(EVT3_STREAM)
    payload = {
        "bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(raw),
        "array": array.array("B", raw), "u8": np.frombuffer(raw, np.uint8),
        "u16": np.frombuffer(raw, "<u2"),
        "unaligned": memoryview(b"\x00" + raw)[1:],  # odd address: copied before numba
    }[as_type]
    assert rows(EventDecoder("evt3", W, H).decode(payload)) == EVT3_EXPECTED


# ---------------------------------------------------------------- construction errors
def test_unknown_encoding_is_a_clear_error():
    with pytest.raises(ValueError, match="supported: evt3, mono, libcaer, libcaer_cmp"):
        EventDecoder("evt2", W, H)
    assert set(SUPPORTED_ENCODINGS) == {"evt3", "mono", "libcaer", "libcaer_cmp"}


@pytest.mark.parametrize(("w", "h"), [(0, 10), (10, -1), (70000, 1), (1.5, 2), (True, 3)])
def test_bad_geometry(w, h):
    with pytest.raises(ValueError, match="must be an int"):
        EventDecoder("mono", w, h)


def test_bad_payload_and_time_base():
    dec = EventDecoder("mono", W, H)
    with pytest.raises(EventFormatError, match="bytes-like"):
        dec.decode([1, 2, 3])
    with pytest.raises(EventFormatError, match="time_base"):
        dec.decode(b"", time_base=-1)


# ---------------------------------------------------------------- fuzzing
def evt3_cd_events(raw: bytes) -> int:
    """CD events a stream announces: ADDR_X words plus the set bits of the vectors."""
    w = np.frombuffer(raw[: len(raw) // 2 * 2], "<u2").astype(np.int64)
    code = w >> 12
    bits = lambda m: sum(((m >> k) & 1).sum() for k in range(12))  # noqa: E731
    return int((code == 2).sum() + bits(w[code == 4] & 0xFFF) + bits(w[code == 5] & 0xFF))


def check_output(out: np.ndarray, dec: EventDecoder, total: int) -> None:
    assert out.dtype == EVENT_DTYPE
    assert (out["x"] < dec.width).all() and (out["y"] < dec.height).all()
    assert set(out["p"].tolist()) <= {0, 1}
    assert dec.stats.decoded == total


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4),
       st.integers(1, 2048), st.integers(1, 2048))
@FUZZ
def test_evt3_random_bytes_never_raise(chunks, w, h):
    dec = EventDecoder("evt3", w, h)
    outs = [dec.decode(c) for c in chunks]
    check_output(np.concatenate(outs), dec, sum(o.size for o in outs))
    s = dec.stats
    assert s.truncated_bytes == sum(len(c) % 2 for c in chunks)
    assert s.decoded + s.dropped_out_of_range + s.dropped_untimed == sum(
        evt3_cd_events(c) for c in chunks)
    if len(chunks) == 1:  # one packet: the slow reference decoder must agree exactly
        np.testing.assert_array_equal(outs[0], decode_evt3_reference(chunks[0], w, h))


@given(st.lists(st.integers(0, 0xFFFF), max_size=200), st.integers(1, 700))
@FUZZ
def test_evt3_random_words_match_reference(ws, w):
    # Random words hit CD and vector codes far more often than random bytes of odd length.
    raw = words16(ws)
    np.testing.assert_array_equal(EventDecoder("evt3", w, 300).decode(raw),
                                  decode_evt3_reference(raw, w, 300))


@pytest.mark.parametrize(("encoding", "unit"), [("mono", 8), ("libcaer", 8), ("libcaer_cmp", 2)])
@given(data=st.binary(max_size=400), tb=st.integers(0, 2**62))
@FUZZ
def test_other_decoders_random_bytes_never_raise(encoding, unit, data, tb):
    dec = EventDecoder(encoding, 320, 240)
    out = dec.decode(data, time_base=tb)
    check_output(out, dec, out.size)
    s = dec.stats
    assert s.truncated_bytes == len(data) % unit
    if encoding == "mono":
        assert s.decoded + s.dropped_out_of_range == len(data) // 8
    elif encoding == "libcaer":
        assert s.decoded + s.dropped_out_of_range + s.dropped_invalid == len(data) // 8
    else:
        w = np.frombuffer(data[: len(data) // 2 * 2], "<u2").astype(np.int64)
        announced = (w >> 12 == 3).sum() + sum(((w[w >> 12 == 5] >> k) & 1).sum()
                                               for k in range(8))
        assert s.decoded + s.dropped_out_of_range == announced


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_truncated_valid_payload_decodes_a_prefix(encoding):
    rng = np.random.default_rng(3)
    ev = canonical(random_events(rng, 300, W, H, 1_000_000))
    raw = {"evt3": lambda: encode_evt3(ev), "mono": lambda: encode_mono(ev),
           "libcaer": lambda: encode_libcaer(ev), "libcaer_cmp": lambda: encode_libcaer_cmp(ev)
           }[encoding]()
    for cut in (1, 7, len(raw) // 3, len(raw) - 1):
        out = EventDecoder(encoding, W, H).decode(raw[:cut])
        np.testing.assert_array_equal(out, ev[: out.size])


def test_libcaer_cmp_allocates_only_what_it_decodes():
    """A hostile packet of VECT_8 words (8 events a 2-byte word) outside the sensor, and one
    of time words only: the decoder's peak memory stays near the payload, not 52x it."""
    import tracemalloc

    from taaf_ros.events.libcaer import CMP_ADDR_X, CMP_TIME_LOW, CMP_VECT_8

    n = 50_000
    outside = np.empty(n, "<u2")
    outside[0] = (CMP_ADDR_X << 12) | 2000  # x beyond a 346-wide sensor
    outside[1:] = (CMP_VECT_8 << 12) | 0xFF
    times = np.full(n, (CMP_TIME_LOW << 12) | 5, "<u2")
    dec = EventDecoder("libcaer_cmp", 346, 260)
    dec.decode(times.tobytes())  # compile outside the measurement
    for payload in (outside, times):
        tracemalloc.start()
        ev = dec.decode(payload.tobytes())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(ev) == 0 and peak < 3 * payload.nbytes, peak
    assert dec.stats.dropped_out_of_range == 8 * (n - 1)
