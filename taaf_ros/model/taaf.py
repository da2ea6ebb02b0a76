"""The TAAF spiking network: encoders, learnable time warping, hierarchical attention, readouts.

Notation (docs/model.md, "Network"): T steps, B batch, M modalities (always 2: events, audio, in
that order), D embedding size, K classes. Everything after the encoders works on (T, B, ...)
tensors; ``nn.Linear`` applies to all T*B rows at once, only the fusion LIF loops over T.

The formulation is ours, built from the abstract of arXiv 2505.14535; where it differs from the
paper is unknown.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import MODALITIES, ModelConfig
from .encoders import RMSBatchNorm, build_encoder, make_lif
from .fusion import ConcatHead
from .grad_scale import scale_grad
from .late_fusion import combine_readouts, identity_weights
from .output import TAAFOutput, time_first_output

__all__ = ["TAAFHead", "TAAFNet", "TAAFOutput", "scale_grad", "time_first_output"]


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

    def forward(self, h: torch.Tensor, present: torch.Tensor | None,
                grad_scale: torch.Tensor | None = None) -> TAAFOutput:
        """h: (M, T, B, D) encoder spikes (zero for absent); present: (B, M) bool, or None when
        every modality is present in every sample; grad_scale: (T, M) gradient factors for the
        *warped* features h~_m[t], the steps the balanced loss measured (read at backward
        time).

        At batch 1 the time is dispatch, so this is written for few ops: each modality's
        features are (T*B, D) rows, every linear one matrix product, and the warping and the
        pooling the bmm their einsums ran. Outputs and gradients are those of the einsum
        formulation bit for bit (test/reference_heads.py)."""
        M, T, B, D = h.shape
        # h~_m[t] = sum_s A_m[t,s] h_m[s]: (M, T, T) x (M, T, B*D)
        ht = torch.bmm(self.warp(), h.view(M, T, B * D))
        if grad_scale is None:
            rows = [ht[m].view(T * B, D) for m in range(M)]  # one addmm per linear
        else:  # the balanced loss's gradient factors, on time-first features as always
            # trained (their layout decides the order the bias gradients are summed in)
            scaled = torch.stack([scale_grad(ht[m].view(T, B, D), grad_scale, m)
                                  for m in range(M)], dim=2)
            rows = [scaled[:, :, m] for m in range(M)]  # (T, B, D)
        scores = torch.cat([self.score_m[m](rows[m]) for m in range(M)], dim=-1).view(T, B, M)
        if present is not None:
            scores = scores.masked_fill(~present, float("-inf"))
        beta = scores.softmax(dim=-1)  # (T, B, M)
        first, *rest = [beta[..., m : m + 1] * self.proj_m[m](rows[m]).view(T, B, D)
                        for m in range(M)]
        current = sum(rest, start=first)  # no 0 + first
        g = self.fusion_lif(self.fusion_bn(current.view(T * B, D)))  # fused spikes, (T*B, D)
        alpha = self.score(g).view(T, B).softmax(dim=0)  # (T, B), softmax over t
        # sum_t alpha[t] x[t] as a bmm of (B, 1, T) weights, a view of alpha per use as in the
        # einsums before: autograd sums alpha's gradients in the same order, bit for bit
        logits = torch.bmm(alpha.t().unsqueeze(1), self.read(g).view(T, B, -1).transpose(0, 1))
        step_m = torch.stack([self.read_m[m](rows[m]).view(T, B, -1) for m in range(M)], dim=2)
        unimodal = torch.bmm(alpha.t().unsqueeze(1), step_m.view(T, B, -1).transpose(0, 1))
        if present is None:
            present = torch.ones(B, M, dtype=torch.bool, device=h.device)
        return time_first_output(logits.view(B, -1), unimodal.view(B, M, -1), step_m, alpha,
                                 beta, present)


class TAAFNet(nn.Module):
    """Multimodal spiking network: one encoder per configured modality, then a fusion head.

    ``cfg.fusion == "taaf"`` uses :class:`TAAFHead`; ``"concat"`` the baseline
    :class:`~taaf_ros.model.fusion.ConcatHead`. Modalities not in ``cfg.modalities`` have no
    encoder and are always reported absent (M stays 2 so index 0 is events, 1 is audio).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Distributed training sets this: every process must run the same layers (their batch
        # statistics are summed across processes), whatever its share of the batch holds.
        self.run_every_encoder = False
        self.encoders = nn.ModuleDict({m: build_encoder(m, cfg) for m in cfg.modalities})
        self.head: nn.Module = TAAFHead(cfg) if cfg.fusion == "taaf" else ConcatHead(cfg)
        # Late-fusion weights (head, events, audio), fitted on validation after training
        # (late_fusion.py); the identity until then, so training sees the head alone.
        self.register_buffer("readout_weights", identity_weights(len(MODALITIES)))
        self.late_fusion_fitted = False  # a Python flag: no device sync in forward
        self.norms_folded = False  # fold.py: an inference copy with the norms in the weights
        self.register_load_state_dict_post_hook(lambda module, _: module._sync_late_fusion())

    def train(self, mode: bool = True) -> TAAFNet:
        if mode and self.norms_folded:
            raise RuntimeError("this network's norms are folded into its weights (fold_norms): "
                               "it is for inference only; train the network it was folded from")
        return super().train(mode)

    def set_readout_weights(self, weights: torch.Tensor) -> None:
        """Late-fusion weights (M + 1,) from ``late_fusion.fit_readout_weights``."""
        self.readout_weights.copy_(weights)
        self._sync_late_fusion()

    def _sync_late_fusion(self) -> None:
        identity = identity_weights(len(MODALITIES))
        self.late_fusion_fitted = not torch.equal(self.readout_weights.detach().cpu(), identity)

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
                from the modality attention). None: present wherever an input is given. In
                training a mask on the CPU is checked (every sample has a modality) and decides
                which encoders run, without a device read; give it there (the trainer does).
            grad_scale: (T, M) factors applied to the gradient flowing back from each
                modality's features at each step (identity forward), inside the head where the
                step is the one the coefficients were measured at. Read at backward time: see
                ``grad_scale.py``.
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
        dev, dtype = self.readout_weights.device, self.readout_weights.dtype
        # Which encoders run is structure (configured, given), never a device value: in eval
        # the forward reads nothing back to the host, so torch.export, ONNX and CUDA graphs
        # work. Which samples have a modality is the mask `present`, used arithmetically.
        avail = [inputs[m] is not None and m in self.encoders for m in MODALITIES]
        # Training checks and skips use a mask given on the host, read there (numpy: no
        # device read); a mask already on an accelerator is its caller's to check.
        in_batch = None
        if self.training and present is None and not any(avail):
            raise ValueError("every sample needs at least one present, configured modality")
        if self.training and present is not None and present.device.type == "cpu":
            host = present.bool().numpy() & np.array(avail)
            if not host.any(axis=1).all():
                raise ValueError("every sample needs at least one present, configured modality")
            in_batch = host.any(axis=0)  # (M,): whether any sample has the modality
        if present is not None or not all(avail):  # some sample lacks some modality
            mask_avail = torch.stack([torch.full((B,), a, dtype=torch.bool, device=dev)
                                      for a in avail], dim=1)  # (B, M), no host-to-device copy
            present = mask_avail if present is None else \
                present.to(dev, non_blocking=True).bool() & mask_avail
        # else present stays None: every sample has every modality, nothing to mask
        hs = []
        for i, m in enumerate(MODALITIES):
            skip = not avail[i] or (in_batch is not None and not self.run_every_encoder
                                    and not in_batch[i])
            if skip:  # no encoder, no input, or (training) nobody in this batch uses it
                hs.append(torch.zeros(T, B, self.cfg.hidden, device=dev, dtype=dtype))
                continue
            x = inputs[m]
            if tuple(x.shape[2:]) != self._input_shape(m) or x.shape[1] != B:
                raise ValueError(
                    f"{m}: expected (T, {B}, {self._input_shape(m)}), got {tuple(x.shape)}"
                )
            if present is None:
                x = x.to(device=dev, dtype=dtype)
                scale = self.cfg.input_scale
                hs.append(self.encoders[m](x if scale == 1.0 else x * scale))
                continue
            mask = present[:, i].to(dtype)  # (B,)
            # absent -> zero input; the input scale rides on the (B,) mask: one full-size op
            gain = (mask * self.cfg.input_scale).reshape(1, B, *([1] * (x.dim() - 2)))
            x = x.to(device=dev, dtype=dtype) * gain
            hs.append(self.encoders[m](x) * mask.reshape(1, B, 1))  # (T, B, D)
        h = torch.stack(hs)  # (M, T, B, D)
        out = self.head(h, present, grad_scale)
        if self.late_fusion_fitted:
            out = out._replace(logits=combine_readouts(out.head_logits, out.unimodal_logits,
                                                       out.present, self.readout_weights))
        return out

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
