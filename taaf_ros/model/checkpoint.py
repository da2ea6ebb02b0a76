"""Self-describing checkpoints: weights + a model card, written atomically, loaded safely.

File layout (a dict readable by ``torch.load(weights_only=True)``)::

    {"format": "taaf_ros.checkpoint", "format_version": 1,
     "model_card": {...plain types...}, "state_dict": {...tensors...},
     # training checkpoints only:
     "optimizer": {...}, "epoch": int, "extra": {...}}

The model card holds everything a consumer needs to rebuild the model and feed it
(classes, T, window length, input sizes, audio rate, front-end settings, method, metrics,
training command, model config), so the ROS node needs no other configuration.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .card import CardError, check_card
from .config import ModelConfig
from .taaf import TAAFNet

FORMAT = "taaf_ros.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, unsafe, or does not match what is expected."""


class LoadedCheckpoint(NamedTuple):
    model: TAAFNet  # rebuilt from the card, weights loaded, in eval mode
    card: dict[str, Any]


def make_model_card(
    model: TAAFNet,
    *,
    classes: list[str],
    window_s: float,
    audio_rate: int,
    frontend: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    command: str = "",
    method: str = "taaf-balanced",
) -> dict[str, Any]:
    """The card stored beside the weights. ``frontend`` is the caller's plain settings dict."""
    cfg = model.cfg
    if len(classes) != cfg.n_classes:
        raise ValueError(f"{len(classes)} class names for a {cfg.n_classes}-class model")
    return {
        "format_version": FORMAT_VERSION,
        "classes": [str(c) for c in classes],
        "T": cfg.T,
        "window_s": float(window_s),
        "event_shape": list(cfg.event_shape),
        "audio_channels": cfg.audio_channels,
        "audio_rate": int(audio_rate),
        "modalities": list(cfg.modalities),
        "frontend": dict(frontend or {}),
        "metrics": dict(metrics or {}),
        "command": str(command),
        "method": str(method),
        "model_config": cfg.to_dict(),
        "n_params": model.n_params(),
    }


def _atomic_save(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """torch.save to a temporary file in the same folder, then os.replace (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError | RuntimeError) and _disk_full(path.parent, exc):
            raise CheckpointError(
                f"no space left on the device of {path.parent} while writing {path.name} "
                f"({shutil.disk_usage(path.parent).free:,} bytes free); the file as it was "
                "before is intact: free some space and run again (training: --resume)") from exc
        raise
    return path


def _disk_full(folder: Path, exc: BaseException) -> bool:
    """Whether a failed write ran out of space (torch's zip writer says only "unexpected
    pos", so the free space is asked as well)."""
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(folder).free < 16 * 1024 * 1024
    except OSError:
        return False


def remove_orphans(path: str | os.PathLike[str]) -> int:
    """Remove the temporary files that killed writes of ``path`` left behind (only the
    process that writes ``path`` may call this); returns how many."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp"))
    for f in stale:
        f.unlink(missing_ok=True)
    return len(stale)


def _payload(model: TAAFNet, card: dict[str, Any]) -> dict[str, Any]:
    """What every checkpoint holds: format tag, model card and CPU weights."""
    if getattr(model, "norms_folded", False):
        raise ValueError("refusing to save a network with folded norms (an inference copy): "
                         "save the network it was folded from")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_card": card,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_checkpoint(path: str | os.PathLike[str], model: TAAFNet, card: dict[str, Any]) -> Path:
    """Write weights + card (from :func:`make_model_card`) atomically; returns the path."""
    return _atomic_save(_payload(model, card), path)


def rewrite_card(path: str | os.PathLike[str], **fields: Any) -> Path:
    """Set ``fields`` in a checkpoint's model card, its weights unchanged (atomically)."""
    obj = _read(path, "cpu")
    card = {**obj["model_card"], **fields}
    try:
        check_card(card)
    except CardError as e:
        raise CheckpointError(f"{path}: the card would be invalid: {e}") from e
    return _atomic_save({**obj, "model_card": card}, path)


def _is_torch_file(path: Path) -> bool:
    """A zip archive (torch.save's format) or a pickle (its legacy format, protocol >= 2)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _read(path: str | os.PathLike[str], map_location: Any) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not _is_torch_file(path):
            raise CheckpointError(
                f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle); "
                "give the model.pt that train_ead.py or taaf_train wrote"
            ) from e
        # torch's own text goes on to advise weights_only=False or allow-listing the object,
        # either of which would run the file's code: keep only what it refused.
        reason = str(e).split("WeightsUnpickler error:")[-1].strip().split(". Please")[0]
        reason = reason.split("\n")[0]
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data, and "
            f"loading them could run code ({reason}); only load checkpoints written "
            "by taaf_ros, from a source you trust"
        ) from e
    except Exception as e:  # truncated / corrupt bytes, not a torch file
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint: {e}") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a taaf_ros checkpoint (format tag missing)")
    if obj.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {obj.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    for key, typ in (("model_card", dict), ("state_dict", dict)):
        if not isinstance(obj.get(key), typ):
            raise CheckpointError(f"{path}: missing or malformed {key!r}")
    try:
        check_card(obj["model_card"])
    except CardError as e:
        raise CheckpointError(f"{path}: invalid model card: {e}") from e
    return obj


def _check_expected(card: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """Each expected key is looked up in the card, then in its model_config."""
    cfg = card.get("model_config", {})
    for key, want in expected.items():
        if key in card:
            have = card[key]
        elif key in cfg:
            have = cfg[key]
        else:
            raise CheckpointError(f"{path}: model card has no {key!r} (expected {want!r})")
        norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        if norm(have) != norm(want):
            raise CheckpointError(f"{path}: {key} is {have!r}, expected {want!r}")


def _rebuild(obj: dict[str, Any], path: Path) -> TAAFNet:
    card = obj["model_card"]
    try:
        cfg = ModelConfig.from_dict(card["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model_config in the card: {e}") from e
    model = TAAFNet(cfg)
    want = model.state_dict()
    have = obj["state_dict"]
    # checkpoints from before late fusion have no readout weights: the head alone
    have = {"readout_weights": want["readout_weights"], **have}
    missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing keys {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in want.items():
        if not isinstance(have[k], torch.Tensor) or have[k].shape != v.shape:
            shape = getattr(have[k], "shape", type(have[k]).__name__)
            raise CheckpointError(f"{path}: {k} has shape {shape}, expected {tuple(v.shape)}")
    bad = [k for k, v in have.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: weights are not finite (NaN or inf) in {bad[:5]}: the "
                              "file is corrupt or training diverged")
    model.load_state_dict(have)
    return model


def load_checkpoint(
    path: str | os.PathLike[str],
    expected: dict[str, Any] | None = None,
    map_location: Any = "cpu",
) -> LoadedCheckpoint:
    """Load and validate a checkpoint; rebuild the model from its card.

    expected: card (or model_config) entries that must match, e.g. ``{"T": 8, "classes": [...]}``.
    Raises CheckpointError on a missing file, corrupt bytes, a wrong format, a pickle with
    non-tensor objects (refused by ``weights_only=True``), a card mismatch, or missing / extra
    keys and wrong shapes.
    """
    obj = _read(path, map_location)
    if expected:
        _check_expected(obj["model_card"], expected, Path(path))
    model = _rebuild(obj, Path(path))
    return LoadedCheckpoint(model=model.eval(), card=obj["model_card"])


def save_training_state(
    path: str | os.PathLike[str],
    model: TAAFNet,
    card: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Checkpoint for resuming: weights + card + optimizer state + epoch (+ plain extras)."""
    payload = _payload(model, card)
    payload.update(optimizer=optimizer.state_dict(), epoch=int(epoch), extra=dict(extra or {}))
    return _atomic_save(payload, path)


class TrainingState(NamedTuple):
    model: TAAFNet  # in train mode
    card: dict[str, Any]
    epoch: int  # the last finished epoch
    optimizer_state: dict[str, Any]  # for optimizer.load_state_dict when you build it later
    extra: dict[str, Any]


def load_training_state(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: Any = "cpu",
) -> TrainingState:
    """Resume training: restore weights, optimizer state and epoch.

    model: fill this model in place (same config); None rebuilds one from the card.
    optimizer: an optimizer over ``model``'s parameters to restore in place; with
    ``model=None``, build the optimizer over the returned model and call
    ``optimizer.load_state_dict(state.optimizer_state)`` yourself.
    """
    obj = _read(path, map_location)
    if not isinstance(obj.get("optimizer"), dict) or not isinstance(obj.get("epoch"), int):
        raise CheckpointError(f"{path}: no training state (optimizer/epoch) in this checkpoint")
    rebuilt = _rebuild(obj, Path(path))
    if model is not None:
        try:
            model.load_state_dict(rebuilt.state_dict())
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not fit the given model: {e}") from e
        rebuilt = model  # type: ignore[assignment]
    if optimizer is not None:
        try:
            optimizer.load_state_dict(obj["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: optimizer state does not match: {e}") from e
    return TrainingState(
        rebuilt.train(), obj["model_card"], obj["epoch"], obj["optimizer"], obj.get("extra", {})
    )
