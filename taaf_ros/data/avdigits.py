"""AV-digits: the project's audio-visual digits benchmark, built from real data in the EAD layout.

Each Free Spoken Digit Dataset (FSDD) recording is paired with an MNIST image of the same digit;
the image becomes an event stream through the DVS emulator (three saccades on a 34 x 34 sensor,
like N-MNIST). Output::

    <out>/meta.json                          classes, sensor size, audio rate, sources, seed,
                                             emulator config, split rule, counts, version
    <out>/manifest.csv                       one row per sample: split, class, id, speaker,
                                             take, FSDD file, MNIST index, events
    <out>/<split>/<digit>/<id>.events.npy    EVENT_DTYPE events, µs
    <out>/<split>/<digit>/<id>.wav           the FSDD audio (16-bit mono, resampled if needed)

Split rule (speaker- and image-independent): recordings of the ``test_speakers`` (default
``theo``) form the test split, the other speakers the train split. Each digit's MNIST images are
shuffled with the seed and cut into two disjoint pools, sized in proportion to the recordings
that need them; every training recording is paired with ``train_pairs`` (default 3) images and
every test recording with one, each the next unused image of its split's pool (an image is
reused only when a pool runs out, counted in meta.json). So no speaker and no image is in both.

Same inputs and seed give byte-identical outputs (no timestamps or absolute paths are written).

Built by the command ``taaf_build_avdigits`` (:mod:`taaf_ros.apps.build_avdigits`).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import re
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from taaf_ros.audio.cochlea import resample
from taaf_ros.audio.wav import read_wav
from taaf_ros.data.emulator import DvsEmulatorConfig, emulate_saccades
from taaf_ros.data.mnist import find_mnist_files, load_mnist
from taaf_ros.defaults import FSDD_RATE_HZ, user_cache_dir

BUILDER_VERSION = "1.1"  # 1.1: train_pairs
CLASSES = [str(d) for d in range(10)]
DEFAULT_TEST_SPEAKERS = ("theo",)
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


class FsddRecording(NamedTuple):
    """One FSDD file: path, digit label, speaker name, take index."""

    path: Path
    digit: int
    speaker: str
    take: int


class PlannedSample(NamedTuple):
    """A recording with its split and the MNIST image paired with it."""

    recording: FsddRecording
    split: str
    image_index: int

    @property
    def id(self) -> str:
        r = self.recording
        return f"{r.digit}_{r.speaker}_{r.take}_mnist{self.image_index:05d}"


@dataclass(frozen=True)
class BuildConfig:
    """What to build.

    Attributes:
        seed: seed of every random choice (image pairing, emulator noise). Default: 0.
        test_speakers: speakers whose recordings form the test split. Default: ("theo",).
        eval_only: put every sample in the test split. Default: False.
        limit_per_class: keep at most this many recordings per class and split (None: all).
        train_pairs: how many distinct images each training recording is paired with (one
            sample each). The event encoder sees K times more digits while the audio encoder
            sees each recording K times, as in K epochs; test recordings always get one image.
            Default: 3 (6,000 training samples from 2,000 recordings and 6,000 of the 8,000
            MNIST images, leaving the 500 test images unused in training).
        audio_rate: sample rate of the written WAV files (Hz); FSDD is 8000. Default: 8000.
        duration_us: length of each event recording (µs). Default: 300000.
        sensor_size: (width, height) of the emulated sensor (pixels). Default: (34, 34).
        emulator: DVS emulator parameters. Default: ``DvsEmulatorConfig()``.
    """

    seed: int = 0
    test_speakers: tuple[str, ...] = DEFAULT_TEST_SPEAKERS
    eval_only: bool = False
    limit_per_class: int | None = None
    train_pairs: int = 3
    audio_rate: int = FSDD_RATE_HZ
    duration_us: int = 300_000
    sensor_size: tuple[int, int] = (34, 34)
    emulator: DvsEmulatorConfig = field(default_factory=DvsEmulatorConfig)


def find_fsdd(folder: str | Path) -> list[FsddRecording]:
    """All ``{digit}_{speaker}_{take}.wav`` files under ``folder``, sorted by name fields."""
    recs = []
    for p in Path(folder).rglob("*.wav"):
        m = FSDD_NAME.match(p.name)
        if m:
            recs.append(FsddRecording(p, int(m[1]), m[2], int(m[3])))
    if not recs:
        raise FileNotFoundError(f"no FSDD-style {{digit}}_{{speaker}}_{{take}}.wav under {folder}")
    return sorted(recs, key=lambda r: (r.digit, r.speaker, r.take, str(r.path)))


def plan(recordings: list[FsddRecording], labels: np.ndarray,
         config: BuildConfig) -> tuple[list[PlannedSample], int]:
    """Assign each recording a split and an MNIST image (see the module docstring).

    Returns:
        The planned samples (sorted by split, digit, speaker, take) and the number of image
        reuses (0 when every pool was large enough).
    """
    rng = np.random.default_rng([config.seed, 0xA5D])
    speakers = {r.speaker for r in recordings}
    if not config.eval_only:
        unknown = set(config.test_speakers) - speakers
        if unknown:
            raise ValueError(f"test speakers {sorted(unknown)} not among {sorted(speakers)}")
        if speakers <= set(config.test_speakers):
            raise ValueError("every speaker is a test speaker: nothing left to train on")
    by_split: dict[tuple[str, int], list[FsddRecording]] = {}
    for r in recordings:
        split = "test" if config.eval_only or r.speaker in config.test_speakers else "train"
        by_split.setdefault((split, r.digit), []).append(r)
    if config.limit_per_class is not None:
        for key, recs in by_split.items():
            order = rng.permutation(len(recs))[: config.limit_per_class]
            by_split[key] = [recs[i] for i in sorted(order)]
    samples: list[PlannedSample] = []
    reuses = 0
    for digit in range(10):
        images = np.flatnonzero(labels == digit)
        images = images[rng.permutation(len(images))]
        pairs = {"train": config.train_pairs, "test": 1}
        need = {s: pairs[s] * len(by_split.get((s, digit), [])) for s in ("train", "test")}
        if sum(need.values()) and not len(images):
            raise ValueError(f"no MNIST image of digit {digit}")
        pools = _disjoint_pools(images, need)
        for split in ("train", "test"):
            recs, pool = by_split.get((split, digit), []), pools[split]
            for i in range(need[split]):
                r = recs[i % len(recs)]
                samples.append(PlannedSample(r, split, int(pool[i % len(pool)])))
            reuses += max(0, need[split] - len(pool))
    samples.sort(key=lambda s: (s.split, s.recording.digit, s.recording.speaker,
                                s.recording.take))
    return samples, reuses


def _disjoint_pools(images: np.ndarray, need: dict[str, int]) -> dict[str, np.ndarray]:
    """Cut ``images`` into disjoint train/test pools covering ``need`` where possible."""
    n_train, n_test = need["train"], need["test"]
    if n_train + n_test <= len(images):
        return {"test": images[:n_test], "train": images[n_test:n_test + n_train]}
    if n_train == 0 or n_test == 0:
        empty = images[:0]
        return {"test": images if n_test else empty, "train": images if n_train else empty}
    # Too few images: share them in proportion, at least one each, still disjoint.
    k = min(max(round(len(images) * n_test / (n_train + n_test)), 1), len(images) - 1)
    return {"test": images[:k], "train": images[k:]}


def _sample_rng(seed: int, s: PlannedSample) -> np.random.Generator:
    # Keyed by the sample, not by its position, so --limit-per-class subsets reproduce the
    # full build's events for the samples they share.
    key = zlib.crc32(s.recording.path.name.encode())
    return np.random.default_rng([seed, s.image_index, key])


def _wav_bytes(pcm: np.ndarray, rate: int, target_rate: int) -> bytes:
    """16-bit mono WAV bytes, resampled (polyphase) only if ``rate != target_rate``."""
    from scipy.io import wavfile

    pcm = resample(pcm, rate, target_rate)
    pcm16 = np.clip(np.round(pcm * 32768.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    wavfile.write(buf, target_rate, pcm16)
    return buf.getvalue()


def build_avdigits(fsdd_dir: str | Path, mnist_dir: str | Path, out: str | Path,
                   config: BuildConfig | None = None, progress: bool = True,
                   overwrite: bool = False) -> dict:
    """Build AV-digits into ``out``; returns the meta dict that was written as meta.json.

    Recordings whose WAV cannot be parsed are skipped and counted (``meta["skipped"]``).

    Raises:
        FileExistsError: ``out`` holds a dataset and ``overwrite`` is False.
    """
    config = config or BuildConfig()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (use --overwrite)")
        for name in ("train", "test", "meta.json", "manifest.csv"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    recordings = find_fsdd(fsdd_dir)
    images, labels = load_mnist(mnist_dir)
    samples, reuses = plan(recordings, labels, config)
    counts = {s: dict.fromkeys(CLASSES, 0) for s in ("train", "test")}
    skipped: list[str] = []
    rows = []
    n_events = 0
    for s in _progress(samples, progress):
        r = s.recording
        try:
            audio = read_wav(r.path)
            pcm, rate = audio.samples, audio.sample_rate
            if pcm.size == 0:
                raise ValueError("empty recording")
        except ValueError:
            if r.path.name not in skipped:  # a training recording stands in train_pairs samples
                skipped.append(r.path.name)
            continue
        events = emulate_saccades(images[s.image_index], config.emulator, config.sensor_size,
                                  config.duration_us, _sample_rng(config.seed, s))
        folder = out / s.split / str(r.digit)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{s.id}.events.npy", events)
        (folder / f"{s.id}.wav").write_bytes(_wav_bytes(pcm, rate, config.audio_rate))
        counts[s.split][str(r.digit)] += 1
        n_events += len(events)
        rows.append((s.split, r.digit, s.id, r.speaker, r.take, r.path.name, s.image_index,
                     len(events)))
    if skipped:
        print(f"skipped {len(skipped)} unreadable recordings: {', '.join(skipped[:10])}"
              + (" ..." if len(skipped) > 10 else ""), file=sys.stderr)
    meta = _meta(config, samples, counts, skipped, reuses, n_events, mnist_dir)
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["split", "class", "id", "speaker", "take", "fsdd_file", "mnist_index",
                    "events"])
        w.writerows(rows)
    # meta.json last: its presence marks a finished build.
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _meta(config: BuildConfig, samples: list[PlannedSample], counts: dict, skipped: list[str],
          reuses: int, n_events: int, mnist_dir: str | Path) -> dict:
    from taaf_ros.data.download import FSDD_VERSION, sha256_file

    speakers = {sp: sorted({s.recording.speaker for s in samples if s.split == sp})
                for sp in ("train", "test")}
    n_written = sum(sum(c.values()) for c in counts.values())
    return {
        "name": "AV-digits",
        "builder_version": BUILDER_VERSION,
        "classes": CLASSES,
        "sensor_size": list(config.sensor_size),
        "audio_rate": config.audio_rate,
        "duration_us": config.duration_us,
        "seed": config.seed,
        "emulator": config.emulator.to_dict(),
        "saccades": {"count": 3, "amplitude_px": 3.0, "step_us": 1000,
                     "path": "triangle (0,0)->(a/2,a)->(a,0)->(0,0), centred"},
        "source": {
            "audio": f"Free Spoken Digit Dataset (FSDD) {FSDD_VERSION}, CC BY-SA 4.0",
            "events": "MNIST (LeCun, Cortes, Burges), CC BY-SA 3.0, through a DVS emulator",
            "mnist_sha256": {p.name: sha256_file(p) for p in find_mnist_files(mnist_dir)},
        },
        "split_rule": ("eval-only: every sample in test" if config.eval_only else
                       f"speaker-independent: test speakers {list(config.test_speakers)}, "
                       "train the others; MNIST images of each digit cut into disjoint "
                       "train/test pools"),
        "speakers": speakers,
        "limit_per_class": config.limit_per_class,
        "train_pairs": config.train_pairs,
        "counts": {sp: {"total": sum(c.values()), **c} for sp, c in counts.items()},
        "image_reuses": reuses,
        "skipped": {"count": len(skipped), "files": skipped},
        "mean_events": round(n_events / max(n_written, 1), 1),
    }


def ensure_ead_dataset(root: str | Path, cache_dir: str | Path = "", seed: int = 0,
                       limit_per_class: int = 0, progress: bool = True,
                       download: bool = False,
                       test_speakers: tuple[str, ...] = DEFAULT_TEST_SPEAKERS) -> Path:
    """An EAD-layout folder for ``root``, building AV-digits from sources once if needed.

    ``root`` holding ``meta.json`` is used as it is. ``root`` holding FSDD and MNIST sources
    (``fsdd/`` or ``fsdd/recordings/``, and ``mnist/``) is turned into
    AV-digits under ``cache_dir/avdigits-v<builder version>-seed<seed>[-limit<N>]``; a finished
    build (meta.json is written last) is reused, an unfinished one rebuilt. With ``download``,
    a ``root`` that holds neither gets the public originals downloaded (checksum-verified) into
    ``cache_dir/sources`` first.

    Raises:
        FileNotFoundError: ``root`` is neither (and ``download`` is off).
    """
    root = Path(root)
    if (root / "meta.json").is_file():
        return root
    base = Path(cache_dir) if cache_dir else user_cache_dir()
    fsdd = root / "fsdd" / "recordings"
    fsdd, mnist = (fsdd if fsdd.is_dir() else root / "fsdd"), root / "mnist"
    if not (fsdd.is_dir() and mnist.is_dir()):
        if not download:
            raise FileNotFoundError(
                f"{root}: neither an EAD-layout dataset (meta.json) nor a folder with fsdd/ and "
                f"mnist/ sources (download them with --download)")
        from taaf_ros.data.download import fetch_fsdd, fetch_mnist

        fsdd, mnist = fetch_fsdd(base / "sources" / "fsdd"), fetch_mnist(base / "sources" / "mnist")
    name = f"avdigits-v{BUILDER_VERSION}-seed{seed}"
    if tuple(test_speakers) != DEFAULT_TEST_SPEAKERS:  # another fold of the speakers
        name += "-test" + "+".join(test_speakers)
    out = base / (name + (f"-limit{limit_per_class}" if limit_per_class else ""))
    if (out / "meta.json").is_file():
        return out
    base.mkdir(parents=True, exist_ok=True)
    # Two runs started together (two cores, two methods) must not build into one folder at
    # once: the second waits here, then finds the first's finished build.
    with open(base / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "meta.json").is_file():
            print(f"building AV-digits from {fsdd.parent} into {out} (once; cached)",
                  file=sys.stderr)
            build_avdigits(fsdd, mnist, out,
                           BuildConfig(seed=seed, limit_per_class=limit_per_class or None,
                                       test_speakers=tuple(test_speakers)),
                           progress=progress, overwrite=True)
    return out


def _progress(items: list, show: bool) -> Any:
    """A tqdm bar where tqdm is installed (the ``train`` extra); plain iteration otherwise,
    so the demo runs on a robot install without it."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="AV-digits", unit="sample", disable=not show)


def speaker_of(sample_id: str) -> str | None:
    """The speaker of an AV-digits / FSDD sample id (``{digit}_{speaker}_{take}...``)."""
    parts = sample_id.split("_")
    return parts[1] if len(parts) >= 3 and parts[0].isdigit() and parts[2].isdigit() else None
