"""The optimiser chosen per method on validation: the choice rule and the generated page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taaf_ros.apps.optim_select import main
from taaf_ros.model import METHODS
from taaf_ros.studies.loso import plan
from taaf_ros.studies.optim_select import choose, selection_jobs


def test_the_higher_mean_validation_accuracy_wins_and_a_tie_keeps_adamw() -> None:
    assert choose({"adamw": [0.90, 0.92], "sgd": [0.95, 0.91]}, 2) == "sgd"
    assert choose({"adamw": [0.95, 0.90], "sgd": [0.99, 0.80]}, 2) == "adamw"  # the mean
    assert choose({"adamw": [0.95], "sgd": [0.95]}, 1) == "adamw"
    assert choose({"adamw": [0.95, 0.9], "sgd": [0.99]}, 2) is None  # a run to finish
    assert choose({"adamw": [0.95]}, 1) is None


def test_each_method_runs_once_per_optimiser_at_its_own_rate(tmp_path: Path) -> None:
    fold = plan(["a", "b", "c"], ["taaf", "concat"], tmp_path, ["b"])
    jobs = selection_jobs(fold, {"adamw": 0.003, "sgd": 0.01})
    assert [(j.method, j.flags) for j in jobs] == [
        ("taaf", ("--optim.name", "adamw", "--optim.lr", "0.003")),
        ("taaf", ("--optim.name", "sgd", "--optim.lr", "0.01")),
        ("concat", ("--optim.name", "adamw", "--optim.lr", "0.003")),
        ("concat", ("--optim.name", "sgd", "--optim.lr", "0.01"))]
    assert jobs[1].out_dir == tmp_path / "test-b" / "taaf" / "sgd"
    assert {j.fold_dir for j in jobs} == {tmp_path / "test-b"}  # one front-end cache
    assert {j.val_speaker for j in jobs} == {"c"}


@pytest.mark.slow
def test_selection_trains_both_optimisers_and_writes_the_page(data_root: Path,
                                                              tmp_path: Path) -> None:
    out, page = tmp_path / "select", tmp_path / "results-optimizer.md"
    argv = ["--data-root", str(data_root), "--out-dir", str(out), "--methods", "taaf-balanced",
            "--folds", "theo", "--limit-per-class", "10", "--output", str(page),
            "--epochs", "1", "--model.hidden", "16", "--model.event-widths", "8",
            "--model.audio-widths", "8", "--batch-size", "10"]
    assert main(argv) == 0
    runs = {name: json.loads((out / "test-theo" / "taaf-balanced" / name / "metrics.json")
                             .read_text()) for name in ("adamw", "sgd")}
    for name, m in runs.items():
        assert m["config"]["optim"]["name"] == name  # the run really used that optimiser
        assert m["dataset"]["val_speaker"] == "yweweler"
    assert runs["sgd"]["config"]["optim"]["lr"] == 0.01
    text = page.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| taaf-balanced |"))
    winner = "sgd" if runs["sgd"]["val_acc"] > runs["adamw"]["val_acc"] else "adamw"
    assert row.endswith(f"| {winner} |")
    assert f"{100 * runs['sgd']['val_acc']:.1f}" in row
    assert "Folds (test speaker: validation speaker): theo: yweweler." in text
    assert f"| theo | taaf-balanced | sgd | {runs['sgd']['selected_epoch']} |" in text


def test_each_method_trains_with_the_optimiser_validation_chose() -> None:
    """config.METHOD_OPTIMIZERS agrees with the generated docs/results-optimizer.md, and the
    method's preset reaches the run's config (the command line still wins)."""
    from taaf_ros.training.config import METHOD_OPTIMIZERS, build_config
    from taaf_ros.training.optim import OptimConfig

    page = Path(__file__).resolve().parents[1] / "docs" / "results-optimizer.md"
    text = page.read_text()
    rates = dict(part.split() for part in
                 text.split("Learning rates: ", 1)[1].split(";", 1)[0].split(", "))
    chosen = {cells[1].strip(): cells[-2].strip()
              for line in text.split("| chosen |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
              if (cells := line.split("|"))}
    assert set(chosen) == set(METHODS) and set(chosen.values()) <= {"adamw", "sgd"}
    for method, name in chosen.items():
        cfg = build_config(["--method", method]).optim
        assert (cfg.name, cfg.lr) == (name, float(rates[name])), method
        assert METHOD_OPTIMIZERS.get(method, {}).get("name", OptimConfig.name) == name
    other = "adamw" if chosen["taaf"] == "sgd" else "sgd"
    assert build_config(["--method", "taaf", "--optim.name", other]).optim.name == other
