"""The TAAF spiking network: encoders, learnable time warping, hierarchical attention, readouts.

Notation (DESIGN.md section 3): T steps, B batch, M modalities (always 2: events, audio, in
that order), D embedding size, K classes. Everything after the encoders works on (T, B, ...)
tensors; ``nn.Linear`` applies to all T*B rows at once, only the fusion LIF loops over T.

The formulation is ours, built from the abstract of arXiv 2505.14535; where it differs from the
paper is unknown.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import MODALITIES, ModelConfig
from .encoders import RMSBatchNorm, build_encoder, make_lif


class TAAFOutput(NamedTuple):
    """What the network returns for a batch.

    logits: (B, K) fused class scores.
    unimodal_logits: (B, M, K) per-modality readouts, sum_t alpha[t] C_m(h~_m[t]).
    step_logits_per_modality: (B, T, M, K) C_m(h~_m[t]) before temporal pooling (for the loss).
    alpha: (B, T) temporal attention, sums to 1 over T.
    beta: (B, T, M) modality attention per step, sums to 1 over the present modalities.
    modality_attention: (B, M) a_m = sum_t alpha[t] beta_m[t], sums to 1.
    attention_map: (B, T, M) alpha[t] beta_m[t], sums to 1 over (T, M).
    present: (B, M) bool, the modalities used for each sample.
    """

    logits: torch.Tensor
    unimodal_logits: torch.Tensor
    step_logits_per_modality: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    modality_attention: torch.Tensor
    attention_map: torch.Tensor
    present: torch.Tensor


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
    )


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient at step t by k[t, m].

    ``k`` is read when backward runs, not when forward runs, so a caller may fill it in place
    between the forward pass and ``loss.backward()`` (current-batch coefficients in one pass).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, m: int) -> torch.Tensor:  # noqa: ANN001
        ctx.k, ctx.m = k, m  # kept by reference on purpose (see class docstring)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        k = ctx.k[:, ctx.m].to(device=grad.device, dtype=grad.dtype)
        return grad * k.reshape(-1, *([1] * (grad.dim() - 1))), None, None


def scale_grad(x: torch.Tensor, k: torch.Tensor, m: int) -> torch.Tensor:
    """x: (T, B, ...); k: (T, M) gradient scale, read at backward time; m: modality index."""
    return _ScaleGrad.apply(x, k, m)


class TAAFHead(nn.Module):
    """Learnable time warping + hierarchical (modality, then temporal) attention + readouts."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        T, D, K, M = cfg.T, cfg.hidden, cfg.n_classes, len(MODALITIES)
        # Row-softmax of these logits is A_m; warp_init on the diagonal makes A_m ~ identity.
        self.warp_logits = nn.Parameter(cfg.warp_init * torch.eye(T).repeat(M, 1, 1))  # (M,T,T)
        self.score_m = nn.ModuleList(nn.Linear(D, 1) for _ in range(M))
        # no bias: a silent modality must inject no current into the fusion neurons
        self.proj_m = nn.ModuleList(nn.Linear(D, D, bias=False) for _ in range(M))
        self.read_m = nn.ModuleList(nn.Linear(D, K) for _ in range(M))
        self.fusion_bn = RMSBatchNorm(D)  # scales the fused current to the LIF threshold
        self.fusion_lif = make_lif(cfg)
        self.score = nn.Linear(D, 1)
        self.read = nn.Linear(D, K)

    def warp(self) -> torch.Tensor:
        """A: (M, T, T), each row sums to 1."""
        return self.warp_logits.softmax(dim=-1)

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> TAAFOutput:
        """h: (T, B, M, D) encoder spikes (zero for absent); present: (B, M) bool."""
        T, B, M, D = h.shape
        ht = torch.einsum("mts,sbmd->tbmd", self.warp(), h)  # h~_m[t] = sum_s A_m[t,s] h_m[s]
        scores = torch.cat([self.score_m[m](ht[:, :, m]) for m in range(M)], dim=-1)  # (T,B,M)
        beta = scores.masked_fill(~present, float("-inf")).softmax(dim=-1)  # (T, B, M)
        current = sum(beta[..., m : m + 1] * self.proj_m[m](ht[:, :, m]) for m in range(M))
        current = self.fusion_bn(current.reshape(T * B, D))  # (T*B, D)
        g = self.fusion_lif(current).reshape(T, B, D)  # fused spikes g[t]
        alpha = self.score(g).squeeze(-1).softmax(dim=0)  # (T, B), softmax over t
        logits = torch.einsum("tb,tbk->bk", alpha, self.read(g))  # (B, K)
        step_m = torch.stack([self.read_m[m](ht[:, :, m]) for m in range(M)], dim=2)  # (T,B,M,K)
        unimodal = torch.einsum("tb,tbmk->bmk", alpha, step_m)  # (B, M, K)
        return time_first_output(logits, unimodal, step_m, alpha, beta, present)


class TAAFNet(nn.Module):
    """Multimodal spiking network: one encoder per configured modality, then a fusion head.

    ``cfg.fusion == "taaf"`` uses :class:`TAAFHead`; ``"concat"`` the baseline
    :class:`~taaf_ros.model.fusion.ConcatHead`. Modalities not in ``cfg.modalities`` have no
    encoder and are always reported absent (M stays 2 so index 0 is events, 1 is audio).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from .fusion import ConcatHead  # local: fusion imports TAAFOutput from this module

        self.cfg = cfg
        self.encoders = nn.ModuleDict({m: build_encoder(m, cfg) for m in cfg.modalities})
        self.head: nn.Module = TAAFHead(cfg) if cfg.fusion == "taaf" else ConcatHead(cfg)

    def _input_shape(self, m: str) -> tuple[int, ...]:
        return tuple(self.cfg.event_shape) if m == "events" else (2, self.cfg.audio_channels)

    def forward(
        self,
        events: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
        grad_scale: torch.Tensor | None = None,
    ) -> TAAFOutput:
        """Classify one batch.

        Args:
            events: (T, B, P, H, W) event counts (any numeric dtype) or None (absent).
            audio: (T, B, 2, C) audio spike counts or None (absent).
            present: (B, M) bool; False masks a modality for that sample (zero input, removed
                from the modality attention). None: present wherever an input is given.
            grad_scale: (T, M) factors applied to the gradient flowing back into each encoder
                at each step (identity forward). Read at backward time: see ``_ScaleGrad``.
        Returns:
            TAAFOutput.
        """
        inputs = {"events": events, "audio": audio}
        given = [x for x in inputs.values() if x is not None]
        if not given:
            raise ValueError("at least one of events / audio is required")
        T, B = given[0].shape[:2]
        if T != self.cfg.T:
            raise ValueError(f"expected T={self.cfg.T} time steps, got {T}")
        dev = next(self.parameters()).device
        avail = torch.tensor(
            [inputs[m] is not None and m in self.encoders for m in MODALITIES], device=dev
        )
        present = avail.expand(B, -1) if present is None else present.to(dev).bool() & avail
        if not bool(present.any(dim=1).all()):
            raise ValueError("every sample needs at least one present, configured modality")
        dtype = next(self.parameters()).dtype
        h = torch.zeros(T, B, len(MODALITIES), self.cfg.hidden, device=dev, dtype=dtype)
        for i, m in enumerate(MODALITIES):
            if not bool(avail[i]) or not bool(present[:, i].any()):
                continue  # nobody uses this encoder in this batch: skip its compute
            x = inputs[m]
            if tuple(x.shape[2:]) != self._input_shape(m) or x.shape[1] != B:
                raise ValueError(
                    f"{m}: expected (T, {B}, {self._input_shape(m)}), got {tuple(x.shape)}"
                )
            mask = present[:, i].to(dtype)  # (B,)
            x = x.to(device=dev, dtype=dtype) * self.cfg.input_scale
            x = x * mask.reshape(1, B, *([1] * (x.dim() - 2)))  # absent -> zero input
            hm = self.encoders[m](x) * mask.reshape(1, B, 1)  # (T, B, D)
            if grad_scale is not None:
                hm = scale_grad(hm, grad_scale, i)
            h = h.index_copy(2, torch.tensor([i], device=dev), hm.unsqueeze(2))
        return self.head(h, present)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
