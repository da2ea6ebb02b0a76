"""``taaf_stream_eval``: a model on labelled recordings as the node runs it, every window on
the hop grid scored (aligned, majority, background) with no decision rule and with the node's
(:mod:`taaf_ros.inference.stream_eval`).

Usage::

    taaf_stream_eval LABELS.csv [--files] [--model M] [--dataset DIR --split test]
                     [--recordings A,B] [--smoothing-windows N] [--min-confidence C]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taaf_ros.apps.options import parser
from taaf_ros.defaults import HOP_S, STREAM_AUDIO_RATE_HZ
from taaf_ros.params import PERCEPTION_PARAMS, spec


def _parser() -> argparse.ArgumentParser:
    ap = parser("taaf_stream_eval", "A model on labelled recordings as the node runs it: every "
                "window on the hop grid classified and scored against the labels "
                "(docs/data.md).")
    ap.add_argument("labels", type=Path, help="labels CSV (as taaf_dataset reads it); its "
                    "labels must be the model's classes")
    ap.add_argument("--files", action="store_true", help="recordings are event files + WAVs "
                    "(default: bags)")
    ap.add_argument("--model", default="", help="checkpoint (default: the bundled model)")
    ap.add_argument("--hop-s", type=float, default=HOP_S)
    ap.add_argument("--smoothing-windows", type=int,
                    default=spec(PERCEPTION_PARAMS, "smoothing_windows").default,
                    help="as the node's parameter (0: the model card's rule)")
    ap.add_argument("--min-confidence", type=float,
                    default=spec(PERCEPTION_PARAMS, "min_confidence").default,
                    help="as the node's parameter (-1: the model card's rule)")
    ap.add_argument("--sensor-size", type=int, nargs=2, default=(0, 0), metavar=("W", "H"))
    ap.add_argument("--audio-rate", type=int, default=STREAM_AUDIO_RATE_HZ)
    ap.add_argument("--stride-s", type=float, default=0.0, help="as taaf_dataset's: between "
                    "the sample windows of a span longer than one (0: the window)")
    ap.add_argument("--dataset", type=Path, default=None, help="the dataset taaf_dataset "
                    "built from these labels (its samples.csv says which span went where)")
    ap.add_argument("--split", default="", help="with --dataset: score only the spans of "
                    "this split (e.g. test)")
    ap.add_argument("--recordings", default="", help="score only these recordings "
                    "(comma-separated names, as in the labels' recording column)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Console script ``taaf_stream_eval``; exit status 2 on bad labels, with the reason."""
    a = _parser().parse_args(argv)
    from taaf_ros.data.labels import LabelError, read_labels
    from taaf_ros.inference.decision import DecisionRule
    from taaf_ros.inference.rule_choice import RAW, deployed_rule
    from taaf_ros.inference.stream_eval import (
        fastest_classifier,
        labelled_windows,
        score,
        select_spans,
    )
    from taaf_ros.model.bundled import find_bundled_model

    classifier = fastest_classifier(a.model or str(find_bundled_model()))
    try:
        spans = select_spans(read_labels(a.labels, classes=classifier.classes), a.dataset,
                             a.split, a.recordings)
    except (LabelError, ValueError, OSError) as exc:
        print(f"taaf_stream_eval: error: {exc}", file=sys.stderr)
        return 2
    trained = {Path(r).name for r in classifier.card.get("metrics", {})
               .get("train_recordings", [])}
    seen = sorted({s.recording.name for s in spans} & trained)
    if seen:
        print(f"taaf_stream_eval: warning: the model trained on {', '.join(seen)}: their "
              "figures do not say how it does on recordings it has not seen (--dataset DIR "
              "--split test scores the held-out ones)", file=sys.stderr)
    w = labelled_windows(classifier, spans, files=a.files, sensor_size=tuple(a.sensor_size),
                         audio_rate=a.audio_rate, hop_s=a.hop_s, stride_s=a.stride_s)
    print("| rule | aligned | majority | background | abstained | windows | aligned windows |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    node_rule, why = deployed_rule(classifier.card, a.smoothing_windows, a.min_confidence)
    for name, rule in (("none", DecisionRule(*RAW)), (f"the node's: {why}", node_rule)):
        r = score(w, rule, classifier.classes)
        print(f"| {name} | {r['aligned']:.3f} | {r['majority']:.3f} | {r['background']:.3f} | "
              f"{r['abstained']:.3f} | {len(w.start_us)} | {r['aligned_windows']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
