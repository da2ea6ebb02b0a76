"""Tests for the balanced fusion loss, gradient modulation, OGM-GE and the method factory."""

from __future__ import annotations

import pytest
import torch

from taaf_ros.model import METHODS, ModelConfig, TAAFNet, build_method
from taaf_ros.model.taaf import scale_grad

TINY = ModelConfig(
    n_classes=4,
    T=4,
    event_shape=(2, 8, 8),
    audio_channels=8,
    event_widths=(8,),
    audio_widths=(8,),
    hidden=32,
)


def easy_events_hard_audio(n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Events carry the class clearly, audio only weakly (rate 0.25 vs 0.6 on its pattern)."""
    y = torch.randint(0, 4, (n,), generator=g)
    pe = torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.7
    pa = torch.rand(4, 2, 8, generator=torch.Generator().manual_seed(2)) > 0.5
    ev = (torch.rand(4, n, 2, 8, 8, generator=g) < 0.05 + 0.6 * pe[y]).float()
    au = (torch.rand(4, n, 2, 8, generator=g) < 0.25 + 0.35 * pa[y]).float()
    return ev, au, y


def train(method: str, seed: int, steps: int = 40) -> tuple[torch.Tensor, dict]:
    """SGD as in OGM-GE: Adam's per-parameter normalisation would undo a uniform k."""
    cfg, loss_fn = build_method(method, TINY)
    torch.manual_seed(seed)
    net = TAAFNet(cfg)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ev, au, y = easy_events_hard_audio(32, g)
        k = loss_fn.new_grad_scale()
        out = net(ev, au, grad_scale=k)
        loss, info = loss_fn(out, y, grad_scale=k)
        opt.zero_grad()
        loss.backward()
        loss_fn.after_backward(net, info)
        opt.step()
    net.eval()
    ev, au, y = easy_events_hard_audio(512, torch.Generator().manual_seed(99))
    with torch.no_grad():
        out = net(ev, au)
    return (out.unimodal_logits.argmax(-1) == y[:, None]).float().mean(0), info


def test_balanced_loss_slows_dominant_and_helps_the_weaker_modality() -> None:
    torch.set_num_threads(1)  # deterministic and fair to the other users of the cores
    acc_bal, acc_plain = [], []
    for seed in (0, 1, 2):
        acc, info = train("taaf-balanced", seed)
        acc_bal.append(float(acc[1]))
        assert info["k_events"] < 1.0 and info["k_audio"] == 1.0  # events dominate
        assert info["w_audio"] > 1.0 and info["w_events"] == 1.0
        assert info["rho_events"] > 1.0 > info["rho_audio"]
        acc, info = train("taaf", seed)
        acc_plain.append(float(acc[1]))
        assert info["k_events"] == 1.0 and info["w_audio"] == 1.0
    # fixed seeds; margins seen: +0.01, +0.07, +0.03 (audio accuracy, 512 test samples)
    gains = [b - p for b, p in zip(acc_bal, acc_plain, strict=True)]
    assert sum(gains) / 3 > 0.015 and sum(g > 0 for g in gains) >= 2, (acc_bal, acc_plain)


def test_scale_grad_is_identity_forward_and_reads_k_at_backward() -> None:
    x = torch.ones(3, 2, 4, requires_grad=True)
    k = torch.ones(3, 2)
    y = scale_grad(x, k, 1)
    assert torch.equal(y, x)
    k[:, 1] = torch.tensor([0.0, 0.5, 2.0])  # filled after forward, as the loss does
    y.sum().backward()
    assert x.grad[:, 0, 0].tolist() == [0.0, 0.5, 2.0]


def test_coefficients_follow_the_formula() -> None:
    """Hand-built output: events confident and attended, audio not."""
    cfg, loss_fn = build_method("taaf-balanced", TINY, eta=1.0)
    B, T, M, K = 2, 4, 2, 4
    step = torch.zeros(B, T, M, K)
    step[:, :, 0, 0] = 5.0  # events sure of class 0
    y = torch.zeros(B, dtype=torch.long)
    from taaf_ros.model.taaf import TAAFOutput

    alpha = torch.full((B, T), 0.25)
    beta = torch.tensor([0.6, 0.4]).expand(B, T, M)
    out = TAAFOutput(
        step.sum(1).sum(1),
        step.mean(1),
        step,
        alpha,
        beta,
        (alpha.unsqueeze(-1) * beta).sum(1),
        alpha.unsqueeze(-1) * beta,
        torch.ones(B, M, dtype=torch.bool),
    )
    k = loss_fn.new_grad_scale()
    _, info = loss_fn(out, y, grad_scale=k)
    p_e = torch.softmax(torch.tensor([5.0, 0, 0, 0]), 0)[0]
    rho_e = (0.6 * p_e) / (0.4 * 0.25)
    expect = 1 - torch.tanh(rho_e - 1)
    torch.testing.assert_close(k[:, 0], expect.expand(T).float())
    assert torch.all(k[:, 1] == 1.0)
    torch.testing.assert_close(info["rho"][:, 1], (1 / rho_e).expand(T).float())


def test_ogm_ge_scales_dominant_encoder_and_adds_noise() -> None:
    torch.manual_seed(0)
    cfg, loss_fn = build_method("concat-ogmge", TINY)
    assert cfg.fusion == "concat" and loss_fn.cfg.ogm and loss_fn.cfg.gaussian_enhance
    net = TAAFNet(cfg)
    ev, au, y = easy_events_hard_audio(16, torch.Generator().manual_seed(0))
    out = net(ev * 0 + (y.reshape(1, -1, 1, 1, 1) == 0).float(), au)  # events informative
    _, info = loss_fn(out, y)
    info["ogm_k"] = torch.tensor([0.25, 1.0])  # pin: events dominant
    grads = {n: torch.ones_like(p) for n, p in net.named_parameters()}
    for n, p in net.named_parameters():
        p.grad = grads[n].clone() * 0 + torch.randn_like(p)
    before = {n: p.grad.clone() for n, p in net.named_parameters()}
    loss_fn.after_backward(net, info)
    for n, p in net.named_parameters():
        if n.startswith("encoders.events") and p.dim() == 1:  # no noise on vectors
            torch.testing.assert_close(p.grad, 0.25 * before[n])
        if n.startswith("encoders.events") and p.dim() >= 2:
            diff = p.grad - 0.25 * before[n]
            assert 0.5 < float(diff.std() / before[n].std()) < 1.5  # noise ~ std(grad)
        if n.startswith("head"):
            assert torch.equal(p.grad, before[n])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_builds_and_steps(method: str) -> None:
    cfg, loss_fn = build_method(method, TINY)
    net = TAAFNet(cfg)
    ev, au, y = easy_events_hard_audio(4, torch.Generator().manual_seed(0))
    k = loss_fn.new_grad_scale()
    out = net(
        ev if "events" in cfg.modalities else None,
        au if "audio" in cfg.modalities else None,
        grad_scale=k,
    )
    loss, info = loss_fn(out, y, grad_scale=k)
    loss.backward()
    loss_fn.after_backward(net, info)
    assert torch.isfinite(loss) and {"k_events", "w_audio", "rho_audio", "ce"} <= set(info)
    assert (k is not None) == (method == "taaf-balanced")


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        build_method("sum")
