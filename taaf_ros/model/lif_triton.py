"""Triton kernels of ``taaf::lif_fused`` on CUDA: one program per block of neurons walks all T
steps with the state in registers, so a layer is one launch forward and one backward.

The equations and their order are those of ``lif_fused`` (norse's step); the constants are
launch arguments (no device read). Inputs of any float dtype are computed in
float32 and the spikes written in the input's dtype; the saved membrane is float32.
Imported only where Triton is installed; with ``TRITON_INTERPRET=1`` the same kernels run on
the CPU (the test suite checks them that way; a GPU run is in ``make bench-gpu``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 256


@triton.jit
def _forward_kernel(x_ptr, z_ptr, m_ptr, c_syn, c_mem, v_leak, v_th, v_reset, T, N,
                    SAVE: tl.constexpr, BLOCK: tl.constexpr):  # pragma: no cover
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    i = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        x = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0).to(tl.float32)
        i_new = i + x
        vd = v + c_mem * ((v_leak - v) + i_new)
        i = i_new + (-c_syn) * i_new
        spike = tl.where(vd - v_th > 0, 1.0, 0.0)
        v = (1.0 - spike) * vd + spike * v_reset
        tl.store(z_ptr + t * N + offs, spike.to(z_ptr.dtype.element_ty), mask=mask)
        if SAVE:
            tl.store(m_ptr + t * N + offs, vd, mask=mask)


@triton.jit
def _backward_kernel(g_ptr, m_ptr, gx_ptr, c_syn, c_mem, v_th, v_reset, T, N,
                     BLOCK: tl.constexpr):  # pragma: no cover
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    g_v = tl.zeros([BLOCK], dtype=tl.float32)
    g_i = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(T):
        t = T - 1 - k
        vd = tl.load(m_ptr + t * N + offs, mask=mask, other=0.0)
        u = vd - v_th
        spike = tl.where(u > 0, 1.0, 0.0)
        s = 1.0 / ((tl.abs(u) + 1.0) * (tl.abs(u) + 1.0))
        g_z = tl.load(g_ptr + t * N + offs, mask=mask, other=0.0).to(tl.float32)
        g_z = g_z + g_v * (v_reset - vd)
        g_vd = g_v * (1.0 - spike) + g_z * s
        g_in = g_vd * c_mem + g_i * (1.0 - c_syn)
        tl.store(gx_ptr + t * N + offs, g_in.to(gx_ptr.dtype.element_ty), mask=mask)
        g_i = g_in
        g_v = g_vd * (1.0 - c_mem)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(max(n, 1), BLOCK),)


def lif_forward(x, constants, save_membrane):
    """The CUDA kernel of ``taaf::lif_fused`` (same signature)."""
    x = x.contiguous()
    T, N = x.shape
    z = torch.empty_like(x)
    membrane = torch.empty((T, N) if save_membrane else (0, 0), device=x.device,
                           dtype=torch.float32)
    if x.numel():
        _forward_kernel[_grid(N)](x, z, membrane if save_membrane else z, *constants, T, N,
                                  SAVE=bool(save_membrane), BLOCK=BLOCK)
    return z, membrane


def lif_backward(grad_z, membrane, constants):
    """The CUDA kernel of ``taaf::lif_fused_backward`` (same signature)."""
    grad_z = grad_z.contiguous()
    T, N = grad_z.shape
    grad_x = torch.empty_like(grad_z)
    if grad_z.numel():
        c_syn, c_mem, _, v_th, v_reset = constants
        _backward_kernel[_grid(N)](grad_z, membrane.contiguous(), grad_x, c_syn, c_mem, v_th,
                                   v_reset, T, N, BLOCK=BLOCK)
    return grad_x
