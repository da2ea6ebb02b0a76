"""Rows a benchmark run measured, kept for the generated page (docs/bench/README.md).

Each benchmark given ``--record FILE`` writes its headline rows there as JSON, with the
command, the machine and the date of the run: the figure and its reference come from the same
run, and the page (``benchmarks/bench_page.py``) only lays them out. ``make bench`` records
every benchmark into docs/bench/results/ and regenerates the page.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One measured figure beside its reference from the same run.

    what: what was measured (workload, sizes). result: the package's figure, with units.
    reference: what it is compared with, and that figure. ratio: how many times better the
    package is (>1: faster or cheaper; <1: slower), None where no ratio applies. headline:
    also shown in the README's short table.
    """

    what: str
    result: str
    reference: str
    ratio: float | None = None
    headline: bool = False


def add_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--record", type=Path, default=None,
                    help="write this run's rows (JSON) here for docs/bench/README.md "
                         "(make bench: docs/bench/results/<name>.json)")


def machine() -> str:
    """CPU model and cores (the ones this process may use), and the GPU if torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "no GPU"
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return f"{cpu}, {cores} cores, {gpu}"


def command() -> str:
    """The command line of this run, relative to the repository where it can be."""
    argv = list(sys.argv)
    with contextlib.suppress(ValueError):  # a script outside the repository: as given
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
    return "python " + shlex.join(argv)


def write(path: Path | None, title: str, rows: list[Row], notes: list[str] | None = None
          ) -> None:
    """Write the run's rows to ``path`` (nothing where it is None)."""
    if path is None:
        return
    doc = {"title": title, "command": command(), "machine": machine(),
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "rows": [asdict(r) for r in rows], "notes": list(notes or [])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
