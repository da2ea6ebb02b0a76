"""The ONNX graph of the network and the onnxruntime inference backend, against eager."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from taaf_ros.inference.classifier import Classifier  # noqa: E402
from taaf_ros.inference.export import (  # noqa: E402
    OnnxRunner,
    check_against_eager,
    file_digest,
    graph_source,
    onnx_path,
)
from taaf_ros.model import load_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "models" / "taaf_avdigits.pt"


def test_the_bundled_graph_is_the_bundled_model():
    """models/taaf_avdigits.onnx was exported from models/taaf_avdigits.pt as it is now."""
    assert graph_source(onnx_path(BUNDLED)) == file_digest(BUNDLED)
    net = load_checkpoint(BUNDLED).model
    assert check_against_eager(net, OnnxRunner(onnx_path(BUNDLED)), trials=6) < 1e-5


@pytest.mark.slow
def test_taaf_export_writes_and_checks_a_graph(tmp_path):
    ckpt = tmp_path / "mine.pt"
    shutil.copy(BUNDLED, ckpt)
    r = subprocess.run([sys.executable, "-m", "taaf_ros.apps.export", str(ckpt), "--onnx"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "largest difference" in r.stdout and (tmp_path / "mine.onnx").is_file()
    assert graph_source(tmp_path / "mine.onnx") == file_digest(ckpt)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = subprocess.run([sys.executable, "-m", "taaf_ros.apps.export", str(bad), "--onnx"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "taaf_export: error:" in r.stderr


@pytest.mark.slow
def test_the_onnxruntime_backend_classifies_as_eager_does(tmp_path, monkeypatch):
    eager = Classifier(BUNDLED, "cpu")
    fast = Classifier(BUNDLED, "cpu", backend="onnxruntime")
    assert fast.runner.path == onnx_path(BUNDLED)  # the graph beside the model
    rng = np.random.default_rng(0)
    cfg = eager.model.cfg
    for present in ((True, True), (True, False), (False, True)):
        ev = rng.integers(0, 5, (cfg.T, *cfg.event_shape)).astype(np.float32)
        au = rng.integers(0, 3, (cfg.T, 2, cfg.audio_channels)).astype(np.float32)
        args = (ev if present[0] else None, au if present[1] else None)
        a, b = eager.classify_tensors(*args), fast.classify_tensors(*args)
        np.testing.assert_allclose(b.probs, a.probs, atol=1e-5)
        np.testing.assert_allclose(b.modality_attention, a.modality_attention, atol=1e-5)
        np.testing.assert_allclose(b.attention_map, a.attention_map, atol=1e-5)
    # A checkpoint whose graph beside it is missing (or stale): exported once into the cache.
    import torch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ckpt = tmp_path / "mine.pt"
    shutil.copy(BUNDLED, ckpt)  # the same bytes: the graph beside it is current
    shutil.copy(onnx_path(BUNDLED), tmp_path / "mine.onnx")
    assert Classifier(ckpt, "cpu", backend="onnxruntime").runner.path == tmp_path / "mine.onnx"
    other = tmp_path / "other.pt"
    obj = torch.load(BUNDLED, weights_only=True)
    obj["model_card"]["command"] = "another run"
    torch.save(obj, other)
    shutil.copy(onnx_path(BUNDLED), tmp_path / "other.onnx")  # made from another checkpoint
    runner_path = Classifier(other, "cpu", backend="onnxruntime").runner.path
    assert runner_path.parent == tmp_path / "cache" / "taaf_ros" / "onnx"
    assert graph_source(runner_path) == file_digest(other)


def test_the_node_parameter_selects_the_backend():
    from taaf_ros.inference.session import LiveSession
    from taaf_ros.params import PERCEPTION_PARAMS

    p = {s.name: s.default for s in PERCEPTION_PARAMS} | {"device": "cpu",
                                                        "inference_backend": "onnxruntime"}
    assert LiveSession.load_classifier(p).runner is not None
    assert LiveSession.load_classifier(p | {"inference_backend": "eager"}).runner is None


def test_providers_for_a_gpu_put_tensorrt_with_its_engine_cache_first(tmp_path):
    """On CUDA: TensorRT (engines cached, float16 when asked) before CUDA, the CPU last; only
    what onnxruntime has. (Only the CPU provider exists here: the session on the GPU list is
    not run.)"""
    import onnxruntime

    from taaf_ros.inference.export import onnx_providers

    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    got = onnx_providers(torch.device("cuda", 1), torch.float16, every, tmp_path / "trt")
    assert got == [("TensorrtExecutionProvider",
                    {"device_id": 1, "trt_engine_cache_enable": True,
                     "trt_engine_cache_path": str(tmp_path / "trt"), "trt_fp16_enable": True}),
                   ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx_providers(torch.device("cuda"), torch.float32, every[1:], tmp_path) == [
        ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    here = onnxruntime.get_available_providers()
    assert onnx_providers(torch.device("cpu"), torch.float32, here, tmp_path) == [
        "CPUExecutionProvider"]
    # a GPU node on a machine whose onnxruntime has no GPU provider runs on the CPU provider
    assert onnx_providers(torch.device("cuda"), torch.float16, ["CPUExecutionProvider"],
                          tmp_path) == ["CPUExecutionProvider"]
