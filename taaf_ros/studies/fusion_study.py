"""Can a better late fusion close the gap under audio noise? Fusion rules compared post hoc.

    taaf_fusion_study runs/optim-select/test-george/taaf-balanced/adamw \\
        --events-only runs/optim-select/test-george/events-only/adamw/model.pt \\
        --output docs/results-fusion-study.md

For one trained two-modality run (its folder: model.pt and metrics.json, which name the
dataset and the validation speaker), every rule is fitted on that run's validation speaker and
evaluated on its test speaker under the corruptions of ``robustness.py``:

- ``trained``: the checkpoint's own late fusion (fitted on clean validation during training);
- ``static, corrupted val``: the same three weights, fitted on the validation speaker clean
  *and* corrupted (white and babble at 10 and 0 dB, 50 % occlusion, each modality missing);
- ``confidence-gated``: each expert's weight a function of its own confidence,
  ``w_j(x) = softplus(a_j + b_j c_j(x))`` with ``c_j = 1 - H(p_j) / log K``, fitted on clean
  validation, and on clean + corrupted validation;
- ``uniform-time readouts, corrupted val``: the static rule over readouts averaged uniformly
  over time instead of with the head's temporal attention alpha[t] (which is computed from
  the *fused* spikes, so a noisy or missing audio input moves the event readout too);
- each readout alone (both poolings), and (``--events-only``) the events-only network.

Validation babble is mixed from training speakers other than the validation speaker. The test
conditions, their seed and their babble are those of ``taaf_robustness``. Rules that need
fitting are fitted once; nothing is read from the test speaker but the reported accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taaf_ros.data.avdigits import speaker_of
from taaf_ros.data.corruptions import (
    Babble,
    Clean,
    Corruption,
    MissingModality,
    Occlusion,
    WhiteNoise,
)
from taaf_ros.data.readers import EadDataset
from taaf_ros.frontend import FrontEndConfig
from taaf_ros.model import MODALITIES, load_checkpoint
from taaf_ros.model.late_fusion import combine_readouts, fit_readout_weights
from taaf_ros.training.evaluation import predict

from .robustness import babble_pool, condition_batches, conditions, sensor_noise

VAL_CONDITIONS = (Clean(), WhiteNoise(10), WhiteNoise(0), Babble(10), Babble(0), Occlusion(0.5),
                  MissingModality("audio"), MissingModality("events"))
#: head, readouts (alpha-pooled), present, y, readouts pooled uniformly over time
Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class _Subset:
    """Some samples of an EadDataset, with its sensor size and meta."""

    def __init__(self, ds: EadDataset, idx: list[int]) -> None:
        self.ds, self.idx = ds, idx
        self.sensor_size, self.meta = ds.sensor_size, ds.meta

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Any:
        return self.ds[self.idx[i]]


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """1 - entropy / log K of softmax(logits), over the last axis: 0 uniform, 1 one-hot."""
    logp = logits.log_softmax(-1)
    return 1 + (logp.exp() * logp).sum(-1) / float(np.log(logits.shape[-1]))


def gated_scores(head: torch.Tensor, uni: torch.Tensor, present: torch.Tensor,
                 ab: torch.Tensor) -> torch.Tensor:
    """Log-scores of the confidence-gated product of experts; ab (2, M + 1): a and b."""
    conf = torch.cat([confidence(head)[:, None], confidence(uni)], 1)
    on = torch.cat([torch.ones(len(head), 1, dtype=torch.bool), present], 1)
    w = F.softplus(ab[0] + ab[1] * conf) * on
    logp = torch.cat([head.log_softmax(-1)[:, None], uni.log_softmax(-1)], 1)
    return (w[..., None] * logp).sum(1)


def fit_gated(outs: list[Outputs], iters: int = 200) -> torch.Tensor:
    """(2, M + 1) gate parameters minimising the NLL on ``outs`` (L-BFGS, float64)."""
    h, u = (torch.cat([o[i] for o in outs]).double() for i in (0, 1))
    p, y = (torch.cat([o[i] for o in outs]) for i in (2, 3))
    ab = torch.zeros(2, len(MODALITIES) + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(gated_scores(h, u, p, ab), y)
        loss.backward()
        return loss

    opt.step(closure)
    return ab.detach()


def fit_static(outs: list[Outputs], uniform: bool = False) -> torch.Tensor:
    h, u, p, y = (torch.cat([o[i] for o in outs]) for i in (0, 4 if uniform else 1, 2, 3))
    return fit_readout_weights(h, u, p, y, torch.ones(len(MODALITIES), dtype=torch.bool))


def outputs(model: torch.nn.Module, ds: Any, fe: FrontEndConfig, cond: Corruption,
            ba_rate: float, duration_us: int, pool: list, seed: int, clean: dict) -> Outputs:
    """The evaluation's outputs (``evaluation.predict``) of one condition, as the rules use
    them."""
    out = predict(model, condition_batches(ds, fe, cond, ba_rate, duration_us, pool, seed,
                                           clean),
                  missing=cond.missing)
    if out is None:
        raise ValueError(f"{cond.label} leaves the model no modality")
    uniform = out["step_logits_per_modality"].mean(dim=1)  # (B, M, K)
    return (out["head_logits"], out["unimodal_logits"], out["present"].bool(), out["y"],
            uniform)


def study(run_dir: Path, events_only: Path | None, seed: int = 0,
          log: Any = print) -> dict[str, Any]:
    """{condition label: {rule: accuracy}} on the run's test speaker, and the fitted rules."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    root, val_speaker = Path(metrics["dataset"]["root"]), metrics["dataset"]["val_speaker"]
    loaded = load_checkpoint(run_dir / "model.pt")
    model = loaded.model.eval()
    if len(model.cfg.modalities) != len(MODALITIES):
        raise ValueError(f"{run_dir}: a two-modality run is needed")
    fe = FrontEndConfig.from_dict(loaded.card["frontend"])
    train, test = EadDataset(root, "train"), EadDataset(root, "test")
    ba_rate, duration_us = sensor_noise(test.meta)
    speakers = [speaker_of(s[3]) for s in train.samples]
    val = _Subset(train, [i for i, s in enumerate(speakers) if s == val_speaker])
    others = [i for i, s in enumerate(speakers) if s != val_speaker]
    picks = np.random.default_rng(seed).choice(others, size=min(64, len(others)),
                                               replace=False)
    val_pool = [(train[int(i)].pcm, train[int(i)].sample_rate) for i in picks]
    clean: dict[int, Any] = {}
    val_outs = {c.label: outputs(model, val, fe, c, ba_rate, duration_us, val_pool, seed + 1,
                                 clean) for c in VAL_CONDITIONS}
    log(f"validation speaker {val_speaker}: {len(val)} samples under "
        f"{len(VAL_CONDITIONS)} conditions")
    rules = {
        "trained": ("static", model.readout_weights.detach().clone()),
        "static, corrupted val": ("static", fit_static(list(val_outs.values()))),
        "gated, clean val": ("gated", fit_gated([val_outs["clean"]])),
        "gated, corrupted val": ("gated", fit_gated(list(val_outs.values()))),
        "uniform-time readouts, corrupted val": (
            "uniform", fit_static(list(val_outs.values()), uniform=True)),
    }
    ev_model = load_checkpoint(events_only).model.eval() if events_only else None
    pool = babble_pool(root, "train", 64, seed)  # as taaf_robustness
    clean, ev_clean = {}, {}
    table: dict[str, dict[str, float | None]] = {}
    for cond in conditions():
        h, u, p, y, uu = outputs(model, test, fe, cond, ba_rate, duration_us, pool, seed,
                                 clean)
        row: dict[str, float | None] = {}
        for name, (kind, w) in rules.items():
            s = (gated_scores(h.double(), u.double(), p, w) if kind == "gated"
                 else combine_readouts(h, uu if kind == "uniform" else u, p, w))
            row[name] = float((s.argmax(-1) == y).float().mean())
        for i, m in enumerate(MODALITIES):
            for name, readouts in ((f"{m} readout", u), (f"{m} readout, uniform time", uu)):
                row[name] = (float((readouts[:, i].argmax(-1) == y).float().mean())
                             if bool(p[:, i].all()) else None)
        if ev_model is not None:
            row["events-only"] = None
            if cond != MissingModality("events"):
                ev_outs = outputs(ev_model, test, fe, cond, ba_rate, duration_us, pool, seed,
                                  ev_clean)
                row["events-only"] = float((ev_outs[0].argmax(-1) == ev_outs[3])
                                           .float().mean())
        table[cond.label] = row
        log(f"{cond.label}: " + ", ".join(f"{k} {'-' if v is None else f'{100 * v:.1f}'}"
                                          for k, v in row.items()))
    return {"run": str(run_dir), "val_speaker": val_speaker, "table": table,
            "rules": {k: w.tolist() for k, (_, w) in rules.items()}}


def to_markdown(results: list[dict[str, Any]], command: str) -> str:
    lines = ["# Late-fusion rules under corruptions (post hoc)", "",
             "Generated by `taaf_ros/studies/fusion_study.py` (rules: its docstring); do not "
             "edit by hand. Command:", "", f"    {command}", ""]
    for res in results:
        cols = list(next(iter(res["table"].values())))
        lines += [f"## {res['run']} (validation speaker {res['val_speaker']})", "",
                  "Test accuracy (%) per condition:", "",
                  "| condition | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for label, row in res["table"].items():
            lines.append(f"| {label} | " + " | ".join(
                "-" if row[c] is None else f"{100 * row[c]:.1f}" for c in cols) + " |")
        lines += ["", "Fitted rules (static and uniform-time: head, events, audio weights; "
                  "gated: a, b):", ""]
        lines += [f"- {k}: `{np.round(np.array(w), 3).tolist()}`"
                  for k, w in res["rules"].items()]
        lines.append("")
    return "\n".join(lines)
