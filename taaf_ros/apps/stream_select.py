"""``taaf_stream_select``: choose the node's decision rule (``smoothing_windows``,
``min_confidence``) on a validation speaker, and report it on the test split.

Usage::

    taaf_stream_select --data-root DATA [--model M] [--speaker yweweler]
                       [--samples 200] [--gap-s 1.0] [--output docs/results-stream.md]
                       [--write-card]

A split is replayed as a stream (:mod:`taaf_ros.inference.stream_eval`: each sample in a slot
of the window plus ``--gap-s``, every window on the hop grid classified through the live front
ends). Every rule of the grid is scored on the validation speaker's samples of the training
split (the speaker the model held out) and chosen as training chooses a model's rule
(:func:`taaf_ros.inference.rule_choice.choose_rule`: no worse than each window's own argmax on
the labelled windows, the best worse-of-two of ``majority`` and ``background``). The test
split is then scored with no rule and with the chosen one; the page says both.
``--write-card`` stores the rule in the model's card (for a model trained before training
chose one itself).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

from taaf_ros.apps.options import add_output, parser
from taaf_ros.defaults import HOP_S
from taaf_ros.inference.decision import DecisionRule
from taaf_ros.inference.rule_choice import RAW, Choice, card_entry, choose_rule, store_rule

CHOICE = re.compile(r"chosen: smoothing_windows (\d+), min_confidence ([\d.]+)")


def chosen_rule(page: str) -> tuple[int, float]:
    """The (smoothing_windows, min_confidence) a results page chose."""
    m = CHOICE.search(page)
    if m is None:
        raise ValueError("no 'chosen: smoothing_windows N, min_confidence C' line on the page")
    return int(m.group(1)), float(m.group(2))


def _row(label: str, r: dict[str, float]) -> str:
    return (f"| {label} | {r['aligned']:.3f} | {r['majority']:.3f} | {r['background']:.3f} | "
            f"{r['abstained']:.3f} |")


def _parser() -> argparse.ArgumentParser:
    ap = parser("taaf_stream_select", __doc__.split("\n\n")[0].replace("``", ""))
    ap.add_argument("--data-root", required=True, help="AV-digits (or its sources)")
    ap.add_argument("--model", default="", help="checkpoint (default: the bundled model)")
    ap.add_argument("--speaker", default="yweweler", help="validation speaker: one the model "
                    "did not train on (the bundled model held out yweweler)")
    ap.add_argument("--samples", type=int, default=200, help="samples per split (0: all)")
    ap.add_argument("--gap-s", type=float, default=1.0, help="silence between samples (s)")
    ap.add_argument("--hop-s", type=float, default=HOP_S)
    add_output(ap, "write the results page here")
    ap.add_argument("--cache", default="", help="where AV-digits is built from sources")
    ap.add_argument("--write-card", action="store_true", help="store the chosen rule in the "
                    "model's card (the node deploys the model with it; weights unchanged; an "
                    "ONNX graph beside the model made from it is exported again)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Console script ``taaf_stream_select``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)

    import torch

    from taaf_ros.data.avdigits import ensure_ead_dataset, speaker_of
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.stream_eval import fastest_classifier, replay_windows, score
    from taaf_ros.model.bundled import find_bundled_model
    from taaf_ros.stream.replay_plan import replay_order

    torch.set_num_threads(1)
    root = ensure_ead_dataset(args.data_root, args.cache)
    model = args.model or str(find_bundled_model())
    clf = fastest_classifier(model)

    def stream(split: str, keep) -> tuple:
        ds = EadDataset(root, split)
        idx = [i for i in replay_order([s[2] for s in ds.samples]) if keep(ds.samples[i][3])]
        idx = idx[: args.samples] if args.samples else idx
        if not idx:
            raise SystemExit(f"error: no {split} samples for this selection")
        return replay_windows(clf, ds, idx, hop_s=args.hop_s, gap_s=args.gap_s), len(idx)

    t0 = time.perf_counter()
    val, n_val = stream("train", lambda sid: speaker_of(sid) == args.speaker)
    choice = choose_rule(val, clf.classes)
    test, n_test = stream("test", lambda sid: True)
    before = score(test, DecisionRule(*RAW), clf.classes)
    after = score(test, DecisionRule(*choice.rule), clf.classes)
    text = results_page(args, argv, model, time.perf_counter() - t0, choice,
                        (n_val, len(val.start_us)), (n_test, len(test.start_us)), before, after)
    print(text)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    if args.write_card:
        graph = store_rule(model, card_entry(
            choice, f"validation speaker {args.speaker}, {n_val} samples replayed with "
            f"{args.gap_s:g} s of silence between them"))
        print(f"stored the rule in the card of {model}")
        if graph is not None:
            print(f"exported {graph} again (it records the checkpoint's digest)")
    return 0 if np.isfinite(after["majority"]) else 1


def results_page(args: argparse.Namespace, argv: list[str], model: str, seconds: float,
                 choice: Choice, val: tuple[int, int], test: tuple[int, int],
                 before: dict[str, float], after: dict[str, float]) -> str:
    """The Markdown page: the validation grid, the chosen rule, the test split before and
    after it (``val`` and ``test`` are (samples, windows))."""
    best, results = choice
    header = ["| rule | aligned | majority | background | abstained |", "|---|---:|---:|---:|---:|"]
    grid = [_row(f"smoothing {n}, min_confidence {c}", r) for (n, c), r in results.items()]
    return "\n".join([
        "# The node's decision rule, chosen on a validation speaker",
        "",
        f"Written by `taaf_stream_select {' '.join(argv)}` on {time.strftime('%Y-%m-%d')} "
        f"({seconds:.0f} s). Model: `{Path(model).name}`. Each split is replayed as a stream: "
        f"every sample in a slot of the window plus {args.gap_s:g} s of silence, a window "
        f"every {args.hop_s:g} s, classified through the node's live front ends. aligned: "
        "windows that coincide with a sample; majority: windows a sample covers at least half "
        "of (an abstention is wrong); background: windows with no sample at all, where "
        "abstaining is right; abstained: share of all windows without a label.",
        "",
        f"## Validation: speaker {args.speaker} of the training split ({val[0]} samples, "
        f"{val[1]} windows)",
        "",
        *header, *grid,
        "",
        f"chosen: smoothing_windows {best[0]}, min_confidence {best[1]:g} (of the rules no "
        "worse than each window's own argmax on aligned and majority, the best worse-of-two "
        "of majority and background; ties: aligned, then less smoothing). The bundled model's "
        "card carries this rule, which the perception node runs unless its parameters say "
        "otherwise.",
        "",
        f"## Test split ({test[0]} samples, {test[1]} windows)",
        "",
        *header,
        _row("none (each window's own argmax)", before),
        _row(f"chosen (smoothing {best[0]}, min_confidence {best[1]:g})", after),
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
