"""Temporal adaptive balanced fusion loss, OGM-GE, and the method factory.

Modulation design (one forward pass, current-batch coefficients). A coefficient k[t, m] < 1
slows modality m's learning at step t. It is split in two, so that it survives an adaptive
optimiser (Adam divides each parameter's step by the RMS of its own gradient, which removes
any gradient scale that is constant over a few steps):

- its *magnitude*, lr_scale[m] = mean_t k[t, m], multiplies the learning rate of encoder m's
  parameter groups for this step (``taaf_ros.training.optim.scale_encoder_lr``): "modulates
  learning rates per modality", whatever the optimiser;
- its *shape over time*, k[t, m] / lr_scale[m] (mean 1), scales the gradient flowing back from
  modality m's features at step t, inside the head, at the warped step the coefficient was
  measured at (``grad_scale.py``; read when backward runs).

A training step is::

      k = loss_fn.new_grad_scale()                     # ones (T, M), or None
      out = model(events, audio, grad_scale=k)
      loss, info = loss_fn(out, y, grad_scale=k)       # fills k in place from this batch
      optimizer.zero_grad(); loss.backward()           # step t of modality m: grad * shape
      loss_fn.after_backward(model, info)              # OGM-GE's Gaussian enhancement
      scale_encoder_lr(optimizer, info["lr_scale"])    # the magnitude, for this step
      optimizer.step(); scheduler.step()               # the scheduler resets the lr

OGM-GE's coefficient is a magnitude only (one per modality): it goes to ``lr_scale``. This
costs no second (detached) pass and has no one-batch lag; the coefficients use detached
probabilities, so they steer learning without being part of the objective.

Methods: taaf-balanced, taaf (no balancing), concat, concat-ogmge, events-only, audio-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .config import MODALITIES, ModelConfig
from .output import TAAFOutput

BALANCE_ON: tuple[str, ...] = ("batch", "validation")

METHODS: tuple[str, ...] = (
    "taaf-balanced",
    "taaf",
    "concat",
    "concat-ogmge",
    "events-only",
    "audio-only",
)

_EPS = 1e-8


@dataclass(frozen=True)
class LossConfig:
    """Loss options (the defaults are taaf-balanced's; ``METHOD_PRESETS`` sets the others).

    Attributes:
        aux_weight: lambda, weight of the unimodal auxiliary losses.
        balance: temporal adaptive balancing (k_m[t] on the encoders' learning rates and
            gradients, w_m on the auxiliary losses).
        eta: balancing strength in k = 1 - tanh(eta * relu(rho - 1)).
        balance_on: where the contributions s_m[t] that set the balancing are measured:
            "batch" (each training batch, as DESIGN 3.4 states) or "validation" (the
            validation speaker, after each epoch, set with ``set_held_out_contributions``; no
            balancing before the first measurement). See docs/model.md.
        ogm: OGM-GE's coefficient on the dominant encoder's learning rate (concat baseline).
        ogm_alpha: OGM-GE alpha.
        gaussian_enhance: add N(0, std(grad)) to encoder weight gradients (the GE of OGM-GE).
    """

    aux_weight: float = 0.5
    balance: bool = True
    eta: float = 1.0
    balance_on: Literal["batch", "validation"] = "batch"
    ogm: bool = False
    ogm_alpha: float = 0.5
    gaussian_enhance: bool = False


def _ratio_to_others(s: torch.Tensor, used: torch.Tensor, n_used: int) -> torch.Tensor:
    """s: (..., M) scores; used: (M,) bool, ``n_used`` of them True -> s_m / mean_{n != m,
    used} s_n, 1 where unused (n_used is structure: passed, never read from the device)."""
    if n_used < 2:
        return torch.ones_like(s)
    s = s * used
    others = (s.sum(dim=-1, keepdim=True) - s) / (n_used - 1)
    return torch.where(used, s / (others + _EPS), torch.ones_like(s))


def contributions(attention_map: torch.Tensor, step_logits: torch.Tensor, y: torch.Tensor,
                  weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed contributions c_m[t] = alpha[t] beta_m[t] p_m[t](y) over the samples, each
    counted with ``weight`` (B,), and the summed weight: ((T, M), ()).

    attention_map (B, T, M) is alpha[t] beta_m[t]; step_logits (B, T, M, K) the readouts
    C_m(h~_m[t]); p_m[t](y) is the probability a step's readout gives the true class.
    """
    B, T, M, _ = step_logits.shape
    idx = y.reshape(-1, 1, 1, 1).expand(-1, T, M, 1)
    p_y = step_logits.softmax(dim=-1).gather(-1, idx).squeeze(-1)  # (B, T, M)
    c = attention_map * p_y
    return (c * weight.reshape(-1, 1, 1)).sum(dim=0), weight.sum()


def _masked_ce(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean CE over the samples where mask (B,) is True; 0 if none."""
    ce = F.cross_entropy(logits, y, reduction="none")
    return (ce * mask).sum() / mask.sum().clamp(min=1)


class BalancedFusionLoss:
    """L = CE(logits, y) + lambda * sum_m w_m CE(logits_m, y) (DESIGN 3.4), plus the modulation.

    Calling returns ``(loss, info)``; info holds 0-d tensors for logging (``loss``, ``ce``,
    ``k_events``, ``w_audio``, ``rho_events``, ``lr_scale_events``, ...: on the loss's device,
    read back only when logged) and tensors ``k`` (T, M), ``rho`` (T, M), ``s``
    (T, M), ``w`` (M,), ``ogm_k`` (M,) and ``lr_scale`` (M,), the learning-rate factor of each
    encoder for this step.
    """

    def __init__(self, cfg: LossConfig, model_cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.used = torch.tensor([m in model_cfg.modalities for m in MODALITIES])
        self.n_used = len(model_cfg.modalities)
        # Sums a batch statistic over the processes of a distributed run (identity alone), so
        # that every process computes the coefficients of the whole global batch.
        self.reduce: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
        if cfg.balance_on not in BALANCE_ON:
            raise ValueError(f"balance_on must be one of {BALANCE_ON}, got {cfg.balance_on!r}")
        # (T, M) contributions measured on held-out speakers (balance_on == "validation")
        self.held_out_contributions: torch.Tensor | None = None
        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {}

    def set_held_out_contributions(self, s: torch.Tensor | None) -> None:
        """The mean contributions s_m[t] (T, M) measured on held-out data (balance_on
        "validation"); they set the coefficients until the next call."""
        self.held_out_contributions = None if s is None else s.detach().float().cpu()
        self._on_device = {k: v for k, v in self._on_device.items() if k[0] != "held_out"}

    def _resident(self, name: str, value: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``value`` on ``device``, copied there once (a copy every step would wait for the
        device)."""
        key = (name, device)
        if key not in self._on_device:
            self._on_device[key] = value.to(device)
        return self._on_device[key]

    @property
    def uses_grad_scale(self) -> bool:
        return self.cfg.balance

    @property
    def modulates_lr(self) -> bool:
        """Whether ``info["lr_scale"]`` can differ from 1 (balancing or OGM): the trainer scales
        the encoders' learning rates only then."""
        return self.cfg.balance or self.cfg.ogm

    def new_grad_scale(self, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """A (T, M) ones tensor on ``device`` to pass to the model and then to this loss; None
        if unused."""
        if not self.cfg.balance:
            return None
        return torch.ones(self.model_cfg.T, len(MODALITIES), device=device)

    def __call__(
        self, out: TAAFOutput, y: torch.Tensor, grad_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        # Nothing here reads a value back from the device: the coefficients are arithmetic on
        # the batch's statistics (a batch without a sample of every modality leaves them 1),
        # and the logged values are 0-d tensors the trainer sums on the device.
        c = self.cfg
        dev = out.logits.device
        used = self._resident("used", self.used, dev)
        present = out.present & used  # (B, M)
        both = (present | ~used).all(dim=1)  # (B,) samples with every configured modality in
        info: dict[str, Any] = {}
        T, M = out.alpha.shape[1], len(MODALITIES)
        w = torch.ones(M, device=dev)
        with torch.no_grad():
            # s_m[t]: mean of c_m[t] over the batch's samples with every modality in
            s_sum, n = contributions(out.attention_map, out.step_logits_per_modality, y,
                                     both.to(out.attention_map.dtype))
            sums = self.reduce(torch.cat([s_sum.reshape(-1), n.reshape(1)]))
            measured = sums[-1] > 0  # any sample with every modality, in any process
            s = sums[:-1].reshape(T, M) / sums[-1].clamp(min=1.0)  # batch mean, all processes
            if c.balance_on == "validation":  # measured on held-out speakers, if yet
                held = self.held_out_contributions
                s = self._resident("held_out", held, dev) if held is not None else \
                    torch.ones_like(s)
            rho = _ratio_to_others(s, used, self.n_used)  # (T, M)
            k = torch.ones(T, M, device=dev)
            if c.balance:
                k = torch.where(measured, 1.0 - torch.tanh(c.eta * F.relu(rho - 1.0)), k)
                # w_m: the weaker modality over the whole window (rho < 1) gets up to 2x.
                rho_all = _ratio_to_others(s.sum(dim=0), used, self.n_used)  # (M,)
                w_b = 1.0 + torch.tanh(c.eta * F.relu(1.0 / (rho_all + _EPS) - 1.0))
                w = torch.where(used & measured, w_b, w)
            ogm_k = torch.ones(M, device=dev)
            if c.ogm:
                # Peng et al.: score_m = sum_b softmax(logits_m)[y] over the batch
                conf = (
                    out.unimodal_logits.softmax(dim=-1)
                    .gather(-1, y.reshape(-1, 1, 1).expand(-1, M, 1))
                    .squeeze(-1)
                )  # (B, M)
                score = self.reduce((conf * both.reshape(-1, 1)).sum(dim=0))
                ratio = _ratio_to_others(score, used, self.n_used)
                ogm_k = torch.where(measured, 1.0 - torch.tanh(c.ogm_alpha * F.relu(ratio - 1.0)),
                                    ogm_k)
                info.update({f"ogm_ratio_{m}": ratio[i] for i, m in enumerate(MODALITIES)})
        lr_scale = k.mean(dim=0) * ogm_k  # (M,): the magnitude (one of the two is all ones)
        if grad_scale is not None:
            # the shape over time, mean 1 (read by the model's backward, see module doc)
            grad_scale.copy_((k / k.mean(dim=0, keepdim=True).clamp(min=_EPS)).to(grad_scale))

        ce = F.cross_entropy(out.head_logits, y)
        loss = ce
        for i, m in enumerate(MODALITIES):
            if m not in self.model_cfg.modalities or c.aux_weight == 0.0:
                continue
            aux = _masked_ce(out.unimodal_logits[:, i], y, present[:, i].float())
            loss = loss + c.aux_weight * w[i] * aux
            info[f"aux_{m}"] = aux.detach()
        info.update(loss=loss.detach(), ce=ce.detach(), k=k, rho=rho, s=s, w=w)
        info["ogm_k"], info["lr_scale"] = ogm_k, lr_scale
        for i, m in enumerate(MODALITIES):
            info[f"lr_scale_{m}"] = lr_scale[i]
            info[f"k_{m}"] = k[:, i].mean()
            info[f"rho_{m}"] = rho[:, i].mean()
            info[f"w_{m}"] = w[i]
        return loss, info

    def after_backward(self, model: nn.Module, info: dict[str, Any]) -> None:
        """OGM-GE's Gaussian enhancement; call between ``loss.backward()`` and ``step()``.

        With ``gaussian_enhance``: N(0, std(grad)) noise is added to every encoder weight
        gradient (conv / linear weights, as OGM-GE does for its conv weights), to restore the
        generalisation the slow-down costs. The slow-down itself (OGM's coefficient) is
        ``info["lr_scale"]``, applied to the learning rate by the optimiser step.
        """
        if not self.cfg.gaussian_enhance:
            return
        encoders = getattr(model, "encoders", {})
        for m in MODALITIES:
            if m not in encoders:
                continue
            for p in encoders[m].parameters():
                if p.grad is not None and p.grad.dim() >= 2 and p.grad.numel() > 1:
                    # var_mean over one dim: the CPU's whole-tensor std reads its mean back
                    std = torch.var_mean(p.grad.flatten(), dim=0)[0].sqrt()
                    p.grad.add_(torch.randn_like(p.grad) * (std + _EPS))


#: Per method: (fusion, modalities, LossConfig fields that differ from the defaults).
METHOD_PRESETS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "taaf-balanced": ("taaf", MODALITIES, {}),
    "taaf": ("taaf", MODALITIES, {"balance": False}),
    "concat": ("concat", MODALITIES, {"aux_weight": 0.0, "balance": False}),
    "concat-ogmge": ("concat", MODALITIES, {"aux_weight": 0.0, "balance": False, "ogm": True,
                                            "gaussian_enhance": True}),
    "events-only": ("taaf", ("events",), {"aux_weight": 0.0, "balance": False}),
    "audio-only": ("taaf", ("audio",), {"aux_weight": 0.0, "balance": False}),
}
assert tuple(METHOD_PRESETS) == METHODS


def method_configs(method: str, model_cfg: ModelConfig | None = None,
                   loss_cfg: LossConfig | None = None) -> tuple[ModelConfig, LossConfig]:
    """A method's preset (one of METHODS) over a model and a loss configuration (default
    ``ModelConfig()`` / ``LossConfig()``): the one place presets are applied (the trainer's
    ``with_method`` adds the method's optimiser).

    >>> mcfg, lcfg = method_configs("events-only")
    >>> mcfg.modalities, lcfg.balance
    (('events',), False)
    """
    if method not in METHOD_PRESETS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    fusion, modalities, preset = METHOD_PRESETS[method]
    return (replace(model_cfg or ModelConfig(), fusion=fusion, modalities=modalities),
            replace(loss_cfg or LossConfig(), **preset))


def build_method(
    method: str, model_cfg: ModelConfig | None = None, **loss_overrides: Any
) -> tuple[ModelConfig, BalancedFusionLoss]:
    """Model config + loss for a method name: :func:`method_configs`, then
    ``loss_overrides`` (LossConfig fields, e.g. ``eta=2.0``) over the preset."""
    mcfg, lcfg = method_configs(method, model_cfg)
    return mcfg, BalancedFusionLoss(replace(lcfg, **loss_overrides), mcfg)
