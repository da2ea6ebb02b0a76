"""Leave-one-speaker-out over the FSDD speakers: every method on every fold, one command.

    taaf_loso --data-root ../shared/data --out runs/loso --output docs/results.md

Fold s: speaker s is the test split, the next speaker (in sorted order, cyclically) the
validation speaker that picks the epoch, the others train. Each fold's AV-digits build (test
speaker s) is made once; each (fold, method) is one ``train_ead.py`` run in its own process
(one thread), ``--parallel`` of them at a time, sharing their fold's front-end cache.

Resumable and sliceable: a run whose ``metrics.json`` exists is done and skipped; one with a
``last.pt`` continues with ``--resume``; stop the command at any time (Ctrl-C stops the runs,
each keeps its last finished epoch) and start it again. The results page is generated from
the runs' ``metrics.json`` files every time (``--report-only`` writes it without training):
per method, fused and per-modality accuracy as mean ± std over the finished folds, imbalance,
energy and training time, then every fold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taaf_ros.data.avdigits import ensure_ead_dataset, find_fsdd
from taaf_ros.model import METHODS, MODALITIES


@dataclass(frozen=True)
class Job:
    test_speaker: str
    val_speaker: str
    method: str
    out_dir: Path

    @property
    def done(self) -> bool:
        return (self.out_dir / "metrics.json").is_file()


def speakers_of(data_root: str | Path) -> list[str]:
    """The FSDD speakers under ``data_root`` (fsdd/ or fsdd/recordings/), sorted."""
    root = Path(data_root)
    fsdd = root / "fsdd" / "recordings"
    fsdd = fsdd if fsdd.is_dir() else root / "fsdd"
    return sorted({r.speaker for r in find_fsdd(fsdd)})


def plan(speakers: list[str], methods: list[str], out: Path,
         folds: list[str] | None = None) -> list[Job]:
    """One job per (fold, method), folds in speaker order, methods in the order given."""
    if len(speakers) < 3:
        raise ValueError(f"leave-one-speaker-out needs at least 3 speakers, got {speakers}")
    jobs = []
    for i, s in enumerate(speakers):
        if folds and s not in folds:
            continue
        val = speakers[(i + 1) % len(speakers)]
        jobs += [Job(s, val, m, out / f"test-{s}" / m) for m in methods]
    return jobs


def job_command(job: Job, data_root: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "taaf_ros.training.cli", "--data-root", str(data_root),
           "--method", job.method, "--val-speaker", job.val_speaker, "--out-dir",
           str(job.out_dir), "--num-threads", "1", "--progress", "false", *extra]
    return [*cmd, "--resume"] if (job.out_dir / "last.pt").is_file() else cmd


def run_jobs(jobs: list[Job], data_roots: dict[str, Path], parallel: int, extra: list[str],
             log: Any = print) -> list[Job]:
    """Run the unfinished jobs, ``parallel`` at a time; -> the jobs that failed."""
    todo = [j for j in jobs if not j.done]
    running: list[tuple[Job, subprocess.Popen, float]] = []
    failed = []
    log(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done; {len(todo)} to go, "
        f"{parallel} at a time")
    try:
        while todo or running:
            while todo and len(running) < parallel:
                job = todo.pop(0)
                job.out_dir.mkdir(parents=True, exist_ok=True)
                cache = job.out_dir / "cache"
                if not cache.exists():  # the fold's front-end tensors, computed once
                    fold_cache = job.out_dir.parent / "cache"
                    fold_cache.mkdir(exist_ok=True)
                    cache.symlink_to(fold_cache.resolve())
                with open(job.out_dir / "train.log", "a") as out:
                    proc = subprocess.Popen(job_command(job, data_roots[job.test_speaker], extra),
                                            stdout=out, stderr=subprocess.STDOUT,
                                            env=dict(os.environ, OMP_NUM_THREADS="1"))
                running.append((job, proc, time.monotonic()))
                log(f"started {job.method} on fold {job.test_speaker} "
                    f"(validation {job.val_speaker})")
            time.sleep(1.0)
            for item in list(running):
                job, proc, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                ok = proc.returncode == 0 and job.done
                log(f"{'finished' if ok else 'FAILED'} {job.method} on fold {job.test_speaker} "
                    f"in {time.monotonic() - t0:.0f} s" + ("" if ok else
                                                          f" (see {job.out_dir}/train.log)"))
                if not ok:
                    failed.append(job)
    except KeyboardInterrupt:
        for _, proc, _ in running:
            proc.terminate()  # each run has its last finished epoch in last.pt
        for _, proc, _ in running:
            proc.wait()
        raise
    return failed


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def report(jobs: list[Job], command: str) -> str:
    """The results page from the finished runs' metrics.json."""
    folds = sorted({j.test_speaker for j in jobs})
    methods = list(dict.fromkeys(j.method for j in jobs))
    metrics = {(j.test_speaker, j.method): json.loads((j.out_dir / "metrics.json").read_text())
               for j in jobs if j.done}
    lines = ["# Results: leave-one-speaker-out on AV-digits", "",
             f"Written by `{command}` from the runs' metrics.json ({len(metrics)} of "
             f"{len(jobs)} runs finished). Fold s: test speaker s, validation speaker the next "
             "one (it picks the epoch), the other speakers train. Accuracy in %, mean ± std "
             "over the finished folds.", "",
             "| method | folds | fused | events readout | audio readout | imbalance | energy (µJ) "
             "| train time (s) |", "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        rows = [metrics[(f, m)] for f in folds if (f, m) in metrics]

        def readout(k: str, rows: list[dict[str, Any]] = rows) -> list[float]:
            return [r["test_acc_per_modality"][k] for r in rows
                    if r["test_acc_per_modality"].get(k) is not None]

        imb = [r["imbalance"] for r in rows if r.get("imbalance") is not None]
        energy = [r["energy"]["energy_uj"] for r in rows if r.get("energy")]
        times = [r["train_time_s"] for r in rows]
        lines.append(" | ".join([
            f"| {m}", f"{len(rows)}/{len(folds)}", _mean_std([r["test_acc"] for r in rows]),
            _mean_std(readout("events")), _mean_std(readout("audio")),
            f"{statistics.mean(imb):.2f}" if imb else "-",
            f"{statistics.mean(energy):.1f}" if energy else "-",
            f"{statistics.mean(times):.0f}" if times else "-"]) + " |")
    lines += ["", "Every fold (fused / events / audio, chosen epoch):", "",
              "| test speaker | " + " | ".join(methods) + " |",
              "|---|" + "---|" * len(methods)]
    for f in folds:
        cells = []
        for m in methods:
            r = metrics.get((f, m))
            if r is None:
                cells.append("not run yet")
                continue
            accs = [r["test_acc"], *(r["test_acc_per_modality"].get(k) for k in MODALITIES)]
            cells.append(" / ".join("-" if a is None else f"{100 * a:.1f}" for a in accs)
                         + f", epoch {r.get('selected_epoch', '?')}")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="taaf_loso", description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", required=True, help="FSDD + MNIST sources")
    ap.add_argument("--out", type=Path, default=Path("runs/loso"), help="runs and datasets")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    ap.add_argument("--folds", default="", help="test speakers to run (default: all)")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    ap.add_argument("--output", type=Path, default=None, help="results page to write")
    ap.add_argument("--report-only", action="store_true", help="only write the results page")
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
    jobs = plan(speakers, methods, args.out, [f for f in args.folds.split(",") if f])
    failed: list[Job] = []
    if not args.report_only:
        data_roots = {}
        for s in sorted({j.test_speaker for j in jobs}):
            data_roots[s] = ensure_ead_dataset(args.data_root, args.out / "data",
                                               limit_per_class=args.limit_per_class,
                                               progress=False, test_speakers=(s,))
        try:
            failed = run_jobs(jobs, data_roots, args.parallel, extra)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to continue", file=sys.stderr)
    page = report(jobs, command)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page)
    print(page)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
