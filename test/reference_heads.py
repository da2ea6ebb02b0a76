"""Reference: the fusion heads and the late fusion as first written, with einsums on
time-first (T, B, M, D) features and 3-D linears. The heads in ``taaf_ros.model`` take
modality-first (M, T, B, D) features and call the matrix products those einsums ran, for fewer
dispatched ops at batch 1; test_heads.py holds them equal bit for bit."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from taaf_ros.model.fusion import ConcatHead
from taaf_ros.model.grad_scale import scale_grad
from taaf_ros.model.output import TAAFOutput, time_first_output
from taaf_ros.model.taaf import TAAFHead


def taaf_head(head: TAAFHead, h: torch.Tensor, present: torch.Tensor,
              grad_scale: torch.Tensor | None = None) -> TAAFOutput:
    """h: (T, B, M, D); present: (B, M) bool."""
    T, B, M, D = h.shape
    ht = torch.einsum("mts,sbmd->tbmd", head.warp(), h)
    if grad_scale is not None:
        ht = torch.stack([scale_grad(ht[:, :, m], grad_scale, m) for m in range(M)], dim=2)
    scores = torch.cat([head.score_m[m](ht[:, :, m]) for m in range(M)], dim=-1)
    beta = scores.masked_fill(~present, float("-inf")).softmax(dim=-1)
    current = sum(beta[..., m : m + 1] * head.proj_m[m](ht[:, :, m]) for m in range(M))
    current = head.fusion_bn(current.reshape(T * B, D))
    g = head.fusion_lif(current).reshape(T, B, D)
    alpha = head.score(g).squeeze(-1).softmax(dim=0)
    logits = torch.einsum("tb,tbk->bk", alpha, head.read(g))
    step_m = torch.stack([head.read_m[m](ht[:, :, m]) for m in range(M)], dim=2)
    unimodal = torch.einsum("tb,tbmk->bmk", alpha, step_m)
    return time_first_output(logits, unimodal, step_m, alpha, beta, present)


def concat_head(head: ConcatHead, h: torch.Tensor, present: torch.Tensor,
                grad_scale: torch.Tensor | None = None) -> TAAFOutput:
    """h: (T, B, M, D); present: (B, M) bool."""
    T, B, M, _ = h.shape
    if grad_scale is not None:
        h = torch.stack([scale_grad(h[:, :, m], grad_scale, m) for m in range(M)], dim=2)
    n_present = present.sum(dim=1).to(h.dtype)
    step_m = torch.einsum("tbmd,kmd->tbmk", h, head.weight)
    step_m = step_m + (head.bias / n_present.unsqueeze(-1)).reshape(1, B, 1, -1)
    step_m = step_m * present.to(h.dtype).reshape(1, B, M, 1)
    alpha = torch.full((T, B), 1.0 / T, dtype=h.dtype, device=h.device)
    beta = (present.to(h.dtype) / n_present.unsqueeze(-1)).expand(T, B, M)
    unimodal = step_m.mean(dim=0)
    return time_first_output(unimodal.sum(dim=1), unimodal, step_m, alpha, beta, present)


def combine_readouts(head_logits: torch.Tensor, unimodal_logits: torch.Tensor,
                     present: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = weights.to(head_logits)
    out = w[0] * F.log_softmax(head_logits, dim=-1)
    mask = present.to(head_logits.dtype).unsqueeze(-1)
    per_m = F.log_softmax(unimodal_logits, dim=-1) * mask
    return out + torch.einsum("m,bmk->bk", w[1:], per_m)
