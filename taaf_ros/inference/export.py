"""The network as an ONNX graph, and ONNX Runtime as an inference backend.

At batch 1 the eager network is bound by Python dispatch and per-op overhead (about 290 aten
ops a window with the fused LIF kernel), not arithmetic. Its inference forward has no host
round trip and no data-dependent branch (see ``TAAFNet.forward``), so ``torch.export`` traces
it whole and ``torch.onnx`` writes it as one graph with T unrolled (the LIF layers as the torch
loop: ONNX has no op for the fused kernel); ONNX Runtime then runs the graph
without Python in the loop. The exported graph takes both inputs and the presence mask, so
one file serves every combination of present modalities (an absent one is zeros, masked).

    taaf_export models/taaf_avdigits.pt --onnx      # writes models/taaf_avdigits.onnx
    (the command: :mod:`taaf_ros.apps.export`)

Runtimes: onnxruntime's CPU provider (tested), its CUDA / TensorRT providers on a GPU or a
Jetson (written, see docs/model.md; not run here).
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from taaf_ros.model.encoders import set_lif_impl
from taaf_ros.model.taaf import TAAFNet

INPUTS = ("events", "audio", "present")
OUTPUTS = ("probs", "modality_attention", "attention_map")
OPSET = 18


class InferenceGraph(nn.Module):
    """What a live node needs of one window: class probabilities, modality attention and the
    T x M attention map, from (events, audio, present) with batch 1 or more."""

    def __init__(self, net: TAAFNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, events: torch.Tensor, audio: torch.Tensor, present: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.net.cfg
        out = self.net(events if "events" in cfg.modalities else None,
                       audio if "audio" in cfg.modalities else None, present)
        return out.logits.softmax(dim=-1), out.modality_attention, out.attention_map


def example_inputs(net: TAAFNet, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the network's shapes, both modalities present."""
    cfg = net.cfg
    return (torch.zeros(cfg.T, batch, *cfg.event_shape),
            torch.zeros(cfg.T, batch, 2, cfg.audio_channels),
            torch.ones(batch, 2, dtype=torch.bool))


def onnx_path(checkpoint: str | Path) -> Path:
    """Where the ONNX graph of a checkpoint lives: beside it, ``.onnx`` for ``.pt``."""
    return Path(checkpoint).with_suffix(".onnx")


SOURCE_KEY = "taaf_ros.checkpoint_sha256"
"""Metadata of an exported graph: the checkpoint it was made from (file mtimes say nothing
after a git checkout)."""


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_onnx(net: TAAFNet, path: str | Path, opset: int = OPSET,
                source_digest: str = "") -> Path:
    """Write the inference graph of ``net`` (a copy in eval mode, CPU, float32) to ``path``;
    ``source_digest`` (the checkpoint's sha256) is recorded in its metadata."""
    import onnx

    # the torch loop, not the fused kernel: ONNX has no op for a custom kernel
    net = set_lif_impl(copy.deepcopy(net).eval().float().cpu(), "loop")
    program = torch.onnx.export(InferenceGraph(net).eval(), example_inputs(net), dynamo=True,
                                input_names=list(INPUTS), output_names=list(OUTPUTS),
                                opset_version=opset, verbose=False)
    path = Path(path)
    # a name of this process's own: two nodes may export the same checkpoint at once
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        program.save(str(tmp))
        graph = onnx.load(str(tmp))
        graph.metadata_props.add(key=SOURCE_KEY, value=source_digest)
        onnx.save(graph, str(tmp))
        tmp.replace(path)  # never a half-written graph beside the model
    finally:
        tmp.unlink(missing_ok=True)
    return path


def graph_source(path: str | Path) -> str:
    """The checkpoint digest an exported graph records ('' if none)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in graph.metadata_props if p.key == SOURCE_KEY), "")


Provider = str | tuple[str, dict[str, Any]]


def onnx_providers(device: torch.device, dtype: torch.dtype, available: Sequence[str],
                   engine_cache: Path) -> list[Provider]:
    """ONNX Runtime's execution providers for a run on ``device`` at ``dtype``, best first, of
    those ``available`` (``onnxruntime.get_available_providers()``): on CUDA (a GPU, a
    Jetson), TensorRT with its engines cached in ``engine_cache`` (built at the first start,
    minutes on a Jetson; loaded after) and float16 where ``dtype`` is, then CUDA; the CPU
    always last.

    >>> onnx_providers(torch.device("cpu"), torch.float32, ["CPUExecutionProvider"], Path("c"))
    ['CPUExecutionProvider']
    """
    chosen: list[Provider] = []
    if device.type == "cuda":
        gpu = {"device_id": device.index or 0}
        if "TensorrtExecutionProvider" in available:
            chosen.append(("TensorrtExecutionProvider", {
                **gpu, "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(engine_cache),
                "trt_fp16_enable": dtype == torch.float16}))
        if "CUDAExecutionProvider" in available:
            chosen.append(("CUDAExecutionProvider", gpu))
    return [*chosen, "CPUExecutionProvider"]


class OnnxRunner:
    """An ONNX Runtime session on an exported graph, called like the network in
    ``Classifier``: numpy inputs of batch 1, numpy outputs.

    providers: onnxruntime execution providers in order of preference, names or (name,
    options) (default CPU; :func:`onnx_providers` chooses them for a device). threads:
    intra-op threads (1 suits a batch-1 graph beside the node's decoding).
    """

    def __init__(self, path: str | Path, providers: list[Provider] | None = None,
                 threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeError("the onnxruntime backend needs the onnxruntime package: "
                               "pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts,
                                            providers=providers or ["CPUExecutionProvider"])

    def __call__(self, events: np.ndarray, audio: np.ndarray, present: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feeds = {"events": events.astype(np.float32, copy=False),
                 "audio": audio.astype(np.float32, copy=False), "present": present}
        probs, att, amap = self.session.run(list(OUTPUTS), feeds)
        return probs, att, amap


def check_against_eager(net: TAAFNet, runner: OnnxRunner, trials: int = 5,
                        seed: int = 0) -> float:
    """The largest absolute difference between ONNX Runtime's and the eager network's outputs
    over random inputs and every presence pattern."""
    g = torch.Generator().manual_seed(seed)
    graph = InferenceGraph(copy.deepcopy(net).eval().float().cpu()).eval()
    worst = 0.0
    patterns = [(True, True), (True, False), (False, True)]
    for i in range(trials):
        ev, au, _ = example_inputs(net)
        ev = torch.randint(0, 6, ev.shape, generator=g).float()
        au = torch.randint(0, 4, au.shape, generator=g).float()
        present = torch.tensor([patterns[i % len(patterns)]])
        with torch.no_grad():
            want = graph(ev * present[0, 0], au * present[0, 1], present)
        got = runner(ev.numpy() * present[0, 0].item(), au.numpy() * present[0, 1].item(),
                     present.numpy())
        worst = max(worst, *(float(np.abs(a - b.numpy()).max()) for a, b in zip(got, want,
                                                                                 strict=True)))
    return worst
