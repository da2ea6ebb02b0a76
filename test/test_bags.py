"""The bag reader on the real event-camera recordings: the maintainers' published checksums,
continuous sensor time, the mcap quirks, and clear refusals."""

from pathlib import Path

import numpy as np
import pytest

from taaf_ros.data.bags import BagError, bag_topics, events_from_bag, read_bag, read_bag_events

# ../shared/data/event_bags/README.md: sums over all CD events, t in ns (time_base + decoded
# time; evt3: sensor time), modulo 2**64.
CHECKSUMS = {
    "test_data_evt3_trigger": (1222326831810000, 42078718, 31656267, 41439),
    "test_data_mono_cd": (4950000, 34450, 26450, 50),
    "test_data_libcaer_rollover": (15762826572202229126, 111651612, 82801007, 181908),
}


def _t_ns(chunk) -> int:
    """Sum of the events' times in ns. Our decoders give µs; mono and libcaer times are
    time_base + a µs offset, so the sub-µs part of time_base goes back in exactly."""
    t = int(chunk.events["t"].astype(object).sum()) * 1000
    if chunk.encoding in ("mono", "libcaer"):
        t += len(chunk.events) * (chunk.time_base_ns % 1000)
    return t


@pytest.mark.parametrize("name", sorted(CHECKSUMS))
def test_checksums_equal_the_maintainers(event_bags, name):
    st = sx = sy = sp = 0
    for chunk in read_bag_events(event_bags / name):
        ev = chunk.events
        st += _t_ns(chunk)
        sx, sy, sp = sx + int(ev["x"].sum()), sy + int(ev["y"].sum()), sp + int(ev["p"].sum())
    assert (st % 2**64, sx, sy, sp) == CHECKSUMS[name]


@pytest.mark.parametrize("name", [*sorted(CHECKSUMS), "test_events_2"])
def test_sensor_time_is_continuous_across_packets(event_bags, name):
    chunks = list(read_bag_events(event_bags / name))
    ev = np.concatenate([c.events for c in chunks])
    width, height = chunks[0].sensor_size
    assert len(ev) > 0 and np.all(np.diff(ev["t"]) >= 0)
    assert ev["x"].max() < width and ev["y"].max() < height
    # No jump between packets larger than the recording's own packet spacing allows.
    ends = [c.events["t"][-1] for c in chunks if len(c.events)]
    starts = [c.events["t"][0] for c in chunks if len(c.events)]
    assert max(b - a for a, b in zip(ends[:-1], starts[1:], strict=True)) < 100_000


def test_mcap_with_empty_storage_identifier_and_idl_schema(event_bags):
    bag = event_bags / "test_events_2"
    assert bag_topics(bag) == {"/event_camera/events": "event_camera_msgs/msg/EventPacket"}
    chunks = list(read_bag_events(bag))
    assert len(chunks) == 100
    assert {c.encoding for c in chunks} == {"libcaer_cmp"} and chunks[0].sensor_size == (346, 260)
    ev, size = events_from_bag(bag)
    assert size == (346, 260) and len(ev) == sum(len(c.events) for c in chunks) > 500_000
    # Real DAVIS346 data: both polarities, spread over the sensor, 1 s long.
    assert 0.2 < ev["p"].mean() < 0.8 and len(np.unique(ev["x"])) > 300
    assert 0.9e6 < ev["t"][-1] - ev["t"][0] < 1.1e6


def test_missing_and_unreadable_bags_are_refused(tmp_path: Path, event_bags):
    with pytest.raises(BagError, match="no bag"):
        list(read_bag(tmp_path / "absent"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metadata.yaml").write_text(
        "rosbag2_bagfile_information:\n  storage_identifier: ''\n"
        "  relative_file_paths: [a.mcap, b.mcap]\n")
    with pytest.raises(BagError, match="not exactly one"):
        list(read_bag(bad))
    (bad / "metadata.yaml").write_text(": not yaml [")
    with pytest.raises(BagError, match="metadata"):
        list(read_bag(bad))
    with pytest.raises(BagError, match="does not exist"):
        list(read_bag_events(tmp_path / "absent2"))


def _copy_bag(event_bags: Path, tmp_path: Path, name: str = "test_data_evt3_trigger") -> Path:
    import shutil

    dst = tmp_path / name
    shutil.copytree(event_bags / name, dst)
    return dst


def test_a_corrupt_payload_is_a_bag_error_naming_topic_and_time(event_bags, tmp_path):
    import sqlite3

    bag = _copy_bag(event_bags, tmp_path)
    db = next(bag.glob("*.db3"))
    with sqlite3.connect(db) as con:
        (tid, ts), = con.execute("SELECT id, timestamp FROM messages ORDER BY timestamp "
                                 "LIMIT 1 OFFSET 10").fetchall()
        con.execute("UPDATE messages SET data = substr(data, 1, 30) WHERE id = ?", (tid,))
    with pytest.raises(BagError, match=rf"/event_camera/events at log time {ts / 1e9:.6f} s"):
        events_from_bag(bag)


def test_a_db_type_that_disagrees_with_metadata_is_refused(event_bags, tmp_path):
    import sqlite3

    bag = _copy_bag(event_bags, tmp_path)
    with sqlite3.connect(next(bag.glob("*.db3"))) as con:
        con.execute("UPDATE topics SET type = 'sensor_msgs/msg/PointCloud2'")
    with pytest.raises(BagError, match="PointCloud2 in the db but .*EventPacket in metadata"):
        events_from_bag(bag)


def test_bag_play_exits_2_with_a_message_on_a_corrupt_bag(event_bags, tmp_path):
    import os
    import sqlite3
    import subprocess
    import sys

    pytest.importorskip("rclpy")
    bag = _copy_bag(event_bags, tmp_path)
    with sqlite3.connect(next(bag.glob("*.db3"))) as con:
        con.execute("UPDATE messages SET data = substr(data, 1, 30) WHERE id = "
                    "(SELECT id FROM messages ORDER BY timestamp LIMIT 1 OFFSET 3)")
    env = os.environ | {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    r = subprocess.run([sys.executable, "-m", "taaf_ros.apps.bag_play", str(bag),
                        "--pointcloud2", "--rate", "50", "--start-delay", "0"],
                       capture_output=True, text=True, timeout=120, env=env, check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "taaf_bag_play: error:" in r.stderr and "payload is corrupt" in r.stderr
    assert "Traceback" not in r.stderr


def test_aedat4_panic_becomes_an_event_file_error(tmp_path):
    pytest.importorskip("aedat")
    from taaf_ros.data.readers import EventFileError, read_events

    f = tmp_path / "bad.aedat4"
    f.write_bytes(b"#!AER-DAT4.0\r\n" + bytes(4))
    with pytest.raises(EventFileError, match="not a readable AEDAT4 file"):
        read_events(f)
