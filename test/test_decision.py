"""The node's decision rule over windows, and the defaults it was chosen with."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from taaf_ros.apps.stream_select import chosen_rule
from taaf_ros.inference.decision import DecisionRule
from taaf_ros.inference.rule_choice import deployed_rule
from taaf_ros.params import PERCEPTION_PARAMS, spec, validate

REPO = Path(__file__).resolve().parent.parent
HOP = 50_000


def test_a_gap_starts_the_smoothing_afresh():
    rule = DecisionRule(3, 0.0)
    for k in range(3):
        rule.decide(np.array([1.0, 0.0]), k * HOP, HOP)
    assert rule.decide(np.array([0.0, 1.0]), 3 * HOP, HOP).class_id == 0  # 2/3 for class 0
    after_gap = rule.decide(np.array([0.0, 1.0]), 10 * HOP, HOP)
    assert after_gap.class_id == 1 and after_gap.confidence == 1.0


def test_abstention_and_the_identity_rule():
    p = np.array([0.45, 0.35, 0.2])
    assert DecisionRule(1, 0.0).decide(p, 0, HOP).class_id == 0
    d = DecisionRule(1, 0.5).decide(p, 0, HOP)
    assert d.abstained and d.class_id == -1 and d.confidence == pytest.approx(0.45)
    with pytest.raises(ValueError):
        DecisionRule(0, 0.5)
    with pytest.raises(ValueError):
        DecisionRule(2, 1.5)


def test_the_bundled_model_carries_the_rule_chosen_on_validation():
    """The node's parameters default to the model card's rule, and the bundled card holds
    the rule taaf_stream_select chose (its page, written in the same run)."""
    from taaf_ros.inference.rule_choice import card_rule
    from taaf_ros.model import load_checkpoint
    from taaf_ros.model.bundled import find_bundled_model

    assert spec(PERCEPTION_PARAMS, "smoothing_windows").default == 0  # the card's
    assert spec(PERCEPTION_PARAMS, "min_confidence").default == -1.0
    page = (REPO / "docs" / "results-stream.md").read_text()
    card = load_checkpoint(find_bundled_model()).card
    assert card_rule(card) == chosen_rule(page)
    assert card["decision_rule"]["chosen_on"].startswith("validation speaker yweweler")


def test_parameters_win_over_the_card_and_a_card_without_a_rule_is_raw():
    card = {"decision_rule": {"smoothing_windows": 6, "min_confidence": 0.4,
                              "chosen_on": "validation group b"}}
    rule, why = deployed_rule(card, 0, -1.0)
    assert (rule.smoothing_windows, rule.min_confidence) == (6, 0.4) and "group b" in why
    rule, why = deployed_rule(card, 2, -1.0)
    assert (rule.smoothing_windows, rule.min_confidence) == (2, 0.4) and "(set)" in why
    rule, why = deployed_rule(card, 3, 0.0)
    assert (rule.smoothing_windows, rule.min_confidence) == (3, 0.0) and "card" not in why
    rule, why = deployed_rule({}, 0, -1.0)
    assert (rule.smoothing_windows, rule.min_confidence) == (1, 0.0) and "no rule" in why
    assert validate(PERCEPTION_PARAMS, {"min_confidence": -0.5})  # neither -1 nor [0, 1]


@pytest.mark.parametrize("rule", [{"smoothing_windows": 0, "min_confidence": 0.3},
                                  {"smoothing_windows": 4, "min_confidence": 1.5},
                                  {"smoothing_windows": "4", "min_confidence": 0.3},
                                  [4, 0.3]])
def test_a_malformed_rule_in_a_card_is_refused_by_name(rule, tmp_path):
    from taaf_ros.model import CheckpointError
    from taaf_ros.model.bundled import find_bundled_model
    from taaf_ros.model.checkpoint import rewrite_card

    copy = tmp_path / "m.pt"
    shutil.copy(find_bundled_model(), copy)
    with pytest.raises(CheckpointError, match="decision_rule"):
        rewrite_card(copy, decision_rule=rule)


@pytest.mark.slow
def test_stream_select_writes_the_page_and_the_card(avdigits, tmp_path):
    """taaf_stream_select on a few samples: a grid, a chosen line, the test split before and
    after; streamed windows between samples are the background it scores. --write-card puts
    the rule in the model's card and exports the ONNX graph beside it again, so the graph
    still names the checkpoint it was made from."""
    from taaf_ros.apps.stream_select import main
    from taaf_ros.data.avdigits import speaker_of
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.export import file_digest, graph_source, onnx_path
    from taaf_ros.inference.rule_choice import card_rule
    from taaf_ros.model import load_checkpoint
    from taaf_ros.model.bundled import find_bundled_model

    model = tmp_path / "m.pt"
    shutil.copy(find_bundled_model(), model)
    shutil.copy(onnx_path(find_bundled_model()), onnx_path(model))
    assert graph_source(onnx_path(model)) == file_digest(model)
    speaker = speaker_of(EadDataset(avdigits, "train").samples[0][3])
    out = tmp_path / "page.md"
    assert main(["--data-root", str(avdigits), "--speaker", speaker, "--samples", "6",
                 "--output", str(out), "--model", str(model), "--write-card"]) == 0
    page = out.read_text()
    n, c = chosen_rule(page)
    assert f"| smoothing {n}, min_confidence {c:g} |" in page or c == 0.0
    assert "| none (each window's own argmax) |" in page and "## Test split (6 samples" in page
    card = load_checkpoint(model).card
    assert card_rule(card) == (n, c) and speaker in card["decision_rule"]["chosen_on"]
    assert graph_source(onnx_path(model)) == file_digest(model)


def test_the_chosen_rule_is_never_worse_than_each_windows_own(avdigits):
    """Raw argmax is a candidate and a rule worse on the labelled windows is not: the
    choice can only trade abstentions on background for nothing lost on samples."""
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.classifier import Classifier
    from taaf_ros.inference.rule_choice import RAW, choose_rule
    from taaf_ros.inference.stream_eval import replay_windows
    from taaf_ros.model.bundled import find_bundled_model

    clf = Classifier(find_bundled_model(), "cpu")
    w = replay_windows(clf, EadDataset(avdigits, "test"), range(6), gap_s=1.0)
    choice = choose_rule(w, clf.classes)
    chosen, raw = choice.results[choice.rule], choice.results[RAW]
    assert chosen["aligned"] >= raw["aligned"] and chosen["majority"] >= raw["majority"]
    assert min(chosen["majority"], chosen["background"]) >= min(raw["majority"],
                                                                 raw["background"])


def test_the_live_session_abstains_between_samples(avdigits):
    """A session with the default rule replayed over samples with gaps: no label where no
    sample is, a label on the windows a sample covers."""
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.classifier import Classifier
    from taaf_ros.inference.decision import DecisionRule
    from taaf_ros.inference.stream_eval import replay_windows, score
    from taaf_ros.model.bundled import find_bundled_model

    clf = Classifier(find_bundled_model(), "cpu")
    ds = EadDataset(avdigits, "test")
    w = replay_windows(clf, ds, range(4), gap_s=1.0)
    node_rule = deployed_rule(clf.card, spec(PERCEPTION_PARAMS, "smoothing_windows").default,
                              spec(PERCEPTION_PARAMS, "min_confidence").default)[0]
    with_rule, without = score(w, node_rule, clf.classes), score(
        w, DecisionRule(1, 0.0), clf.classes)
    assert without["background"] == 0.0 and with_rule["background"] >= 0.9
    assert with_rule["background_windows"] > 20 and with_rule["aligned_windows"] == 4


def test_doctests():
    import doctest

    from taaf_ros.inference import decision, rule_choice

    assert doctest.testmod(decision).failed == 0 and doctest.testmod(rule_choice).failed == 0
