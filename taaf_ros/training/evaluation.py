"""One evaluation: a model's outputs on batches (optionally with one modality missing), and
the metrics of those outputs. The trainer's validation and test, ``taaf_robustness`` and
``taaf_fusion_study`` all go through here, so they report the same numbers for the same model
and data (tested).

Per-modality accuracy is the accuracy of the classifier that modality has on its own: for a
two-modality model its unimodal readout (``TAAFOutput.unimodal_logits``), for a one-modality
model its head (its auxiliary readout receives no gradient unless ``aux_weight`` > 0, so it is
an untrained layer). It is taken over the samples where that modality is present, and is None
where it is absent from every sample or the model does not have it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from taaf_ros.model import MODALITIES, TAAFNet
from taaf_ros.model.late_fusion import combine_readouts

from .data import TensorSet

#: What :func:`predict` keeps of each batch's ``TAAFOutput`` (plus the labels ``y``).
OUTPUT_KEYS = ("logits", "head_logits", "unimodal_logits", "present", "attention_map",
               "step_logits_per_modality")
Batches = Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def presence(model: TAAFNet, n: int, missing: str | None = None) -> torch.Tensor:
    """(n, M) bool: the model's modalities, less ``missing`` (a modality name, or None).

    >>> from taaf_ros.model import ModelConfig
    >>> net = TAAFNet(ModelConfig(hidden=8, event_widths=(4,), audio_widths=(4,)))
    >>> presence(net, 2, missing="audio").tolist()
    [[True, False], [True, False]]
    """
    present = torch.tensor([m in model.cfg.modalities for m in MODALITIES]).expand(n, -1).clone()
    if missing is not None:
        present[:, MODALITIES.index(missing)] = False
    return present


def tensor_batches(data: TensorSet, batch_size: int = 100, progress: bool = False) -> Iterator[
        tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(events, audio, labels) batches of a tensor split, in order."""
    n = len(data)
    for start in tqdm(range(0, n, batch_size), desc="eval", leave=False, disable=not progress):
        yield data.batch(np.arange(start, min(n, start + batch_size)))


@torch.no_grad()
def predict(model: TAAFNet, batches: Batches, device: torch.device | None = None,
            missing: str | None = None) -> dict[str, torch.Tensor] | None:
    """The model's outputs (CPU tensors, keys ``OUTPUT_KEYS`` and ``y``) on every batch, in
    eval mode, with ``missing`` marked absent; None when that leaves a sample with no modality
    (a one-modality model without its modality has nothing to say)."""
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*OUTPUT_KEYS, "y")}
    try:
        for ev, au, y in batches:
            present = presence(model, len(y), missing)
            if not bool(present.any(dim=1).all()):
                return None
            out = model(ev.to(device), au.to(device), present=present.to(device))
            for k in OUTPUT_KEYS:
                parts[k].append(getattr(out, k).float().cpu())
            parts["y"].append(y)
    finally:
        model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def merge_outputs(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The outputs of consecutive :func:`predict` calls as one."""
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def readout_accuracies(model: TAAFNet, out: dict[str, torch.Tensor]
                       ) -> dict[str, float | None]:
    """Each modality's own classifier's accuracy (see the module docstring)."""
    y, present = out["y"], out["present"].bool()
    single = len(model.cfg.modalities) == 1
    acc: dict[str, float | None] = {}
    for i, m in enumerate(MODALITIES):
        rows = present[:, i]
        if m not in model.cfg.modalities or not bool(rows.any()):
            acc[m] = None
            continue
        logits = out["head_logits"] if single else out["unimodal_logits"][:, i]
        acc[m] = float((logits[rows].argmax(-1) == y[rows]).float().mean())
    return acc


def summarize(model: TAAFNet, out: dict[str, torch.Tensor],
              readout_weights: torch.Tensor | None = None) -> dict[str, Any]:
    """Fused and per-modality accuracy, confusion matrix and mean attention of ``out``.

    ``acc`` is the decision's accuracy: the model's own late fusion, or ``readout_weights``
    when given; ``acc_head`` the fusion head's alone; ``imbalance`` the stronger readout's
    accuracy over the weaker's (two-modality models).
    """
    y = out["y"]
    logits = out["logits"] if readout_weights is None else combine_readouts(
        out["head_logits"], out["unimodal_logits"], out["present"], readout_weights)
    pred = logits.argmax(-1)
    K = model.cfg.n_classes
    confusion = np.zeros((K, K), np.int64)
    np.add.at(confusion, (y.numpy(), pred.numpy()), 1)
    per_mod = readout_accuracies(model, out)
    accs = [a for a in per_mod.values() if a is not None]
    amap = out["attention_map"].mean(0).tolist()
    return {
        "acc": float((pred == y).float().mean()),
        "acc_head": float((out["head_logits"].argmax(-1) == y).float().mean()),
        "acc_per_modality": per_mod,
        "imbalance": (max(accs) / max(min(accs), 1e-9)) if len(accs) == 2 else None,
        "attention_map": amap,  # (T, M) mean of alpha[t] beta_m[t]
        "modality_attention": {m: float(sum(row[i] for row in amap))
                               for i, m in enumerate(MODALITIES)},
        "confusion": confusion.tolist(),
        "n": len(y),
    }


def evaluate(model: TAAFNet, data: TensorSet, batch_size: int = 100,
             device: torch.device | None = None, progress: bool = False) -> dict[str, Any]:
    """:func:`summarize` of the model's outputs on a tensor split."""
    out = predict(model, tensor_batches(data, batch_size, progress), device)
    assert out is not None  # every configured modality is present
    return summarize(model, out)
