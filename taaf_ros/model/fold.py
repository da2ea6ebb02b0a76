"""Norm folding for inference: each RMSBatchNorm's scale multiplied into the weights that feed it.

In eval mode an :class:`~taaf_ros.model.encoders.RMSBatchNorm` is a fixed per-channel scale,
``s = weight / sqrt(running_ms + eps)``, and every layer in front of one is linear without a
bias (the convolutions, the encoders' ``fc``, the TAAF head's modality projections, whose
beta-weighted sum the fusion norm scales). So ``diag(s) W`` computes the same currents with no
norm: at batch 1 that removes eight module calls and five ops each, which cost about as much as
the arithmetic they did. The currents differ from the unfolded network's by float rounding
only; a spike flips only where a membrane lands within rounding of the threshold (tested on
real windows).

A folded network is for inference: it has no norm statistics left to learn, so it refuses
train mode, and checkpoints are saved from the network that was trained.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .encoders import AudioEncoder, EventEncoder, RMSBatchNorm
from .taaf import TAAFHead, TAAFNet


def norm_scale(norm: RMSBatchNorm) -> torch.Tensor:
    """(C,) the eval-mode factor the norm multiplies channel c by."""
    return norm.weight.detach() / (norm.running_ms + norm.eps).sqrt()


def _scale_rows(weight: torch.Tensor, scale: torch.Tensor) -> None:
    """Output channel c of a conv / linear weight times scale[c], in place."""
    weight.mul_(scale.to(weight.dtype).reshape(-1, *[1] * (weight.dim() - 1)))


def _fold_encoder(enc: EventEncoder | AudioEncoder) -> None:
    layers = list(enc.features)
    for i, layer in enumerate(layers):
        if isinstance(layer, RMSBatchNorm):
            conv = layers[i - 1]
            if not isinstance(conv, nn.Conv1d | nn.Conv2d) or conv.bias is not None:
                raise TypeError(f"cannot fold a norm after {type(conv).__name__} with a bias")
            _scale_rows(conv.weight, norm_scale(layer))
            layers[i] = nn.Identity()
    enc.features = nn.Sequential(*layers)
    _scale_rows(enc.fc.weight, norm_scale(enc.bn))
    enc.bn = nn.Identity()


def fold_norms(net: TAAFNet) -> TAAFNet:
    """An eval-mode copy of ``net`` with every RMSBatchNorm folded into the layer before it
    (``net`` itself is unchanged). Idempotent: a folded network is returned as a copy."""
    folded = copy.deepcopy(net).eval()
    if folded.norms_folded:
        return folded
    with torch.no_grad():
        for enc in folded.encoders.values():
            _fold_encoder(enc)
        head = folded.head
        if isinstance(head, TAAFHead):
            # bn(sum_m beta_m P_m h_m) = sum_m beta_m (diag(s) P_m) h_m: the beta-weighted sum
            # is linear and the projections have no bias
            s = norm_scale(head.fusion_bn)
            for proj in head.proj_m:
                _scale_rows(proj.weight, s)
            head.fusion_bn = nn.Identity()
    folded.norms_folded = True
    return folded
