"""Event messages <-> EVENT_DTYPE arrays. Duck-typed: no message package is imported here at
module import (``sensor_msgs`` only inside :func:`events_to_pointcloud2`).

PointCloud2 layout written here (one point per event, little-endian, point_step 16)::

    offset  field       PointField type   meaning
    0       x           UINT16
    2       y           UINT16
    4       p           UINT8             1 = ON
    8       t_us_lo     UINT32            low 32 bits of t   (t_ns_lo with time_unit="ns")
    12      t_us_hi     INT32             high 32 bits of t, two's complement

Kilted's PointField has no 64-bit integer type, and FLOAT64 would round nanosecond stamps
since the epoch, so t is split into two 32-bit fields whose names state the unit; together
they are exactly one little-endian int64 at offset 8. The reader also accepts one field ``t_us``
or ``t_ns`` (INT64 = 9 / UINT64 = 10 of newer distros, INT32, UINT32 or FLOAT64), and a field
``t`` when the caller states its unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taaf_ros.events.decoder import EventFormatError, payload_to_uint8
from taaf_ros.events.types import EVENT_DTYPE, empty_events

# PointField datatype constants (sensor_msgs/msg/PointField); 9 and 10 only in newer distros.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64, INT64, UINT64 = range(1, 11)
_NUMPY_TYPE = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4",
               FLOAT32: "f4", FLOAT64: "f8", INT64: "i8", UINT64: "u8"}
_INTEGER_TYPES = {INT8, UINT8, INT16, UINT16, INT32, UINT32, INT64, UINT64}
_US_PER = {"us": 1, "ns": 1000}
POINT_STEP = 16


def _time_us(stamp: Any) -> int:
    """builtin_interfaces/Time (sec, nanosec) or ROS 1 style (secs, nsecs) -> µs."""
    sec = getattr(stamp, "sec", None)
    nsec = getattr(stamp, "nanosec", None)
    if sec is None:
        sec, nsec = getattr(stamp, "secs", 0), getattr(stamp, "nsecs", 0)
    return int(sec) * 1_000_000 + int(nsec) // 1000


def events_from_dvs_event_array(msg: Any) -> np.ndarray:
    """dvs_msgs/EventArray -> events; t = ts in µs (floor), p = polarity. Nothing is filtered."""
    items = msg.events
    n = len(items)
    out = empty_events(n)
    if n == 0:
        return out
    try:
        x = np.fromiter((e.x for e in items), dtype=np.int64, count=n)
        y = np.fromiter((e.y for e in items), dtype=np.int64, count=n)
        t = np.fromiter((_time_us(e.ts) for e in items), dtype=np.int64, count=n)
        p = np.fromiter((bool(e.polarity) for e in items), dtype=np.uint8, count=n)
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        raise EventFormatError(f"not a dvs_msgs/EventArray event list: {exc}") from exc
    if min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 0xFFFF:
        raise EventFormatError("event coordinates must be in [0, 65535]")
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def events_to_pointcloud2(
    events: np.ndarray, frame_id: str = "", stamp: Any = None, time_unit: str = "us"
) -> Any:
    """events -> sensor_msgs/PointCloud2 (layout in the module docstring).

    ``time_unit`` "us" writes t as it is, "ns" writes t * 1000; the field names say which.
    ``stamp`` (builtin_interfaces/Time) goes into the header when given.
    """
    from sensor_msgs.msg import PointCloud2, PointField  # lazy: not needed to read clouds

    if time_unit not in _US_PER:
        raise ValueError(f"time_unit must be 'us' or 'ns', got {time_unit!r}")
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events must have dtype EVENT_DTYPE, got {events.dtype}")
    n = events.shape[0]
    rec = np.zeros(n, dtype=np.dtype({"names": ["x", "y", "p", "t"],
                                      "formats": ["<u2", "<u2", "u1", "<i8"],
                                      "offsets": [0, 2, 4, 8], "itemsize": POINT_STEP}))
    rec["x"], rec["y"], rec["p"] = events["x"], events["y"], events["p"]
    rec["t"] = events["t"] * _US_PER[time_unit]
    msg = PointCloud2()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.height, msg.width = 1, n
    msg.fields = [
        PointField(name="x", offset=0, datatype=UINT16, count=1),
        PointField(name="y", offset=2, datatype=UINT16, count=1),
        PointField(name="p", offset=4, datatype=UINT8, count=1),
        PointField(name=f"t_{time_unit}_lo", offset=8, datatype=UINT32, count=1),
        PointField(name=f"t_{time_unit}_hi", offset=12, datatype=INT32, count=1),
    ]
    msg.is_bigendian = False
    msg.point_step = POINT_STEP
    msg.row_step = POINT_STEP * n
    msg.is_dense = True
    msg.data = rec.tobytes()  # bytes: assigning an ndarray converts element by element
    return msg


def _field_reader(fields: dict[str, Any], name: str, point_step: int, order: str,
                  allowed: set[int]):
    f = fields[name]
    datatype, offset, count = int(f.datatype), int(f.offset), int(f.count)
    if datatype not in allowed:
        raise EventFormatError(f"field {name!r} has unsupported datatype {datatype}")
    if count != 1:
        raise EventFormatError(f"field {name!r} must have count 1, got {count}")
    dt = np.dtype(order + _NUMPY_TYPE[datatype])
    if offset < 0 or offset + dt.itemsize > point_step:
        raise EventFormatError(f"field {name!r} (offset {offset}) lies outside point_step "
                               f"{point_step}")
    # A one-field record view of the rows: reading it is one typed strided loop, where slicing
    # the bytes out and viewing them costs a byte-wise copy per point.
    rec = np.dtype({"names": ["v"], "formats": [dt], "offsets": [offset],
                    "itemsize": point_step})
    return lambda raw: raw.view(rec).reshape(-1)["v"]


def _time_field(names: set[str], time_unit: str | None) -> tuple[str, str, bool]:
    """Pick the time field(s): (base name, unit, split into _lo/_hi)."""
    for unit in ("us", "ns"):
        if {f"t_{unit}_lo", f"t_{unit}_hi"} <= names or f"t_{unit}" in names:
            if time_unit is not None and time_unit != unit:
                raise EventFormatError(f"cloud states time in {unit}, caller said {time_unit}")
            return f"t_{unit}", unit, f"t_{unit}" not in names
    if "t" in names:
        if time_unit is None:
            raise EventFormatError("field 't' does not state its unit: pass time_unit")
        return "t", time_unit, False
    raise EventFormatError(f"no time field (t_us_lo/t_us_hi, t_us, t_ns, t) among {sorted(names)}")


def events_from_pointcloud2(msg: Any, time_unit: str | None = None) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> events (t in µs; ns stamps are floored to µs).

    ``time_unit`` ("us" or "ns") is needed only for a bare ``t`` field. Raises
    :class:`EventFormatError` for missing or mistyped fields and inconsistent sizes.
    """
    if time_unit is not None and time_unit not in _US_PER:
        raise ValueError(f"time_unit must be 'us' or 'ns', got {time_unit!r}")
    try:
        width, height = int(msg.width), int(msg.height)
        point_step, row_step = int(msg.point_step), int(msg.row_step)
        fields = {str(f.name): f for f in msg.fields}
        data = payload_to_uint8(msg.data)
        order = ">" if msg.is_bigendian else "<"
    except (AttributeError, TypeError, ValueError) as exc:
        raise EventFormatError(f"not a PointCloud2: {exc}") from exc
    missing = {"x", "y", "p"} - fields.keys()
    if missing:
        raise EventFormatError(f"PointCloud2 lacks event fields {sorted(missing)}")
    tname, unit, split = _time_field(set(fields), time_unit)
    if width < 0 or height < 0 or point_step <= 0:
        raise EventFormatError(f"bad cloud geometry: width {width}, height {height}, "
                               f"point_step {point_step}")
    # Check sizes before touching the data, so that a lying width x height fails here.
    if row_step < width * point_step or data.shape[0] != row_step * height:
        raise EventFormatError(
            f"data has {data.shape[0]} bytes; width {width} x height {height} with point_step "
            f"{point_step} and row_step {row_step} needs row_step >= width * point_step and "
            f"exactly row_step * height bytes")
    raw = data.reshape(height, row_step)[:, :width * point_step].reshape(-1, point_step)
    read_x = _field_reader(fields, "x", point_step, order, _INTEGER_TYPES)
    read_y = _field_reader(fields, "y", point_step, order, _INTEGER_TYPES)
    read_p = _field_reader(fields, "p", point_step, order, _INTEGER_TYPES)
    if split:
        lo = _field_reader(fields, tname + "_lo", point_step, order, {UINT32})(raw)
        hi = _field_reader(fields, tname + "_hi", point_step, order, {INT32, UINT32})(raw)
        t = (hi.astype(np.int64) << 32) | lo.astype(np.int64)
    else:
        tv = _field_reader(fields, tname, point_step, order,
                           _INTEGER_TYPES | {FLOAT64})(raw)
        if tv.dtype.kind == "f" and not np.isfinite(tv).all():
            raise EventFormatError(f"field {tname!r} holds non-finite times")
        if tv.dtype.kind == "u" and tv.size and int(tv.max()) > np.iinfo(np.int64).max:
            raise EventFormatError(f"field {tname!r} holds times beyond int64")
        t = np.floor(tv).astype(np.int64) if tv.dtype.kind == "f" else tv.astype(np.int64)
    x, y = read_x(raw), read_y(raw)
    for name, v in (("x", x), ("y", y)):
        if v.size and (int(v.min()) < 0 or int(v.max()) > 0xFFFF):
            raise EventFormatError(f"field {name!r} has values outside [0, 65535]")
    out = empty_events(x.shape[0])
    out["x"], out["y"] = x, y
    out["p"] = read_p(raw) != 0
    out["t"] = t // _US_PER[unit]
    return out
