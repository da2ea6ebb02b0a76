"""Offline training of the TAAF network on EAD-layout data (``train_ead.py``, ``taaf_train``).

One job per module: ``config`` (every default, YAML + CLI overrides), ``data`` (dataset
resolution, the shared front end run once, batching), ``loop`` (train / evaluate / resume),
``report`` (metrics JSON, markdown table, plots, results comparison), ``cli`` (entry point).
"""

from .config import TrainConfig, apply_overrides, build_config

__all__ = ["TrainConfig", "apply_overrides", "build_config"]
