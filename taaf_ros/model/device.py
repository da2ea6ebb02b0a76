"""Device and precision selection for inference, and the optional torch.compile.

norse's ``LIFParameters`` is a NamedTuple that ``.to()`` does not move; this package keeps LIF
parameters as registered buffers (``encoders.LIFLayer``) so ``prepare_model`` moves everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def select_device(spec: str = "auto") -> torch.device:
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'.

    Raises ValueError for an unknown spec and RuntimeError when CUDA is asked for but absent
    or the index does not exist.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {spec!r} requested but CUDA is not available (torch {torch.__version__}"
                f", built with CUDA {torch.version.cuda}); use 'cpu' or 'auto'"
            )
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"{spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return dev
    raise ValueError(f"unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'float32' | 'float16' | 'bfloat16' checked against the device.

    float16 on the CPU is refused (slow or unsupported kernels there): use bfloat16, which
    recent x86 CPUs run natively, or float32. At batch 1 the casts cost more than bfloat16
    saves: 2.0-2.1 against 1.5 ms a window on the development CPU (bench_network.py --dtype).
    """
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: use one of {sorted(DTYPES)}")
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 inference needs CUDA; on the CPU use 'bfloat16' or 'float32'")
    return dtype


def prepare_model(
    model: nn.Module,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    compile: bool = False,
) -> nn.Module:
    """Move the model (weights, BatchNorm statistics and LIF buffers) and set eval mode.

    Reduced precision is applied with ``autocast`` (see :func:`inference_context`), not by
    casting the weights, so BatchNorm statistics and the LIF integration keep float32.
    ``compile`` wraps the model in ``torch.compile`` (CPU warm-up can take minutes).
    """
    model = model.to(device).eval()
    if compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


@contextlib.contextmanager
def inference_context(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """no_grad + autocast to ``dtype`` (a no-op for float32)."""
    with torch.inference_mode():
        if dtype == torch.float32:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield
