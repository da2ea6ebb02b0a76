"""Run outputs: metrics.json, a markdown results row, PNG plots; and the multi-run comparison
that regenerates docs/results.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from taaf_ros.model import MODALITIES

#: The paper's EAD fused accuracy (arXiv 2505.14535), quoted beside our stand-in's numbers.
PAPER_EAD_ACC = 0.975

TABLE_HEADER = (
    "| method | fused acc | events acc | audio acc | imbalance | energy / inference "
    "| train time | epochs |\n"
    "|---|---|---|---|---|---|---|---|"
)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def table_row(m: dict[str, Any]) -> str:
    """One markdown row for a run's metrics."""
    per = m.get("test_acc_per_modality", {})
    imb = m.get("imbalance")
    energy = m.get("energy", {}).get("energy_uj")
    t = m.get("train_time_s")
    return (f"| {m.get('method', '?')} | {_pct(m.get('test_acc'))} | {_pct(per.get('events'))} "
            f"| {_pct(per.get('audio'))} | {'n/a' if imb is None else f'{imb:.2f}'} "
            f"| {'n/a' if energy is None else f'{energy:.2f} µJ'} "
            f"| {'n/a' if t is None else f'{t / 60:.1f} min'} | {m.get('epochs', 'n/a')} |")


def write_outputs(out: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, results.md and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    rule = metrics.get("decision_rule")
    deployed = "" if not rule else (
        f"The node deploys this model with smoothing_windows {rule['smoothing_windows']}, "
        f"min_confidence {rule['min_confidence']:g} (chosen on {rule['chosen_on']}: "
        f"majority {rule['scores']['majority']:.3f}, background "
        f"{rule['scores']['background']:.3f}; each window's own argmax: majority "
        f"{rule['each_window_own']['majority']:.3f}, background "
        f"{rule['each_window_own']['background']:.3f}).\n\n")
    _atomic_write_text(out / "results.md", f"{TABLE_HEADER}\n{table_row(metrics)}\n\n"
                       f"{deployed}Command: `{metrics.get('command', '')}`\n")
    plot_all(out, metrics)


def plot_all(out: Path, metrics: dict[str, Any]) -> None:
    """learning_curves.png, attention.png, confusion.png (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on robots and CI
    import matplotlib.pyplot as plt

    split = "val" if any("val_acc" in h for h in metrics.get("history", [])) else "test"
    hist = [h for h in metrics.get("history", []) if f"{split}_acc" in h]
    if metrics.get("history"):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ep = [h["epoch"] for h in metrics["history"]]
        ax1.plot(ep, [h["train_loss"] for h in metrics["history"]], "o-")
        ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
        ax2.plot(ep, [h["train_acc"] for h in metrics["history"]], "o--", label="train fused")
        if hist:
            he = [h["epoch"] for h in hist]
            ax2.plot(he, [h[f"{split}_acc"] for h in hist], "o-", label=f"{split} fused")
            for m in MODALITIES:
                vals = [h.get(f"{split}_acc_{m}") for h in hist]
                if all(v is not None for v in vals):
                    ax2.plot(he, vals, "s-", label=f"{split} {m} readout")
            if metrics.get("selected_epoch") and split == "val":
                ax2.axvline(metrics["selected_epoch"], color="grey", ls=":",
                            label=f"chosen: epoch {metrics['selected_epoch']}")
        ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
        ax2.legend()
        fig.tight_layout()
        fig.savefig(out / "learning_curves.png", dpi=100)
        plt.close(fig)
    amap = metrics.get("attention_map")
    if amap:
        fig, ax = plt.subplots(figsize=(4, 4))
        im = ax.imshow(amap, aspect="auto", cmap="viridis")
        ax.set(xticks=range(len(MODALITIES)), xticklabels=list(MODALITIES), xlabel="modality",
               ylabel="time step t", title="mean alpha[t] beta_m[t] (test)")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "attention.png", dpi=100)
        plt.close(fig)
    conf = metrics.get("confusion")
    if conf:
        classes = metrics.get("classes", [str(i) for i in range(len(conf))])
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(conf, cmap="Blues")
        for i, row in enumerate(conf):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
        ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
               yticklabels=classes, xlabel="predicted", ylabel="true",
               title=f"confusion (fused acc {_pct(metrics.get('test_acc'))})")
        fig.tight_layout()
        fig.savefig(out / "confusion.png", dpi=100)
        plt.close(fig)


def compare(run_dirs: list[str | Path], command: str = "") -> str:
    """docs/results.md text from several runs' metrics.json, beside the paper's EAD figure."""
    runs = []
    for d in run_dirs:
        path = Path(d) / "metrics.json" if Path(d).is_dir() else Path(d)
        runs.append(json.loads(path.read_text()))
    rows = "\n".join(table_row(m) for m in runs)
    cmds = "\n".join(f"    {m.get('command', '')}" for m in runs)
    datasets = sorted({str(m.get("dataset", {}).get("name", "?")) for m in runs})
    tpe = [m["time_per_epoch_s"] for m in runs if m.get("time_per_epoch_s")]
    threads = sorted({m.get("torch_threads") for m in runs if m.get("torch_threads")})
    return f"""# Results

**Dataset: {", ".join(datasets)}, our reproducible stand-in for EAD, not the paper's EAD.**
AV-digits pairs real spoken digits (FSDD) with MNIST digits turned into events by a DVS emulator;
the test split is a held-out speaker (speaker- and image-independent). The paper reports
{_pct(PAPER_EAD_ACC)} fused accuracy on EAD; the numbers below are not comparable to it
one-to-one (different data, our own formulation of TAAF from the paper's abstract).

| method | fused acc | events acc | audio acc | imbalance | energy / inference | train time \
| epochs |
|---|---|---|---|---|---|---|---|
| paper: TAAF on EAD (reported) | {_pct(PAPER_EAD_ACC)} | | | | | | |
{rows}

- fused acc: test accuracy of the fused prediction at the epoch the validation speaker chose (the
  final epoch for a run without one); the test split never picks an epoch.
- events / audio acc: each modality's own classifier (both inputs present): the unimodal readout
  of a two-modality network, the head of a one-modality one.
- imbalance: accuracy of the stronger unimodal readout / the weaker (1 = balanced).
- energy / inference: 0.9 pJ x SOPs + 4.6 pJ x MACs per window, from `taaf_ros.model.energy`.
- train time: wall time of training (front end excluded), torch threads {threads};
  mean time per epoch {(sum(tpe) / len(tpe)) if tpe else float("nan"):.0f} s.

Regenerate each row with:

{cmds}

and this table with:

    {command or "python train_ead.py --compare runs/<method> ... --output docs/results.md"}
"""
