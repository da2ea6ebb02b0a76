"""The leave-one-speaker-out runner: plan, resumable runs, the generated results page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taaf_ros.training.loso import Job, main, plan, speakers_of


def test_plan_rotates_test_and_validation_speakers(tmp_path: Path) -> None:
    sp = ["george", "jackson", "lucas", "theo", "yweweler"]
    jobs = plan(sp, ["taaf", "concat"], tmp_path)
    assert len(jobs) == 10
    pairs = {(j.test_speaker, j.val_speaker) for j in jobs}
    assert pairs == {("george", "jackson"), ("jackson", "lucas"), ("lucas", "theo"),
                     ("theo", "yweweler"), ("yweweler", "george")}
    assert jobs[0] == Job("george", "jackson", "taaf", tmp_path / "test-george" / "taaf")
    assert [j.test_speaker for j in plan(sp, ["taaf"], tmp_path, ["theo"])] == ["theo"]
    with pytest.raises(ValueError, match="at least 3"):
        plan(["a", "b"], ["taaf"], tmp_path)


@pytest.mark.slow
def test_protocol_runs_resumes_and_writes_the_page(data_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert speakers_of(data_root) == ["george", "jackson", "lucas", "theo", "yweweler"]
    out, page = tmp_path / "loso", tmp_path / "results.md"
    argv = ["--data-root", str(data_root), "--out", str(out), "--methods", "taaf,audio-only",
            "--folds", "lucas,theo", "--parallel", "2", "--limit-per-class", "10",
            "--output", str(page),
            # passed through to every train_ead.py run: a tiny, quick network
            "--epochs", "1", "--hidden", "16", "--event-widths", "8", "--audio-widths", "8",
            "--batch-size", "10"]
    assert main(argv) == 0
    text = page.read_text()
    assert "4 of 4 runs finished" in text
    assert "| taaf | 2/2 |" in text and "| audio-only | 2/2 |" in text
    assert "| lucas |" in text and "| theo |" in text and "not run yet" not in text
    m = json.loads((out / "test-lucas" / "taaf" / "metrics.json").read_text())
    assert m["dataset"]["val_speaker"] == "theo"  # the next speaker validates
    assert "lucas" in m["dataset"]["root"]  # the fold's own build: lucas is its test speaker
    capsys.readouterr()
    assert main(argv) == 0  # everything done: nothing runs again
    assert "4 of 4 runs already done" in capsys.readouterr().out
