"""Spiking encoders: conv/linear layers see all T steps at once, only LIF state loops over T.

Shapes use T (time steps), B (batch), D (embedding size). A "folded" tensor has T*B rows in
time-major order (row t*B + b), which is what ``x.reshape(T * B, ...)`` of a (T, B, ...) tensor
gives.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from norse.torch.functional.lif import (
    LIFFeedForwardState,
    LIFParameters,
    lif_feed_forward_step,
)
from norse.torch.functional.threshold import threshold
from torch import nn

from . import lif_fused
from .config import ModelConfig


def lif_sequence(x: torch.Tensor, p: LIFParameters, dt: float) -> torch.Tensor:
    """Spikes (T, B, ...) of LIF neurons driven by currents x (T, B, ...), from rest: a pure
    function of its inputs (norse's ``lif_feed_forward_step`` semantics over all T steps);
    :class:`LIFLayer` is the thin module that holds the parameters.

    The same equations as ``lif_feed_forward_step``, rearranged so that little is left inside
    the time loop (at batch 1 the loop's per-op overhead dominates the network). norse:
    i_new = i + x[t]; v' = v + b (v_leak - v + i_new); z = H(v' - v_th);
    v = (1 - z) v' + z v_reset; i = (1 - a) i_new, with a = dt tau_syn_inv, b = dt tau_mem_inv.
    The synaptic current does not depend on spikes, so i_new[t] = sum_s (1-a)^(t-s) x[s] for
    all t at once (one T x T matmul); the loop keeps the membrane update, norse's
    surrogate-gradient ``threshold`` and the reset: 4 ops per step instead of ~15. Equal to the
    step loop up to float rounding (tested).
    """
    T = x.shape[0]
    a = dt * p.tau_syn_inv
    b = dt * p.tau_mem_inv
    steps = torch.arange(T, device=x.device)
    lag = (steps.reshape(-1, 1) - steps.reshape(1, -1)).to(x.dtype)  # t - s
    decay = torch.where(lag >= 0, (1 - a).to(x.dtype) ** lag.clamp(min=0), 0.0)  # (T, T)
    i_new = torch.tensordot(decay, x, dims=1)  # (T, B, ...)
    drive = b * (i_new + p.v_leak)  # b (v_leak + i_new): the input part of v'
    keep = 1 - b  # the leak part of v': v' = (1 - b) v + drive
    v = torch.zeros_like(x[0])
    out = []
    grad = torch.is_grad_enabled()
    for t in range(T):
        v = torch.addcmul(drive[t], v, keep)
        # training: norse's SuperSpike surrogate (its alpha is unused in norse 1.1);
        # inference: the same heaviside forward without the autograd.Function overhead
        z = threshold(v - p.v_th, "super", 0.0) if grad else (v > p.v_th).to(v.dtype)
        v = torch.addcmul(v, z, p.v_reset - v)  # (1 - z) v + z v_reset
        out.append(z)
    return torch.stack(out)


class LIFLayer(nn.Module):
    """Leaky integrate-and-fire neurons over time, on folded input currents.

    The norse parameters are kept as registered buffers and the ``LIFParameters`` NamedTuple is
    rebuilt on every call, so ``.to(device/dtype)`` moves them (a stored NamedTuple would stay
    on the CPU in float32).

    Args:
        T: number of time steps folded into the leading axis.
        tau_syn_inv: inverse synaptic time constant (1/s).
        tau_mem_inv: inverse membrane time constant (1/s).
        v_th: threshold (a.u.).
        dt: integration step (s).
        impl: ``"fused"`` (default): all T steps in one kernel (``lif_fused``: numba on the
            CPU, Triton on CUDA; where it has no kernel, the loop); ``"loop"``: the rearranged
            torch loop ``lif_sequence`` (what ONNX export traces); ``"norse"``: norse's
            ``lif_feed_forward_step`` once per step, the reference. All three compute the
            same spikes and surrogate gradients (tested).
    """

    IMPLS = ("fused", "loop", "norse")

    def __init__(
        self,
        T: int,
        tau_syn_inv: float,
        tau_mem_inv: float,
        v_th: float,
        dt: float,
        impl: str = "fused",
    ) -> None:
        super().__init__()
        if impl not in self.IMPLS:
            raise ValueError(f"impl must be one of {self.IMPLS}, got {impl!r}")
        self.T = T
        self.dt = dt
        self.impl = impl
        self.register_buffer("tau_syn_inv", torch.tensor(float(tau_syn_inv)))
        self.register_buffer("tau_mem_inv", torch.tensor(float(tau_mem_inv)))
        self.register_buffer("v_th", torch.tensor(float(v_th)))
        self.register_buffer("v_leak", torch.tensor(0.0))
        self.register_buffer("v_reset", torch.tensor(0.0))
        self._refresh_constants()
        # a checkpoint's buffers are what the kernel must use: read them once, at load
        self.register_load_state_dict_post_hook(lambda mod, _keys: mod._refresh_constants())

    def _refresh_constants(self) -> None:
        """The fused kernel's constants, from the buffers (read to the host here, never in
        forward)."""
        self.constants = lif_fused.lif_constants(
            float(self.tau_syn_inv), float(self.tau_mem_inv), float(self.v_leak),
            float(self.v_th), float(self.v_reset), self.dt)

    def params(self) -> LIFParameters:
        """The norse parameter tuple, on this module's device and dtype."""
        return LIFParameters(
            tau_syn_inv=self.tau_syn_inv,
            tau_mem_inv=self.tau_mem_inv,
            v_leak=self.v_leak,
            v_th=self.v_th,
            v_reset=self.v_reset,
        )

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """current: (T*B, ...) input current -> spikes (T*B, ...) in {0, 1}."""
        if self.impl == "fused" and lif_fused.available(current.device):
            return lif_fused.lif_fused(current, self.constants, self.T)
        x = current.reshape(self.T, -1, *current.shape[1:])  # (T, B, ...)
        z = self._norse(x) if self.impl == "norse" else lif_sequence(x, self.params(), self.dt)
        return z.reshape(current.shape)

    def _norse(self, x: torch.Tensor) -> torch.Tensor:
        """Reference: norse's ``lif_feed_forward_step`` once per step."""
        p = self.params()
        zero = torch.zeros_like(x[0])
        state = LIFFeedForwardState(v=zero, i=zero)
        out = []
        for t in range(self.T):
            z, state = lif_feed_forward_step(x[t], state, p, self.dt)
            out.append(z)
        return torch.stack(out)


def set_lif_impl(net: nn.Module, impl: str) -> nn.Module:
    """Every LIF layer of ``net`` switched to ``impl`` (see :class:`LIFLayer`); returns net."""
    for mod in net.modules():
        if isinstance(mod, LIFLayer):
            if impl not in LIFLayer.IMPLS:
                raise ValueError(f"impl must be one of {LIFLayer.IMPLS}, got {impl!r}")
            mod.impl = impl
    return net


class RMSBatchNorm(nn.Module):
    """Batch normalisation by the root mean square only: no centring, no bias.

    y = x / sqrt(E[x^2] + eps) * weight, per channel (axis 1), the statistic taken over the
    batch (and spatial axes; in a distributed run, the whole global batch) in training and a
    running average at inference. Like BatchNorm it
    brings currents to the threshold's scale whatever the event counts; unlike it, zero input
    gives zero current, so a silent sensor makes no spikes and costs no synaptic operations
    (BatchNorm's shift made silent inputs fire). It folds into the preceding layer at inference.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_ms", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.training:
            dims = [0, *range(2, x.dim())]
            # (C,) statistic, not differentiated; float32 under a bfloat16 autocast too
            ms = _batch_mean_square(x.detach().float(), dims)
            with torch.no_grad():
                # the first batch sets the statistic: lerp from the init value 1 would keep
                # eval currents far too small for many batches (sparse input has ms << 1);
                # the weight is chosen on the device (no read of the counter per step)
                first = (self.num_batches_tracked == 0).to(self.running_ms.dtype)
                w = self.momentum + (1.0 - self.momentum) * first
                self.running_ms.lerp_(ms.to(self.running_ms.dtype), w)
                self.num_batches_tracked += 1
        else:
            ms = self.running_ms
        return x * (self.weight / (ms + self.eps).sqrt()).reshape(shape)


def _batch_mean_square(x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """E[x^2] per channel over ``dims``: over the whole global batch in a distributed run (each
    process holds a share of it), so that N processes normalise as one process would."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return x.pow(2).mean(dim=dims)
    packed = torch.cat([x.pow(2).sum(dim=dims), x.new_tensor([x.numel() / x.shape[1]])])
    dist.all_reduce(packed)
    return packed[:-1] / packed[-1]


def make_lif(cfg: ModelConfig) -> LIFLayer:
    return LIFLayer(cfg.T, cfg.tau_syn_inv, cfg.tau_mem_inv, cfg.v_th, cfg.dt)


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


class EventEncoder(nn.Module):
    """2-D spiking conv stack on event frames.

    Each stage: Conv2d(stride 2) -> RMSBatchNorm -> LIF; the first conv has a 5x5 kernel, later
    ones 3x3. Then Linear -> RMSBatchNorm -> LIF to D. The norm (statistics over T*B) scales
    the currents to the threshold regardless of event counts.

    forward: x (T, B, P, H, W) float counts -> h (T, B, D) spikes.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        P, H, W = cfg.event_shape
        layers: list[nn.Module] = []
        c_in = P
        for i, c_out in enumerate(cfg.event_widths):
            k, pad = (5, 2) if i == 0 else (3, 1)
            layers += [
                nn.Conv2d(c_in, c_out, k, stride=2, padding=pad, bias=False),
                RMSBatchNorm(c_out),
                make_lif(cfg),
            ]
            H, W = _conv_out(H, k, 2, pad), _conv_out(W, k, 2, pad)
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.flat_dim = c_in * H * W
        self.fc = nn.Linear(self.flat_dim, cfg.hidden, bias=False)
        self.bn = RMSBatchNorm(cfg.hidden)
        self.lif = make_lif(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        # channels-last: the convolutions' faster layout on the CPU (the LIF kernels take it
        # as it lies); 2.2x faster fwd+bwd for the second conv at B=32
        x = x.reshape(T * B, *x.shape[2:]).contiguous(memory_format=torch.channels_last)
        y = self.features(x)  # (T*B, C, H', W') spikes
        y = self.lif(self.bn(self.fc(y.flatten(1))))  # (T*B, D)
        return y.view(T, B, -1)


class AudioEncoder(nn.Module):
    """1-D spiking conv stack over cochlea channels.

    Polarity (up/down) is the conv input channel, the cochlea channel axis is the conv length.
    First Conv1d (kernel 5, stride 1), then kernel 3 stride 2; RMSBatchNorm and LIF after each;
    then Linear -> RMSBatchNorm -> LIF to D.

    forward: x (T, B, 2, C) float counts -> h (T, B, D) spikes.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        L = cfg.audio_channels
        layers: list[nn.Module] = []
        c_in = 2
        for i, c_out in enumerate(cfg.audio_widths):
            k, s, pad = (5, 1, 2) if i == 0 else (3, 2, 1)
            layers += [
                nn.Conv1d(c_in, c_out, k, stride=s, padding=pad, bias=False),
                RMSBatchNorm(c_out),
                make_lif(cfg),
            ]
            L = _conv_out(L, k, s, pad)
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.flat_dim = c_in * L
        self.fc = nn.Linear(self.flat_dim, cfg.hidden, bias=False)
        self.bn = RMSBatchNorm(cfg.hidden)
        self.lif = make_lif(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = self.features(x.reshape(T * B, *x.shape[2:]))  # (T*B, C', L')
        y = self.lif(self.bn(self.fc(y.flatten(1))))  # (T*B, D)
        return y.view(T, B, -1)


def build_encoder(modality: str, cfg: ModelConfig) -> nn.Module:
    if modality == "events":
        return EventEncoder(cfg)
    if modality == "audio":
        return AudioEncoder(cfg)
    raise ValueError(f"unknown modality {modality!r}")
