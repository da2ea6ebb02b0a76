"""Norm folding: the inference copy gives the trained network's spikes with fewer ops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taaf_ros.model import ModelConfig, TAAFNet, load_checkpoint, save_checkpoint
from taaf_ros.model.encoders import LIFLayer, RMSBatchNorm
from taaf_ros.model.fold import fold_norms

BUNDLED = Path(__file__).resolve().parent.parent / "models" / "taaf_avdigits.pt"


def spikes_and_output(net: TAAFNet, *inputs: torch.Tensor | None) -> tuple[list, object]:
    """Every LIF layer's spikes (in call order) and the network's output."""
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _in, z: seen.append(z.clone()))
             for m in net.modules() if isinstance(m, LIFLayer)]
    try:
        with torch.no_grad():
            out = net(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen, out


@pytest.mark.parametrize("present", [(True, True), (True, False), (False, True)])
def test_the_folded_bundled_model_spikes_as_the_trained_one_on_real_windows(
        real_test_windows, present):
    ev, au = real_test_windows
    net = load_checkpoint(BUNDLED).model.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_norms(net)
    assert sum(isinstance(m, RMSBatchNorm) for m in net.modules()) == 8
    assert not any(isinstance(m, RMSBatchNorm) for m in folded.modules())
    inputs = (ev if present[0] else None, au if present[1] else None)
    want_z, want = spikes_and_output(net, *inputs)
    got_z, got = spikes_and_output(folded, *inputs)
    assert len(got_z) == len(want_z) > 0
    assert sum(float(z.sum()) for z in want_z) > 1000  # a network that spikes: a real check
    for g, w in zip(got_z, want_z, strict=True):
        assert torch.equal(g, w)
    for name in ("logits", "modality_attention", "attention_map", "unimodal_logits"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=1e-6)
    # the network it was folded from is untouched
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("fusion", ["taaf", "concat"])
def test_folding_keeps_the_currents_of_a_network_with_learned_norm_statistics(fusion):
    """Random weights, norm statistics and norm weights far from 1: the folded network's
    currents into every LIF layer equal the unfolded network's to float rounding."""
    torch.manual_seed(0)
    net = TAAFNet(ModelConfig(fusion=fusion))
    ev = (torch.rand(net.cfg.T, 4, *net.cfg.event_shape) < 0.2).float()
    au = (torch.rand(net.cfg.T, 4, 2, net.cfg.audio_channels) < 0.3).float()
    with torch.no_grad():
        net.train()(ev, au)  # the first batch sets every norm's statistic
        for m in net.modules():
            if isinstance(m, RMSBatchNorm):
                m.weight.uniform_(0.5, 2.0)
    net.eval()
    currents: dict[str, list[torch.Tensor]] = {"net": [], "folded": []}

    def record(key: str, model: TAAFNet) -> None:
        for m in model.modules():
            if isinstance(m, LIFLayer):
                m.register_forward_pre_hook(lambda _m, x, k=key: currents[k].append(x[0]))

    folded = fold_norms(net)
    record("net", net)
    record("folded", folded)
    with torch.no_grad():
        net(ev, au), folded(ev, au)
    assert len(currents["net"]) == len(currents["folded"]) == 7 + (fusion == "taaf")
    for a, b in zip(currents["net"], currents["folded"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_a_folded_network_is_for_inference_only(tmp_path):
    loaded = load_checkpoint(BUNDLED)
    folded = fold_norms(loaded.model)
    assert folded.norms_folded and not loaded.model.norms_folded
    with pytest.raises(RuntimeError, match="inference only"):
        folded.train()
    folded.eval()  # allowed
    with pytest.raises(ValueError, match="folded norms"):
        save_checkpoint(tmp_path / "folded.pt", folded, loaded.card)
    assert not (tmp_path / "folded.pt").exists()
    again = fold_norms(folded)  # folding twice scales nothing twice
    for k, v in folded.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_the_classifier_runs_the_folded_network():
    from taaf_ros.inference.classifier import Classifier

    assert Classifier(BUNDLED, "cpu").model.norms_folded
