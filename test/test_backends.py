"""The backend the node runs: auto picks the fastest that gives eager's outputs and says why;
a dtype a backend cannot run is refused with the fix; a backend that cannot open or disagrees
with eager is never used silently."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from taaf_ros.inference.backends import TOLERANCE
from taaf_ros.inference.classifier import Classifier
from taaf_ros.inference.export import SOURCE_KEY, file_digest, onnx_path

BUNDLED = Path(__file__).resolve().parent.parent / "models" / "taaf_avdigits.pt"
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None  # a dependency; the GPU check
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")  # may lack it
RUNNABLE = (["onnxruntime"] if HAS_ORT else []) + (["cuda_graph"] if torch.cuda.is_available()
                                                   else [])


@pytest.mark.parametrize("backend", RUNNABLE)
def test_every_backend_gives_the_eager_networks_outputs_on_real_windows(real_test_windows,
                                                                        backend):
    """20 real test windows, each modality present and alone: every output within the stated
    tolerance of eager's, and the same label."""
    device = "cuda" if backend == "cuda_graph" else "cpu"
    eager = Classifier(BUNDLED, device)
    fast = Classifier(BUNDLED, device, backend=backend)
    assert fast.backend == backend and fast.runner is not None
    ev, au = (t.numpy() for t in real_test_windows)
    worst, labels = 0.0, 0
    for i in range(ev.shape[1]):
        for present in ((True, True), (True, False), (False, True)):
            args = (ev[:, i] if present[0] else None, au[:, i] if present[1] else None)
            want, got = eager.classify_tensors(*args), fast.classify_tensors(*args)
            for a, b in zip(want[:3], got[:3], strict=True):
                worst = max(worst, float(np.abs(a - b).max()))
            labels += int(np.argmax(want.probs) == np.argmax(got.probs))
    assert worst <= TOLERANCE["float32"], worst
    assert labels == 3 * ev.shape[1]


@needs_ort
def test_auto_runs_onnxruntime_on_a_cpu_and_says_why():
    c = Classifier(BUNDLED, "cpu", backend="auto")
    assert c.backend == "onnxruntime" and c.runner.path == onnx_path(BUNDLED)
    line = c.describe()
    assert line.startswith("inference backend onnxruntime (")
    assert "auto: the fastest at batch 1 on a CPU; outputs within" in line
    assert line.endswith("float32 on cpu")
    assert Classifier(BUNDLED, "cpu").backend == "eager"  # the library's default: the reference


@needs_ort
def test_a_dtype_the_backend_cannot_run_is_refused_or_avoided_never_ignored():
    auto = Classifier(BUNDLED, "cpu", dtype="bfloat16", backend="auto")
    assert auto.backend == "eager" and auto.runner is None
    assert "dtype bfloat16, which ONNX Runtime cannot run on a CPU" in auto.backend_reason
    with pytest.raises(ValueError, match=r"onnxruntime cannot run in bfloat16.*dtype:=float32"):
        Classifier(BUNDLED, "cpu", dtype="bfloat16", backend="onnxruntime")
    with pytest.raises(ValueError, match="cuda_graph backend needs a CUDA device"):
        Classifier(BUNDLED, "cpu", backend="cuda_graph")


@needs_ort
def test_auto_runs_eager_and_names_why_when_the_graph_cannot_be_made(tmp_path, monkeypatch):
    """No graph beside the checkpoint and a cache that cannot be written: eager, with the
    cause; asked for by name, the same failure stops the start."""
    ckpt = tmp_path / "mine.pt"
    shutil.copy(BUNDLED, ckpt)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    said: list[str] = []
    c = Classifier(ckpt, "cpu", backend="auto", say=said.append)
    assert c.backend == "eager" and c.runner is None
    assert c.backend_reason.startswith("auto: onnxruntime did not open (")
    assert "so eager" in c.backend_reason
    assert said and said[0].startswith(f"exporting {ckpt} to ONNX once")
    with pytest.raises(OSError):
        Classifier(ckpt, "cpu", backend="onnxruntime")


@needs_ort
def test_a_graph_that_disagrees_with_the_network_is_not_run(tmp_path):
    """A graph beside the checkpoint that claims to be its export but is another network's
    (the bundled graph, relabelled): auto runs eager and names the difference; asked for by
    name, the node refuses to start."""
    import onnx

    obj = torch.load(BUNDLED, weights_only=True)
    sd = obj["state_dict"]
    sd["head.read.weight"] = sd["head.read.weight"] * 1.5  # what a retrained head changes
    ckpt = tmp_path / "retrained.pt"
    torch.save(obj, ckpt)
    graph = onnx.load(str(onnx_path(BUNDLED)))
    for prop in graph.metadata_props:
        if prop.key == SOURCE_KEY:
            prop.value = file_digest(ckpt)
    onnx.save(graph, str(onnx_path(ckpt)))
    c = Classifier(ckpt, "cpu", backend="auto")
    assert c.backend == "eager", c.backend_reason
    assert "onnxruntime disagrees with the eager network by" in c.backend_reason
    with pytest.raises(ValueError, match="disagrees with the eager network.*taaf_export"):
        Classifier(ckpt, "cpu", backend="onnxruntime")
