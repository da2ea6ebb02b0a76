"""The leave-one-speaker-out runner: plan, resumable runs, the generated results page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taaf_ros.apps.loso import main
from taaf_ros.studies.loso import Job, plan, speakers_of


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
    argv = ["--data-root", str(data_root), "--out-dir", str(out), "--methods", "taaf,audio-only",
            "--folds", "lucas,theo", "--parallel", "2", "--limit-per-class", "10",
            "--output", str(page),
            # passed through to every train_ead.py run: a tiny, quick network
            "--epochs", "1", "--model.hidden", "16", "--model.event-widths", "8",
            "--model.audio-widths", "8", "--batch-size", "10"]
    assert main(argv) == 0
    text = page.read_text()
    assert "4 of 4 runs finished" in text
    # each fold's corruption evaluation ran on both methods' checkpoints
    for fold in ("lucas", "theo"):
        rob = json.loads((out / f"test-{fold}" / "robustness.json").read_text())
        assert len(rob["results"]) == 2
    assert "| white -5 dB |" in text and "| missing audio |" in text
    assert (tmp_path / "results-corruptions.png").stat().st_size > 1000
    assert "| taaf | 2/2 |" in text and "| audio-only | 2/2 |" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert rows["| taaf"].endswith("| AdamW 0.003 |")  # each method's chosen optimiser
    assert rows["| audio-only"].endswith("| SGD 0.01 |")
    (wall,) = json.loads((out / "protocol_time.json").read_text())
    assert wall["runs"] == 4 and wall["corruption_evaluations"] == 2 and wall["seconds"] > 0
    assert f"wall time: {wall['seconds'] / 60:.0f} min in 1 invocation(s)" in text
    assert "| lucas |" in text and "| theo |" in text and "not run yet" not in text
    m = json.loads((out / "test-lucas" / "taaf" / "metrics.json").read_text())
    assert m["dataset"]["val_speaker"] == "theo"  # the next speaker validates
    assert "lucas" in m["dataset"]["root"]  # the fold's own build: lucas is its test speaker
    capsys.readouterr()
    assert main(argv) == 0  # everything done: nothing runs again
    assert "4 of 4 runs already done" in capsys.readouterr().out
    again = json.loads((out / "protocol_time.json").read_text())
    assert len(again) == 2 and again[1]["runs"] == 0  # recorded too: it trained nothing


def test_an_unreadable_wall_time_record_is_kept_aside(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from taaf_ros.studies.loso import load_wall_times, record_wall_time

    (tmp_path / "protocol_time.json").write_text("{not json")
    assert load_wall_times(tmp_path) == []
    assert "protocol_time.json is not a list" in capsys.readouterr().err
    record_wall_time(tmp_path, 0.0, 3, 1, 2, ["--device", "cuda"])
    assert (tmp_path / "protocol_time.json.bak").read_text() == "{not json"
    (entry,) = load_wall_times(tmp_path)
    assert entry["runs"] == 3 and entry["train_flags"] == "--device cuda"


def _metrics(fused: float, events: float | None, audio: float | None) -> dict:
    return {"test_acc": fused, "test_acc_per_modality": {"events": events, "audio": audio}}


def test_goals_are_checked_fold_by_fold() -> None:
    from taaf_ros.studies.loso_report import goals

    metrics = {("a", "taaf-balanced"): _metrics(0.99, 0.97, 0.60),
               ("b", "taaf-balanced"): _metrics(0.96, 0.97, 0.50),
               ("a", "taaf"): _metrics(0.98, 0.98, 0.55),
               ("b", "taaf"): _metrics(0.97, 0.97, 0.50)}
    robust = {f: {"taaf-balanced": {"white 0 dB": {"acc": 0.9}, "missing audio": {"acc": 0.95}},
                  "events-only": {"white 0 dB": {"acc": 0.96}, "missing audio": {"acc": 0.9}},
                  "audio-only": {"white 0 dB": {"acc": 0.3}, "missing audio": {"acc": None}}}
              for f in ("a", "b")}
    rows = {line.split(" | ")[0]: line for line in goals(metrics, robust, ["a", "b"])}
    fused, margin, weak, corr = (rows["| fused ≥ 97.5 %"],
                                 rows["| fused ≥ better readout + 0.5 points"],
                                 rows["| audio readout (the weaker) ≥ taaf's + 3 points"],
                                 rows["| every corruption ≥ best single-modality method"])
    assert "| 97.5 | yes |" in fused and "a 99.0, b 96.0" in fused
    assert "| +0.5 | yes |" in margin and "a +2.0, b -1.0" in margin
    assert "| +2.5 | no |" in weak and "a +5.0, b +0.0" in weak
    assert "| 1/2 conditions | no |" in corr and "white 0 dB -6.0" in corr
