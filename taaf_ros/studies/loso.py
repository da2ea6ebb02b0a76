"""Leave-one-speaker-out over the FSDD speakers: every method on every fold, one command.

    taaf_loso --data-root DATA --out runs/loso --output docs/results.md

Fold s: speaker s is the test split, the next speaker (in sorted order, cyclically) the
validation speaker that picks the epoch, the others train. Each fold's AV-digits build (test
speaker s) is made once; each (fold, method) is one ``train_ead.py`` run in its own process
(one thread), ``--parallel`` of them at a time, sharing their fold's front-end tensors (the
training feature cache is keyed by data and front end, whatever the run folder).

Resumable and sliceable: a run whose ``metrics.json`` exists is done and skipped; one with a
``last.pt`` continues with ``--resume``; stop the command at any time (Ctrl-C stops the runs,
each keeps its last finished epoch) and start it again. Once a fold's runs are all done, its
corruption evaluation runs (``taaf_robustness`` on every method's checkpoint, into
``test-<s>/robustness.json``; ``--no-corruptions`` skips it). The results page is generated
from those files every time (``--report-only`` writes it without training): per method, fused
and per-modality accuracy as mean ± std over the finished folds, imbalance, energy and training
time; the goals for taaf-balanced fold by fold; every fold; accuracy against corruption
severity (table, and a PNG beside the page).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taaf_ros.data.avdigits import find_fsdd

from .loso_report import load_robustness, plot_corruptions, results_page


@dataclass(frozen=True)
class Job:
    test_speaker: str
    val_speaker: str
    method: str
    out_dir: Path
    flags: tuple[str, ...] = ()  # train_ead.py flags of this run only (e.g. its optimiser)

    @property
    def fold_dir(self) -> Path:
        """The fold's folder, test-<speaker>: its runs and corruption results."""
        return next(p for p in self.out_dir.parents if p.name == f"test-{self.test_speaker}")

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
    cmd = [sys.executable, "-m", "taaf_ros.apps.train", "--data-root", str(data_root),
           "--method", job.method, "--val-speaker", job.val_speaker, "--out-dir",
           str(job.out_dir), "--num-threads", "1", "--no-progress", *job.flags, *extra]
    return [*cmd, "--resume"] if (job.out_dir / "last.pt").is_file() else cmd


def robustness_command(fold_jobs: list[Job], data_root: Path) -> list[str]:
    fold_dir = fold_jobs[0].fold_dir
    return [sys.executable, "-m", "taaf_ros.apps.robustness",
            *(str(j.out_dir / "model.pt") for j in fold_jobs), "--data-root", str(data_root),
            "--output", str(fold_dir / "robustness.md")]


def robustness_done(fold_jobs: list[Job]) -> bool:
    """The fold's robustness.json covers every one of ``fold_jobs``."""
    path = fold_jobs[0].fold_dir / "robustness.json"
    if not path.is_file():
        return False
    names = " ".join(json.loads(path.read_text())["results"])
    return all(str(j.out_dir / "model.pt") in names for j in fold_jobs)


def run_jobs(jobs: list[Job], data_roots: dict[str, Path], parallel: int, extra: list[str],
             log: Any = print, robustness: bool = True) -> list[str]:
    """Run the unfinished jobs, ``parallel`` at a time, and once a fold's runs are all done its
    corruption evaluation (before further training, so results arrive fold by fold);
    -> what failed."""
    todo = [j for j in jobs if not j.done]
    by_fold: dict[str, list[Job]] = {}
    for j in jobs:
        by_fold.setdefault(j.test_speaker, []).append(j)
    folds_todo = [f for f, fj in by_fold.items() if robustness and not robustness_done(fj)]
    running: list[tuple[str, subprocess.Popen, float, Job | None]] = []
    failed: list[str] = []
    log(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done; {len(todo)} to go, "
        f"{parallel} at a time; then {len(folds_todo)} folds' corruption evaluations")

    def start(what: str, cmd: list[str], log_path: Path, job: Job | None) -> None:
        with open(log_path, "a") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, OMP_NUM_THREADS="1"))
        running.append((what, proc, time.monotonic(), job))
        log(f"started {what}")

    try:
        while todo or running or folds_todo:
            while len(running) < parallel:
                ready = [f for f in folds_todo if all(j.done for j in by_fold[f])]
                if ready:
                    f = ready[0]
                    folds_todo.remove(f)
                    start(f"corruptions on fold {f}",
                          robustness_command(by_fold[f], data_roots[f]),
                          by_fold[f][0].fold_dir / "robustness.log", None)
                elif todo:
                    job = todo.pop(0)
                    job.out_dir.mkdir(parents=True, exist_ok=True)
                    what = " ".join((job.method, *job.flags))
                    start(f"{what} on fold {job.test_speaker} (validation {job.val_speaker})",
                          job_command(job, data_roots[job.test_speaker], extra),
                          job.out_dir / "train.log", job)
                else:
                    break
            if not running:  # what is left waits on a failed run
                break
            time.sleep(1.0)
            for item in list(running):
                what, proc, t0, job = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                ok = proc.returncode == 0 and (job is None or job.done)
                log(f"{'finished' if ok else 'FAILED'} {what} in {time.monotonic() - t0:.0f} s"
                    + ("" if ok else " (see its log)"))
                if not ok:
                    failed.append(what)
                    if job is not None and job.test_speaker in folds_todo:
                        folds_todo.remove(job.test_speaker)
    except KeyboardInterrupt:
        for _, proc, _, _ in running:
            proc.terminate()  # each run has its last finished epoch in last.pt
        for _, proc, _, _ in running:
            proc.wait()
        raise
    return failed


#: Each invocation's wall time, appended in the protocol's folder (--out).
WALL_TIME_FILE = "protocol_time.json"


def load_wall_times(out: Path) -> list[dict[str, Any]]:
    """The recorded invocations (oldest first); [] where none is recorded or the file is not
    what this module writes (a warning names it)."""
    path = out / WALL_TIME_FILE
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
        if isinstance(entries, list) and all(isinstance(e, dict) and
                                             isinstance(e.get("seconds"), int | float)
                                             for e in entries):
            return entries
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    print(f"warning: {path} is not a list of taaf_loso wall times: ignored", file=sys.stderr)
    return []


def record_wall_time(out: Path, started: float, runs: int, corruptions: int, parallel: int,
                     train_flags: list[str]) -> None:
    """Append one invocation's wall time (it finished ``runs`` runs and ``corruptions`` folds'
    corruption evaluations) to ``out/protocol_time.json``; an unreadable file is moved aside
    to ``protocol_time.json.bak``, not overwritten."""
    path = out / WALL_TIME_FILE
    entries = load_wall_times(out)
    if path.is_file() and not entries:
        path.replace(path.with_name(WALL_TIME_FILE + ".bak"))
    entries.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                    "seconds": round(time.time() - started, 1), "runs": runs,
                    "corruption_evaluations": corruptions, "parallel": parallel,
                    "cpu_count": os.cpu_count(), "train_flags": " ".join(train_flags)})
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(WALL_TIME_FILE + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    tmp.replace(path)


def report(jobs: list[Job], command: str, png: Path | None = None) -> str:
    """The results page from the finished runs (and the PNG of the corruption curves)."""
    folds = list(dict.fromkeys(j.test_speaker for j in jobs))
    methods = list(dict.fromkeys(j.method for j in jobs))
    metrics = {(j.test_speaker, j.method): json.loads((j.out_dir / "metrics.json").read_text())
               for j in jobs if j.done}
    robust = {f: r for f in folds
              if (r := load_robustness(jobs[0].out_dir.parents[1] / f"test-{f}"))}
    if png is not None and robust:
        plot_corruptions(robust, methods, png)
    return results_page(metrics, robust, folds, methods, len(jobs), command,
                        png.name if png is not None and robust else None,
                        load_wall_times(jobs[0].out_dir.parents[1]))


def progress_of(jobs: list[Job]) -> tuple[int, int]:
    """(runs done, folds whose corruption evaluation is done)."""
    by_fold: dict[str, list[Job]] = {}
    for j in jobs:
        by_fold.setdefault(j.test_speaker, []).append(j)
    return sum(j.done for j in jobs), sum(robustness_done(fj) for fj in by_fold.values())
