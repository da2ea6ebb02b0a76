"""Window -> scores: find and load a checkpoint, turn one window's data into spike tensors
with the front end the model was trained with, run the network."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from taaf_ros.modalities import MODALITIES

__all__ = ["Classifier", "WindowResult"]

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
        backend: one of ``INFERENCE_CHOICES``: 'auto' picks the fastest that gives the eager
            network's outputs (``taaf_ros.inference.backends``); a named one is refused when
            it cannot run ``dtype`` or disagrees with eager. ``backend`` says which runs,
            ``backend_reason`` why.
        window_s: 0 = the model card's window; another value changes the window the front end
            bins over (the network still sees T bins).
        threads: ONNX Runtime's intra-op threads (0: its default; torch's are process-wide,
            set by the caller). say: told of slow steps before they run (an ONNX export).

    Raises CheckpointError (missing / corrupt / wrong file) or RuntimeError / ValueError (device,
    dtype, backend).
    """

    def __init__(self, path: str | os.PathLike[str], device: str = "auto",
                 window_s: float = 0.0, dtype: str = "float32", backend: str = "eager",
                 threads: int = 1, say: Callable[[str], None] | None = None) -> None:
        import dataclasses

        import torch

        from taaf_ros.frontend import frontend_from_card
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
        self.runner: Any = None
        self.backend, self.backend_reason = "eager", "as set"
        self._open_backend(backend, loaded.model, threads, say)

    def _open_backend(self, requested: str, trained: Any, threads: int,
                      say: Callable[[str], None] | None) -> None:
        """Open the backend ``requested`` names (``auto``: chooses), keep it only when its
        outputs equal eager's within :data:`~taaf_ros.inference.backends.TOLERANCE`.
        ``trained``: the network as loaded, norms unfolded (what is exported)."""
        from taaf_ros.inference import backends

        providers = (backends.onnx_providers_available()
                     if requested in ("auto", "onnxruntime") else None)
        choice = backends.choose(requested, self.device, self.dtype, providers)
        self.backend_reason = choice.reason
        if choice.backend == "eager":
            return
        auto = requested == "auto"
        try:
            if choice.backend == "onnxruntime":
                runner = backends.onnx_runner(self.path, trained, self.device, self.dtype,
                                              threads, say)
            else:
                from taaf_ros.inference.cuda_graph import CudaGraphRunner

                runner = CudaGraphRunner(self.model, self.dtype)
            diff = self.largest_difference(runner)
        except Exception as exc:  # noqa: BLE001 - auto falls back to eager, and says why
            if not auto:
                raise
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            self.backend_reason = (f"auto: {choice.backend} did not open "
                                   f"({type(exc).__name__}: {first}), so eager")
            return
        tol = backends.TOLERANCE[backends.dtype_name(self.dtype)]
        if not diff <= tol:  # NaN too
            why = (f"{choice.backend} disagrees with the eager network by {diff:.1e} "
                   f"(tolerance {tol:.0e})")
            if not auto:
                raise ValueError(why + ": re-export the graph (taaf_export MODEL --onnx) or "
                                 "set inference_backend:=eager")
            self.backend_reason = f"auto: {why}, so eager"
            return
        self.backend, self.runner = choice.backend, runner
        self.backend_reason = f"{choice.reason}; outputs within {diff:.0e} of eager"

    def largest_difference(self, runner: Any, seed: int = 0) -> float:
        """The largest absolute difference between ``runner``'s outputs and the eager
        network's, over random windows with each modality present, then each alone."""
        rng = np.random.default_rng(seed)
        cfg = self.model.cfg
        worst = 0.0
        for present in ((True, True), (True, False), (False, True)):
            ev = (rng.integers(0, 5, (cfg.T, *cfg.event_shape)).astype(np.float32)
                  if present[0] and "events" in self.modalities else None)
            au = (rng.integers(0, 4, (cfg.T, 2, cfg.audio_channels)).astype(np.float32)
                  if present[1] and "audio" in self.modalities else None)
            if ev is None and au is None:
                continue
            want, got = self._classify_eager(ev, au), self._classify_runner(runner, ev, au)
            for a, b in zip(want[:3], got[:3], strict=True):
                worst = max(worst, float(np.abs(a - b).max()))
        return worst

    def describe(self) -> str:
        """What runs, for the start-up line: backend (and why), dtype, device."""
        from taaf_ros.inference.backends import dtype_name

        dtype = dtype_name(self.dtype)
        where = f" ({self.runner.path})" if self.backend == "onnxruntime" else ""
        return (f"inference backend {self.backend}{where} [{self.backend_reason}], {dtype} "
                f"on {self.device}")

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
        if "events" not in self.modalities:
            ev = None
        if "audio" not in self.modalities:
            au = None
        if ev is None and au is None:
            raise ValueError("no modality present")
        if self.runner is not None:
            return self._classify_runner(self.runner, ev, au)
        return self._classify_eager(ev, au)

    def _classify_eager(self, ev: np.ndarray | None, au: np.ndarray | None) -> WindowResult:
        from taaf_ros.model.device import inference_context

        torch = self._torch
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

    def _classify_runner(self, runner: Any, ev: np.ndarray | None, au: np.ndarray | None
                         ) -> WindowResult:
        """The exported graph or the captured CUDA graph: an absent modality is zeros,
        masked."""
        cfg = self.model.cfg
        e = (np.zeros((cfg.T, *cfg.event_shape), np.float32) if ev is None else ev)[:, None]
        a = (np.zeros((cfg.T, 2, cfg.audio_channels), np.float32) if au is None else au)[:, None]
        present = np.array([[ev is not None, au is not None]])
        probs, att, amap = runner(e, a, present)
        return WindowResult(probs[0], att[0], amap[0], ev, au)

