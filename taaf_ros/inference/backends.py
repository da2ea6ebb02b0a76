"""Which backend runs the network, and why: the choice ``inference_backend: auto`` makes, the
dtype each backend can honour, and opening the ONNX Runtime and CUDA-graph runners.

A backend other than eager is only kept when it gives the eager network's outputs on the
same windows (:func:`agreement`): "fastest correct", not just fastest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taaf_ros.defaults import INFERENCE_CHOICES, user_cache_dir

if TYPE_CHECKING:  # torch is imported by whoever loads a model, not by importing this
    import torch

TOLERANCE = {"float32": 1e-4, "float16": 5e-2, "bfloat16": 5e-2}
"""Largest difference of any output (probabilities, attention) from the eager network at the
same dtype for a backend to be kept. float32: the exported graph differs by rounding (about
2e-7 on the bundled model); reduced precision: both sides round, differently."""


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32."""
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class Choice:
    """The backend to open and why (one clause, for the start-up line)."""

    backend: str
    reason: str


def onnx_providers_available() -> list[str] | None:
    """onnxruntime's execution providers, or None where onnxruntime does not import."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


def dtype_refusal(backend: str, device: torch.device, dtype: torch.dtype,
                  providers: list[str] | None = None) -> str | None:
    """Why ``backend`` cannot honour ``dtype`` on ``device``, naming the fix; None if it can.

    ONNX Runtime runs the exported float32 graph; only TensorRT (on CUDA) can run it in
    float16.

    >>> import torch
    >>> dtype_refusal("onnxruntime", torch.device("cpu"), torch.bfloat16)[:52]
    'inference_backend onnxruntime cannot run in bfloat16'
    >>> dtype_refusal("eager", torch.device("cpu"), torch.bfloat16) is None
    True
    """
    name = dtype_name(dtype)
    if backend == "onnxruntime" and name != "float32":
        if (name == "float16" and device.type == "cuda"
                and "TensorrtExecutionProvider" in (providers or [])):
            return None
        return (f"inference_backend onnxruntime cannot run in {name}: it runs the exported "
                f"float32 graph (float16 only through TensorRT on CUDA). Set dtype:=float32, "
                f"or inference_backend:=eager (or auto) to run {name} with autocast")
    if backend == "cuda_graph" and device.type != "cuda":
        return (f"the cuda_graph backend needs a CUDA device, not {device}: set device:=cuda, "
                "or use eager or onnxruntime on a CPU")
    return None


def choose(requested: str, device: torch.device, dtype: torch.dtype,
           providers: list[str] | None) -> Choice:
    """The backend for ``requested`` (one of ``INFERENCE_CHOICES``) before it is opened.

    auto: the CUDA graph on CUDA; on a CPU ONNX Runtime where it imports and the dtype is
    float32, else eager. Raises ValueError for an unknown name or a dtype the requested backend
    cannot honour (never ignored).

    >>> import torch
    >>> choose("auto", torch.device("cpu"), torch.float32, ["CPUExecutionProvider"]).backend
    'onnxruntime'
    >>> choose("auto", torch.device("cpu"), torch.bfloat16, ["CPUExecutionProvider"]).backend
    'eager'
    >>> choose("auto", torch.device("cpu"), torch.float32, None).reason
    'auto: onnxruntime does not import (pip install onnxruntime)'
    """
    if requested not in INFERENCE_CHOICES:
        raise ValueError(f"backend must be one of {INFERENCE_CHOICES}, got {requested!r}")
    if requested != "auto":
        refusal = dtype_refusal(requested, device, dtype, providers)
        if refusal:
            raise ValueError(refusal)
        return Choice(requested, "as set")
    if device.type == "cuda":
        return Choice("cuda_graph", "auto: a CUDA device, where one graph replay replaces "
                                    "hundreds of kernel launches")
    if providers is None:
        return Choice("eager", "auto: onnxruntime does not import (pip install onnxruntime)")
    refusal = dtype_refusal("onnxruntime", device, dtype, providers)
    if refusal:
        return Choice("eager", f"auto: dtype {dtype_name(dtype)}, which ONNX Runtime cannot "
                               "run on a CPU")
    return Choice("onnxruntime", "auto: the fastest at batch 1 on a CPU")


def onnx_runner(checkpoint: str, model: Any, device: torch.device, dtype: torch.dtype,
                threads: int = 1, say: Callable[[str], None] | None = None) -> Any:
    """ONNX Runtime on the checkpoint's graph: ``<model>.onnx`` beside it when it was made from
    this checkpoint, else exported once into the user cache, keyed by the checkpoint's sha256
    (a share folder may be read-only; a retrained model never runs a stale graph). On CUDA the
    TensorRT provider (where onnxruntime has it) caches its engines in ``<model>.trt/`` beside
    the graph when that folder is writable, else in the user cache. ``threads``: intra-op
    threads (0: onnxruntime's default). ``say``: told before an export (seconds of work)."""
    from taaf_ros.inference.export import (
        OnnxRunner,
        export_onnx,
        file_digest,
        graph_source,
        onnx_path,
        onnx_providers,
    )

    beside, digest = onnx_path(checkpoint), file_digest(checkpoint)
    cache = user_cache_dir()
    if beside.is_file() and graph_source(beside) == digest:
        path = beside
    else:  # none, or made from another checkpoint: export once, keyed by the checkpoint
        path = cache / "onnx" / f"{Path(checkpoint).stem}-{digest[:16]}.onnx"
        if not path.is_file():
            if say is not None:
                say(f"exporting {checkpoint} to ONNX once (about 10 s on a CPU core), into "
                    f"{path}; `taaf_export {checkpoint} --onnx` puts it beside the model")
            path.parent.mkdir(parents=True, exist_ok=True)
            export_onnx(model, path, source_digest=digest)
    engines = path.with_suffix(".trt")
    if not os.access(path.parent, os.W_OK):
        engines = cache / "trt" / f"{Path(checkpoint).stem}-{digest[:16]}"
    providers = onnx_providers(device, dtype, onnx_providers_available() or [], engines)
    if any(p[0] == "TensorrtExecutionProvider" for p in providers if isinstance(p, tuple)):
        engines.mkdir(parents=True, exist_ok=True)
    return OnnxRunner(path, providers, threads=threads)
