"""Energy counting: zero input costs ~no SOPs, more spikes cost more, counts are exact."""

from __future__ import annotations

import torch
from torch import nn

from taaf_ros.model import ModelConfig, TAAFNet, measure_energy
from taaf_ros.model.energy import E_MAC_PJ, E_SOP_PJ, _conv_sops

CFG = ModelConfig(
    event_shape=(2, 16, 16),
    audio_channels=16,
    event_widths=(8, 16),
    audio_widths=(8, 16),
    hidden=32,
    T=4,
)


def spiking_net() -> TAAFNet:
    """A net whose BatchNorm statistics come from data, so it spikes in eval mode."""
    torch.manual_seed(0)
    net = TAAFNet(CFG)
    with torch.no_grad():
        for _ in range(20):
            net(*rand_inputs(0.2, 8))
    return net.eval()


def rand_inputs(rate: float, B: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (
        (torch.rand(4, B, 2, 16, 16, generator=g) < rate).float(),
        (torch.rand(4, B, 2, 16, generator=g) < rate).float(),
    )


def test_zero_input_costs_no_sops() -> None:
    net = spiking_net()
    ev, au = rand_inputs(0.0)
    rep = measure_energy(net, ev, au)
    assert rep.sops == 0.0
    assert rep.macs > 0  # the first convs are dense on counts
    assert all(r == 0.0 for name, r in rep.firing_rates.items() if "encoders" in name)


def test_more_spikes_more_sops_and_sane_totals() -> None:
    net = spiking_net()
    low = measure_energy(net, *rand_inputs(0.05))
    high = measure_energy(net, *rand_inputs(0.4))
    assert high.sops > low.sops > 0
    assert high.ann_macs == low.ann_macs  # the ANN is dense: independent of the input
    assert low.energy_pj == E_SOP_PJ * low.sops + E_MAC_PJ * low.macs
    assert high.ann_macs > high.macs  # SNN does fewer dense MACs than the ANN
    for r in high.layers:
        assert 0 <= r.ops <= r.ann_macs * (1 + 1e-9), r  # spikes never exceed the dense count
    assert set(high.firing_rates) >= {"encoders.events.lif", "head.fusion_lif"}
    assert all(0.0 <= v <= 1.0 for v in high.firing_rates.values())
    assert "SOPs" in high.table()
    assert not net.training  # restored


def test_conv_sops_exact_against_brute_force() -> None:
    conv = nn.Conv2d(2, 5, 3, stride=2, padding=1, bias=False)
    x = (torch.rand(1, 2, 7, 7, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    brute = 0
    for _c, i, j in (x[0] != 0).nonzero().tolist():
        # output positions (oi, oj) whose receptive field contains input (i, j)
        for oi in range(4):
            for oj in range(4):
                if 0 <= i - (2 * oi - 1) < 3 and 0 <= j - (2 * oj - 1) < 3:
                    brute += 5
    assert _conv_sops(conv, x) == brute


def test_linear_sops() -> None:
    net = spiking_net()
    rep = measure_energy(net, *rand_inputs(0.2))
    fc = next(r for r in rep.layers if r.name == "encoders.events.fc")
    assert fc.kind == "sop" and abs(fc.ops - fc.input_rate * fc.ann_macs) < 1e-6 * fc.ann_macs
