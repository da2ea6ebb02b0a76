"""What a training run has done so far, as one object saved whole after every epoch (beside
the weights and the optimiser in ``last.pt``) and restored whole by ``--resume``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from taaf_ros.model import CheckpointError

from .config import TrainConfig, flatten

#: Config keys that may differ between a run and its resumption (they do not change results).
RESUME_FREE_KEYS = {"resume", "progress", "num_threads", "device", "out_dir", "data_root",
                    "cache_dir", "checkpoint", "eval_every", "eval_batch_size", "stop_after",
                    "feature_cache", "log_every", "compile", "rule_samples"}
#: Config keys renamed since a run may have been saved: old name -> new (resume maps them).
RENAMED_KEYS = {"augment.repair": "augment.swap_audio"}


@dataclass
class RunState:
    """epoch: finished epochs. history: one row per epoch. best: validation's pick (epoch,
    val_acc, state: the weights as CPU tensors). held_out_contributions: (T, M) contributions
    measured on the validation speaker (``loss.balance_on == "validation"``)."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    best: dict[str, Any] = field(default_factory=dict)
    held_out_contributions: list[list[float]] | None = None

    def to_extra(self, cfg: TrainConfig, scheduler: Any) -> dict[str, Any]:
        """The ``extra`` of ``save_training_state``: this state, the scheduler, the torch RNG
        and the config the run was started with."""
        return {"scheduler": scheduler.state_dict(), "rng_state": torch.get_rng_state(),
                "history": self.history, "train_time_s": self.train_time_s, "best": self.best,
                "train_config": cfg.to_dict(),
                "held_out_contributions": self.held_out_contributions}

    @classmethod
    def from_extra(cls, extra: dict[str, Any], epoch: int, cfg: TrainConfig, scheduler: Any,
                   path: Path) -> RunState:
        """Restore a saved state (and the scheduler and the torch RNG with it); a config that
        changes results, or a state that lacks a field, is a CheckpointError."""
        check_resume_config(extra.get("train_config", {}), cfg, path)
        try:
            scheduler.load_state_dict(extra["scheduler"])
            torch.set_rng_state(extra["rng_state"])
            held_out = extra.get("held_out_contributions", extra.get("held_out_s"))  # older
            return cls(epoch=epoch, history=list(extra["history"]),
                       train_time_s=float(extra["train_time_s"]),
                       best=dict(extra.get("best") or {}), held_out_contributions=held_out)
        except (KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: incomplete training state: {e}") from e


def check_resume_config(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = flatten(cfg.to_dict())
    # A key added since the run was saved has its default: what the run did before it existed.
    saved = flatten(TrainConfig().to_dict()) | {
        RENAMED_KEYS.get(k, k): v for k, v in flatten(saved).items()}
    diff = {k: (saved.get(k), v) for k, v in now.items()
            if k not in RESUME_FREE_KEYS and saved.get(k) != v}
    if diff:
        raise CheckpointError(
            f"{path}: cannot resume with different settings (saved, now): {diff}")
