"""Test-time corruptions: each one does what it says, and the whole protocol runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taaf_ros.apps.robustness import main
from taaf_ros.data.corruptions import (
    MissingModality,
    WhiteNoise,
    add_background_activity,
    corruption,
    mix_at_snr,
    occlude,
)
from taaf_ros.events.types import make_events
from taaf_ros.studies.robustness import conditions


def test_mix_at_snr_gives_the_asked_snr() -> None:
    rng = np.random.default_rng(0)
    pcm = (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    for snr in (20, 5, 0, -5):
        noise = rng.standard_normal(3000)  # shorter: tiled to length
        mixed = mix_at_snr(pcm, noise, snr)
        got = 10 * np.log10(np.mean(pcm**2) / np.mean((mixed - pcm) ** 2))
        assert got == pytest.approx(snr, abs=0.05)
    assert np.array_equal(mix_at_snr(np.zeros(10, np.float32), noise, 0), np.zeros(10))


def test_background_activity_adds_its_rate_uniformly() -> None:
    rng = np.random.default_rng(1)
    ev = make_events([1], [1], [5], [1])
    out = add_background_activity(ev, (34, 34), 600_000, 10.0, rng)
    expected = 10.0 * 34 * 34 * 0.6
    assert abs(len(out) - 1 - expected) < 4 * np.sqrt(expected)
    assert np.all(np.diff(out["t"]) >= 0) and out["x"].max() < 34 and out["y"].max() < 34


def test_occlusion_drops_a_patch_of_the_asked_area() -> None:
    rng = np.random.default_rng(2)
    xs, ys = np.meshgrid(np.arange(34), np.arange(34))
    ev = make_events(xs.ravel(), ys.ravel(), np.zeros(xs.size), np.ones(xs.size))
    for frac in (0.25, 0.5, 0.75):
        kept = occlude(ev, (34, 34), frac, rng)
        assert 1 - len(kept) / len(ev) == pytest.approx(frac, abs=0.03)


def test_conditions_cover_the_protocol() -> None:
    labels = [c.label for c in conditions()]
    assert labels[0] == "clean" and len(labels) == len(set(labels)) == 1 + 5 + 5 + 3 + 3 + 2
    assert "babble -5 dB" in labels and "occlusion 75 %" in labels
    assert MissingModality("audio").label == "missing audio" and conditions()[-1].missing
    assert corruption("white", 10) == WhiteNoise(10) and WhiteNoise(10) in conditions()


@pytest.mark.slow
def test_protocol_runs_on_a_real_checkpoint(data_root: Path, tmp_path: Path) -> None:
    """A fresh model on a small AV-digits build: a table with every condition, JSON, PNG;
    clean accuracy equals the training evaluator's on the same tensors."""
    import torch

    from taaf_ros.data.avdigits import ensure_ead_dataset
    from taaf_ros.frontend import FrontEndConfig
    from taaf_ros.model import ModelConfig, TAAFNet, make_model_card, save_checkpoint
    from taaf_ros.training.data import load_split
    from taaf_ros.training.loop import evaluate

    root = ensure_ead_dataset(data_root, tmp_path / "cache", limit_per_class=1, progress=False)
    torch.manual_seed(0)
    model = TAAFNet(ModelConfig(hidden=32, event_widths=(8, 16), audio_widths=(16, 32))).eval()
    fe = FrontEndConfig()
    card = make_model_card(model, classes=[str(i) for i in range(10)], window_s=fe.window_s,
                           audio_rate=8000, frontend=fe.to_dict(), method="taaf")
    ckpt = save_checkpoint(tmp_path / "m.pt", model, card)
    out = tmp_path / "robustness.md"
    assert main([str(ckpt), "--data-root", str(root), "--output", str(out)]) == 0
    table = out.read_text()
    for cond in conditions():
        assert f"| {cond.label} |" in table
    report = json.loads(out.with_suffix(".json").read_text())
    (name,) = report["results"]
    clean = report["results"][name]["clean"]["acc"]
    test_set, _ = load_split(root, "test", fe, progress=False)
    assert clean == pytest.approx(evaluate(model, test_set)["acc"])
    assert out.with_suffix(".png").stat().st_size > 1000
