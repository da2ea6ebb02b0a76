"""Energy estimate from a real forward pass: synaptic operations (SOPs) and MACs via hooks.

A layer whose input is binary spikes does work only per spike: SOPs = sum over input spikes of
that spike's fan-out (exact for convs: the spike map convolved with a ones kernel, times the
output channels, so padding and borders are right). A layer fed by non-spike values (the first
conv on event/audio counts, the warped embeddings h~ that the soft warping makes real-valued)
does dense MACs. E = 0.9 pJ x SOPs + 4.6 pJ x MACs (45 nm figures, Horowitz 2014 as used in the
SNN literature). The ANN reference runs every layer dense at every step: its MACs are the dense
counts of the same layers. RMSBatchNorm is not counted (a per-channel scale that folds into
the preceding layer's weights at inference), nor are LIF state updates (the usual convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import MODALITIES
from .encoders import LIFLayer
from .fusion import ConcatHead
from .taaf import TAAFHead, TAAFNet

E_SOP_PJ = 0.9  #: energy per synaptic (accumulate) operation, pJ
E_MAC_PJ = 4.6  #: energy per multiply-accumulate, pJ


@dataclass
class LayerOps:
    name: str
    kind: str  # "sop" (spike-driven) or "mac" (dense)
    ops: float  # per sample, all T steps
    ann_macs: float  # the same layer dense, per sample
    input_rate: float  # fraction of nonzero inputs


@dataclass
class EnergyReport:
    """Per-sample (per inference window) counts; energies in pJ."""

    sops: float
    macs: float
    energy_pj: float
    ann_macs: float
    ann_energy_pj: float
    layers: list[LayerOps] = field(default_factory=list)
    firing_rates: dict[str, float] = field(default_factory=dict)  # spikes / neuron / step

    @property
    def ratio(self) -> float:
        """ANN energy / SNN energy (how many times cheaper the SNN is)."""
        return self.ann_energy_pj / max(self.energy_pj, 1e-12)

    def table(self) -> str:
        rows = [f"{'layer':40s} {'kind':4s} {'ops/sample':>12s} {'ANN MACs':>12s} {'in rate':>8s}"]
        rows += [
            f"{r.name:40s} {r.kind:4s} {r.ops:12.0f} {r.ann_macs:12.0f} {r.input_rate:8.3f}"
            for r in self.layers
        ]
        rows.append(
            f"SOPs {self.sops:.0f}  MACs {self.macs:.0f}  E {self.energy_pj / 1e6:.3f} uJ  |  "
            f"ANN MACs {self.ann_macs:.0f}  E {self.ann_energy_pj / 1e6:.3f} uJ  "
            f"(x{self.ratio:.1f})"
        )
        return "\n".join(rows)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _conv_sops(mod: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> float:
    """Exact fan-out sum: conv of the nonzero map with a ones kernel, times out_channels.

    reach[pos] counts the input spikes inside output position pos's receptive field, so its
    sum is the number of (spike, output position) pairs; each pair feeds every out channel.
    """
    if mod.groups != 1:
        raise NotImplementedError("grouped convolutions are not counted")
    nz = (x != 0).to(torch.float32)
    ones = torch.ones(1, mod.in_channels, *mod.kernel_size, device=x.device)
    conv = F.conv2d if isinstance(mod, nn.Conv2d) else F.conv1d
    reach = conv(nz, ones, None, mod.stride, mod.padding, mod.dilation)  # (N, 1, ...)
    return float(reach.sum()) * mod.out_channels


def _dense(mod: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    if isinstance(mod, nn.Linear):
        return float(x.numel() // mod.in_features) * mod.in_features * mod.out_features
    kernel = int(torch.tensor(mod.kernel_size).prod())
    return float(y.numel()) * (mod.in_channels // mod.groups) * kernel


class _OpCounter:
    """Forward hooks that count each layer's operations per sample of a batch of ``batch``."""

    def __init__(self, model: TAAFNet, batch: int) -> None:
        self.batch = batch
        self.first_convs = {id(enc.features[0]) for enc in model.encoders.values()}  # counts in
        self.layers: list[LayerOps] = []
        self.rates: dict[str, list[float]] = {}

    def attach(self, model: TAAFNet) -> list[Any]:
        handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Linear):
                handles.append(mod.register_forward_hook(self._layer(name)))
            elif isinstance(mod, LIFLayer):
                handles.append(mod.register_forward_hook(self._lif(name)))
            elif isinstance(mod, ConcatHead):
                handles.append(mod.register_forward_hook(self._concat))
            elif isinstance(mod, TAAFHead):
                handles.append(mod.register_forward_hook(self._taaf))
        return handles

    def _layer(self, name: str) -> Any:
        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            x, B = inp[0], self.batch
            dense = _dense(mod, x, out) / B
            rate = float((x != 0).float().mean())
            if id(mod) in self.first_convs or not _is_binary(x):
                self.layers.append(LayerOps(name, "mac", dense, dense, rate))
            elif isinstance(mod, nn.Linear):
                sops = float((x != 0).sum()) * mod.out_features / B
                self.layers.append(LayerOps(name, "sop", sops, dense, rate))
            else:
                self.layers.append(LayerOps(name, "sop", _conv_sops(mod, x) / B, dense, rate))

        return hook

    def _lif(self, name: str) -> Any:
        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self.rates.setdefault(name, []).append(float(out.float().mean()))

        return hook

    def _concat(self, mod: nn.Module, inp: tuple[torch.Tensor, ...], out: object) -> None:
        h = inp[0]  # (M, T, B, D) spikes into the concatenated linear classifier
        K = mod.bias.numel()
        self.layers.append(LayerOps("head.concat", "sop", float((h != 0).sum()) * K / self.batch,
                                    float(h[:, :, 0].numel()) * K, float((h != 0).float().mean())))

    def _taaf(self, mod: nn.Module, inp: tuple[torch.Tensor, ...], out: object) -> None:
        # matrix products that nn.Linear hooks do not see: warping (T x T per feature), the
        # beta-weighted sum and the alpha pooling of the readouts; always dense.
        M, T, _, D = inp[0].shape  # (h, present, grad_scale)
        m_used = float(out.present.sum()) / self.batch
        K = mod.read.out_features
        macs = m_used * T * T * D + M * T * D + T * K * (1 + M)
        self.layers.append(LayerOps("head.attention_einsums", "mac", macs, macs, 1.0))


@torch.no_grad()
def measure_energy(
    model: TAAFNet,
    events: torch.Tensor | None,
    audio: torch.Tensor | None,
    present: torch.Tensor | None = None,
) -> EnergyReport:
    """Run one eval-mode forward pass with hooks and count operations per sample.

    events: (T, B, P, H, W), audio: (T, B, 2, C) (as for ``TAAFNet.forward``).
    """
    counter = _OpCounter(model, (events if events is not None else audio).shape[1])
    handles = counter.attach(model)
    was_training = model.training
    model.eval()
    try:
        model(events, audio, present)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers = counter.layers
    sops = sum(r.ops for r in layers if r.kind == "sop")
    macs = sum(r.ops for r in layers if r.kind == "mac")
    ann = sum(r.ann_macs for r in layers)
    assert len(MODALITIES) == 2  # the hooks above assume the fixed modality layout
    return EnergyReport(
        sops=sops,
        macs=macs,
        energy_pj=E_SOP_PJ * sops + E_MAC_PJ * macs,
        ann_macs=ann,
        ann_energy_pj=E_MAC_PJ * ann,
        layers=layers,
        firing_rates={k: sum(v) / len(v) for k, v in counter.rates.items()},
    )
