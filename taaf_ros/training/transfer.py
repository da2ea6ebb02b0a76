"""Starting a run from a trained checkpoint (``--init-from``): few recordings of one's own go
much further on encoders that already learned events and speech.

Every weight whose name and shape the new model shares is copied; the readouts (the fused
and the per-modality ones, and the late-fusion weights) are copied only where the classes are
the same, in the same order, and are otherwise left as initialised for the new classes. The
front end must be the checkpoint's: encoders trained on other tensors would start from
features that mean something else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import torch

from taaf_ros.frontend import FrontEndConfig
from taaf_ros.model import CheckpointError, TAAFNet, load_checkpoint

Freeze = Literal["none", "encoders", "all-but-readouts"]
READOUT_PREFIXES = ("head.read", "readout_weights")


def _is_readout(name: str) -> bool:
    return name.startswith(READOUT_PREFIXES)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def init_from_checkpoint(model: TAAFNet, path: str | Path, frontend: FrontEndConfig,
                         classes: list[str], freeze: Freeze = "none") -> dict[str, Any]:
    """Copy the checkpoint's weights into ``model`` (see the module's text) and freeze what
    ``freeze`` names; returns the provenance recorded in the model card.

    Raises CheckpointError for an unreadable checkpoint, another front end, or a network
    whose layers (beyond the readouts) differ from the new model's.
    """
    path = Path(path)
    loaded = load_checkpoint(path)
    card = loaded.card
    if card.get("frontend") != frontend.to_dict():
        raise CheckpointError(f"{path}: trained with another front end ({card.get('frontend')}) "
                              f"than this run's ({frontend.to_dict()}); give the same "
                              "--frontend.* settings or rebuild the dataset with --model "
                              f"{path}")
    src, dst = loaded.model.state_dict(), model.state_dict()
    same_classes = list(card["classes"]) == list(classes)
    copied, rebuilt = 0, []
    mismatched = []
    for name, value in dst.items():
        have = src.get(name)
        if have is not None and have.shape == value.shape and (same_classes
                                                              or not _is_readout(name)):
            dst[name] = have.to(value.dtype)
            copied += 1
        elif _is_readout(name):
            rebuilt.append(name)
        else:
            mismatched.append(name)
    if mismatched:
        raise CheckpointError(f"{path}: its network differs from this run's in "
                              f"{', '.join(mismatched[:4])}{' ...' if len(mismatched) > 4 else ''}"
                              f": train with its method ({card.get('method')}) and its model "
                              "settings (the card's model_config)")
    model.load_state_dict(dst)
    frozen = 0
    for name, p in model.named_parameters():
        if (freeze == "encoders" and name.startswith("encoders.")) or (
                freeze == "all-but-readouts" and not _is_readout(name)):
            p.requires_grad_(False)
            frozen += p.numel()
    return {"path": str(path), "sha256": _sha256(path), "classes": list(card["classes"]),
            "copied_tensors": copied, "rebuilt": sorted({n.rsplit(".", 1)[0] for n in rebuilt}),
            "freeze": freeze, "frozen_parameters": frozen}


def trainable(model: torch.nn.Module) -> int:
    """Parameters the optimiser updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
