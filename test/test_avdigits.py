"""AV-digits builder: layout, meta.json, speaker/image disjointness, determinism; checksums."""

import csv
import gzip
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from taaf_ros.apps.build_avdigits import main
from taaf_ros.data.avdigits import BuildConfig, build_avdigits, find_fsdd, plan
from taaf_ros.data.download import ChecksumError, verify_checksum
from taaf_ros.data.mnist import IdxFormatError, load_mnist, read_idx
from taaf_ros.data.readers import EadDataset
from taaf_ros.events.types import EVENT_DTYPE


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def small_build(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("avd") / "a"
    assert main(["--fsdd", str(data_root / "fsdd" / "recordings"),
                 "--mnist", str(data_root / "mnist"), "--out-dir", str(out),
                 "--limit-per-class", "2", "--no-progress"]) == 0
    return out


def test_layout_and_meta(small_build):
    meta = json.loads((small_build / "meta.json").read_text())
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["sensor_size"] == [34, 34] and meta["audio_rate"] == 8000
    assert meta["seed"] == 0 and meta["emulator"]["theta_on"] == 0.2
    # two recordings per class and split; each training recording paired with three images
    assert meta["train_pairs"] == 3
    assert meta["counts"]["train"]["total"] == 60 and meta["counts"]["test"]["total"] == 20
    assert meta["speakers"]["test"] == ["theo"]
    assert "theo" not in meta["speakers"]["train"]
    assert "builder_version" in meta and "split_rule" in meta and "source" in meta
    for split in ("train", "test"):
        for cls in meta["classes"]:
            files = sorted((small_build / split / cls).iterdir())
            assert len(files) == {"train": 12, "test": 4}[split]  # events + wav per sample
            ev = np.load(files[0])
            assert ev.dtype == EVENT_DTYPE and len(ev) > 100
            assert np.all(np.diff(ev["t"]) >= 0) and ev["x"].max() < 34
            assert files[0].name.startswith(cls + "_")
    ds = EadDataset(small_build, "test")
    sample = ds[0]
    assert len(ds) == 20 and sample.sample_rate == 8000 and sample.pcm.size > 1000


def test_no_speaker_or_image_in_both_splits(small_build):
    with open(small_build / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 80
    by = {s: [r for r in rows if r["split"] == s] for s in ("train", "test")}
    assert not {r["speaker"] for r in by["train"]} & {r["speaker"] for r in by["test"]}
    assert not {r["mnist_index"] for r in by["train"]} & {r["mnist_index"] for r in by["test"]}
    assert len({r["mnist_index"] for r in rows}) == 80  # each image used once
    train_recordings = [r["fsdd_file"] for r in by["train"]]
    assert all(train_recordings.count(f) == 3 for f in train_recordings)


def test_pairs_have_matching_labels(small_build, data_root):
    _, labels = load_mnist(data_root / "mnist")
    with open(small_build / "manifest.csv") as f:
        for r in csv.DictReader(f):
            assert labels[int(r["mnist_index"])] == int(r["class"])
            assert r["fsdd_file"].startswith(r["class"] + "_")


def test_same_seed_gives_byte_identical_build(small_build, data_root, tmp_path):
    out = tmp_path / "b"
    build_avdigits(data_root / "fsdd" / "recordings", data_root / "mnist", out,
                   BuildConfig(limit_per_class=2), progress=False)
    assert _tree_bytes(out) == _tree_bytes(small_build)


def test_plan_is_disjoint_on_the_full_set(data_root):
    recs = find_fsdd(data_root / "fsdd" / "recordings")
    _, labels = load_mnist(data_root / "mnist")
    samples, reuses = plan(recs, labels, BuildConfig(seed=3, test_speakers=("lucas",)))
    assert len(samples) == 3 * 2000 + 500 and reuses == 0
    imgs = {s: {p.image_index for p in samples if p.split == s} for s in ("train", "test")}
    assert not imgs["train"] & imgs["test"]
    assert len(imgs["train"]) + len(imgs["test"]) == 6500
    single, _ = plan(recs, labels, BuildConfig(seed=3, test_speakers=("lucas",), train_pairs=1))
    assert len(single) == 2500
    assert {p.recording.speaker for p in samples if p.split == "test"} == {"lucas"}
    everything, _ = plan(recs, labels, BuildConfig(eval_only=True))
    assert {p.split for p in everything} == {"test"}
    with pytest.raises(ValueError, match="nobody"):
        plan(recs, labels, BuildConfig(test_speakers=("nobody",)))


@pytest.fixture
def synthetic_sources(tmp_path):
    """An FSDD-style folder (one corrupt WAV, a 16 kHz stereo WAV) and an uncompressed IDX pair."""
    from scipy.io import wavfile

    fsdd = tmp_path / "fsdd" / "nested"
    fsdd.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in range(2):
        for spk in ("ann", "bob"):
            for take in range(2):
                wavfile.write(fsdd / f"{d}_{spk}_{take}.wav", 8000,
                              rng.integers(-3000, 3000, 800).astype(np.int16))
    wavfile.write(fsdd / "1_bob_9.wav", 16000, rng.integers(-3000, 3000, (1600, 2))
                  .astype(np.int16))
    (fsdd / "0_ann_5.wav").write_bytes(b"RIFF garbage")
    (fsdd / "notes.wav").write_bytes(b"")  # not FSDD-named: ignored
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    images = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    labels = np.array([0, 1] * 6, np.uint8)
    (mnist / "x-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (mnist / "x-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    return tmp_path / "fsdd", mnist


def test_builder_on_any_folder_skips_bad_files_and_resamples(synthetic_sources, tmp_path):
    fsdd, mnist = synthetic_sources
    out = tmp_path / "out"
    meta = build_avdigits(fsdd, mnist, out, BuildConfig(test_speakers=("bob",), train_pairs=1),
                          progress=False)
    assert meta["skipped"] == {"count": 1, "files": ["0_ann_5.wav"]}
    assert meta["counts"]["train"]["total"] == 4 and meta["counts"]["test"]["total"] == 5
    ds = EadDataset(out, "test")
    resampled = [s for s in (ds[i] for i in range(len(ds))) if s.id.startswith("1_bob_9")]
    assert resampled[0].sample_rate == 8000 and resampled[0].pcm.size == 800
    with pytest.raises(FileExistsError):
        build_avdigits(fsdd, mnist, out, BuildConfig(test_speakers=("bob",)), progress=False)
    meta = build_avdigits(fsdd, mnist, out, BuildConfig(eval_only=True), progress=False,
                          overwrite=True)
    assert meta["counts"]["train"]["total"] == 0 and not (out / "train").exists()


def test_idx_reader_errors(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    (tmp_path / "short").write_bytes(_idx_bytes(arr)[:-1])
    with pytest.raises(IdxFormatError, match="payload"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(IdxFormatError, match="magic"):
        read_idx(tmp_path / "magic")


def test_checksum_verification_on_local_files(data_root, tmp_path):
    path = data_root / "mnist" / "labels-idx1-ubyte.gz"
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert verify_checksum(path, good) == good
    with pytest.raises(ChecksumError):
        verify_checksum(path, "0" * 64)
    # No published hash: the first run records it (with a warning), later runs check it.
    f = tmp_path / "archive.tar.gz"
    f.write_bytes(b"first download")
    with pytest.warns(UserWarning, match="trust on first use"):
        verify_checksum(f, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verify_checksum(f, None)
    f.write_bytes(b"tampered")
    with pytest.raises(ChecksumError):
        verify_checksum(f, None)


def test_concurrent_runs_build_the_cache_once(data_root, tmp_path):
    """Two training runs started together (two cores) share one AV-digits build: the second
    waits for the first's lock, then reuses its finished folder."""
    import subprocess
    import sys

    code = ("import sys; from taaf_ros.data.avdigits import ensure_ead_dataset; "
            f"print(ensure_ead_dataset({str(data_root)!r}, {str(tmp_path)!r}, "
            "limit_per_class=1, progress=False))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("building AV-digits" in err for _, err in outs) == 1, outs
    folders = {out.strip() for out, _ in outs}
    assert len(folders) == 1
    assert len(EadDataset(folders.pop(), "test")) > 0
