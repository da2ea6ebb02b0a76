"""Accuracy under test-time corruptions, at graded severity: where fusion must earn its keep.

    taaf_robustness runs/taaf-balanced/model.pt runs/taaf/model.pt --data-root ../shared/data \
        --output docs/robustness.md

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

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taaf_ros.audio.cochlea import resample
from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.data.readers import EadDataset, EadSample
from taaf_ros.events.types import EVENT_DTYPE
from taaf_ros.frontend import FrontEndConfig, sample_tensors
from taaf_ros.model import MODALITIES, load_checkpoint

SNRS_DB = (20, 10, 5, 0, -5)
BA_FACTORS = (2, 5, 10)
OCCLUSION = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Condition:
    family: str  # clean, white, babble, background, occlusion, missing
    severity: float | str  # dB, factor, fraction, or the missing modality

    @property
    def label(self) -> str:
        if self.family == "clean":
            return "clean"
        if self.family == "occlusion":
            return f"occlusion {int(self.severity * 100)} %"
        if self.family == "missing":
            return f"missing {self.severity}"
        unit = " dB" if self.family in ("white", "babble") else "x"  # background
        return f"{self.family} {self.severity:g}{unit}"


def conditions() -> list[Condition]:
    return ([Condition("clean", 0)]
            + [Condition("white", s) for s in SNRS_DB]
            + [Condition("babble", s) for s in SNRS_DB]
            + [Condition("background", f) for f in BA_FACTORS]
            + [Condition("occlusion", f) for f in OCCLUSION]
            + [Condition("missing", m) for m in MODALITIES])


def mix_at_snr(pcm: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """pcm + noise scaled so that power(pcm) / power(noise) is snr_db (noise tiled or cut to
    length); clipped to [-1, 1] as a recording would be."""
    noise = np.resize(noise.astype(np.float64), pcm.shape)
    p_sig = float(np.mean(pcm.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise**2))
    if p_sig == 0 or p_noise == 0:
        return pcm.copy()
    gain = np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    return np.clip(pcm + gain * noise, -1, 1).astype(np.float32)


def add_background_activity(events: np.ndarray, sensor_size: tuple[int, int],
                            duration_us: int, rate_hz: float, rng: np.random.Generator
                            ) -> np.ndarray:
    """Extra uniform events at ``rate_hz`` per pixel (ON and OFF alike), time-sorted."""
    W, H = sensor_size
    n = int(rng.poisson(rate_hz * W * H * duration_us * 1e-6))
    extra = np.zeros(n, EVENT_DTYPE)
    extra["x"], extra["y"] = rng.integers(0, W, n), rng.integers(0, H, n)
    extra["t"], extra["p"] = rng.integers(0, max(duration_us, 1), n), rng.integers(0, 2, n)
    out = np.concatenate([events, extra])
    return out[np.argsort(out["t"], kind="stable")]


def occlude(events: np.ndarray, sensor_size: tuple[int, int], fraction: float,
            rng: np.random.Generator) -> np.ndarray:
    """Drop the events inside a random square patch covering ``fraction`` of the sensor."""
    W, H = sensor_size
    side = int(round(np.sqrt(fraction * W * H)))
    side_x, side_y = min(side, W), min(side, H)
    x0, y0 = int(rng.integers(0, W - side_x + 1)), int(rng.integers(0, H - side_y + 1))
    inside = ((events["x"] >= x0) & (events["x"] < x0 + side_x)
              & (events["y"] >= y0) & (events["y"] < y0 + side_y))
    return events[~inside]


def babble_pool(root: Path, split: str, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """n recordings (pcm, rate) of ``split`` (the training split: never the test speaker)."""
    ds = EadDataset(root, split)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ds), size=min(n, len(ds)), replace=False)
    return [(s.pcm, s.sample_rate) for s in (ds[int(i)] for i in picks)]


def corrupt(sample: EadSample, cond: Condition, sensor_size: tuple[int, int],
            duration_us: int, ba_rate_hz: float, pool: list[tuple[np.ndarray, int]],
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(events, pcm) of one sample under one condition; ``pool``: (pcm, rate) recordings."""
    ev, pcm = sample.events, sample.pcm
    if cond.family == "white":
        pcm = mix_at_snr(pcm, rng.standard_normal(len(pcm)), float(cond.severity))
    elif cond.family == "babble":
        picks = rng.choice(len(pool), size=min(4, len(pool)), replace=False)
        length = len(pcm)
        noise = np.zeros(length)
        for i in picks:
            clip, rate = pool[int(i)]
            if rate != sample.sample_rate:
                clip = resample(clip, rate, sample.sample_rate)
            start = int(rng.integers(0, max(1, len(clip) - length + 1)))
            noise += np.resize(clip[start:start + length], length)
        pcm = mix_at_snr(pcm, noise, float(cond.severity))
    elif cond.family == "background":
        ev = add_background_activity(ev, sensor_size, duration_us,
                                     (float(cond.severity) - 1) * ba_rate_hz, rng)
    elif cond.family == "occlusion":
        ev = occlude(ev, sensor_size, float(cond.severity), rng)
    return ev, pcm


@torch.no_grad()
def evaluate_condition(model: torch.nn.Module, ds: EadDataset, fe: FrontEndConfig,
                       cond: Condition, ba_rate_hz: float, duration_us: int,
                       pool: list[tuple[np.ndarray, int]], seed: int, batch: int = 100
                       ) -> dict[str, Any]:
    """Fused and per-readout accuracy of ``model`` on ``ds`` under ``cond``."""
    model.eval()
    correct, uni, n = 0, np.zeros(len(MODALITIES)), len(ds)
    for start in range(0, n, batch):
        evs, aus, ys = [], [], []
        for i in range(start, min(n, start + batch)):
            s = ds[i]
            rng = np.random.default_rng([seed, i])
            ev, pcm = corrupt(s, cond, ds.sensor_size, duration_us, ba_rate_hz, pool, rng)
            e, a = sample_tensors(ev, ds.sensor_size, pcm, s.sample_rate, fe)
            evs.append(e)
            aus.append(a)
            ys.append(s.label)
        ev_t = torch.from_numpy(np.stack(evs).astype(np.float32)).transpose(0, 1)
        au_t = torch.from_numpy(np.stack(aus).astype(np.float32)).transpose(0, 1)
        y = torch.tensor(ys)
        present = torch.tensor([m in model.cfg.modalities for m in MODALITIES]).expand(len(y), -1)
        if cond.family == "missing":
            present = present.clone()
            present[:, MODALITIES.index(str(cond.severity))] = False
        if not bool(present.any(dim=1).all()):  # a one-modality model without its modality
            return {"acc": None, "acc_per_modality": {m: None for m in MODALITIES}}
        out = model(ev_t, au_t, present=present)
        correct += int((out.logits.argmax(-1) == y).sum())
        uni += (out.unimodal_logits.argmax(-1) == y[:, None]).sum(0).numpy()
    return {"acc": correct / n,
            "acc_per_modality": {m: (float(uni[i] / n) if m in model.cfg.modalities else None)
                                 for i, m in enumerate(MODALITIES)}}


def run(checkpoints: list[Path], data_root: str, split: str = "test", seed: int = 0,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """{checkpoint label: {condition label: result}} plus the settings."""
    root = ensure_ead_dataset(data_root)
    ds = EadDataset(root, split)
    emu = ds.meta.get("emulator", {})
    ba_rate = float(emu.get("shot_noise_rate_hz", 0.0)) + float(emu.get("leak_rate_hz", 0.0))
    duration_us = int(ds.meta.get("duration_us", 0)) or 600_000
    pool = babble_pool(root, "train", 64, seed)
    results: dict[str, Any] = {}
    trained_by: dict[str, str] = {}
    for path in checkpoints:
        loaded = load_checkpoint(path)
        fe = FrontEndConfig.from_dict(loaded.card["frontend"])
        name = f"{loaded.card.get('method', '?')} ({path})"
        results[name] = {}
        card_metrics = loaded.card.get("metrics", {})
        trained_by[name] = (f"`{loaded.card.get('command', '?')}`"
                            + (f", epoch {card_metrics['selected_epoch']} chosen by validation"
                               if card_metrics.get("val_acc") is not None else
                               ", final epoch (no validation split)"))
        for cond in conditions():
            res = evaluate_condition(loaded.model, ds, fe, cond, ba_rate, duration_us, pool,
                                     seed)
            results[name][cond.label] = res
            acc = "-" if res["acc"] is None else f"{100 * res['acc']:.1f} %"
            log(f"{name}: {cond.label}: {acc}")
    return {"split": split, "n": len(ds), "background_rate_hz": ba_rate, "seed": seed,
            "results": results, "trained_by": trained_by}


def to_markdown(report: dict[str, Any], command: str, png_name: str = "robustness.png") -> str:
    names = list(report["results"])
    lines = [f"# Accuracy under corruptions\n\nWritten by `{command}`: fused accuracy on the "
             f"{report['split']} split ({report['n']} samples), seed {report['seed']}; the "
             f"sensor's background activity is {report['background_rate_hz']:g} Hz per pixel. "
             "Conditions: `taaf_ros/training/robustness.py`.\n",
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


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [("white", SNRS_DB, "SNR (dB)"), ("babble", SNRS_DB, "SNR (dB)"),
                ("background", BA_FACTORS, "background activity (x)"),
                ("occlusion", OCCLUSION, "occluded fraction")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, (fam, sev, xlabel) in zip(axes, families, strict=True):
        for name, res in report["results"].items():
            ys = [res[Condition(fam, s).label]["acc"] for s in sev]
            if all(y is not None for y in ys):
                ax.plot(list(sev), ys, "o-", label=name)
        ax.set(title=fam, xlabel=xlabel, ylabel="fused accuracy", ylim=(0, 1))
        if fam in ("white", "babble"):
            ax.invert_xaxis()
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="taaf_robustness", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="model.pt files to evaluate")
    ap.add_argument("--data-root", required=True,
                    help="EAD-layout dataset, or FSDD + MNIST sources (AV-digits is built)")
    ap.add_argument("--split", default="test", help="split to evaluate (default: test)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    ap.add_argument("--output", type=Path, required=True,
                    help="Markdown table to write; the JSON and PNG go beside it")
    args = ap.parse_args(argv)
    command = "taaf_robustness " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        report = run(args.checkpoints, args.data_root, args.split, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"taaf_robustness: error: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_markdown(report, command, args.output.with_suffix(".png").name))
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    plot(report, args.output.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
