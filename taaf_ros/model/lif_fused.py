"""All T steps of a LIF layer in one kernel: one op per layer instead of ~6 per step.

At batch 1 the network is bound by per-op dispatch, and the LIF time loop was most of its ops.
``taaf::lif_fused`` runs norse's ``lif_feed_forward_step`` over every step of a (T, N) current
in one call, in the same float32 order of operations as norse (spikes equal bit for bit), and
``taaf::lif_fused_backward`` is its surrogate gradient (norse's SuperSpike, the reset not
detached, as norse differentiates it). Kernels: numba on the CPU, Triton on CUDA
(``lif_triton``); both are torch custom ops, so autograd, ``torch.compile`` and
``torch.export`` see one opaque op with a fake (shape-only) implementation.

norse's step, with c_mem = dt tau_mem_inv and c_syn = dt tau_syn_inv:
    i' = i + x[t];  v' = v + c_mem ((v_leak - v) + i');  i = i' - c_syn i'
    z = H(v' - v_th);  v = (1 - z) v' + z v_reset
The backward runs t = T-1 .. 0 carrying dL/dv and dL/di, with s = 1 / (|v' - v_th| + 1)^2:
    g_z = dL/dz[t] + g_v (v_reset - v');  g_v' = g_v (1 - z) + g_z s
    g_i' = g_v' c_mem + g_i (1 - c_syn);  dL/dx[t] = g_i';  g_i = g_i';  g_v = g_v' (1 - c_mem)

The constants are Python floats (``lif_constants``, computed once by the layer), so a CUDA
call reads nothing back from the device and a CUDA graph can hold the launch.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit


def lif_constants(tau_syn_inv: float, tau_mem_inv: float, v_leak: float, v_th: float,
                  v_reset: float, dt: float) -> list[float]:
    """[c_syn, c_mem, v_leak, v_th, v_reset], each rounded to float32 as norse's float32
    tensor ops round them (dt times a float32 parameter, computed in float32)."""
    f32 = np.float32
    return [float(f32(f32(dt) * f32(tau_syn_inv))), float(f32(f32(dt) * f32(tau_mem_inv))),
            float(f32(v_leak)), float(f32(v_th)), float(f32(v_reset))]


_CACHE_BLOCK = 1 << 16  # neurons whose state (v, i: 512 KiB) stays in cache over the T steps


@njit(cache=True, nogil=True)
def _forward_kernel(x, z, membrane, save, lo, hi, c_syn, c_mem, v_leak, v_th,
                    v_reset):  # pragma: no cover
    """Neurons [lo, hi) of the (T, N) arrays. The rows are sliced here, not by the caller:
    a column block of a C-contiguous array is strided and numba would not vectorise it."""
    T = x.shape[0]
    one = np.float32(1.0)
    for a in range(lo, hi, _CACHE_BLOCK):
        b = min(a + _CACHE_BLOCK, hi)
        v = np.zeros(b - a, np.float32)
        i = np.zeros(b - a, np.float32)
        for t in range(T):
            xt, zt = x[t, a:b], z[t, a:b]
            mt = membrane[t, a:b] if save else zt[0:0]
            for n in range(b - a):
                i_new = i[n] + xt[n]
                vd = v[n] + c_mem * ((v_leak - v[n]) + i_new)
                i[n] = i_new + (-c_syn) * i_new
                spike = one if vd - v_th > 0 else np.float32(0.0)
                v[n] = (one - spike) * vd + spike * v_reset
                zt[n] = spike
                if save:
                    mt[n] = vd


# error_model="numpy": the surrogate's division is plain IEEE (its divisor is >= 1). Python's
# error model checks every division for zero, and that branch kept the loop from vectorising
# (3.5x slower); the results are the same bit for bit.
@njit(cache=True, nogil=True, error_model="numpy")
def _backward_kernel(grad_z, membrane, grad_x, lo, hi, c_syn, c_mem, v_th,
                     v_reset):  # pragma: no cover
    """Neurons [lo, hi), as the forward."""
    T = grad_z.shape[0]
    one = np.float32(1.0)
    for a in range(lo, hi, _CACHE_BLOCK):
        b = min(a + _CACHE_BLOCK, hi)
        g_v = np.zeros(b - a, np.float32)
        g_i = np.zeros(b - a, np.float32)
        for t in range(T - 1, -1, -1):
            gz, mt, gx = grad_z[t, a:b], membrane[t, a:b], grad_x[t, a:b]
            for n in range(b - a):
                vd = mt[n]
                u = vd - v_th
                spike = one if u > 0 else np.float32(0.0)
                s = one / ((abs(u) + one) * (abs(u) + one))
                g_z = gz[n] + g_v[n] * (v_reset - vd)
                g_vd = g_v[n] * (one - spike) + g_z * s
                g_in = g_vd * c_mem + g_i[n] * (one - c_syn)
                gx[n] = g_in
                g_i[n] = g_in
                g_v[n] = g_vd * (one - c_mem)


@torch.library.custom_op("taaf::lif_fused", mutates_args=(),
                         schema="(Tensor x, float[] constants, bool save_membrane)"
                                " -> (Tensor, Tensor)")
def lif_fused_op(x, constants, save_membrane):
    """Spikes (T, N) and, if ``save_membrane``, the membrane before reset (else an empty
    tensor) of LIF neurons driven by currents ``x`` (T, N), from rest; ``constants`` from
    :func:`lif_constants`."""
    raise NotImplementedError(f"taaf::lif_fused has no kernel for {x.device.type}")


@lif_fused_op.register_kernel("cpu")
def _lif_fused_cpu(x, constants, save_membrane):
    current = _float32_contiguous(x)  # held until the kernels are done: they read its memory
    z = torch.empty(current.shape)
    membrane = torch.empty(current.shape if save_membrane else (0, 0))
    xs, zs, m = _view(current), _view(z), _view(membrane)
    c = _float32_constants(tuple(constants))
    _in_column_blocks(xs.shape[1], lambda a, b: _forward_kernel(
        xs, zs, m, save_membrane, a, b, *c))
    return (z if x.dtype == torch.float32 else z.to(x.dtype)), membrane


_POOL: tuple[ThreadPoolExecutor, int] | None = None  # the pool and its size
_MIN_BLOCK = 1 << 14  # neurons: below this a thread hand-off costs more than it saves


def _in_column_blocks(n: int, run: Callable[[int, int], None]) -> None:
    """run(a, b) over neuron columns [0, n), split across torch's intra-op thread count.

    The kernels release the GIL, so plain threads run them in parallel (numba's own parallel
    layers are not safe to call from several threads at once, as a node's executor may).
    Each neuron's time loop stays in one block: results do not depend on the split.
    """
    global _POOL
    k = min(torch.get_num_threads(), n // _MIN_BLOCK)
    if k <= 1:
        run(0, n)
        return
    if _POOL is None or _POOL[1] < k:
        _POOL = (ThreadPoolExecutor(max_workers=k, thread_name_prefix="taaf_lif"), k)
    pool = _POOL[0]
    edges = [n * j // k for j in range(k + 1)]
    for f in [pool.submit(run, a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]:
        f.result()


def _float32_contiguous(x: torch.Tensor) -> torch.Tensor:
    """x as contiguous float32 (itself in the usual case)."""
    x = x if x.dtype == torch.float32 else x.to(torch.float32)
    return x if x.is_contiguous() else x.contiguous()


def _view(t: torch.Tensor, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A numpy array of ``shape`` (default: t's) over the memory of ``t`` (dense float32 on
    the CPU), made without torch ops: at batch 1 ``Tensor.numpy()``'s three (a detach and two
    conjugate and negation checks) cost as much as the kernel's arithmetic. It does not own the
    memory: the caller holds ``t`` while the view is used."""
    shape = tuple(t.shape) if shape is None else shape
    if t.numel() == 0:
        return np.empty(shape, np.float32)
    memory = (ctypes.c_float * t.numel()).from_address(t.data_ptr())
    return np.frombuffer(memory, np.float32).reshape(shape)


def _time_major_dense(x: torch.Tensor) -> bool:
    """Whether x's memory is (T, N) for some order of its other axes: dense, no overlap, time
    outermost (a contiguous or a channels-last current; checked from the strides alone)."""
    if x.is_contiguous():
        return True
    expected = 1
    for d in sorted(range(x.dim()), key=lambda d: x.stride(d)):
        if x.shape[d] != 1 and x.stride(d) != expected:
            return False
        expected *= x.shape[d]
    return x.dim() > 0 and (x.shape[0] == 1 or x.stride(0) == x.numel() // x.shape[0])


def _spikes_for_inference(x: torch.Tensor, constants: list[float], steps: int) -> torch.Tensor:
    """The CPU kernel called directly, for a current nothing will differentiate: no custom-op
    dispatch, no membrane kept, the spikes in x's own memory layout (``empty_like`` keeps a
    dense layout, so neuron n is the same element of both). The custom op's spikes bit for bit;
    at batch 1 it saves ~15 µs a layer, as much as the smaller layers' arithmetic."""
    # x is float32 here; empty_like of a contiguous tensor dispatches one op more
    z = torch.empty(x.shape, dtype=torch.float32) if x.is_contiguous() else torch.empty_like(x)
    n = x.numel() // steps if steps else 0
    xs, zs = _view(x, (steps, n)), _view(z, (steps, n))
    c = _float32_constants(tuple(constants))
    if n < 2 * _MIN_BLOCK:  # one block: the kernel at once
        _forward_kernel(xs, zs, _NO_MEMBRANE, False, 0, n, *c)
    else:
        _in_column_blocks(n, lambda a, b: _forward_kernel(xs, zs, _NO_MEMBRANE, False, a, b, *c))
    return z


@functools.lru_cache(maxsize=64)
def _float32_constants(constants: tuple[float, ...]) -> tuple[np.float32, ...]:
    """The kernels' float32 constants (the layers' few sets, converted once)."""
    return tuple(np.float32(c) for c in constants)


_NO_MEMBRANE = np.empty((0, 0), np.float32)  # the kernel's membrane argument when none is kept


@lif_fused_op.register_fake
def _lif_fused_fake(x, constants, save_membrane):
    membrane = x.new_empty(x.shape if save_membrane else (0, 0), dtype=torch.float32)
    return torch.empty_like(x), membrane


@torch.library.custom_op("taaf::lif_fused_backward", mutates_args=(),
                         schema="(Tensor grad_z, Tensor membrane, float[] constants) -> Tensor")
def lif_fused_backward_op(grad_z, membrane, constants):
    """dL/dx (T, N) from dL/dz and the membrane the forward saved."""
    raise NotImplementedError(f"taaf::lif_fused_backward has no kernel for {grad_z.device.type}")


@lif_fused_backward_op.register_kernel("cpu")
def _lif_fused_backward_cpu(grad_z, membrane, constants):
    c_syn, c_mem, _, v_th, v_reset = _float32_constants(tuple(constants))
    grad_x = torch.empty(grad_z.shape)
    held = _float32_contiguous(grad_z), _float32_contiguous(membrane)  # while the kernels run
    g, m, gx = _view(held[0]), _view(held[1]), _view(grad_x)
    _in_column_blocks(g.shape[1], lambda a, b: _backward_kernel(
        g, m, gx, a, b, c_syn, c_mem, v_th, v_reset))
    return grad_x if grad_z.dtype == torch.float32 else grad_x.to(grad_z.dtype)


@lif_fused_backward_op.register_fake
def _lif_fused_backward_fake(grad_z, membrane, constants):
    return torch.empty_like(grad_z)


def _setup_context(ctx, inputs, output) -> None:
    _, constants, _ = inputs
    ctx.save_for_backward(output[1])
    ctx.constants = constants
    # the membrane is an output for backward's sake only: no zero-filled gradient for it
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_z, _grad_membrane):
    (membrane,) = ctx.saved_tensors
    if grad_z is None:  # the spikes were not used
        return None, None, None
    if membrane.numel() == 0 and grad_z.numel() > 0:
        raise RuntimeError("taaf::lif_fused was called without save_membrane: no gradient")
    return lif_fused_backward_op(grad_z.contiguous(), membrane, ctx.constants), None, None


lif_fused_op.register_autograd(_backward, setup_context=_setup_context)


def _register_cuda() -> bool:
    """The Triton kernels as the CUDA implementation, where CUDA and Triton are (Triton is
    imported only then: a CPU node does not pay for it)."""
    if not torch.cuda.is_available():
        return False
    try:
        from . import lif_triton
    except ImportError:  # no Triton: CUDA tensors take the torch loop (see available)
        return False
    lif_fused_op.register_kernel("cuda")(lif_triton.lif_forward)
    lif_fused_backward_op.register_kernel("cuda")(lif_triton.lif_backward)
    return True


_CUDA_KERNELS = _register_cuda()


def available(device: torch.device) -> bool:
    """Whether the fused kernel runs on ``device`` (CPU always; CUDA with Triton)."""
    return device.type == "cpu" or (device.type == "cuda" and _CUDA_KERNELS)


def lif_fused(x: torch.Tensor, constants: list[float], steps: int | None = None) -> torch.Tensor:
    """Spikes of LIF neurons driven by currents x: norse's step loop in one kernel,
    differentiable with norse's SuperSpike surrogate. x is (T, ...), or with ``steps`` = T
    given, (T*B, ...) whose rows are time-major (row t*B + b: what the layers before a LIF
    layer produce); the spikes have x's shape.

    >>> x = torch.tensor([[0.0], [5.0], [5.0], [0.0]])
    >>> c = lif_constants(tau_syn_inv=200.0, tau_mem_inv=100.0, v_leak=0.0, v_th=1.0,
    ...                   v_reset=0.0, dt=1e-3)
    >>> lif_fused(x, c).flatten().tolist()
    [0.0, 0.0, 1.0, 0.0]
    """
    steps = x.shape[0] if steps is None else steps
    save = torch.is_grad_enabled() and x.requires_grad
    if (not save and type(x) is torch.Tensor and x.device.type == "cpu"  # not a fake tensor
            and x.dtype.is_floating_point and not torch.compiler.is_compiling()
            and _time_major_dense(x)):  # then (T*B, ...) memory is (T, B*...) memory as well
        if x.dtype == torch.float32:
            return _spikes_for_inference(x, constants, steps)
        # autocast's bfloat16 current: integrated in float32, as the custom op does
        return _spikes_for_inference(x.float(), constants, steps).to(x.dtype)
    if steps != x.shape[0]:
        return lif_fused(x.reshape(steps, -1, *x.shape[1:]), constants).reshape(x.shape)
    # The neurons are independent, so they are taken in memory order: a channels-last current
    # (the convolutions' faster layout on the CPU) is read as it lies, without a copy, and the
    # spikes come back in its layout.
    order = sorted(range(1, x.dim()), key=lambda d: -x.stride(d))
    if order == list(range(1, x.dim())):  # already in memory order: no permutes to dispatch
        z, _ = lif_fused_op(x.reshape(x.shape[0], -1), constants, save)
        return z.view(x.shape)
    in_memory = x.permute(0, *order)
    z, _ = lif_fused_op(in_memory.reshape(x.shape[0], -1), constants, save)
    return z.view(in_memory.shape).permute(0, *(order.index(d) + 1 for d in range(1, x.dim())))
