"""Late fusion, fitted on held-out speakers: the fused head and each modality's readout,
weighted by how much each deserves to be trusted.

The TAAF head's modality attention is learned on the training speakers. On a new speaker the
audio readout is much weaker than on the voices it was trained on, yet the attention still
gives audio most of the weight, so the fused prediction can fall below the event readout
alone. The final decision is therefore a weighted product of experts::

    log q(y) = w_0 log softmax(head_logits) + sum_m w_m [m present] log softmax(logits_m)

with ``w >= 0`` fitted on the validation speaker (never the test speaker) by minimising the
negative log-likelihood. ``w = (1, 0, ..., 0)`` is the head alone (the identity). An absent
modality's term is dropped, so missing inputs need no refit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_weights(n_modalities: int) -> torch.Tensor:
    """(1, 0, ..., 0): the head's own fused logits, no readout mixed in."""
    w = torch.zeros(n_modalities + 1)
    w[0] = 1.0
    return w


def combine_readouts(head_logits: torch.Tensor, unimodal_logits: torch.Tensor,
                     present: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """head_logits (B, K), unimodal_logits (B, M, K), present (B, M) bool, weights (M + 1,)
    -> (B, K) log-scores of the weighted product of experts."""
    w = weights.to(head_logits)
    out = w[0] * F.log_softmax(head_logits, dim=-1)
    mask = present.to(head_logits.dtype).unsqueeze(-1)  # (B, M, 1)
    per_m = F.log_softmax(unimodal_logits, dim=-1) * mask  # (B, M, K)
    # sum_m w_m per_m[b, m, k]: the bmm that einsum("m,bmk->bk") runs, bit for bit, without
    # its dozen view ops (at batch 1 the time is dispatch)
    B, M, K = per_m.shape
    return out + torch.bmm(w[1:].view(1, 1, M), per_m.transpose(0, 1).reshape(1, M, B * K)
                           ).view(B, K)


def fit_readout_weights(head_logits: torch.Tensor, unimodal_logits: torch.Tensor,
                        present: torch.Tensor, y: torch.Tensor, used: torch.Tensor,
                        iters: int = 100) -> torch.Tensor:
    """The weights (M + 1,) >= 0 that minimise the NLL of :func:`combine_readouts` on
    held-out samples; modalities not ``used`` (M,) bool keep weight 0.

    Deterministic (L-BFGS in float64 from a fixed start); the fit has M + 1 parameters, so a
    validation speaker's 1,500 samples pin it down.
    """
    h = head_logits.detach().double()
    u = unimodal_logits.detach().double()
    mask = torch.cat([torch.ones(1, dtype=torch.bool), used.bool().cpu()])
    raw = torch.zeros(len(mask), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([raw], max_iter=iters, line_search_fn="strong_wolfe")

    def weights() -> torch.Tensor:
        return F.softplus(raw) * mask  # softplus(0) = 0.69: every term starts in

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(combine_readouts(h, u, present, weights()), y)
        loss.backward()
        return loss

    opt.step(closure)
    w = weights().detach().float()
    if not torch.isfinite(w).all() or float(w.sum()) < 1e-3:  # degenerate: the head alone
        return identity_weights(len(mask) - 1)
    return w
