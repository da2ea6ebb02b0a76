"""``taaf_loso``: the leave-one-speaker-out protocol (:mod:`taaf_ros.studies.loso`): every
fold's runs, their corruption evaluation, and the results page; run again to continue.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from taaf_ros.apps.options import add_out_dir, add_output, parser
from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.model import METHODS
from taaf_ros.studies import loso
from taaf_ros.studies.loso import (
    Job,
    plan,
    progress_of,
    record_wall_time,
    report,
    run_jobs,
    speakers_of,
)


def main(argv: list[str] | None = None) -> int:
    ap = parser("taaf_loso", loso.__doc__.split("\n")[0])
    ap.add_argument("--data-root", required=True, help="FSDD + MNIST sources")
    add_out_dir(ap, "the runs and their datasets", default=Path("runs/loso"))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    ap.add_argument("--folds", default="", help="test speakers to run (default: all)")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    add_output(ap, "the results page to write")
    ap.add_argument("--report-only", action="store_true", help="only write the results page")
    ap.add_argument("--no-corruptions", action="store_true",
                    help="skip the per-fold corruption evaluation (taaf_robustness)")
    ap.add_argument("--limit-per-class", type=int, default=0,
                    help="small AV-digits builds (N recordings per class and split), for a "
                    "quick check of the protocol")
    args, extra = ap.parse_known_args(argv)  # the rest goes to every train_ead.py run
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown or args.parallel < 1:
        ap.error(f"unknown methods {sorted(unknown)}" if unknown else "--parallel must be >= 1")
    command = "taaf_loso " + " ".join(sys.argv[1:] if argv is None else argv)
    speakers = speakers_of(args.data_root)
    jobs = plan(speakers, methods, args.out_dir, [f for f in args.folds.split(",") if f])
    failed: list[str] = []
    if not args.report_only:
        started = time.time()
        runs_before, folds_before = progress_of(jobs)
        try:
            failed = _run(args, jobs, extra)
        finally:
            runs_after, folds_after = progress_of(jobs)
            record_wall_time(args.out_dir, started, runs_after - runs_before,
                             folds_after - folds_before, args.parallel, extra)
    png = args.output.with_name(args.output.stem + "-corruptions.png") if args.output else None
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    page = report(jobs, command, png)
    if args.output:
        args.output.write_text(page)
    print(page)
    return 1 if failed else 0


def _run(args: argparse.Namespace, jobs: list[Job], extra: list[str]) -> list[str]:
    """Build each fold's AV-digits and run the unfinished jobs; -> what failed."""
    data_roots = {}
    for s in sorted({j.test_speaker for j in jobs}):
        data_roots[s] = ensure_ead_dataset(args.data_root, args.out_dir / "data",
                                           limit_per_class=args.limit_per_class,
                                           progress=False, test_speakers=(s,))
    try:
        return run_jobs(jobs, data_roots, args.parallel, extra,
                        robustness=not args.no_corruptions)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return []


if __name__ == "__main__":
    sys.exit(main())
