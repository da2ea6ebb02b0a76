"""``taaf_train`` / ``python train_ead.py``: train, resume, evaluate, or compare runs.

Usage::

    python train_ead.py --data-root DIR [--config FILE] [--key value ...]
                        (nested keys: --optim.lr 0.001; booleans: --flag / --no-flag;
                         tuples: --augment.noise-snr -10 20)
    torchrun --standalone --nproc_per_node N train_ead.py --data-root DIR ...
    python train_ead.py --resume --out-dir runs/taaf-balanced --data-root DIR
    python train_ead.py --eval-only --checkpoint runs/taaf-balanced/model.pt --data-root DIR
    python train_ead.py --compare RUN_DIR [RUN_DIR ...] [--output docs/results.md]
"""

from __future__ import annotations

import errno
import shlex
import sys
from pathlib import Path

from taaf_ros.training.config import build_config, print_help

USAGE = __doc__.split("Usage::", 1)[1].rstrip()


def _command_line(argv: list[str]) -> str:
    """The exact command, for the model card and results table."""
    return shlex.join(["python", "train_ead.py", *argv])


def _compare(argv: list[str]) -> int:
    from taaf_ros.training.report import compare

    output = None
    dirs: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--output":
            output = next(it, None)
        elif a.startswith("--output="):
            output = a.split("=", 1)[1]
        else:
            dirs.append(a)
    if not dirs:
        raise SystemExit("error: --compare needs at least one run folder")
    text = compare(dirs, _command_line(["--compare", *argv]))
    if output:
        Path(output).write_text(text)
        print(f"wrote {output}")
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (130 after Ctrl-C)."""
    from taaf_ros.model import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(f"usage:{USAGE}\n\n  --config FILE  YAML of overrides (nested like the keys "
              "below). Default: config/train_ead.yaml in the repository\n")
        print_help()
        return 0
    if argv and argv[0] == "--compare":
        return _compare(argv[1:])
    try:
        cfg = build_config(argv)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    from taaf_ros.training.loop import evaluate_checkpoint, train

    command = _command_line(argv)
    try:
        metrics = evaluate_checkpoint(cfg, command) if cfg.eval_only else train(cfg, command)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from e
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    except OSError as e:
        if e.errno == errno.ENOSPC:
            where = e.filename or "a cache or report"
            raise SystemExit(f"error: no space left on the device ({where}); free some space "
                             "and rerun with --resume") from e
        raise
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is in last.pt; continue with --resume",
              file=sys.stderr)
        return 130
    if "rank" in metrics:  # a torchrun worker other than rank 0: rank 0 reports
        return 0
    if "test_acc" in metrics:
        per = metrics["test_acc_per_modality"]
        print(f"fused test acc {metrics['test_acc']:.4f}  per modality "
              + ", ".join(f"{m} {a:.4f}" for m, a in per.items() if a is not None)
              + (f"  (epoch {metrics['selected_epoch']}, chosen by "
                 f"{metrics['selected_by']})" if "selected_by" in metrics else ""))
    else:
        print(f"stopped after epoch {metrics['stopped_after_epoch']}; continue with --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
