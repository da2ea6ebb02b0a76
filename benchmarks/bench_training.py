"""Benchmark training as a user runs it: ``train_ead.py`` itself, epoch times from its own
metrics.json, the fused LIF kernels against the torch-loop LIF, and the feature cache.

    python benchmarks/bench_training.py                    # AV-digits, 2 epochs each, ~4 min

Three runs of ``train_ead.py --epochs N`` on the same data, one after another, each in a run
folder of its own and all with one fresh ``--cache-dir`` (so the first run builds the front-end
tensors and the others must find them there):

1. the package as it trains by default (fused LIF kernels);
2. the same with ``--lif-impl loop`` (torch ops step by step: the reference the kernels are
   tested against), in another ``--out-dir``;
3. the default again in a third folder: its epochs against run 1's say how much the machine
   drifted, and its front-end time against run 1's is the cache being shared.

Reported from each run's metrics.json: ``history[].epoch_time_s`` (training only, evaluation
excluded) and ``frontend_time_s``; the runs' losses are printed so that equal work is seen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import record

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def train(data: Path, out: Path, cache: Path, epochs: int, threads: int, *extra: str
          ) -> dict:
    cmd = [sys.executable, str(REPO / "train_ead.py"), "--data-root", str(data), "--out-dir",
           str(out), "--cache-dir", str(cache), "--epochs", str(epochs), "--no-progress",
           "--num-threads", str(threads), *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get(
        "TAAF_DATA_ROOT", SHARED_DATA)), help="EAD-layout set, or FSDD + MNIST sources "
        "(AV-digits is built from them once, in the default cache)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each run")
    record.add_argument(ap)
    args = ap.parse_args()
    from taaf_ros.data.avdigits import ensure_ead_dataset

    data = ensure_ead_dataset(args.data_root)  # built once, outside the timed runs
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        runs = {name: train(data, t / name.replace(" ", "-"), t / "cache", args.epochs,
                            args.threads, *extra)
                for name, extra in (("fused", ()), ("loop", ("--lif-impl", "loop")),
                                    ("fused again", ()))}
    epochs = {k: [h["epoch_time_s"] for h in m["history"]] for k, m in runs.items()}
    loss = {k: [round(h["train_loss"], 4) for h in m["history"]] for k, m in runs.items()}
    fe = {k: m["frontend_time_s"] for k, m in runs.items()}
    n = runs["fused"]["dataset"]["n_train"]
    for k in runs:
        print(f"{k:12s} epochs {', '.join(f'{e:.2f}' for e in epochs[k])} s; train loss "
              f"{loss[k]}; front end {fe[k]:.1f} s")
    best = {k: min(v) for k, v in epochs.items()}
    fused, loop = min(best["fused"], best["fused again"]), best["loop"]
    print(f"fastest epoch: fused {fused:.2f} s, loop {loop:.2f} s ({loop / fused:.2f}x); front "
          f"end built {fe['fused']:.1f} s, read from the cache by the later runs "
          f"{fe['loop']:.1f} / {fe['fused again']:.1f} s")
    R = record.Row
    record.write(args.record, f"Training with train_ead.py ({n:,} training samples, batch "
                 f"{runs['fused']['config']['batch_size']}, {args.threads} threads)", [
        R("training epoch, fused LIF kernels (the default), fastest of the two default runs",
          f"{fused:.2f} s", f"--lif-impl loop (torch ops step by step): {loop:.2f} s",
          loop / fused, headline=True),
        R("front end of a second run with another --out-dir (the feature cache)",
          f"{fe['fused again']:.1f} s", f"the first run, which built it: {fe['fused']:.1f} s",
          fe["fused"] / max(fe["fused again"], 1e-3)),
    ], [f"epoch times (s): {json.dumps(epochs)}", f"train loss per epoch: {json.dumps(loss)}",
        "the two default runs train the same weights (deterministic); the loop run's float "
        "rounding differs"])


if __name__ == "__main__":
    main()
