"""The classifier the perception node runs: bundled model lookup, and one window -> scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taaf_ros.audio.wav import read_wav
from taaf_ros.events.types import make_events
from taaf_ros.frontend import audio_tensor, event_tensor, frontend_from_card
from taaf_ros.inference.classifier import Classifier
from taaf_ros.model import load_checkpoint
from taaf_ros.model.bundled import DEFAULT_MODEL, find_bundled_model


def test_find_bundled_model_is_the_named_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bundled model"):
        find_bundled_model([tmp_path / "a"])
    (tmp_path / "b").mkdir()
    # Another checkpoint that sorts first is never picked by accident.
    (tmp_path / "b" / "a_other.pt").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=DEFAULT_MODEL):
        find_bundled_model([tmp_path / "b"])
    (tmp_path / "b" / DEFAULT_MODEL).write_bytes(b"x")
    assert find_bundled_model([tmp_path / "a", tmp_path / "b"]).name == DEFAULT_MODEL
    assert find_bundled_model().name == DEFAULT_MODEL


def test_card_without_frontend_is_refused():
    card = {"event_shape": [2, 34, 34], "window_s": 0.6, "T": 8}
    with pytest.raises(ValueError, match="no front-end settings"):
        frontend_from_card(card)


@pytest.fixture(scope="module")
def bundled() -> str:
    return str(find_bundled_model())


@pytest.fixture(scope="module")
def window(fsdd_wav):
    rng = np.random.default_rng(0)
    ev = make_events(rng.integers(0, 34, 4000), rng.integers(0, 34, 4000),
                     np.sort(rng.integers(0, 300_000, 4000)), rng.integers(0, 2, 4000))
    chunk = read_wav(fsdd_wav)
    return ev, chunk.samples, chunk.sample_rate


def test_classify_equals_the_offline_model(bundled, window):
    ev, pcm, rate = window
    clf = Classifier(bundled, "cpu")
    res = clf.classify(ev, (34, 34), pcm, rate, 0)
    assert res.probs.shape == (10,) and abs(res.probs.sum() - 1) < 1e-5
    assert abs(res.modality_attention.sum() - 1) < 1e-5
    model = load_checkpoint(bundled).model.eval()
    fe = clf.frontend
    with torch.no_grad():
        out = model(torch.from_numpy(event_tensor(ev, (34, 34), 0, fe))[:, None],
                    torch.from_numpy(audio_tensor(pcm, rate, fe))[:, None])
    np.testing.assert_allclose(res.probs, torch.softmax(out.logits[0], -1).numpy(), atol=1e-6)


def test_missing_modality_is_masked(bundled, window):
    ev, _, rate = window
    res = Classifier(bundled, "cpu").classify(ev, (34, 34), None, rate, 0)
    assert res.modality_attention[1] == 0 and abs(res.modality_attention[0] - 1) < 1e-6


def test_reduced_precision(bundled, window):
    ev, pcm, rate = window
    full = Classifier(bundled, "cpu").classify(ev, (34, 34), pcm, rate, 0)
    half = Classifier(bundled, "cpu", dtype="bfloat16").classify(ev, (34, 34), pcm, rate, 0)
    assert abs(half.probs.sum() - 1) < 1e-3
    assert np.abs(half.probs - full.probs).max() < 0.2  # bfloat16 keeps ~3 significant digits
    with pytest.raises(ValueError, match="float16"):
        Classifier(bundled, "cpu", dtype="float16")


def test_the_cuda_graph_backend_is_refused_off_cuda_with_the_fix(bundled):
    with pytest.raises(ValueError, match="cuda_graph backend needs .* CUDA device.*device:=cuda"):
        Classifier(bundled, "cpu", backend="cuda_graph")
    with pytest.raises(ValueError, match="backend must be one of"):
        Classifier(bundled, "cpu", backend="tensorrt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (make bench-gpu)")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_cuda_graph_backend_classifies_as_eager_does(bundled, window, dtype):
    """Replayed windows give eager's outputs (every presence pattern, windows that differ:
    the static buffers are refilled each call), from one capture per input shape."""
    ev, pcm, rate = window
    eager = Classifier(bundled, "cuda", dtype=dtype)
    graph = Classifier(bundled, "cuda", dtype=dtype, backend="cuda_graph")
    fe = eager.frontend
    e = event_tensor(ev, (34, 34), 0, fe)
    a = audio_tensor(pcm, rate, fe)
    tol = 1e-5 if dtype == "float32" else 2e-2
    seen = []
    for args in ((e, a), (e, None), (None, a), (np.zeros_like(e), a), (e, a)):
        want, got = eager.classify_tensors(*args), graph.classify_tensors(*args)
        np.testing.assert_allclose(got.probs, want.probs, atol=tol)
        np.testing.assert_allclose(got.modality_attention, want.modality_attention, atol=tol)
        np.testing.assert_allclose(got.attention_map, want.attention_map, atol=tol)
        seen.append(got.probs)
    assert not np.allclose(seen[0], seen[2])  # different windows, different outputs
    assert len(graph.runner.captured) == 1
