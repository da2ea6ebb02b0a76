"""The node's decision rule over windows, and the defaults it was chosen with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taaf_ros.inference.decision import DecisionRule
from taaf_ros.inference.stream_select import chosen_rule
from taaf_ros.nodes.params import PERCEPTION_PARAMS, spec

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


def test_the_node_defaults_are_the_rule_chosen_on_validation():
    page = (REPO / "docs" / "results-stream.md").read_text()
    n, c = chosen_rule(page)
    assert spec(PERCEPTION_PARAMS, "smoothing_windows").default == n
    assert spec(PERCEPTION_PARAMS, "min_confidence").default == c


@pytest.fixture(scope="module")
def avdigits(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from taaf_ros.data.avdigits import ensure_ead_dataset

    return ensure_ead_dataset(data_root, tmp_path_factory.mktemp("avdigits"),
                              limit_per_class=1, progress=False)


def test_stream_select_writes_the_page_the_defaults_are_read_from(avdigits, tmp_path):
    """taaf_stream_select on a few samples: a grid, a chosen line, the test split before and
    after; streamed windows between samples are the background it scores."""
    from taaf_ros.data.avdigits import speaker_of
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.stream_select import main

    speaker = speaker_of(EadDataset(avdigits, "train").samples[0][3])
    out = tmp_path / "page.md"
    assert main(["--data-root", str(avdigits), "--speaker", speaker, "--samples", "6",
                 "--output", str(out)]) == 0
    page = out.read_text()
    n, c = chosen_rule(page)
    assert f"| smoothing {n}, min_confidence {c:g} |" in page or c == 0.0
    assert "| none (each window's own argmax) |" in page and "## Test split (6 samples" in page


def test_the_live_session_abstains_between_samples(avdigits):
    """A session with the default rule replayed over samples with gaps: no label where no
    sample is, a label on the windows a sample covers."""
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.classifier import Classifier, find_bundled_model
    from taaf_ros.inference.decision import DecisionRule
    from taaf_ros.inference.stream_eval import replay_windows, score

    clf = Classifier(find_bundled_model(), "cpu")
    ds = EadDataset(avdigits, "test")
    w = replay_windows(clf, ds, range(4), gap_s=1.0)
    n = spec(PERCEPTION_PARAMS, "smoothing_windows").default
    c = spec(PERCEPTION_PARAMS, "min_confidence").default
    with_rule, without = score(w, DecisionRule(n, c), clf.classes), score(
        w, DecisionRule(1, 0.0), clf.classes)
    assert without["background"] == 0.0 and with_rule["background"] >= 0.9
    assert with_rule["background_windows"] > 20 and with_rule["aligned_windows"] == 4


def test_doctests():
    import doctest

    from taaf_ros.inference import decision

    assert doctest.testmod(decision).failed == 0
