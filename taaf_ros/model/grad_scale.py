"""Per-step, per-modality gradient scaling: identity forward, scaled backward.

The balanced loss computes its coefficients k[t, m] from the same batch after the forward pass;
this function reads them when backward runs, so one pass suffices (see ``loss.py``).
"""

from __future__ import annotations

import torch


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient at step t by k[t, m].

    ``k`` is read when backward runs, not when forward runs, so a caller may fill it in place
    between the forward pass and ``loss.backward()`` (current-batch coefficients in one pass).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, m: int) -> torch.Tensor:  # noqa: ANN001
        ctx.k, ctx.m = k, m  # kept by reference on purpose (see class docstring)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        k = ctx.k[:, ctx.m].to(device=grad.device, dtype=grad.dtype)
        return grad * k.reshape(-1, *([1] * (grad.dim() - 1))), None, None


def scale_grad(x: torch.Tensor, k: torch.Tensor, m: int) -> torch.Tensor:
    """x: (T, B, ...); k: (T, M) gradient scale, read at backward time; m: modality index."""
    return _ScaleGrad.apply(x, k, m)
