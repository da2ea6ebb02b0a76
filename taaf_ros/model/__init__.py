"""The TAAF multimodal spiking network (norse), its loss, checkpoints, energy and device helpers.

Functional core: no ROS import. docs/model.md has the formulation.
"""

from .checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    TrainingState,
    load_checkpoint,
    load_training_state,
    make_model_card,
    remove_orphans,
    save_checkpoint,
    save_training_state,
)
from .config import MODALITIES, ModelConfig
from .device import inference_context, prepare_model, resolve_dtype, select_device
from .energy import EnergyReport, measure_energy
from .loss import METHODS, BalancedFusionLoss, LossConfig, build_method
from .taaf import TAAFNet, TAAFOutput

__all__ = [
    "MODALITIES",
    "METHODS",
    "BalancedFusionLoss",
    "CheckpointError",
    "EnergyReport",
    "LoadedCheckpoint",
    "LossConfig",
    "ModelConfig",
    "TAAFNet",
    "TAAFOutput",
    "TrainingState",
    "build_method",
    "inference_context",
    "load_checkpoint",
    "load_training_state",
    "make_model_card",
    "measure_energy",
    "prepare_model",
    "remove_orphans",
    "resolve_dtype",
    "save_checkpoint",
    "save_training_state",
    "select_device",
]
