"""The decision rule a model is deployed with: chosen on its own validation data, stored in its
model card, and taken by the node unless its parameters say otherwise.

A rule (:class:`~taaf_ros.inference.decision.DecisionRule`) smooths the probabilities of a few
consecutive windows and abstains below a confidence. Which one suits a model depends on the
model and its data (AV-digits has no background class, a user's model may), so it is chosen
where the model is made: on windows slid along its validation split (``stream_eval``), the
rule that is no worse than each window's own argmax on the labelled windows (aligned and
majority) with the best worse-of-two of majority and background (windows with no sample,
where abstaining or naming ``background`` is right); ties to the better aligned accuracy,
then to less smoothing (less lag). Each window's own argmax is a candidate, so the rule chosen
never does worse than it on that data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from taaf_ros.inference.decision import DecisionRule

SMOOTHING_GRID = (1, 2, 3, 4, 6, 8, 10, 12)
CONFIDENCE_GRID = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
RAW = (1, 0.0)
"""Each window's own argmax: what a model without a chosen rule is deployed with."""


class Choice(NamedTuple):
    """The chosen (smoothing_windows, min_confidence) and every rule's scores."""

    rule: tuple[int, float]
    results: dict[tuple[int, float], dict[str, float]]


def choose_rule(windows: Any, classes: Sequence[str]) -> Choice:
    """The rule for a model from its windows on validation data (``stream_eval.StreamWindows``)."""
    from taaf_ros.inference.stream_eval import score

    results = {(n, c): score(windows, DecisionRule(n, c), classes)
               for n in SMOOTHING_GRID for c in CONFIDENCE_GRID}
    raw = results[RAW]

    def no_worse(r: dict[str, float]) -> bool:
        return all(not r[k] < raw[k] for k in ("aligned", "majority"))  # NaN: no such window

    candidates = [k for k, r in results.items() if no_worse(r)]
    best = max(candidates, key=lambda k: (_floor(min(results[k]["majority"],
                                                     results[k]["background"])),
                                          _floor(results[k]["aligned"]), -k[0], -k[1]))
    return Choice(best, results)


def card_entry(choice: Choice, chosen_on: str) -> dict[str, Any]:
    """What a model card keeps of a choice (``decision_rule``): the rule, the data it was
    chosen on, and its scores beside each window's own argmax."""
    keep = ("aligned", "majority", "background", "abstained")
    n, c = choice.rule
    return {"smoothing_windows": n, "min_confidence": c, "chosen_on": chosen_on,
            "scores": {k: choice.results[choice.rule][k] for k in keep},
            "each_window_own": {k: choice.results[RAW][k] for k in keep}}


def _floor(x: float) -> float:
    return -1.0 if x != x else x  # NaN (no such window) ranks last


def card_rule(card: Mapping[str, Any]) -> tuple[int, float] | None:
    """The rule a model card carries (``decision_rule``), or None."""
    rule = card.get("decision_rule")
    if not isinstance(rule, Mapping):
        return None
    try:
        return int(rule["smoothing_windows"]), float(rule["min_confidence"])
    except (KeyError, TypeError, ValueError):
        return None


def deployed_rule(card: Mapping[str, Any], smoothing_windows: int, min_confidence: float
                  ) -> tuple[DecisionRule, str]:
    """The rule the node runs and why: a parameter given (smoothing_windows >= 1,
    min_confidence >= 0) wins, else the model card's, else each window's own argmax.

    >>> deployed_rule({"decision_rule": {"smoothing_windows": 4, "min_confidence": 0.5,
    ...                                  "chosen_on": "validation group b"}}, 0, -1.0)[1]
    "smoothing_windows 4, min_confidence 0.5 (the model card's, chosen on validation group b)"
    >>> deployed_rule({}, 2, -1.0)[1]
    "smoothing_windows 2 (set), min_confidence 0 (the model card has no rule: each window's own)"
    """
    from_card = card_rule(card)
    chosen_on = card.get("decision_rule", {}).get("chosen_on") if from_card else None
    where = ("the model card has no rule: each window's own" if not from_card else
             f"the model card's, chosen on {chosen_on[:200]}" if isinstance(chosen_on, str)
             else "the model card's")
    card_n, card_c = from_card or RAW
    n = smoothing_windows if smoothing_windows >= 1 else card_n
    c = min_confidence if min_confidence >= 0 else card_c
    parts = [f"smoothing_windows {n}" + (" (set)" if smoothing_windows >= 1 else ""),
             f"min_confidence {c:g}" + (" (set)" if min_confidence >= 0 else "")]
    given = smoothing_windows >= 1 and min_confidence >= 0
    return DecisionRule(n, c), ", ".join(parts) + ("" if given else f" ({where})")


def store_rule(checkpoint: str | Path, rule: dict[str, Any]) -> Path | None:
    """Write ``rule`` into the checkpoint's card; re-export the ONNX graph beside it if that
    graph was made from the checkpoint as it was (else it would go stale). Returns the graph
    exported again, if any."""
    from taaf_ros.inference.export import export_onnx, file_digest, graph_source, onnx_path
    from taaf_ros.model.checkpoint import load_checkpoint, rewrite_card

    graph, before = onnx_path(checkpoint), file_digest(checkpoint)
    rewrite_card(checkpoint, decision_rule=rule)
    if not (graph.is_file() and graph_source(graph) == before):
        return None
    export_onnx(load_checkpoint(checkpoint).model, graph, source_digest=file_digest(checkpoint))
    return graph
