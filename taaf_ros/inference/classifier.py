"""Window -> scores: find and load a checkpoint, turn one window's data into spike tensors
with the front end the model was trained with, run the network."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from taaf_ros.modalities import MODALITIES

DEFAULT_MODEL = "taaf_avdigits.pt"
"""The bundled checkpoint's file name (installed to share/taaf_ros/models by setup.py)."""

BACKENDS = ("eager", "onnxruntime", "cuda_graph")
"""How the network runs: PyTorch op by op; the exported graph in ONNX Runtime; the PyTorch
network captured once as a CUDA graph and replayed (CUDA only)."""


def find_bundled_model(share_dirs: Iterable[str | os.PathLike[str]] | None = None) -> Path:
    """The default checkpoint: ``share/taaf_ros/models/taaf_avdigits.pt`` (:data:`DEFAULT_MODEL`),
    else the source tree's models/. Only that file name: another ``*.pt`` put beside it is
    never picked by accident (name it in ``model_path``).

    Looked up in order: the ament index (``AMENT_PREFIX_PATH``, a ROS workspace or install),
    ``<sys.prefix>/share/taaf_ros/models`` (a plain ``pip install`` puts data_files there and
    sets no AMENT_PREFIX_PATH), then ``models/`` beside the package (an editable install or a
    source checkout). Raises FileNotFoundError naming every place searched.
    """
    dirs: list[Path] = []
    if share_dirs is None:
        try:
            from ament_index_python.packages import get_package_share_directory

            dirs.append(Path(get_package_share_directory("taaf_ros")) / "models")
        except (ImportError, LookupError, OSError, ValueError):
            pass  # no ament index (AMENT_PREFIX_PATH unset) or package not registered
        dirs.append(Path(sys.prefix) / "share" / "taaf_ros" / "models")
        dirs.append(Path(__file__).resolve().parents[2] / "models")
    else:
        dirs = [Path(d) for d in share_dirs]
    for d in dirs:
        if (d / DEFAULT_MODEL).is_file():
            return d / DEFAULT_MODEL
    raise FileNotFoundError(f"no bundled model ({DEFAULT_MODEL}) in " + ", ".join(map(str, dirs))
                            + "; set model_path to a checkpoint")


def frontend_from_card(card: dict[str, Any]) -> Any:
    """The FrontEndConfig the model was trained with, from its model card.

    Raises ValueError where the card has none: guessing the window, bins or cochlea settings
    would feed the network tensors unlike the ones it learned from, silently.
    """
    from taaf_ros.frontend import FrontEndConfig

    fe = card.get("frontend")
    if not isinstance(fe, dict) or not fe:
        raise ValueError("the model card has no front-end settings ('frontend'): re-save the "
                         "checkpoint with train_ead.py, which records them")
    return FrontEndConfig.from_dict(dict(fe))


class WindowResult(NamedTuple):
    """Network output for one window (numpy, batch dimension removed)."""

    probs: np.ndarray  # (K,)
    modality_attention: np.ndarray  # (M,)
    attention_map: np.ndarray  # (T, M)
    events_frame: np.ndarray | None  # (T, 2, H, W) input, for the debug image
    audio_frame: np.ndarray | None  # (T, 2, C)


class Classifier:
    """A loaded checkpoint + its front end: one window of raw data -> class probabilities.

    Args:
        path: checkpoint file (see taaf_ros.model.checkpoint). device: 'auto', 'cpu', 'cuda:N'.
        dtype: 'float32', 'float16' (CUDA only) or 'bfloat16', applied with autocast.
        backend: one of :data:`BACKENDS` (``cuda_graph`` needs a CUDA device).
        window_s: 0 = the model card's window; another value changes the window the front end
            bins over (the network still sees T bins).

    Raises CheckpointError (missing / corrupt / wrong file) or RuntimeError / ValueError (device).
    """

    def __init__(self, path: str | os.PathLike[str], device: str = "auto",
                 window_s: float = 0.0, dtype: str = "float32", backend: str = "eager"
                 ) -> None:
        import dataclasses

        import torch

        from taaf_ros.model import load_checkpoint, prepare_model, resolve_dtype, select_device
        from taaf_ros.model.fold import fold_norms

        self.path = str(path)
        self.device = select_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        loaded = load_checkpoint(path, map_location="cpu")
        self.card = loaded.card
        # the norms folded into the weights: the same spikes, eight module calls fewer
        self.model = prepare_model(fold_norms(loaded.model), self.device)
        self.classes = [str(c) for c in self.card["classes"]]
        self.modalities = tuple(self.card.get("modalities", MODALITIES))
        fe = frontend_from_card(self.card)
        if window_s > 0:
            fe = dataclasses.replace(fe, window_s=float(window_s))
        self.frontend = fe
        self._torch = torch
        self.backend = backend
        self.runner = None
        if backend == "onnxruntime":
            self.runner = _onnx_runner(self.path, loaded.model, self.device, self.dtype)
        elif backend == "cuda_graph":
            from taaf_ros.inference.cuda_graph import CudaGraphRunner

            self.runner = CudaGraphRunner(self.model, self.dtype)
        elif backend != "eager":
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

    @property
    def window_us(self) -> int:
        return self.frontend.window_us

    def warm_up(self) -> None:
        """Run one synthetic window: the first call compiles numba kernels and allocates
        torch buffers (up to seconds), which must not delay the first live windows."""
        from taaf_ros.events.types import make_events

        w, h = self.input_size
        ev = make_events([0, w - 1], [0, h - 1], [0, self.window_us - 1], [0, 1])
        rate = self.frontend.cochlea.sample_rate
        pcm = np.random.default_rng(0).standard_normal(round(self.window_us * rate / 1e6))
        self.classify(ev, (w, h), 0.1 * pcm.astype(np.float32), rate, 0)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network's event input."""
        return self.frontend.input_size

    def classify(self, events: np.ndarray | None, sensor_size: tuple[int, int],
                 pcm: np.ndarray | None, sample_rate: int, start_us: int) -> WindowResult:
        """Events (ROS-time µs) and PCM of the window starting at start_us; None = masked."""
        from taaf_ros.frontend import audio_tensor, event_tensor

        ev = au = None
        if events is not None and "events" in self.modalities:
            ev = event_tensor(events, sensor_size, start_us, self.frontend)
        if pcm is not None and "audio" in self.modalities:
            au = audio_tensor(pcm, sample_rate, self.frontend)
        return self.classify_tensors(ev, au)

    def classify_tensors(self, ev: np.ndarray | None, au: np.ndarray | None) -> WindowResult:
        """The network on ready spike tensors (T, 2, h, w) and (T, 2, C); None = masked."""
        from taaf_ros.model.device import inference_context

        torch = self._torch
        if "events" not in self.modalities:
            ev = None
        if "audio" not in self.modalities:
            au = None
        if ev is None and au is None:
            raise ValueError("no modality present")
        if self.runner is not None:
            return self._classify_runner(ev, au)
        with inference_context(self.device, self.dtype):
            # no mask: present is what is given, known to the forward as structure, so it
            # dispatches no masking ops
            out = self.model(
                None if ev is None else torch.from_numpy(ev)[:, None].to(self.device),
                None if au is None else torch.from_numpy(au)[:, None].to(self.device),
            )
            probs = torch.softmax(out.logits[0].float(), dim=-1).cpu().numpy()
            att = out.modality_attention[0].float().cpu().numpy()
            amap = out.attention_map[0].float().cpu().numpy()
        return WindowResult(probs, att, amap, ev, au)

    def _classify_runner(self, ev: np.ndarray | None, au: np.ndarray | None) -> WindowResult:
        """The exported graph or the captured CUDA graph: an absent modality is zeros,
        masked."""
        cfg = self.model.cfg
        e = (np.zeros((cfg.T, *cfg.event_shape), np.float32) if ev is None else ev)[:, None]
        a = (np.zeros((cfg.T, 2, cfg.audio_channels), np.float32) if au is None else au)[:, None]
        present = np.array([[ev is not None, au is not None]])
        probs, att, amap = self.runner(e, a, present)
        return WindowResult(probs[0], att[0], amap[0], ev, au)


def _onnx_runner(checkpoint: str, model: Any, device: Any, dtype: Any) -> Any:
    """ONNX Runtime on the checkpoint's graph: ``<model>.onnx`` beside it when current, else
    exported once into the user cache (a share folder may be read-only). On CUDA the TensorRT
    provider (where onnxruntime has it) caches its engines in ``<model>.trt/`` beside the graph
    when that folder is writable, else in the user cache."""
    from taaf_ros.model.export import (
        OnnxRunner,
        export_onnx,
        file_digest,
        graph_source,
        onnx_path,
        onnx_providers,
    )

    beside, digest = onnx_path(checkpoint), file_digest(checkpoint)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "taaf_ros"
    if beside.is_file() and graph_source(beside) == digest:
        path = beside
    else:  # none, or made from another checkpoint: export once, keyed by the checkpoint
        path = cache / "onnx" / f"{Path(checkpoint).stem}-{digest[:16]}.onnx"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            export_onnx(model, path, source_digest=digest)
    engines = path.with_suffix(".trt")
    if not os.access(path.parent, os.W_OK):
        engines = cache / "trt" / f"{Path(checkpoint).stem}-{digest[:16]}"
    try:
        import onnxruntime
    except ImportError:  # OnnxRunner says what to install
        available: list[str] = []
    else:
        available = onnxruntime.get_available_providers()
    providers = onnx_providers(device, dtype, available, engines)
    if any(p[0] == "TensorrtExecutionProvider" for p in providers if isinstance(p, tuple)):
        engines.mkdir(parents=True, exist_ok=True)
    return OnnxRunner(path, providers)
