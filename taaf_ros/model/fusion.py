"""Concatenation fusion baseline (the setting of OGM-GE, Peng et al., CVPR 2022).

The fused logits at step t are a linear classifier on the concatenated embeddings,
W [h_e[t]; h_a[t]] + b = sum_m W_m h_m[t] + b, averaged over t. As in OGM-GE, the unimodal
readouts are the classifier's own halves, W_m h_m[t] + b / M_present, so no extra weights exist
and the confidence ratios measure what each modality contributes to the fused decision.
No time warping, no attention: alpha is uniform and beta is uniform over present modalities.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import MODALITIES, ModelConfig
from .grad_scale import scale_grad
from .output import TAAFOutput, time_first_output


class ConcatHead(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        M = len(MODALITIES)
        self.weight = nn.Parameter(torch.empty(cfg.n_classes, M, cfg.hidden))  # (K, M, D)
        self.bias = nn.Parameter(torch.zeros(cfg.n_classes))
        nn.init.uniform_(self.weight, -(cfg.hidden**-0.5), cfg.hidden**-0.5)
        self._used = [m in cfg.modalities for m in MODALITIES]

    def forward(self, h: torch.Tensor, present: torch.Tensor | None,
                grad_scale: torch.Tensor | None = None) -> TAAFOutput:
        """h: (M, T, B, D) encoder spikes (zero for absent); present: (B, M) bool, or None when
        every modality is present in every sample; grad_scale: (T, M) gradient factors per
        step and modality (no warping here: the encoder's steps)."""
        M, T, B, _ = h.shape
        if present is None:
            present = torch.ones(B, M, dtype=torch.bool, device=h.device)
        if grad_scale is not None:
            h = torch.stack([scale_grad(h[m], grad_scale, m) for m in range(M)])
        n_present = present.sum(dim=1).to(h.dtype)  # (B,)
        # step_m[t, b, m] = W_m h_m[t] + b / M_present
        step_m = torch.einsum("mtbd,kmd->tbmk", h, self.weight)
        step_m = step_m + (self.bias / n_present.unsqueeze(-1)).reshape(1, B, 1, -1)
        step_m = step_m * present.to(h.dtype).reshape(1, B, M, 1)  # absent contributes nothing
        alpha = torch.full((T, B), 1.0 / T, dtype=h.dtype, device=h.device)
        beta = (present.to(h.dtype) / n_present.unsqueeze(-1)).expand(T, B, M)
        unimodal = step_m.mean(dim=0)  # (B, M, K)
        return time_first_output(unimodal.sum(dim=1), unimodal, step_m, alpha, beta, present)
