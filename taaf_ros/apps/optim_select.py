"""``taaf_optim_select``: each method's optimiser chosen on validation speakers, AdamW
against SGD (:mod:`taaf_ros.studies.optim_select`); run again to continue.

Usage::

    taaf_optim_select --data-root DATA --out-dir runs/optim-select \\
        --output docs/results-optimizer.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from taaf_ros.apps.options import add_out_dir, add_output, parser
from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.model import METHODS
from taaf_ros.studies import optim_select
from taaf_ros.studies.loso import plan, run_jobs, speakers_of
from taaf_ros.studies.optim_select import selection_jobs, selection_page
from taaf_ros.training.optim import PEAK_LR


def main(argv: list[str] | None = None) -> int:
    ap = parser("taaf_optim_select", optim_select.__doc__.split("\n")[0])
    ap.add_argument("--data-root", required=True, help="FSDD + MNIST sources")
    add_out_dir(ap, "the runs and their datasets", default=Path("runs/optim-select"))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    ap.add_argument("--folds", default="",
                    help="comma-separated test speakers of the folds (default: the first two)")
    ap.add_argument("--adamw-lr", type=float, default=PEAK_LR["adamw"],
                    help="AdamW's peak learning rate")
    ap.add_argument("--sgd-lr", type=float, default=PEAK_LR["sgd"], help="SGD's peak learning rate")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    add_output(ap, "the page to write")
    ap.add_argument("--report-only", action="store_true", help="only write the page")
    ap.add_argument("--limit-per-class", type=int, default=0,
                    help="a small AV-digits build (N recordings per class and split), for a "
                    "quick check")
    args, extra = ap.parse_known_args(argv)  # the rest goes to every train_ead.py run
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(METHODS) or args.parallel < 1:
        ap.error(f"methods must be among {METHODS} and --parallel >= 1")
    speakers = speakers_of(args.data_root)
    folds = [f for f in args.folds.split(",") if f] or speakers[:2]
    if set(folds) - set(speakers):
        ap.error(f"--folds must be among the speakers {speakers}")
    jobs = selection_jobs(plan(speakers, methods, args.out_dir, folds),
                          {"adamw": args.adamw_lr, "sgd": args.sgd_lr})
    # the page shows the command that trains and writes it, --report-only or not
    command = "taaf_optim_select " + " ".join(a for a in (sys.argv[1:] if argv is None else argv)
                                              if a != "--report-only")
    failed: list[str] = []
    if not args.report_only:
        roots = {f: ensure_ead_dataset(args.data_root, args.out_dir / "data", progress=False,
                                       limit_per_class=args.limit_per_class,
                                       test_speakers=(f,)) for f in folds}
        try:
            failed = run_jobs(jobs, roots, args.parallel, extra, robustness=False)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to continue", file=sys.stderr)
    page = selection_page(jobs, command)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page)
    print(page)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
