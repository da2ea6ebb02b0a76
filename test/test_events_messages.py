"""Event message converters: PointCloud2 with real sensor_msgs, dvs_msgs-like EventArrays."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from taaf_ros.events.decoder import EventFormatError
from taaf_ros.events.messages import (
    events_from_dvs_event_array,
    events_from_pointcloud2,
    events_to_pointcloud2,
)
from taaf_ros.events.types import EVENT_DTYPE, make_events

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
PointCloud2, PointField = sensor_msgs.PointCloud2, sensor_msgs.PointField


@pytest.fixture
def events() -> np.ndarray:
    rng = np.random.default_rng(0)
    n = 1000
    # Times since the epoch in µs, and one negative time: the two halves must carry the sign.
    t = np.sort(rng.integers(1_700_000_000_000_000, 1_700_000_010_000_000, n))
    t[0] = -5
    return make_events(rng.integers(0, 65536, n), rng.integers(0, 65536, n), t,
                       rng.integers(0, 2, n))


@pytest.mark.parametrize("unit", ["us", "ns"])
def test_pointcloud2_round_trip(events, unit):
    from builtin_interfaces.msg import Time

    msg = events_to_pointcloud2(events, frame_id="dvs", stamp=Time(sec=3, nanosec=4),
                                time_unit=unit)
    assert isinstance(msg, PointCloud2)
    assert [f.name for f in msg.fields] == ["x", "y", "p", f"t_{unit}_lo", f"t_{unit}_hi"]
    assert (msg.width, msg.height, msg.header.frame_id, msg.header.stamp.sec) == (1000, 1, "dvs", 3)
    assert len(msg.data) == msg.row_step == 16 * 1000
    # Serialize and back, as on the wire: data comes back as array.array('B').
    from rclpy.serialization import deserialize_message, serialize_message

    wire = deserialize_message(serialize_message(msg), PointCloud2)
    out = events_from_pointcloud2(wire)
    assert out.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(out, events)


def test_pointcloud2_ns_values_on_the_wire(events):
    msg = events_to_pointcloud2(events[1:3], time_unit="ns")
    raw = np.frombuffer(msg.data, dtype="<i8").reshape(-1, 2)[:, 1]
    assert raw.tolist() == (events["t"][1:3] * 1000).tolist()


def test_pointcloud2_empty():
    msg = events_to_pointcloud2(make_events([], [], [], []))
    assert msg.width == 0 and events_from_pointcloud2(msg).size == 0


def cloud(fields: list[tuple[str, int, int]], point_step: int, data: bytes, width: int,
          height: int = 1, row_step: int | None = None, bigendian: bool = False) -> PointCloud2:
    msg = PointCloud2()
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    msg.point_step, msg.width, msg.height = point_step, width, height
    msg.row_step = point_step * width if row_step is None else row_step
    msg.is_bigendian = bigendian
    msg.data = data
    return msg


def test_pointcloud2_single_int64_field_and_bare_t():
    # What a newer distro (PointField.INT64 = 9) or another publisher might send.
    rec = np.array([(1, 2, 1, 10_000_999), (3, 4, 0, 20_000_000)],
                   dtype=[("x", "<u2"), ("y", "<u2"), ("p", "u1"), ("t", "<i8")])
    fields = [("x", 0, 4), ("y", 2, 4), ("p", 4, 2)]
    out = events_from_pointcloud2(cloud(fields + [("t_ns", 5, 9)], 13, rec.tobytes(), 2))
    assert out["t"].tolist() == [10_000, 20_000] and out["x"].tolist() == [1, 3]
    bare = cloud(fields + [("t", 5, 9)], 13, rec.tobytes(), 2)
    with pytest.raises(EventFormatError, match="time_unit"):
        events_from_pointcloud2(bare)
    assert events_from_pointcloud2(bare, time_unit="us")["t"].tolist() == [10_000_999, 20_000_000]
    with pytest.raises(EventFormatError, match="caller said"):
        events_from_pointcloud2(cloud(fields + [("t_ns", 5, 9)], 13, rec.tobytes(), 2), "us")


def test_pointcloud2_big_endian_and_padded_rows():
    rec = np.array([(7, 8, 1, 123), (9, 10, 0, 456)],
                   dtype=[("x", ">u2"), ("y", ">u2"), ("p", "u1"), ("t", ">i8")])
    rows = rec.tobytes()[:13] + b"\xff" * 3 + rec.tobytes()[13:] + b"\xff" * 3
    fields = [("x", 0, 4), ("y", 2, 4), ("p", 4, 2), ("t_us", 5, 9)]
    out = events_from_pointcloud2(cloud(fields, 13, rows, 1, height=2, row_step=16,
                                        bigendian=True))
    assert [tuple(r) for r in out.tolist()] == [(7, 8, 123, 1), (9, 10, 456, 0)]


GOOD = [("x", 0, 4), ("y", 2, 4), ("p", 4, 2), ("t_us_lo", 8, 6), ("t_us_hi", 12, 5)]


@pytest.mark.parametrize(("fields", "size", "width", "kw", "match"), [
    (GOOD[1:], 32, 2, {}, "lacks event fields"),
    (GOOD[:3], 32, 2, {}, "no time field"),
    ([("x", 0, 7)] + GOOD[1:], 32, 2, {}, "unsupported datatype"),
    (GOOD[:3] + [("t_us_lo", 8, 5), GOOD[4]], 32, 2, {}, "unsupported datatype"),
    (GOOD, 33, 2, {}, "needs row_step"),  # not a multiple of point_step
    (GOOD, 32, 2**32 - 1, {"height": 2**32 - 1}, "needs row_step"),  # width x height lie
    (GOOD, 32, 2, {"row_step": 8}, "needs row_step"),
    ([("x", 0, 4), ("y", 15, 4)] + GOOD[2:], 32, 2, {}, "outside point_step"),
])
def test_bad_clouds_raise_format_errors(fields, size, width, kw, match):
    msg = cloud(fields, 16, bytes(size), width, **kw)
    with pytest.raises(EventFormatError, match=match):
        events_from_pointcloud2(msg)


def test_bad_cloud_field_count_and_coordinates():
    msg = cloud(GOOD, 16, bytes(32), 2)
    msg.fields[0].count = 2
    with pytest.raises(EventFormatError, match="count 1"):
        events_from_pointcloud2(msg)
    rec = np.zeros(1, dtype=[("x", "<i4"), ("y", "<u2"), ("p", "u1"), ("pad", "u1"),
                             ("t", "<i8")])
    rec["x"] = -1
    fields = [("x", 0, 5), ("y", 4, 4), ("p", 6, 2), ("t_us", 8, 8)]
    with pytest.raises(EventFormatError, match="outside"):
        events_from_pointcloud2(cloud(fields, 16, rec.tobytes(), 1))
    with pytest.raises(EventFormatError, match="not a PointCloud2"):
        events_from_pointcloud2(SimpleNamespace(width=1))


def dvs_event(x: int, y: int, sec: int, nsec: int, pol: bool) -> SimpleNamespace:
    return SimpleNamespace(x=x, y=y, ts=SimpleNamespace(sec=sec, nanosec=nsec), polarity=pol)


def test_dvs_event_array():
    msg = SimpleNamespace(width=240, height=180, events=[
        dvs_event(1, 2, 10, 999, True), dvs_event(239, 179, 11, 5_000_000, False)])
    out = events_from_dvs_event_array(msg)
    assert [tuple(r) for r in out.tolist()] == [(1, 2, 10_000_000, 1), (239, 179, 11_005_000, 0)]
    assert events_from_dvs_event_array(SimpleNamespace(events=[])).size == 0
    with pytest.raises(EventFormatError, match="EventArray"):
        events_from_dvs_event_array(SimpleNamespace(events=[SimpleNamespace(x=1)]))
    with pytest.raises(EventFormatError, match="65535"):
        events_from_dvs_event_array(SimpleNamespace(events=[dvs_event(-1, 0, 0, 0, True)]))


def test_module_import_pulls_in_no_message_package():
    code = ("import sys, taaf_ros.events.messages, taaf_ros.events.decoder; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('sensor_msgs', 'rclpy', 'dvs_msgs', 'event_camera_msgs')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))
