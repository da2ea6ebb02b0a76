"""Dataset resolution, the front end run once per dataset, and in-memory batching.

The front end (``taaf_ros.frontend.sample_tensors``, ~40 ms per sample) is the same code the
live node runs, so the network trains on exactly the tensors it will see. It is run once per
dataset and kept in memory as small integers (counts are clipped to ``max_count``), optionally
cached on disk as an .npz in the user cache (shared by every run), keyed by a hash of everything
that determines it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from taaf_ros.data.avdigits import speaker_of
from taaf_ros.data.readers import EadDataset
from taaf_ros.defaults import BLOCK_SHARE
from taaf_ros.frontend import FrontEndConfig, sample_tensors

T = TypeVar("T")

CACHE_VERSION = 2  # bump when the cached arrays' meaning changes (2: repaired ids kept)


@dataclass
class TensorSet:
    """One split as front-end tensors: events (N, T, 2, H, W), audio (N, T, 2, C) (uint8 or
    int16 counts), labels (N,) int64, ids (N,)."""

    events: np.ndarray
    audio: np.ndarray
    labels: np.ndarray
    ids: list[str]
    #: (N, V, T, 2, C) noisy copies of each sample's audio (``augment.noisy_audio_variants``).
    noisy_audio: np.ndarray | None = None
    #: ids of the samples whose audio the WAV reader repaired (NaN or inf zeroed, clipped)
    repaired: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, idx: list[int] | np.ndarray) -> TensorSet:
        """The samples ``idx``, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        ids = [self.ids[i] for i in idx]
        return TensorSet(self.events[idx], self.audio[idx], self.labels[idx], ids,
                         None if self.noisy_audio is None else self.noisy_audio[idx],
                         [r for r in self.repaired if r in set(ids)])

    def batch(self, idx: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
        """Samples ``idx`` -> (events (T, B, 2, H, W), audio (T, B, 2, C)) float32, labels."""
        idx = np.asarray(idx)
        ev = torch.from_numpy(self.events[idx].astype(np.float32)).transpose(0, 1)
        au = torch.from_numpy(self.audio[idx].astype(np.float32)).transpose(0, 1)
        return ev.contiguous(), au.contiguous(), torch.from_numpy(self.labels[idx])


def subset_indices(labels: list[int], limit_per_class: int) -> list[int]:
    """The first ``limit_per_class`` samples of each class, in dataset order (0: all)."""
    if limit_per_class <= 0:
        return list(range(len(labels)))
    seen: dict[int, int] = {}
    keep = []
    for i, y in enumerate(labels):
        if seen.get(y, 0) < limit_per_class:
            seen[y] = seen.get(y, 0) + 1
            keep.append(i)
    return keep


def files_fingerprint(ds: EadDataset, indices: list[int]) -> list[list[int]]:
    """Size and modification time (ns) of each sample's files: a dataset rebuilt in place with
    the same names must not reuse the tensors of the one before (cached runs share a folder)."""
    out = []
    for i in indices:
        for path in ds.samples[i][:2]:
            try:
                st = os.stat(path)
            except OSError:  # a one-modality dataset has one file of the pair
                out.append([-1, -1])
            else:
                out.append([st.st_size, st.st_mtime_ns])
    return out


def _cache_key(ds: EadDataset, split: str, indices: list[int], fe: FrontEndConfig) -> str:
    ids = [ds.samples[i][3] for i in indices]
    blob = json.dumps({"v": CACHE_VERSION, "frontend": fe.to_dict(), "meta": ds.meta,
                       "split": split, "ids": ids, "files": files_fingerprint(ds, indices)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_split(root: str | Path, split: str, fe: FrontEndConfig, limit_per_class: int = 0,
               cache_dir: str | Path | None = None, progress: bool = True
               ) -> tuple[TensorSet, EadDataset]:
    """Run the front end over one split (or read it from ``cache_dir``)."""
    ds = EadDataset(root, split)
    indices = subset_indices([s[2] for s in ds.samples], limit_per_class)
    if not indices:
        raise ValueError(f"{root}/{split}: no samples")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{split}-{_cache_key(ds, split, indices, fe)}.npz"
        cached = read_cache(cache, _read_tensor_set)
        if cached is not None:
            return cached, ds
    dtype = np.uint8 if fe.max_count <= 255 else np.int16  # counts are clipped to max_count
    evs, aus, labels, ids, repaired = [], [], [], [], []
    for i in tqdm(indices, desc=f"front end {split}", unit="sample", disable=not progress):
        s = ds[i]
        if s.repaired:  # NaN or inf zeroed, out of range clipped, by the WAV reader
            repaired.append(s.id)
        ev, au = sample_tensors(s.events, ds.sensor_size, s.pcm, s.sample_rate, fe)
        evs.append(ev.astype(dtype))
        aus.append(au.astype(dtype))
        labels.append(s.label)
        ids.append(s.id)
    ts = TensorSet(np.stack(evs), np.stack(aus), np.asarray(labels, np.int64), ids,
                   repaired=repaired)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # a name of this process's own: runs in parallel may write the same cache at once
        write_cache(cache, lambda f: np.savez(f, events=ts.events, audio=ts.audio,
                                              labels=ts.labels, ids=np.asarray(ids),
                                              repaired=np.asarray(repaired, dtype=str)))
    return ts, ds


def _read_tensor_set(path: Path) -> TensorSet:
    with np.load(path, allow_pickle=False) as z:
        repaired = [str(s) for s in z["repaired"]] if "repaired" in z else []
        return TensorSet(z["events"], z["audio"], z["labels"], [str(s) for s in z["ids"]],
                         repaired=repaired)


def read_cache(path: Path, read: Callable[[Path], T]) -> T | None:
    """``read(path)``, or None where there is no cache; a damaged one (a run killed while an
    older numpy wrote in place, a truncated copy) is removed with a warning, to be rebuilt."""
    if not path.is_file():
        return None
    try:
        return read(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        print(f"warning: damaged cache {path} ({type(exc).__name__}: {exc}); rebuilding it",
              file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def write_cache(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` to a name of this process's own (runs in parallel may build the same cache),
    then an atomic rename: a half-written cache is never read. Temporary files that killed
    processes left beside it are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"{path.name}.*.tmp{path.suffix}"):
        pid = old.name[len(path.name) + 1:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            old.unlink(missing_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def split_validation(train: TensorSet, speaker: str, groups: dict[str, str] | None = None
                     ) -> tuple[TensorSet, TensorSet, str]:
    """(train without the validation speaker, that speaker's samples, the speaker): a
    speaker-disjoint validation split, as the test split is. ``speaker="auto"``: the training
    speaker with the most samples (ties: alphabetical). ``groups``: each id's group where the
    dataset gives one (taaf_dataset's samples.csv: a session, a room, a speaker), which then
    stands for the speaker. Raises ValueError when the ids carry no speaker or either side
    would be empty."""
    groups = groups or {}
    speakers = [groups.get(i) or speaker_of(i) for i in train.ids]
    if any(s is None for s in speakers):
        raise ValueError("sample ids carry no speaker ({digit}_{speaker}_{take}) and the "
                         "dataset no groups (samples.csv): give --val-speaker '' (no "
                         "validation split) for this dataset")
    counts: dict[str, int] = {}
    for s in speakers:
        counts[s] = counts.get(s, 0) + 1
    chosen = min(counts, key=lambda s: (-counts[s], s)) if speaker == "auto" else speaker
    if chosen not in counts:
        raise ValueError(f"validation speaker {chosen!r} is not among the training speakers "
                         f"{sorted(counts)}")
    if len(counts) < 2:
        raise ValueError(f"only one training speaker ({chosen}): nothing left to train on "
                         "after holding it out for validation (--val-speaker '')")
    val = [i for i, s in enumerate(speakers) if s == chosen]
    rest = [i for i, s in enumerate(speakers) if s != chosen]
    return train.take(rest), train.take(val), chosen


def split_time_blocks(train: TensorSet, places: dict[str, tuple[str, int]], window_ns: int,
                      share: float = BLOCK_SHARE) -> tuple[TensorSet, TensorSet, str]:
    """(train, validation, description): the last ``share`` of each recording's windows (by
    start time) validate, the rest train, and the training windows that overlap the first
    validation window of their recording are dropped, so that no audio or event of a
    validation window is trained on. Every recording trains. Raises ValueError where the
    samples carry no recording and start (not a taaf_dataset dataset)."""
    if any(i not in places for i in train.ids):
        raise ValueError("time-block validation needs each sample's recording and start "
                         "(samples.csv of taaf_dataset)")
    by_rec: dict[str, list[int]] = {}
    for k, i in enumerate(train.ids):
        by_rec.setdefault(places[i][0], []).append(k)
    keep, val, dropped = [], [], 0
    for rows in by_rec.values():
        rows.sort(key=lambda k: places[train.ids[k]][1])
        n_val = max(1, round(share * len(rows))) if len(rows) >= 2 else 0
        if n_val == 0:
            keep += rows
            continue
        edge = places[train.ids[rows[-n_val]]][1]  # the block's first window
        val += rows[-n_val:]
        for k in rows[:-n_val]:
            if places[train.ids[k]][1] + window_ns > edge:
                dropped += 1  # reaches into the block
            else:
                keep.append(k)
    if not val or not keep:
        raise ValueError("too few windows for a validation time block: give --val-speaker ''")
    what = (f"the last {share:.0%} of each of {len(by_rec)} recordings' windows (time blocks; "
            f"{dropped} training windows across a block's edge dropped)")
    return train.take(sorted(keep)), train.take(sorted(val)), what


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of ``epoch``'s shuffling and augmentation: a function of (seed, epoch)
    only, so a resumed run sees exactly the batches an uninterrupted run would have seen."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)
