"""What a fusion head returns (:class:`TAAFOutput`), shared by the TAAF and concat heads."""

from __future__ import annotations

from typing import NamedTuple

import torch


class TAAFOutput(NamedTuple):
    """What the network returns for a batch.

    logits: (B, K) fused class scores: the decision. With fitted late-fusion weights
        (``late_fusion.py``) the log-scores of the late-fused product of experts, else the
        head's own logits.
    unimodal_logits: (B, M, K) per-modality readouts, sum_t alpha[t] C_m(h~_m[t]).
    step_logits_per_modality: (B, T, M, K) C_m(h~_m[t]) before temporal pooling (for the loss).
    alpha: (B, T) temporal attention, sums to 1 over T.
    beta: (B, T, M) modality attention per step, sums to 1 over the present modalities.
    modality_attention: (B, M) a_m = sum_t alpha[t] beta_m[t], sums to 1.
    attention_map: (B, T, M) alpha[t] beta_m[t], sums to 1 over (T, M).
    present: (B, M) bool, the modalities used for each sample.
    head_logits: (B, K) the fusion head's own logits (what training optimises).
    """

    logits: torch.Tensor
    unimodal_logits: torch.Tensor
    step_logits_per_modality: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    modality_attention: torch.Tensor
    attention_map: torch.Tensor
    present: torch.Tensor
    head_logits: torch.Tensor


def time_first_output(logits: torch.Tensor, unimodal: torch.Tensor, step_m: torch.Tensor,
                      alpha: torch.Tensor, beta: torch.Tensor, present: torch.Tensor
                      ) -> TAAFOutput:
    """TAAFOutput from a head's time-first tensors: step_m (T,B,M,K), alpha (T,B), beta (T,B,M)."""
    amap = (alpha.unsqueeze(-1) * beta).transpose(0, 1)  # (B, T, M)
    return TAAFOutput(
        logits=logits,
        unimodal_logits=unimodal,
        step_logits_per_modality=step_m.permute(1, 0, 2, 3),
        alpha=alpha.transpose(0, 1),
        beta=beta.transpose(0, 1),
        modality_attention=amap.sum(dim=1),
        attention_map=amap,
        present=present,
        head_logits=logits,
    )
