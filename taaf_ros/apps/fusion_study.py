"""``taaf_fusion_study``: late fusion rules compared post hoc under audio noise
(:mod:`taaf_ros.studies.fusion_study`).

Usage::

    taaf_fusion_study runs/optim-select/test-george/taaf-balanced/adamw \
        --events-only runs/optim-select/test-george/events-only/adamw/model.pt \
        --output docs/results-fusion-study.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from taaf_ros.apps.options import add_output, parser
from taaf_ros.studies import fusion_study
from taaf_ros.studies.fusion_study import study, to_markdown


def main(argv: list[str] | None = None) -> int:
    ap = parser("taaf_fusion_study", fusion_study.__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="two-modality run folders")
    ap.add_argument("--events-only", nargs="*", type=Path, default=[],
                    help="each run's events-only model.pt (same fold, same order)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    add_output(ap, "the Markdown page to write; the JSON goes beside it", required=True)
    args = ap.parse_args(argv)
    if args.events_only and len(args.events_only) != len(args.runs):
        ap.error("give one --events-only checkpoint per run, or none")
    command = "taaf_fusion_study " + " ".join(sys.argv[1:] if argv is None else argv)
    results = [study(run, args.events_only[i] if args.events_only else None, args.seed)
               for i, run in enumerate(args.runs)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_markdown(results, command))
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
