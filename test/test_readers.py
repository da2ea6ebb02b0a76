"""Event-file readers (N-MNIST .bin, .npy, HDF5) and the EAD-layout dataset."""

import json

import numpy as np
import pytest

from taaf_ros.data.readers import (
    EadDataset,
    EventFileError,
    decode_nmnist_bin,
    encode_nmnist_bin,
    read_events,
    read_h5_events,
    read_nmnist_bin,
    read_npy_events,
    write_nmnist_bin,
)
from taaf_ros.events.types import EVENT_DTYPE, make_events


def _events(n: int = 500, t_max: int = 300_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n),
                       np.sort(rng.integers(0, t_max, n)), rng.integers(0, 2, n))


def test_nmnist_bin_round_trip(tmp_path):
    ev = _events()
    write_nmnist_bin(tmp_path / "a.bin", ev)
    assert (tmp_path / "a.bin").stat().st_size == 5 * len(ev)
    back = read_nmnist_bin(tmp_path / "a.bin")
    assert back.dtype == EVENT_DTYPE and np.array_equal(back, ev)


def test_nmnist_bin_known_bytes():
    # x=3, y=7, ON, t = 0x012345 = 74565 µs: bytes 03 07 81 23 45 (p in bit 7 of byte 2).
    ev = decode_nmnist_bin(bytes([3, 7, 0x81, 0x23, 0x45, 33, 0, 0x00, 0x00, 0x01]))
    assert ev.tolist() == [(3, 7, 74565, 1), (33, 0, 1, 0)]


def test_nmnist_bin_timestamp_wrap_round_trip():
    ev = make_events([1, 2, 3], [1, 2, 3], [5, (1 << 23) + 7, (3 << 23) + 1], [1, 0, 1])
    raw = encode_nmnist_bin(ev)
    assert len(raw) == 5 * (3 + 3)  # three overflow markers
    assert np.array_equal(decode_nmnist_bin(raw), ev)


def test_nmnist_bin_corrupt_length_is_a_value_error(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(EventFileError, match="5-byte"):
        read_nmnist_bin(tmp_path / "bad.bin")
    assert issubclass(EventFileError, ValueError)


def test_nmnist_bin_writer_refuses_out_of_range():
    with pytest.raises(ValueError):
        encode_nmnist_bin(make_events([300], [0], [0], [1]))
    with pytest.raises(ValueError):
        encode_nmnist_bin(make_events([0, 0], [0, 0], [10, 5], [1, 1]))


def test_npy_round_trip_and_foreign_dtypes(tmp_path):
    ev = _events()
    np.save(tmp_path / "a.npy", ev)
    assert np.array_equal(read_npy_events(tmp_path / "a.npy"), ev)
    # tonic's dtype: int16 x/y, bool p.
    foreign = np.zeros(len(ev), [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    for k in "xyt":
        foreign[k] = ev[k]
    foreign["p"] = ev["p"].astype(bool)
    np.save(tmp_path / "b.npy", foreign)
    assert np.array_equal(read_events(tmp_path / "b.npy"), ev)
    cols = np.stack([ev[k].astype(np.int64) for k in "xytp"], axis=1)
    np.save(tmp_path / "c.npy", cols)
    assert np.array_equal(read_npy_events(tmp_path / "c.npy"), ev)


def test_npy_errors(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    with pytest.raises(EventFileError):
        read_npy_events(tmp_path / "junk.npy")
    np.save(tmp_path / "nofield.npy", np.zeros(3, [("x", "u2"), ("y", "u2")]))
    with pytest.raises(EventFileError, match="missing"):
        read_npy_events(tmp_path / "nofield.npy")
    np.save(tmp_path / "neg.npy", np.array([[-1, 0, 0, 1]]))
    with pytest.raises(EventFileError, match="range"):
        read_npy_events(tmp_path / "neg.npy")


def test_h5_separate_datasets_and_compound(tmp_path):
    h5py = pytest.importorskip("h5py")
    ev = _events()
    with h5py.File(tmp_path / "a.h5", "w") as f:
        g = f.create_group("events")
        for k in "xytp":
            g[k] = ev[k]
    assert np.array_equal(read_events(tmp_path / "a.h5"), ev)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["events"] = ev
    assert np.array_equal(read_h5_events(tmp_path / "b.h5"), ev)
    with h5py.File(tmp_path / "c.hdf5", "w") as f:
        f["something"] = np.arange(3)
    with pytest.raises(EventFileError):
        read_events(tmp_path / "c.hdf5")
    (tmp_path / "d.h5").write_bytes(b"garbage")
    with pytest.raises(EventFileError):
        read_h5_events(tmp_path / "d.h5")


def test_unknown_suffix(tmp_path):
    with pytest.raises(EventFileError, match="unknown"):
        read_events(tmp_path / "x.txt")


def _write_wav(path, pcm16, rate=8000):
    from scipy.io import wavfile

    wavfile.write(path, rate, pcm16.astype(np.int16))


def test_ead_dataset_lists_and_loads_samples(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"classes": ["a", "b", "c"],
                                                    "sensor_size": [34, 34]}))
    for cls, sid in (("c", "s1"), ("a", "s0"), ("a", "s2")):
        d = tmp_path / "train" / cls
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{sid}.events.npy", _events(10, seed=len(sid)))
        _write_wav(d / f"{sid}.wav", np.array([0, 16384, -32768, 32767]))
    np.save(tmp_path / "train" / "a" / "orphan.events.npy", _events(3))  # no wav: not listed
    ds = EadDataset(tmp_path, "train")
    assert len(ds) == 3 and ds.sensor_size == (34, 34)
    assert [s[3] for s in ds.samples] == ["s0", "s2", "s1"]
    events, pcm, rate, label, sid, repaired = ds[2]
    assert (label, sid, rate, repaired) == (2, "s1", 8000, 0)
    assert events.dtype == EVENT_DTYPE and pcm.dtype == np.float32
    np.testing.assert_allclose(pcm, [0, 0.5, -1, 32767 / 32768])


def test_ead_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        EadDataset(tmp_path, "test")
    (tmp_path / "meta.json").write_text(json.dumps({"classes": ["a"]}))
    (tmp_path / "test" / "zzz").mkdir(parents=True)
    with pytest.raises(ValueError, match="zzz"):
        EadDataset(tmp_path, "test")


# ---------------------------------------------------------------- AEDAT4
def test_aedat4_written_by_faery_reads_back_exactly(tmp_path, event_bags):
    """Real events (the evt3 bag's, 1280x720) written to AEDAT4 by faery, another
    implementation of the format, and read back by read_aedat4 (the aedat library)."""
    faery = pytest.importorskip("faery")
    pytest.importorskip("aedat")
    from taaf_ros.data.bags import events_from_bag
    from taaf_ros.data.readers import read_aedat4

    ev, size = events_from_bag(event_bags / "test_data_evt3_trigger")
    ev = ev[:200_000]
    ev["t"] += 1_700_000_000_000_000  # AEDAT4 stamps are µs since the Unix epoch
    out = np.zeros(len(ev), dtype=faery.EVENTS_DTYPE)
    out["t"], out["x"], out["y"], out["on"] = ev["t"], ev["x"], ev["y"], ev["p"] > 0
    path = tmp_path / "bag.aedat4"
    faery.events_stream_from_array(out, size).to_file(str(path))
    got, got_size = read_aedat4(path)
    assert got_size == size == (1280, 720)
    np.testing.assert_array_equal(got, ev)
    np.testing.assert_array_equal(read_events(path), ev)


def test_aedat4_corrupt_or_missing_stream_is_a_clear_error(tmp_path):
    faery = pytest.importorskip("faery")
    pytest.importorskip("aedat")
    from taaf_ros.data.readers import EventFileError, read_aedat4

    ev = np.zeros(1000, dtype=faery.EVENTS_DTYPE)
    ev["t"] = np.arange(1000) * 10
    path = tmp_path / "a.aedat4"
    faery.events_stream_from_array(ev, (34, 34)).to_file(str(path))
    with pytest.raises(EventFileError, match="no event stream 7"):
        read_aedat4(path, stream_id=7)
    data = path.read_bytes()
    for bad in (data[: len(data) // 2], b"#!AER-DAT4.0\r\n" + b"\xff" * 100, b"junk"):
        (tmp_path / "bad.aedat4").write_bytes(bad)
        with pytest.raises(EventFileError):
            read_aedat4(tmp_path / "bad.aedat4")
