"""The fusion heads and the late fusion, written for few dispatched ops, against their first
formulation (reference_heads.py): the same outputs and gradients bit for bit, in training
(masked samples, gradient scaling) and in eval, and a forward without a mask equal to one
with every modality present."""

from __future__ import annotations

import copy

import pytest
import reference_heads as reference
import torch

from taaf_ros.model import ModelConfig, TAAFNet
from taaf_ros.model.late_fusion import combine_readouts, fit_readout_weights
from taaf_ros.model.loss import build_method
from taaf_ros.model.taaf import TAAFHead

CFG = dict(event_shape=(2, 12, 12), audio_channels=8, event_widths=(4, 8), audio_widths=(4, 8),
           hidden=32, n_classes=7, T=6)


def spikes(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.3).float()


def presence(B: int) -> torch.Tensor:
    present = torch.ones(B, 2, dtype=torch.bool)
    if B > 2:  # every pattern: both, events only, audio only
        present[1, 1] = False
        present[2, 0] = False
    return present


def run(head: torch.nn.Module, h: torch.Tensor, present: torch.Tensor, training: bool,
        reference_fn=None) -> list[torch.Tensor]:
    """Outputs, then the gradients of h and of every parameter, of one forward and backward:
    in training the balanced loss (its coefficients scale the features' gradients), in eval a
    loss on every output."""
    B = h.shape[1]
    h = h.clone().requires_grad_(True)
    method = "taaf-balanced" if isinstance(head, TAAFHead) else "concat-ogmge"
    _, loss_fn = build_method(method, ModelConfig(**CFG))
    k = loss_fn.new_grad_scale() if training else None
    out = (reference_fn(head, h, present, k) if reference_fn else
           head(h.permute(2, 0, 1, 3).contiguous(), present, k))
    if training:
        loss, _ = loss_fn(out, torch.arange(B) % out.logits.shape[1], grad_scale=k)
    else:
        loss = (out.logits.logsumexp(-1).sum() + out.unimodal_logits.square().sum()
                + out.step_logits_per_modality.square().sum() + out.attention_map.square().sum())
    loss.backward()
    return [*out, h.grad, *(p.grad for p in head.parameters() if p.grad is not None)]


@pytest.mark.parametrize("fusion", ["taaf", "concat"])
@pytest.mark.parametrize("B", [1, 5, 32])
@pytest.mark.parametrize("training", [True, False])
def test_heads_equal_their_first_formulation_bit_for_bit(fusion: str, B: int,
                                                         training: bool) -> None:
    torch.manual_seed(B)
    head = TAAFNet(ModelConfig(**CFG, fusion=fusion)).head.train(training)
    cfg = ModelConfig(**CFG)
    h = spikes((cfg.T, B, 2, cfg.hidden), seed=B)
    present = presence(B)
    h = h * present.reshape(1, B, 2, 1)  # an absent modality's features are zero
    fn = reference.taaf_head if fusion == "taaf" else reference.concat_head
    new = run(copy.deepcopy(head), h, present, training)
    ref = run(copy.deepcopy(head), h, present, training, fn)
    assert len(new) == len(ref)
    for i, (a, b) in enumerate(zip(new, ref, strict=True)):
        assert torch.equal(a, b), (i, float((a.double() - b.double()).abs().max()))


@pytest.mark.parametrize("fusion", ["taaf", "concat"])
def test_no_mask_is_every_modality_present(fusion: str) -> None:
    """present=None skips the masking ops; it must mean what a mask of ones means, and a
    missing input what a mask with its column False means."""
    torch.manual_seed(0)
    net = TAAFNet(ModelConfig(**CFG, fusion=fusion)).eval()
    g = torch.Generator().manual_seed(1)
    ev = torch.randint(0, 3, (6, 3, 2, 12, 12), generator=g).float()
    au = torch.randint(0, 3, (6, 3, 2, 8), generator=g).float()
    ones = torch.ones(3, 2, dtype=torch.bool)
    with torch.no_grad():
        for args, mask in [((ev, au), ones), ((ev, None), ones & torch.tensor([True, False])),
                           ((None, au), ones & torch.tensor([False, True]))]:
            plain, masked = net(*args), net(*args, present=mask)
            for a, b in zip(plain, masked, strict=True):
                assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B", [1, 7, 1500])  # einsum changes its plan with the size
def test_late_fusion_equals_its_einsum(dtype: torch.dtype, B: int) -> None:
    g = torch.Generator().manual_seed(B)
    head = (torch.randn(B, 10, generator=g) * 3).to(dtype)
    uni = (torch.randn(B, 2, 10, generator=g) * 3).to(dtype)
    present = torch.rand(B, 2, generator=g) < 0.8
    w = torch.rand(3, generator=g).to(dtype).requires_grad_(True)
    w_ref = w.detach().clone().requires_grad_(True)
    new = combine_readouts(head, uni, present, w)
    ref = reference.combine_readouts(head, uni, present, w_ref)
    assert torch.equal(new, ref)
    new.square().sum().backward()
    ref.square().sum().backward()
    assert torch.equal(w.grad, w_ref.grad)
    y = torch.randint(0, 10, (B,), generator=g)
    assert fit_readout_weights(head, uni, present, y, torch.tensor([True, True])).isfinite().all()
