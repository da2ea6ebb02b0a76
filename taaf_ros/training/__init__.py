"""Offline training of the TAAF network on EAD-layout data (``train_ead.py``, ``taaf_train``).

One job per module: ``config`` (the composed config, YAML + CLI overrides), ``data`` (dataset
resolution, the shared front end run once, batching), ``augment`` (augmentation, corruptions
included), ``optim`` (optimiser, schedule, per-modality learning rates), ``loop`` (train /
evaluate / resume), ``distributed`` (torchrun), ``report`` (metrics JSON, markdown table,
plots, results comparison), ``loso`` (leave-one-speaker-out), ``robustness`` (corruption
protocol), ``cli`` (entry point).
"""

from .config import TrainConfig, build_config

__all__ = ["TrainConfig", "build_config"]
