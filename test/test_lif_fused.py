"""The fused LIF kernels (``taaf::lif_fused``) against norse's step loop, the op count of a
batch-1 forward, and the Triton kernel's source run by Triton's interpreter on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step

from taaf_ros.model import load_checkpoint
from taaf_ros.model.encoders import LIFLayer, set_lif_impl
from taaf_ros.model.fold import fold_norms
from taaf_ros.model.lif_fused import lif_constants, lif_fused

BUNDLED = Path(__file__).resolve().parent.parent / "models" / "taaf_avdigits.pt"
PARAMS = [(500.0, 500.0, 0.5), (300.0, 150.0, 0.4), (100.0, 1000.0, 1.0)]


def norse_loop(x: torch.Tensor, tau_syn_inv: float, tau_mem_inv: float, v_th: float,
               dt: float = 1e-3) -> torch.Tensor:
    p = LIFParameters(tau_syn_inv=torch.tensor(tau_syn_inv), tau_mem_inv=torch.tensor(tau_mem_inv),
                      v_leak=torch.tensor(0.0), v_th=torch.tensor(v_th),
                      v_reset=torch.tensor(0.0))
    state = LIFFeedForwardState(v=torch.zeros_like(x[0]), i=torch.zeros_like(x[0]))
    out = []
    for t in range(x.shape[0]):
        z, state = lif_feed_forward_step(x[t], state, p, dt)
        out.append(z)
    return torch.stack(out)


@pytest.mark.parametrize("tau_syn_inv,tau_mem_inv,v_th", PARAMS)
@pytest.mark.parametrize("shape", [(8, 1, 37), (5, 4, 3, 6), (1, 2, 9)])
def test_fused_equals_norse_spikes_bit_for_bit_and_gradients(
        tau_syn_inv: float, tau_mem_inv: float, v_th: float, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(len(shape) * 7 + int(v_th * 10))
    scale = 3 * v_th * 500 / tau_mem_inv  # currents that cross the threshold, not always
    x = (torch.randn(*shape, generator=g) * scale).requires_grad_(True)
    w = torch.randn(*shape, generator=g)
    c = lif_constants(tau_syn_inv, tau_mem_inv, 0.0, v_th, 0.0, 1e-3)
    z = lif_fused(x, c)
    (gx,) = torch.autograd.grad((z * w).sum(), x)
    z_ref = norse_loop(x, tau_syn_inv, tau_mem_inv, v_th)
    (gx_ref,) = torch.autograd.grad((z_ref * w).sum(), x)
    assert z.shape == x.shape and torch.equal(z, z_ref)
    assert 0 < float(z.detach().mean()) < 1  # neither silent nor saturated: the reset is exercised
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_a_current_in_another_layout_is_taken_as_it_lies(layout: str) -> None:
    """A channels-last current (the event encoder's) or any permuted dense one: the spikes and
    gradients of the contiguous current, the spikes in the current's own layout."""
    g = torch.Generator().manual_seed(11)
    dense = torch.randn(6, 3, 4, 5, 7, generator=g) * 2  # (T, B, C, H, W)
    if layout == "channels_last":
        x = dense.reshape(18, 4, 5, 7).contiguous(memory_format=torch.channels_last)
        x = x.reshape(6, 3, 4, 5, 7)
    else:
        x = dense.transpose(2, 4).contiguous().transpose(2, 4)
    assert torch.equal(x, dense) and not x.is_contiguous()
    x.requires_grad_(True)
    d = dense.clone().requires_grad_(True)
    w = torch.randn(dense.shape, generator=g)
    c = lif_constants(500.0, 500.0, 0.0, 0.5, 0.0, 1e-3)
    z, z_dense = lif_fused(x, c), lif_fused(d, c)
    assert torch.equal(z, z_dense) and z.stride() == x.stride()
    (gx,), (gd,) = (torch.autograd.grad((y * w).sum(), v) for y, v in ((z, x), (z_dense, d)))
    assert torch.equal(gx, gd)


def test_fused_layer_in_half_precision_and_without_grad() -> None:
    layer = LIFLayer(T=4, tau_syn_inv=500.0, tau_mem_inv=500.0, v_th=0.5, dt=1e-3)
    x = torch.randn(4 * 3, 10, generator=torch.Generator().manual_seed(3)) * 2
    ref = LIFLayer(T=4, tau_syn_inv=500.0, tau_mem_inv=500.0, v_th=0.5, dt=1e-3, impl="norse")
    with torch.no_grad():
        assert torch.equal(layer(x), ref(x))
        half = layer(x.to(torch.bfloat16))
        # the bfloat16 current integrated in float32, as the custom op integrates it
        want, _ = torch.ops.taaf.lif_fused(x.to(torch.bfloat16).reshape(4, -1), layer.constants,
                                           False)
    assert half.dtype == torch.bfloat16 and set(half.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(half.reshape(4, -1), want) and 0 < float(half.float().mean()) < 1


def test_constants_follow_a_loaded_state_dict_and_bad_impl_is_refused() -> None:
    layer = LIFLayer(T=4, tau_syn_inv=500.0, tau_mem_inv=500.0, v_th=0.5, dt=1e-3)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["v_th"] = torch.tensor(2.0)
    layer.load_state_dict(state)
    assert layer.constants[3] == 2.0  # the kernel uses the checkpoint's threshold
    x = torch.full((4, 1), 1.5)
    assert torch.equal(layer(x), norse_loop(x.reshape(4, 1), 500.0, 500.0, 2.0))
    with pytest.raises(ValueError, match="impl must be one of"):
        LIFLayer(T=4, tau_syn_inv=1.0, tau_mem_inv=1.0, v_th=1.0, dt=1e-3, impl="cuda")
    with pytest.raises(ValueError, match="impl must be one of"):
        set_lif_impl(layer, "fast")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed", "strided"])
def test_inference_calls_the_kernel_directly_with_the_custom_ops_spikes(layout: str) -> None:
    """Without autograd, a dense float32 CPU current skips the custom op's dispatch: the same
    spikes bit for bit, in the current's layout. A current that is not dense (a strided
    slice) goes through the op; so does one spanning several thread blocks."""
    g = torch.Generator().manual_seed(5)
    dense = torch.randn(6, 3, 4, 5, 7, generator=g) * 2
    x = {"contiguous": dense,
         "channels_last": dense.reshape(18, 4, 5, 7).contiguous(
             memory_format=torch.channels_last).reshape(6, 3, 4, 5, 7),
         "transposed": dense.transpose(2, 4).contiguous().transpose(2, 4),
         "strided": torch.cat([dense, dense], dim=4)[..., ::2][..., :7]}[layout]
    c = lif_constants(500.0, 500.0, 0.0, 0.5, 0.0, 1e-3)
    with torch.profiler.profile() as prof, torch.inference_mode():
        z = lif_fused(x, c)
    dispatched = any(e.name == "taaf::lif_fused" for e in prof.events())
    assert dispatched == (layout == "strided")
    want, _ = torch.ops.taaf.lif_fused(x.contiguous().reshape(6, -1), c, False)
    assert torch.equal(z.contiguous().reshape(6, -1), want)
    assert torch.equal(z, norse_loop(x, 500.0, 500.0, 0.5))
    if layout != "strided":
        assert z.stride() == x.stride()
    # the (T*B, ...) current the layers produce, with T given: the same spikes, on either path
    flat = x.flatten(0, 1)
    with torch.inference_mode():
        assert torch.equal(lif_fused(flat, c, steps=6), z.flatten(0, 1))
    flat = flat.detach().clone().requires_grad_(True)
    z_flat = lif_fused(flat, c, steps=6)
    assert torch.equal(z_flat, z.flatten(0, 1)) and z_flat.requires_grad
    big = torch.randn(4, 2 * (1 << 14) + 3, generator=g) * 2  # two blocks on two threads
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            assert torch.equal(lif_fused(big, c), norse_loop(big, 500.0, 500.0, 0.5))
    finally:
        torch.set_num_threads(threads)


def test_no_gradient_without_a_saved_membrane_is_an_error_not_zeros() -> None:
    c = lif_constants(500.0, 500.0, 0.0, 0.5, 0.0, 1e-3)
    x = torch.randn(3, 4, requires_grad=True)
    z, _ = torch.ops.taaf.lif_fused(x, c, False)  # called without save_membrane
    with pytest.raises(RuntimeError, match="without save_membrane"):
        z.sum().backward()


def aten_ops_of_one_window(impl: str) -> tuple[int, int, int]:
    """(aten ops, outermost aten ops, addcmul ops) in one batch-1 inference forward of the
    bundled model as the node runs it (norms folded); outermost: not called by another aten
    op, i.e. dispatched from Python. The torch loop's membrane update is an addcmul per step
    and layer; the kernel has none."""
    net = set_lif_impl(fold_norms(load_checkpoint(BUNDLED).model), impl)
    cfg = net.cfg
    ev = torch.zeros(cfg.T, 1, *cfg.event_shape)
    au = torch.zeros(cfg.T, 1, 2, cfg.audio_channels)
    with torch.inference_mode():
        net(ev, au)
        with torch.profiler.profile() as prof:
            net(ev, au)
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    outermost = [e for e in aten
                 if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    return len(aten), len(outermost), sum(e.name == "aten::addcmul" for e in aten)


def test_a_batch1_forward_dispatches_far_fewer_ops_with_the_fused_lif() -> None:
    """Counted with torch.profiler, nested ops included (what the issue's goal of fewer than
    300 counts). The per-step torch loop costs ~6 ops a step per layer; the fused kernel none
    at inference (called directly). 290 against 1,548 in a process of its own (other tests'
    imports can add a few nested ops to both, hence the ratio); outermost only (what Python
    dispatches): 91."""
    loop_ops, _, loop_updates = aten_ops_of_one_window("loop")
    fused_ops, outermost, fused_updates = aten_ops_of_one_window("fused")
    print(f"aten ops per batch-1 forward: loop {loop_ops}, fused {fused_ops} "
          f"({outermost} outermost)")
    assert loop_updates == 8 * 8 * 2  # 8 LIF layers x T=8 steps x (membrane, reset)
    assert fused_updates == 0  # every LIF layer took the kernel
    assert fused_ops < 300
    assert fused_ops < 0.25 * loop_ops
    assert outermost < 100


TRITON_CHECK = r"""
import json, torch
from taaf_ros.model import lif_fused, lif_triton
g = torch.Generator().manual_seed(0)
out = {}
for T, N, c in [(8, 600, (500.0, 500.0, 0.5)), (3, 5, (100.0, 1000.0, 1.0))]:
    k = lif_fused.lif_constants(c[0], c[1], 0.0, c[2], 0.0, 1e-3)
    x = torch.randn(T, N, generator=g) * 2
    gz = torch.randn(T, N, generator=g)
    z, m = lif_triton.lif_forward(x, k, True)
    z_cpu, m_cpu = torch.ops.taaf.lif_fused(x, k, True)
    gx = lif_triton.lif_backward(gz, m, k)
    gx_cpu = torch.ops.taaf.lif_fused_backward(gz, m_cpu, k)
    out[f"{T}x{N}"] = [bool(torch.equal(z, z_cpu)), float((m - m_cpu).abs().max()),
                       float((gx - gx_cpu).abs().max()), float(z.mean())]
print(json.dumps(out))
"""


def test_the_triton_kernel_source_agrees_with_the_cpu_kernel_in_the_interpreter() -> None:
    """The CUDA kernel's own source, run by Triton's interpreter on CPU tensors (the compiled
    kernel on a GPU is checked by ``make bench-gpu``)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for case, (spikes_equal, membrane_diff, grad_diff, rate) in json.loads(
            run.stdout.strip().splitlines()[-1]).items():
        assert spikes_equal and membrane_diff < 1e-5 and grad_diff < 1e-5, case
        assert 0 < rate < 1, case


def test_neuron_blocks_on_threads_give_the_single_thread_result() -> None:
    """A training batch's layer is split into neuron blocks run on threads (the kernels release
    the GIL), and each thread's block into blocks whose state stays in cache; each neuron's
    time loop stays whole, so the result is the one-block result, and norse's."""
    from taaf_ros.model import lif_fused as module

    g = torch.Generator().manual_seed(5)
    n = module._CACHE_BLOCK + 3 * (1 << 14) + 7  # more than one cache block per thread
    x = (torch.randn(4, n, generator=g) * 1.5).requires_grad_(True)
    w = torch.randn(x.shape, generator=g)
    c = lif_constants(500.0, 500.0, 0.0, 0.5, 0.0, 1e-3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            z = lif_fused(x, c)
            (gx,) = torch.autograd.grad((z * w).sum(), x)
            results.append((z, gx))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    z_ref = norse_loop(x, 500.0, 500.0, 0.5)
    (gx_ref,) = torch.autograd.grad((z_ref * w).sum(), x)
    assert torch.equal(results[0][0], z_ref)
    torch.testing.assert_close(results[0][1], gx_ref, rtol=1e-5, atol=1e-6)


def test_both_cpu_kernels_compile_to_vector_code() -> None:
    """The CPU kernels are written for numba to vectorise across neurons; a construct that
    stops it (the backward's division under Python's error model, which checks every divisor
    for zero) leaves a scalar loop 3.5x slower with the same results, which no equality test
    sees. The kernels are compiled afresh with their own options (the cached machine code
    cannot be inspected) and their LLVM IR must hold float vectors."""
    import re

    import numba

    from taaf_ros.model import lif_fused as module

    rows = numba.float32[:, ::1]
    constants = (numba.float32,) * 5
    signatures = {
        module._forward_kernel: (rows, rows, rows, numba.boolean, numba.int64, numba.int64,
                                 *constants),
        module._backward_kernel: (rows, rows, rows, numba.int64, numba.int64, *constants[:4]),
    }
    for kernel, signature in signatures.items():
        options = {k: v for k, v in kernel.targetoptions.items()
                   if k not in ("cache", "nopython")}
        fresh = numba.njit(**options)(kernel.py_func)
        fresh.compile(signature)
        widths = set(re.findall(r"<(\d+) x float>", fresh.inspect_llvm(signature)))
        assert widths, f"{kernel.__name__} compiled to scalar code only"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (make bench-gpu)")
def test_the_compiled_triton_kernel_equals_the_cpu_kernel() -> None:
    from taaf_ros.model import lif_fused as lf

    assert lf.available(torch.device("cuda")), "CUDA without Triton: the fused kernel is off"
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(8, 3, 5000, generator=g) * 1.5).requires_grad_(True)
    w = torch.randn(x.shape, generator=g)
    c = lif_constants(500.0, 500.0, 0.0, 0.5, 0.0, 1e-3)
    z = lif_fused(x, c)
    (gx,) = torch.autograd.grad((z * w).sum(), x)
    xc = x.detach().cuda().requires_grad_(True)
    zc = lif_fused(xc, c)
    (gxc,) = torch.autograd.grad((zc * w.cuda()).sum(), xc)
    # Triton may contract a multiply-add into an FMA: a spike exactly at threshold may flip
    assert float((zc.cpu() != z).float().mean()) < 1e-4
    torch.testing.assert_close(gxc.cpu(), gx, rtol=1e-4, atol=1e-4)
