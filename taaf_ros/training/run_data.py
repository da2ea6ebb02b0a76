"""The data of one training run, built before the trainer starts: the train / validation /
test tensor splits through the run's front end (cached), the noisy audio copies, and checks
that the dataset is one the model can train on."""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.data.readers import EadDataset
from taaf_ros.defaults import FEW_GROUPS

from .augment import noisy_audio_variants
from .config import TrainConfig
from .data import TensorSet, load_split, split_time_blocks, split_validation
from .distributed import Distributed


@dataclass
class RunData:
    """The splits of one run. ``val`` is None without a validation speaker."""

    root: Path
    dataset: EadDataset  # the training split's reader: classes, meta, groups
    train: TensorSet
    test: TensorSet
    val: TensorSet | None
    val_speaker: str | None  # the held-out speaker or group, or "block" (time blocks)
    frontend_s: float  # time spent computing (or reading cached) front-end tensors
    val_rule: str = ""  # what the validation split is, in words

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    def train_recordings(self) -> list[str]:
        """The recordings the training split's samples were cut from (a dataset taaf_dataset
        built: its samples.csv), so that an evaluation can tell when it scores them."""
        path = Path(self.root) / "samples.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return sorted({r["recording"] for r in rows if r.get("split") == self.dataset.split})

    def info(self) -> dict[str, Any]:
        """What metrics.json records of the data."""
        meta = self.dataset.meta
        repaired = [*self.train.repaired, *(self.val.repaired if self.val else []),
                    *self.test.repaired]
        return {**dataset_info(self.root, meta, self.train, self.test),
                "val_speaker": self.val_speaker, "val_rule": self.val_rule,
                "n_val": len(self.val) if self.val else 0,
                "repaired_audio": {"samples": len(repaired), "ids": repaired[:20]}}


def dataset_info(root: Path, meta: dict, train: TensorSet | None, test: TensorSet
                 ) -> dict[str, Any]:
    return {"root": str(root), "name": meta.get("name", root.name),
            "n_train": len(train) if train is not None else None, "n_test": len(test),
            "split_rule": meta.get("split_rule")}


def load_run_data(cfg: TrainConfig, dctx: Distributed) -> RunData:
    """Build (or read from the cache) every split ``cfg`` trains and evaluates on. Under
    torchrun rank 0 builds the dataset and the feature cache; the others wait, then read."""
    out = cfg.resolved_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    if not dctx.is_main:
        dctx.barrier()
    root = ensure_ead_dataset(cfg.resolved_data_root(), cfg.cache_dir, cfg.seed,
                              cfg.limit_per_class, cfg.progress)
    fe, cache = cfg.frontend, cfg.feature_cache_dir()
    t0 = time.perf_counter()
    train, ds = load_split(root, cfg.train_split, fe, cfg.limit_per_class, cache, cfg.progress)
    test, _ = load_split(root, cfg.test_split, fe, cfg.limit_per_class, cache, cfg.progress)
    check_dataset(ds, cfg)
    val, val_speaker, val_rule = None, None, ""
    if cfg.val_speaker:
        train, val, val_speaker, val_rule = validation_split(train, cfg, ds)
    if cfg.augment.noise > 0:  # noisy copies of the training recordings only (augment.py)
        train.noisy_audio = noisy_audio_variants(
            root, cfg.train_split, train.ids, fe, cfg.augment.noise_variants,
            cfg.augment.noise_snr, cfg.seed, cache, cfg.progress and dctx.is_main)
    data = RunData(root, ds, train, test, val, val_speaker, time.perf_counter() - t0,
                   val_rule)
    repaired = data.info()["repaired_audio"]
    if repaired["samples"] and dctx.is_main:
        print(f"warning: {repaired['samples']} sample(s) with NaN, infinite or out-of-range "
              f"audio, zeroed or clipped (metrics.json dataset.repaired_audio): "
              f"{', '.join(repaired['ids'][:5])}", file=sys.stderr)
    if dctx.is_main:
        dctx.barrier()
        if val is not None:
            print(f"validation: {val_rule} ({len(val)} samples) held out of "
                  f"training ({len(train)} left); it picks the epoch"
                  + (" and fits the late fusion" if cfg.late_fusion else ""))
    return data


def validation_split(train: TensorSet, cfg: TrainConfig, ds: EadDataset
                     ) -> tuple[TensorSet, TensorSet, str, str]:
    """(train, validation, the held-out speaker or ``block``, what the validation is): a
    held-out speaker or group (``val_speaker`` names one, or ``auto``: the largest), or, with
    ``val_speaker`` ``block`` or ``auto`` on a dataset of fewer than FEW_GROUPS training
    groups, a time block at the end of each recording (``split_time_blocks``), so that every
    recording trains."""
    groups = {ds.groups.get(i) for i in train.ids} - {None}
    if cfg.val_speaker == "block" or (cfg.val_speaker == "auto" and ds.places
                                      and len(groups) < FEW_GROUPS):
        train, val, what = split_time_blocks(train, ds.places,
                                             round(cfg.frontend.window_s * 1e9))
        return train, val, "block", what
    train, val, speaker = split_validation(train, cfg.val_speaker, ds.groups)
    return train, val, speaker, f"{'group' if ds.groups else 'speaker'} {speaker}"


def check_dataset(ds: EadDataset, cfg: TrainConfig) -> None:
    """A dataset built for another front end, or without a modality the method reads, would
    train on tensors the node never computes: refused with the fix."""
    missing = [m for m in cfg.model.modalities if m not in ds.modalities]
    if missing:
        raise ValueError(f"{ds.root}: the dataset has no {' or '.join(missing)} "
                         f"(modalities {', '.join(ds.modalities)}): train it with --method "
                         f"{'events-only' if 'events' in ds.modalities else 'audio-only'}")
    window = ds.meta.get("window_s")
    if window is not None and abs(float(window) - cfg.frontend.window_s) > 1e-9:
        raise ValueError(f"{ds.root}: samples are {window} s windows, the front end's are "
                         f"{cfg.frontend.window_s} s: give --frontend.window-s {window} or "
                         "rebuild the dataset with a model of that window (taaf_dataset "
                         "--model)")
    rate = ds.meta.get("audio_rate")
    if "frontend" in ds.meta and rate is not None and int(rate) != \
            cfg.frontend.cochlea.sample_rate:
        raise ValueError(f"{ds.root}: audio at {rate} Hz (the model rate it was built for), "
                         f"the front end's cochlea runs at {cfg.frontend.cochlea.sample_rate} "
                         "Hz: rebuild the dataset with taaf_dataset --model of this front end")
