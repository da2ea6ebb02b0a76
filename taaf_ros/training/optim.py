"""The optimiser: AdamW or SGD, warm-up then cosine, and per-modality learning rates.

Parameter groups are split by modality (each encoder's parameters, tagged ``modality``) and by
weight decay (none on biases, norm scales and the warping logits). The modulated methods slow
the dominant modality by multiplying its encoders' learning rate by ``lr_scale[m]`` for one
step (:func:`scale_encoder_lr`, see ``taaf_ros.model.loss``); the scheduler then sets every
group back to its scheduled rate, so factors never accumulate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from taaf_ros.model import MODALITIES, TAAFNet

OPTIMIZERS = ("adamw", "sgd")


def parameter_groups(model: TAAFNet, weight_decay: float) -> list[dict[str, Any]]:
    """Groups by (modality or None, decay): every parameter exactly once."""
    encoder_of = {id(p): m for m, enc in model.encoders.items() for p in enc.parameters()}
    groups: dict[tuple[str | None, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        decay = p.dim() >= 2 and "warp" not in name
        groups.setdefault((encoder_of.get(id(p)), decay), []).append(p)
    return [{"params": ps, "modality": m, "weight_decay": weight_decay if decay else 0.0}
            for (m, decay), ps in sorted(groups.items(), key=lambda kv: (str(kv[0][0]),
                                                                          kv[0][1]))]


def make_optimizer(model: TAAFNet, cfg: Any, total_steps: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """``cfg.optimizer`` (adamw | sgd with ``cfg.momentum``) at ``cfg.lr``, ``cfg.weight_decay``;
    linear warm-up over ``cfg.warmup_steps``, then cosine to ``cfg.lr_min_ratio * cfg.lr``."""
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
    warm = max(0, min(cfg.warmup_steps, total_steps - 1))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi
                                                                               * progress))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def scale_encoder_lr(opt: torch.optim.Optimizer, lr_scale: Sequence[float] | torch.Tensor
                     ) -> None:
    """Multiply each encoder group's learning rate by ``lr_scale[m]`` (order of MODALITIES),
    for the next ``opt.step()`` only: call it just before, and step the scheduler after."""
    scale = {m: float(lr_scale[i]) for i, m in enumerate(MODALITIES)}
    for group in opt.param_groups:
        m = group.get("modality")
        if m is not None:
            group["lr"] = group["lr"] * scale[m]
