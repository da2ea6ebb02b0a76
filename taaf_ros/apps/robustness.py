"""``taaf_robustness``: accuracy under test-time corruptions, at graded severity
(:mod:`taaf_ros.studies.robustness`).

Usage::

    taaf_robustness runs/taaf-balanced/model.pt runs/taaf/model.pt --data-root DATA \
        --output robustness.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from taaf_ros.apps.options import add_output, parser
from taaf_ros.studies import robustness
from taaf_ros.studies.robustness import plot, run, to_markdown


def main(argv: list[str] | None = None) -> int:
    ap = parser("taaf_robustness", robustness.__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="model.pt files to evaluate")
    ap.add_argument("--data-root", required=True,
                    help="EAD-layout dataset, or FSDD + MNIST sources (AV-digits is built)")
    ap.add_argument("--split", default="test", help="split to evaluate (default: test)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    add_output(ap, "the Markdown table to write; the JSON and PNG go beside it", required=True)
    args = ap.parse_args(argv)
    command = "taaf_robustness " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        report = run(args.checkpoints, args.data_root, args.split, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"taaf_robustness: error: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_markdown(report, command, args.output.with_suffix(".png").name))
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    plot(report, args.output.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
