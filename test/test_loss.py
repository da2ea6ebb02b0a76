"""Tests for the balanced fusion loss, gradient modulation, OGM-GE and the method factory."""

from __future__ import annotations

import pytest
import torch

from taaf_ros.model import METHODS, ModelConfig, TAAFNet, build_method
from taaf_ros.model.taaf import scale_grad
from taaf_ros.training.optim import (
    OptimConfig,
    make_optimizer,
    parameter_groups,
    scale_encoder_lr,
)

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


def train(method: str, seed: int, steps: int = 40, optimizer: str = "adamw"
          ) -> tuple[torch.Tensor, dict]:
    """The trainer's own optimiser (training/optim.py) and step, as train_ead.py runs them."""
    cfg, loss_fn = build_method(method, TINY)
    torch.manual_seed(seed)
    net = TAAFNet(cfg)
    # AdamW at the trainer's default lr; SGD needs a larger one
    tcfg = OptimConfig(name=optimizer, lr=OptimConfig().lr if optimizer == "adamw" else 0.1,
                       warmup_steps=0, lr_min_ratio=1.0)
    opt, sched = make_optimizer(net, tcfg, steps)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ev, au, y = easy_events_hard_audio(32, g)
        k = loss_fn.new_grad_scale()
        out = net(ev, au, grad_scale=k)
        loss, info = loss_fn(out, y, grad_scale=k)
        opt.zero_grad()
        loss.backward()
        loss_fn.after_backward(net, info)
        scale_encoder_lr(opt, info["lr_scale"])
        opt.step()
        sched.step()
    net.eval()
    ev, au, y = easy_events_hard_audio(512, torch.Generator().manual_seed(99))
    with torch.no_grad():
        out = net(ev, au)
    return (out.unimodal_logits.argmax(-1) == y[:, None]).float().mean(0), info


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_balanced_loss_slows_dominant_and_helps_the_weaker_modality(optimizer: str) -> None:
    torch.set_num_threads(1)  # deterministic and fair to the other users of the cores
    acc_bal, acc_plain = [], []
    for seed in (0, 1, 2):
        acc, info = train("taaf-balanced", seed, optimizer=optimizer)
        acc_bal.append(float(acc[1]))
        assert info["k_events"] < 1.0 and info["k_audio"] == 1.0  # events dominate
        assert info["w_audio"] > 1.0 and info["w_events"] == 1.0
        assert info["rho_events"] > 1.0 > info["rho_audio"]
        acc, info = train("taaf", seed, optimizer=optimizer)
        acc_plain.append(float(acc[1]))
        assert info["k_events"] == 1.0 and info["w_audio"] == 1.0
    # fixed seeds; margins seen (audio accuracy, 512 test samples): AdamW +0.023, +0.039,
    # +0.031; SGD +0.01, +0.07, +0.03
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
        step.sum(1).sum(1),
    )
    k = loss_fn.new_grad_scale()
    _, info = loss_fn(out, y, grad_scale=k)
    p_e = torch.softmax(torch.tensor([5.0, 0, 0, 0]), 0)[0]
    rho_e = (0.6 * p_e) / (0.4 * 0.25)
    expect = 1 - torch.tanh(rho_e - 1)
    torch.testing.assert_close(info["k"][:, 0], expect.expand(T).float())
    assert torch.all(info["k"][:, 1] == 1.0)
    # split: the magnitude goes to the learning rate, the shape over time (here flat) to k
    torch.testing.assert_close(info["lr_scale"], torch.stack([expect.float(), torch.tensor(1.)]))
    torch.testing.assert_close(k, torch.ones(T, M))
    torch.testing.assert_close(info["rho"][:, 1], (1 / rho_e).expand(T).float())


def test_ogm_ge_slows_dominant_encoder_through_its_lr_and_adds_noise() -> None:
    torch.manual_seed(0)
    cfg, loss_fn = build_method("concat-ogmge", TINY)
    assert cfg.fusion == "concat" and loss_fn.cfg.ogm and loss_fn.cfg.gaussian_enhance
    net = TAAFNet(cfg)
    ev, au, y = easy_events_hard_audio(16, torch.Generator().manual_seed(0))
    out = net(ev * 0 + (y.reshape(1, -1, 1, 1, 1) == 0).float(), au)  # events informative
    _, info = loss_fn(out, y)
    torch.testing.assert_close(info["lr_scale"], info["ogm_k"])  # OGM's k is a magnitude
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    before = {n: p.grad.clone() for n, p in net.named_parameters()}
    loss_fn.after_backward(net, info)
    for n, p in net.named_parameters():
        if n.startswith("encoders") and p.dim() >= 2:
            diff = p.grad - before[n]
            assert 0.5 < float(diff.std() / before[n].std()) < 1.5  # noise ~ std(grad)
        else:
            assert torch.equal(p.grad, before[n])  # vectors and the head: untouched


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_encoder_updates_shrink_by_lr_scale_with_the_trainers_optimizer(optimizer: str) -> None:
    """The same batch and gradients, stepped with and without the balanced loss's lr_scale:
    each encoder's parameter update shrinks by exactly its factor, AdamW included (a gradient
    scale alone would be normalised away by Adam); the head's update is unchanged."""
    cfg, loss_fn = build_method("taaf-balanced", TINY)
    ev, au, y = easy_events_hard_audio(32, torch.Generator().manual_seed(0))
    ev, au = ev.double(), au.double()  # float64: updates are tiny against the weights
    deltas = {}
    for modulated in (False, True):
        torch.manual_seed(0)
        net = TAAFNet(cfg).double()
        opt, _ = make_optimizer(net, OptimConfig(name=optimizer, warmup_steps=0,
                                                 lr_min_ratio=1.0), 10)
        k = loss_fn.new_grad_scale()
        loss, info = loss_fn(net(ev, au, grad_scale=k), y, grad_scale=k)
        loss.backward()
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        if modulated:
            scale_encoder_lr(opt, info["lr_scale"])
            lr_scale = info["lr_scale"]
        opt.step()
        deltas[modulated] = {n: p.detach() - before[n] for n, p in net.named_parameters()}
    assert 0.0 < float(lr_scale[0]) < 0.9 and float(lr_scale[1]) == 1.0  # events dominate
    for i, m in enumerate(("events", "audio")):
        for n, d in deltas[True].items():
            if n.startswith(f"encoders.{m}.") and float(deltas[False][n].norm()) > 0:
                ratio = float(d.norm() / deltas[False][n].norm())
                assert ratio == pytest.approx(float(lr_scale[i]), rel=1e-6), n
    for n, d in deltas[True].items():
        if n.startswith("head."):
            torch.testing.assert_close(d, deltas[False][n])


def test_a_gradient_factor_alone_is_normalised_away_by_adamw() -> None:
    """The modulation before the fix: the events encoder's gradient times k. Over 20 AdamW
    steps its update shrinks far less than k (Adam divides by the gradient's own RMS); SGD's
    shrinks by k. What the trainer does now (the learning rate times k) is measured above."""
    cfg, loss_fn = build_method("taaf-balanced", TINY)
    ev, au, y = easy_events_hard_audio(32, torch.Generator().manual_seed(0))
    ev, au = ev.double(), au.double()
    k = 0.25
    ratios = {}
    for name in ("adamw", "sgd"):
        moved = {}
        for factor in (1.0, k):
            torch.manual_seed(0)
            net = TAAFNet(cfg).double()
            opt, _ = make_optimizer(net, OptimConfig(name=name, lr=1e-4, warmup_steps=0,
                                                     lr_min_ratio=1.0, weight_decay=0.0), 20)
            start = [p.detach().clone() for p in net.encoders["events"].parameters()]
            for _ in range(20):
                opt.zero_grad()
                F_loss = torch.nn.functional.cross_entropy(net(ev, au).logits, y)
                F_loss.backward()
                for p in net.encoders["events"].parameters():
                    if p.grad is not None:
                        p.grad.mul_(factor)
                opt.step()
            moved[factor] = sum(float((p.detach() - s).norm() ** 2) for p, s in zip(
                net.encoders["events"].parameters(), start, strict=True)) ** 0.5
        ratios[name] = moved[k] / moved[1.0]
    assert ratios["sgd"] == pytest.approx(k, rel=0.05)
    assert ratios["adamw"] > 0.9, ratios  # the factor is (almost) gone


def test_parameter_groups_tag_each_encoder_once() -> None:
    net = TAAFNet(build_method("taaf-balanced", TINY)[0])
    groups = parameter_groups(net, 0.01)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)) == len(list(net.parameters()))
    for g in groups:
        names = {n for n, p in net.named_parameters() if any(p is q for q in g["params"])}
        want = f"encoders.{g['modality']}." if g["modality"] else None
        assert all(n.startswith(want) for n in names) if want else not any(
            n.startswith("encoders.") for n in names)


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


def test_step_coefficients_act_at_the_warped_step_they_were_measured_at() -> None:
    """k[t, m] is computed from the head's warped features h~_m[t]; it must scale the gradient
    of that warped step, i.e. of encoder step s where A_m[t, s] = 1, not of encoder step t."""
    from taaf_ros.model.taaf import TAAFHead

    torch.manual_seed(0)
    head = TAAFHead(TINY)
    T, M = TINY.T, 2
    shift = torch.roll(torch.eye(T), 1, dims=1)  # A[t, t+1] = 1: warped t reads encoder t+1
    with torch.no_grad():
        head.warp_logits.copy_(50.0 * shift.repeat(M, 1, 1))
    h = torch.rand(M, T, 3, TINY.hidden, requires_grad=True)
    k = torch.ones(T, M)
    k[0, 0] = 0.0  # silence warped step 0 of events
    out = head(h, torch.ones(3, M, dtype=torch.bool), grad_scale=k)
    (out.logits.sum() + out.unimodal_logits.sum()).backward()
    g = h.grad[0].abs().sum(dim=(1, 2))  # events gradient per encoder step
    assert float(g[1]) < 1e-12 * float(g.max())  # encoder step 1 feeds warped step 0 only
    assert float(g[0]) > 0 and float(g[2]) > 0
    assert float(h.grad[1].abs().sum(dim=(1, 2)).min()) > 0  # audio untouched
