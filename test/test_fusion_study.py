"""The post-hoc late-fusion study: every rule fitted on validation, evaluated under corruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from taaf_ros.apps import train as cli
from taaf_ros.apps.fusion_study import main
from taaf_ros.studies.fusion_study import confidence, fit_gated, gated_scores


def test_confidence_is_zero_when_uniform_and_one_when_certain() -> None:
    c = confidence(torch.tensor([[0.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 0.0]]))
    assert c[0] == pytest.approx(0.0, abs=1e-6) and c[1] == pytest.approx(1.0, abs=1e-6)


def test_the_gate_learns_to_ignore_an_expert_that_is_wrong_when_unsure() -> None:
    """Audio confident and right on half the samples, unsure and wrong on the other half;
    events always mildly right: the gate keeps audio only when it is confident."""
    g = torch.Generator().manual_seed(0)
    n, k = 400, 10
    y = torch.randint(0, k, (n,), generator=g)
    onehot = torch.nn.functional.one_hot(y, k).double()
    events = 1.0 * onehot + 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    sure = torch.arange(n) % 2 == 0
    wrong = torch.nn.functional.one_hot((y + 1) % k, k).double()
    audio = torch.where(sure[:, None], 8.0 * onehot, 1.5 * wrong)
    head = 0.5 * (events + audio)
    uni = torch.stack([events, audio], 1)
    present = torch.ones(n, 2, dtype=torch.bool)
    ab = fit_gated([(head, uni, present, y)])
    acc = (gated_scores(head, uni, present, ab).argmax(-1) == y).double().mean()
    naive = ((events + audio).argmax(-1) == y).double().mean()
    assert acc > 0.95 and acc > naive + 0.1
    assert ab[1, 2] > 0  # audio's weight grows with its confidence


@pytest.mark.slow
def test_study_runs_on_real_runs_and_agrees_with_training(data_root: Path,
                                                          tmp_path: Path) -> None:
    from taaf_ros.data.avdigits import ensure_ead_dataset

    root = ensure_ead_dataset(data_root, tmp_path / "data", limit_per_class=10,
                              progress=False, test_speakers=("theo",))
    tiny = ["--data-root", str(root), "--val-speaker", "yweweler", "--epochs", "1",
            "--model.hidden", "16", "--model.event-widths", "8", "--model.audio-widths", "8",
            "--batch-size", "10", "--no-progress"]
    for method in ("taaf-balanced", "events-only"):
        assert cli.main([*tiny, "--method", method, "--out-dir", str(tmp_path / method)]) == 0
    page = tmp_path / "study.md"
    assert main([str(tmp_path / "taaf-balanced"), "--events-only",
                 str(tmp_path / "events-only" / "model.pt"), "--output", str(page)]) == 0
    res = json.loads(page.with_suffix(".json").read_text())[0]
    assert res["val_speaker"] == "yweweler"
    table = res["table"]
    assert len(table) == 19 and table["missing audio"]["audio readout"] is None
    # clean, the checkpoint's own rule and the events-only network score as in training
    for run, column in (("taaf-balanced", "trained"), ("events-only", "events-only")):
        m = json.loads((tmp_path / run / "metrics.json").read_text())
        assert table["clean"][column] == pytest.approx(m["test_acc"], abs=1e-6)
    text = page.read_text()
    assert "| babble -5 dB |" in text and "gated, corrupted val" in text
