"""The optimiser: AdamW or SGD, warm-up then cosine, and per-modality learning rates.

Parameter groups are split by modality (each encoder's parameters, tagged ``modality``) and by
weight decay (none on biases, norm scales and the warping logits). The modulated methods slow
the dominant modality by multiplying its encoders' learning rate by ``lr_scale[m]`` for one
step (:func:`scale_encoder_lr`, see ``taaf_ros.model.loss``); the scheduler then sets every
group back to its scheduled rate, so factors never accumulate.

On the CPU and CUDA the optimisers are torch's fused kernels (one kernel for all parameters:
the step of AdamW took 2.7 ms unfused, 0.6 ms fused on the 2-core CPU) and each group's
learning rate is a one-element tensor on the parameters' device: the scheduler fills it and
``scale_encoder_lr`` multiplies it there, so no step reads a value back from the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from taaf_ros.model import MODALITIES, TAAFNet

#: Peak learning rates, per optimiser: the default of each, and what optimiser selection tries.
PEAK_LR = {"adamw": 0.003, "sgd": 0.01}

OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and its learning-rate schedule.

    Attributes:
        name: adamw or sgd (with momentum). The modulated methods slow an encoder through its
            learning rate, which either optimiser honours.
        lr: peak learning rate (cosine decay to lr_min_ratio * lr, per step).
        lr_min_ratio: final learning rate as a fraction of lr.
        warmup_steps: linear warm-up steps before the cosine decay.
        weight_decay: decoupled for AdamW, L2 for SGD; none on biases, norm scales and the
            warping logits.
        momentum: SGD momentum (name sgd).
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = PEAK_LR["adamw"]
    lr_min_ratio: float = 0.02
    warmup_steps: int = 20
    weight_decay: float = 0.01
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.lr <= 0 or not 0 <= self.lr_min_ratio <= 1 or self.warmup_steps < 0:
            raise ValueError("need lr > 0, 0 <= lr_min_ratio <= 1 and warmup_steps >= 0")


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


def make_optimizer(model: TAAFNet, cfg: OptimConfig, total_steps: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """``cfg.name`` (adamw | sgd with ``cfg.momentum``) at ``cfg.lr``, ``cfg.weight_decay``;
    linear warm-up over ``cfg.warmup_steps``, then cosine to ``cfg.lr_min_ratio * cfg.lr``.
    Fused, with learning rates as tensors on the device, where the parameters are on the CPU
    or CUDA (see the module doc)."""
    groups = parameter_groups(model, cfg.weight_decay)
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    if fused:  # each group its own tensor: scale_encoder_lr scales groups apart
        for group in groups:
            group["lr"] = torch.tensor(cfg.lr, device=device)
    if cfg.name == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, fused=fused or None)
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
    for the next ``opt.step()`` only: call it just before, and step the scheduler after. A
    tensor learning rate is scaled in place on its device (nothing read back)."""
    for group in opt.param_groups:
        m = group.get("modality")
        if m is None:
            continue
        factor = lr_scale[MODALITIES.index(m)]
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].mul_(factor)
        else:
            group["lr"] = group["lr"] * float(factor)


def learning_rate(opt: torch.optim.Optimizer, group: int = 0) -> float:
    """A group's current learning rate as a number (a tensor rate is read back from its
    device: for the epoch's log, not for every step)."""
    return float(opt.param_groups[group]["lr"])
