"""Tests for the TAAF network: shapes, attention, gradients, warping, masking, devices."""

from __future__ import annotations

import pytest
import torch

from taaf_ros.model import MODALITIES, ModelConfig, TAAFNet, prepare_model, select_device
from taaf_ros.model.device import resolve_dtype
from taaf_ros.model.encoders import LIFLayer

SMALL = dict(
    event_shape=(2, 12, 12),
    audio_channels=8,
    event_widths=(4, 8),
    audio_widths=(4, 8),
    hidden=16,
    n_classes=5,
    T=4,
)


def inputs(cfg: ModelConfig, B: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ev = torch.randint(0, 3, (cfg.T, B, *cfg.event_shape), generator=g).to(torch.int16)
    au = torch.randint(0, 2, (cfg.T, B, 2, cfg.audio_channels), generator=g).to(torch.int16)
    return ev, au


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"fusion": "concat"},
        {"T": 3, "n_classes": 7, "event_shape": (2, 9, 15)},
        {"modalities": ("events",)},
        {"modalities": ("audio",), "fusion": "concat"},
    ],
)
def test_output_shapes_and_attention_sums(over: dict) -> None:
    cfg = ModelConfig(**{**SMALL, **over})
    net = TAAFNet(cfg)
    B, T, M, K = 3, cfg.T, len(MODALITIES), cfg.n_classes
    ev, au = inputs(cfg, B)
    out = net(ev if "events" in cfg.modalities else None, au if "audio" in cfg.modalities else None)
    assert out.logits.shape == (B, K)
    assert out.unimodal_logits.shape == (B, M, K)
    assert out.step_logits_per_modality.shape == (B, T, M, K)
    assert out.alpha.shape == (B, T) and out.beta.shape == (B, T, M)
    assert out.modality_attention.shape == (B, M) and out.attention_map.shape == (B, T, M)
    assert out.present.shape == (B, M) and out.present.dtype == torch.bool
    one = torch.ones(B)
    torch.testing.assert_close(out.alpha.sum(1), one)
    torch.testing.assert_close(out.modality_attention.sum(1), one)
    torch.testing.assert_close(out.attention_map.sum((1, 2)), one)
    torch.testing.assert_close(out.beta.sum(2), torch.ones(B, T))
    for i, m in enumerate(MODALITIES):  # unconfigured modalities are reported absent
        assert bool(out.present[:, i].all()) == (m in cfg.modalities)
        if m not in cfg.modalities:
            assert float(out.modality_attention[:, i].abs().max()) == 0.0


def test_default_model_is_small() -> None:
    n = TAAFNet(ModelConfig()).n_params()
    assert 100_000 < n < 700_000  # < 3 MB as float32


def test_spikes_happen_with_default_lif_params() -> None:
    lif = LIFLayer(T=4, tau_syn_inv=500.0, tau_mem_inv=500.0, v_th=0.5, dt=1e-3)
    z = lif(torch.full((4 * 2, 3), 1.2))  # a batch-normalised current of ~1 must fire
    assert z.reshape(4, 2, 3)[0].sum() > 0 and set(z.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("fusion", ["taaf", "concat"])
def test_every_parameter_gets_a_gradient(fusion: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL, fusion=fusion, input_scale=3.0)
    net = TAAFNet(cfg)
    ev, au = inputs(cfg, 8)
    out = net(ev, au)
    y = torch.arange(8) % cfg.n_classes
    loss = torch.nn.functional.cross_entropy(out.logits, y)
    loss = loss + torch.nn.functional.cross_entropy(
        out.unimodal_logits.flatten(0, 1), y.repeat_interleave(2)
    )
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad.abs().sum()) > 0, name


def test_warping_starts_near_identity() -> None:
    net = TAAFNet(ModelConfig(**SMALL))
    A = net.head.warp()
    assert A.shape == (2, 4, 4)
    torch.testing.assert_close(A.sum(-1), torch.ones(2, 4))
    assert float(torch.diagonal(A, dim1=1, dim2=2).min()) > 0.9
    assert A.argmax(-1).tolist() == [[0, 1, 2, 3]] * 2


def test_masking_renormalises_and_changes_nothing_else() -> None:
    torch.manual_seed(1)
    cfg = ModelConfig(**SMALL, input_scale=3.0)
    net = TAAFNet(cfg).eval()  # eval: BatchNorm uses stored statistics, samples independent
    ev, au = inputs(cfg, 4)
    present = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    with torch.no_grad():
        full = net(ev, au)
        masked = net(ev, au, present=present)
        ev_only = net(ev[:, 1:2], None)
        au_only = net(None, au[:, 2:3])
    assert masked.present.tolist() == present.tolist()
    # untouched samples: bit-identical
    for field in full._fields:
        a, b = getattr(full, field), getattr(masked, field)
        torch.testing.assert_close(a[[0, 3]], b[[0, 3]], rtol=0, atol=0)
    # masked samples: attention entirely on the present modality, renormalised
    assert torch.all(masked.beta[1, :, 0] == 1) and torch.all(masked.beta[1, :, 1] == 0)
    assert torch.all(masked.beta[2, :, 1] == 1) and torch.all(masked.beta[2, :, 0] == 0)
    torch.testing.assert_close(masked.modality_attention[1], torch.tensor([1.0, 0.0]))
    # masking a modality = not giving it at all
    torch.testing.assert_close(masked.logits[1], ev_only.logits[0])
    torch.testing.assert_close(masked.logits[2], au_only.logits[0])
    assert ev_only.present.tolist() == [[True, False]]
    # and the masked modality's content has no influence
    ev2 = ev.clone()
    ev2[:, 2] = 2
    with torch.no_grad():
        masked2 = net(ev2, au, present=present)
    torch.testing.assert_close(masked.logits, masked2.logits, rtol=0, atol=0)


def test_bad_inputs_are_refused() -> None:
    cfg = ModelConfig(**SMALL)
    net = TAAFNet(cfg)
    ev, au = inputs(cfg, 2)
    with pytest.raises(ValueError, match="at least one"):
        net(None, None)
    with pytest.raises(ValueError, match="time steps"):
        net(ev[:2], au[:2])
    with pytest.raises(ValueError, match="expected"):
        net(ev[:, :, :, :5], au)
    with pytest.raises(ValueError, match="present"):
        net(ev, au, present=torch.zeros(2, 2, dtype=torch.bool))


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig(**SMALL, fusion="concat", modalities=("audio",))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ModelConfig(fusion="sum")
    with pytest.raises(ValueError):
        ModelConfig(modalities=("audio", "events"))
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**cfg.to_dict(), "hiden": 3})


def test_lif_parameters_follow_dtype_and_device() -> None:
    net = TAAFNet(ModelConfig(**SMALL)).to(torch.float64)
    lifs = [m for m in net.modules() if isinstance(m, LIFLayer)]
    assert lifs and all(m.params().v_th.dtype == torch.float64 for m in lifs)
    net.to("meta")
    assert all(m.params().tau_mem_inv.device.type == "meta" for m in lifs)


def test_select_device_and_dtype() -> None:
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        select_device("tpu")
    with pytest.raises(ValueError, match="bfloat16"):
        resolve_dtype("float16", torch.device("cpu"))
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            select_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_inference_matches_cpu(dtype: str) -> None:
    from taaf_ros.model.device import inference_context

    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL, input_scale=3.0)
    net = TAAFNet(cfg).eval()
    ev, au = inputs(cfg, 4)
    with torch.no_grad():
        ref = net(ev, au)
    dev = select_device("cuda")
    gpu = prepare_model(net, dev)
    assert all(
        m.params().v_th.device.type == "cuda" for m in gpu.modules() if isinstance(m, LIFLayer)
    )
    with inference_context(dev, resolve_dtype(dtype, dev)):
        out = gpu(ev.to(dev), au.to(dev))
    tol = 1e-4 if dtype == "float32" else 5e-2
    torch.testing.assert_close(out.alpha.float().cpu(), ref.alpha, atol=tol, rtol=tol)
    assert (
        out.logits.argmax(-1).cpu().tolist() == ref.logits.argmax(-1).tolist() or dtype == "float16"
    )


@pytest.mark.parametrize("impl", ["fused", "loop"])
def test_lif_implementations_match_norse_step_loop_values_and_gradients(impl: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(6 * 3, 40, generator=g) * 1.5).requires_grad_(True)
    fast = LIFLayer(T=6, tau_syn_inv=500.0, tau_mem_inv=500.0, v_th=0.5, dt=1e-3, impl=impl)
    ref = LIFLayer(T=6, tau_syn_inv=500.0, tau_mem_inv=500.0, v_th=0.5, dt=1e-3, impl="norse")
    w = torch.randn(6 * 3, 40, generator=g)
    zf = fast(x)
    (gf,) = torch.autograd.grad((zf * w).sum(), x)
    zr = ref(x)
    (gr,) = torch.autograd.grad((zr * w).sum(), x)
    assert torch.equal(zf, zr) and 0 < float(zf.mean()) < 1
    torch.testing.assert_close(gf, gr, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the inference path (plain comparison) gives the same spikes
        assert torch.equal(fast(x), zr)


def test_lif_sequence_is_the_pure_function_the_layer_wraps() -> None:
    """lif_sequence(x, params, dt) needs no module: the same spikes as LIFLayer, and as norse's
    own step function run over the steps, for parameters other than the defaults."""
    from norse.torch.functional.lif import (
        LIFFeedForwardState,
        LIFParameters,
        lif_feed_forward_step,
    )

    from taaf_ros.model.encoders import lif_sequence

    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, 3, generator=g) * 2
    p = LIFParameters(tau_syn_inv=torch.tensor(300.0), tau_mem_inv=torch.tensor(150.0),
                      v_leak=torch.tensor(0.0), v_th=torch.tensor(0.4),
                      v_reset=torch.tensor(0.0))
    z = lif_sequence(x, p, 1e-3)
    state = LIFFeedForwardState(v=torch.zeros(7, 3), i=torch.zeros(7, 3))
    ref = []
    for t in range(5):
        zt, state = lif_feed_forward_step(x[t], state, p, 1e-3)
        ref.append(zt)
    assert torch.equal(z, torch.stack(ref)) and 0 < float(z.mean()) < 1
    layer = LIFLayer(T=5, tau_syn_inv=300.0, tau_mem_inv=150.0, v_th=0.4, dt=1e-3)
    assert torch.equal(layer(x.reshape(35, 3)).reshape(5, 7, 3), z)


def test_the_bundled_model_exports_and_the_export_equals_eager() -> None:
    """The inference forward has no host round trip and no data-dependent Python branch, so
    torch.export traces it whole (the door to ONNX, AOT compilation and CUDA graphs)."""
    from pathlib import Path

    from taaf_ros.model import load_checkpoint

    model = load_checkpoint(Path(__file__).resolve().parent.parent / "models" /
                            "taaf_avdigits.pt").model.eval()
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    ev = torch.randint(0, 4, (cfg.T, 1, *cfg.event_shape), generator=g).float()
    au = torch.randint(0, 3, (cfg.T, 1, 2, cfg.audio_channels), generator=g).float()
    program = torch.export.export(model, (ev, au))
    with torch.no_grad():
        eager = model(ev, au)
        exported = program.module()(ev, au)
        other = program.module()(ev * 2, au.flip(0))  # a new input, not the traced one
        eager_other = model(ev * 2, au.flip(0))
    for field in ("logits", "modality_attention", "attention_map", "unimodal_logits"):
        torch.testing.assert_close(getattr(exported, field), getattr(eager, field))
        torch.testing.assert_close(getattr(other, field), getattr(eager_other, field))
