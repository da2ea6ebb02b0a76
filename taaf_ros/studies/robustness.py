"""Accuracy under test-time corruptions, at graded severity: where fusion must earn its keep.

    taaf_robustness runs/taaf-balanced/model.pt runs/taaf/model.pt --data-root DATA \
        --output robustness.md

Each checkpoint is evaluated on the test split, the front end recomputed from the corrupted raw
sample (the front end of the checkpoint's card), under:

- audio white noise and babble at SNR 20 / 10 / 5 / 0 / -5 dB; babble is the sum of four
  recordings drawn from the *training* split (never the test speaker), scaled to the SNR;
- event background activity at 2 / 5 / 10 times the sensor's own rate (the dataset's emulator
  shot-noise plus leak rate, from meta.json), as extra uniform events;
- occlusion: a random square patch covering 25 / 50 / 75 % of the sensor, events inside
  dropped;
- each modality missing (the network's own masking).

Corruptions are drawn from a generator seeded by (seed, sample index), so every checkpoint sees
the same corrupted samples. Writes a Markdown table (and a PNG of the curves beside it); the
fused accuracy per condition, and each readout's, are in the JSON beside it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.data.corruptions import (
    Babble,
    BackgroundActivity,
    Clean,
    Corruption,
    MissingModality,
    Occlusion,
    Scene,
    WhiteNoise,
    corruption,
)
from taaf_ros.data.readers import EadDataset
from taaf_ros.defaults import WINDOW_S
from taaf_ros.frontend import FrontEndConfig, audio_tensor, event_tensor, sample_tensors
from taaf_ros.model import MODALITIES, load_checkpoint
from taaf_ros.training.evaluation import merge_outputs, predict, summarize

SNRS_DB = (20, 10, 5, 0, -5)
BA_FACTORS = (2, 5, 10)
OCCLUSION = (0.25, 0.5, 0.75)
#: The graded families, as curves: (family, severities, x-axis label).
CURVES = (("white", SNRS_DB, "SNR (dB)"), ("babble", SNRS_DB, "SNR (dB)"),
          ("background", BA_FACTORS, "background activity (x)"),
          ("occlusion", OCCLUSION, "occluded fraction"))


def conditions() -> list[Corruption]:
    """The grid: clean, every graded family at every severity, each modality missing."""
    return ([Clean()] + [WhiteNoise(s) for s in SNRS_DB] + [Babble(s) for s in SNRS_DB]
            + [BackgroundActivity(f) for f in BA_FACTORS] + [Occlusion(f) for f in OCCLUSION]
            + [MissingModality(m) for m in MODALITIES])


def sensor_noise(meta: dict[str, Any]) -> tuple[float, int]:
    """(background activity rate per pixel in Hz, sample duration in us) from a dataset's
    meta.json: the emulator's shot-noise plus leak rate, the unit the ``background`` factor
    multiplies."""
    emu = meta.get("emulator", {})
    rate = float(emu.get("shot_noise_rate_hz", 0.0)) + float(emu.get("leak_rate_hz", 0.0))
    return rate, int(meta.get("duration_us", 0)) or round(WINDOW_S * 1e6)


def babble_pool(root: Path, split: str, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """n recordings (pcm, rate) of ``split`` (the training split: never the test speaker)."""
    ds = EadDataset(root, split)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ds), size=min(n, len(ds)), replace=False)
    return [(s.pcm, s.sample_rate) for s in (ds[int(i)] for i in picks)]


def condition_batches(ds: EadDataset, fe: FrontEndConfig, cond: Corruption, ba_rate_hz: float,
                      duration_us: int, pool: list[tuple[np.ndarray, int]], seed: int,
                      clean: dict[int, tuple[np.ndarray, np.ndarray]], batch: int = 100
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(events (T,B,...), audio (T,B,...), labels) batches of ``ds`` under ``cond``.

    ``clean`` caches each sample's clean tensors: a condition that corrupts one modality
    recomputes only that one.
    """
    scene = Scene(ds.sensor_size, duration_us, ba_rate_hz, pool)
    for start in range(0, len(ds), batch):
        evs, aus, ys = [], [], []
        for i in range(start, min(len(ds), start + batch)):
            s = ds[i]
            if i not in clean:
                clean[i] = sample_tensors(s.events, ds.sensor_size, s.pcm, s.sample_rate, fe)
            e, a = clean[i]
            rng = np.random.default_rng([seed, i])
            ev, pcm = cond(s.events, s.pcm, s.sample_rate, scene, rng)
            if ev is not s.events:
                e = event_tensor(ev, ds.sensor_size, 0, fe)
            if pcm is not s.pcm:
                a = audio_tensor(pcm, s.sample_rate, fe)
            evs.append(e)
            aus.append(a)
            ys.append(s.label)
        yield (torch.from_numpy(np.stack(evs).astype(np.float32)).transpose(0, 1),
               torch.from_numpy(np.stack(aus).astype(np.float32)).transpose(0, 1),
               torch.tensor(ys))


def condition_result(model: torch.nn.Module, parts: list[dict[str, torch.Tensor] | None]
                     ) -> dict[str, Any]:
    """Fused and per-modality accuracy of one model from its ``evaluation.predict`` outputs on
    one condition's batches (None where the condition leaves the model nothing to classify:
    its only modality missing)."""
    if not parts or any(p is None for p in parts):
        return {"acc": None, "acc_per_modality": {m: None for m in MODALITIES}}
    res = summarize(model, merge_outputs(parts))
    return {"acc": res["acc"], "acc_per_modality": res["acc_per_modality"]}


def run(checkpoints: list[Path], data_root: str, split: str = "test", seed: int = 0,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """{checkpoint label: {condition label: result}} plus the settings.

    Checkpoints with the same front end share each condition's corrupted tensors.
    """
    root = ensure_ead_dataset(data_root)
    ds = EadDataset(root, split)
    ba_rate, duration_us = sensor_noise(ds.meta)
    pool = babble_pool(root, "train", 64, seed)
    results: dict[str, Any] = {}
    trained_by: dict[str, str] = {}
    groups: dict[str, list[tuple[str, torch.nn.Module]]] = {}
    frontends: dict[str, FrontEndConfig] = {}
    for path in checkpoints:
        loaded = load_checkpoint(path)
        loaded.model.eval()
        fe = FrontEndConfig.from_dict(loaded.card["frontend"])
        key = json.dumps(loaded.card["frontend"], sort_keys=True)
        frontends[key] = fe
        name = f"{loaded.card.get('method', '?')} ({path})"
        groups.setdefault(key, []).append((name, loaded.model))
        results[name] = {}
        card_metrics = loaded.card.get("metrics", {})
        trained_by[name] = (f"`{loaded.card.get('command', '?')}`"
                            + (f", epoch {card_metrics['selected_epoch']} chosen by validation"
                               if card_metrics.get("val_acc") is not None else
                               ", final epoch (no validation split)"))
    for key, models in groups.items():
        clean: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for cond in conditions():
            missing = cond.missing
            parts: dict[str, list] = {name: [] for name, _ in models}
            for batch in condition_batches(ds, frontends[key], cond, ba_rate, duration_us,
                                           pool, seed, clean):  # each batch made once
                for name, model in models:
                    parts[name].append(predict(model, [batch], missing=missing))
            for name, model in models:
                res = results[name][cond.label] = condition_result(model, parts[name])
                acc = "-" if res["acc"] is None else f"{100 * res['acc']:.1f} %"
                log(f"{name}: {cond.label}: {acc}")
    return {"split": split, "n": len(ds), "background_rate_hz": ba_rate, "seed": seed,
            "results": results, "trained_by": trained_by}


def to_markdown(report: dict[str, Any], command: str, png_name: str = "robustness.png") -> str:
    names = list(report["results"])
    lines = [f"# Accuracy under corruptions\n\nWritten by `{command}`: fused accuracy on the "
             f"{report['split']} split ({report['n']} samples), seed {report['seed']}; the "
             f"sensor's background activity is {report['background_rate_hz']:g} Hz per pixel. "
             "Conditions: `taaf_ros/studies/robustness.py`.\n",
             *[f"- {name}: trained by {report.get('trained_by', {}).get(name, '?')}"
               for name in names],
             "",
             "| condition | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for cond in conditions():
        cells = []
        for name in names:
            acc = report["results"][name][cond.label]["acc"]
            cells.append("-" if acc is None else f"{100 * acc:.1f}")
        lines.append(f"| {cond.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n![accuracy against severity]({png_name})\n"


def plot_curves(series: dict[str, dict[str, tuple[float, float]]], path: Path,
                ylabel: str = "fused accuracy") -> None:
    """Accuracy against severity, one panel per family of ``CURVES``; ``series``:
    {name: {condition label: (accuracy, error bar)}}. A name missing a severity of a family is
    left out of that panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, (fam, sev, xlabel) in zip(axes, CURVES, strict=True):
        for name, points in series.items():
            ys = [points.get(corruption(fam, s).label) for s in sev]
            if all(y is not None for y in ys):
                ax.errorbar(list(sev), [y[0] for y in ys], yerr=[y[1] for y in ys],
                            marker="o", capsize=3, label=name)
        ax.set(title=fam, xlabel=xlabel, ylabel=ylabel, ylim=(0, 1))
        if fam in ("white", "babble"):
            ax.invert_xaxis()
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot(report: dict[str, Any], path: Path) -> None:
    plot_curves({name: {label: (r["acc"], 0.0) for label, r in res.items()
                        if r["acc"] is not None}
                 for name, res in report["results"].items()}, path)
