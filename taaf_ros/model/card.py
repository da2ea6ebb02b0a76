"""Validation of a checkpoint's model card before anything is built from it.

``torch.load(weights_only=True)`` only guarantees plain types: a card can still hold a class
list of shared references that explodes when printed, three class names for a ten-class head,
or a window of a million seconds that sizes every buffer. Each field the package reads is
checked here for type and range, element by element with ``isinstance`` (never ``repr`` of an
unknown object), so such a card is a :class:`~taaf_ros.model.checkpoint.CheckpointError` with
a reason instead of a hang, a crash or a wrong label.
"""

from __future__ import annotations

import math
from typing import Any

from .config import MODALITIES

MAX_CLASSES = 10_000
MAX_CLASS_NAME = 256
MAX_WINDOW_S = 60.0
MAX_SIZE = 4096
"""Largest T, hidden width, conv width, channel count or input side in a card."""
RATES = (1_000, 384_000)

_FRONTEND_LIMITS = {"window_s": (1e-3, MAX_WINDOW_S), "n_time_bins": (1, MAX_SIZE),
                    "max_count": (1, 65_535)}
_COCHLEA_LIMITS = {"sample_rate": RATES, "n_channels": (1, MAX_SIZE),
                   "max_events_per_step": (1, MAX_SIZE)}


class CardError(ValueError):
    """A model card field of the wrong type or outside its range."""


def _kind(v: Any) -> str:
    return type(v).__name__


def _number(d: dict[str, Any], key: str, lo: float, hi: float, where: str,
            integer: bool = False) -> None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and
                                                                 not isinstance(v, int)):
        raise CardError(f"{where}{key} must be {'an integer' if integer else 'a number'}, "
                        f"got {_kind(v)}")
    if not (math.isfinite(v) and lo <= v <= hi):
        raise CardError(f"{where}{key} = {v:g} is outside [{lo:g}, {hi:g}]")


def _int_list(d: dict[str, Any], key: str, length: tuple[int, int], where: str) -> None:
    v = d.get(key)
    if not isinstance(v, list | tuple) or not length[0] <= len(v) <= length[1]:
        raise CardError(f"{where}{key} must be a list of {length[0]}-{length[1]} integers")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_SIZE:
            raise CardError(f"{where}{key}[{i}] must be an integer in [1, {MAX_SIZE}]")


def check_classes(classes: Any, n_classes: Any) -> None:
    """A short list of short strings, as many as the head has outputs."""
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
        raise CardError(f"classes must be a list of 2-{MAX_CLASSES} names, got "
                        f"{_kind(classes)}" + (f" of {len(classes)}"
                                               if isinstance(classes, list) else ""))
    for i, c in enumerate(classes):
        if not isinstance(c, str) or not 0 < len(c) <= MAX_CLASS_NAME:
            raise CardError(f"classes[{i}] must be a name of 1-{MAX_CLASS_NAME} characters, "
                            f"got {_kind(c)}")
    if n_classes != len(classes):
        raise CardError(f"{len(classes)} class names for a head of {n_classes} classes")


def check_card(card: dict[str, Any]) -> None:
    """Raise :class:`CardError` for the first field of ``card`` that the package cannot use.

    >>> check_card({"classes": ["a", "b"], "window_s": 1e6, "audio_rate": 8000,
    ...             "model_config": {"n_classes": 2}})
    Traceback (most recent call last):
    ...
    taaf_ros.model.card.CardError: window_s = 1e+06 is outside [0.001, 60]
    """
    cfg = card.get("model_config")
    if not isinstance(cfg, dict):
        raise CardError(f"model_config must be a dict, got {_kind(cfg)}")
    _number(cfg, "n_classes", 2, MAX_CLASSES, "model_config.", integer=True)
    check_classes(card.get("classes"), cfg["n_classes"])
    _number(card, "window_s", 1e-3, MAX_WINDOW_S, "")
    _number(card, "audio_rate", *RATES, "", integer=True)
    for key in ("T", "hidden", "audio_channels"):
        if key in cfg:
            _number(cfg, key, 1, MAX_SIZE, "model_config.", integer=True)
    for key, length in (("event_shape", (3, 3)), ("event_widths", (1, 16)),
                        ("audio_widths", (1, 16))):
        if key in cfg:
            _int_list(cfg, key, length, "model_config.")
    mods = card.get("modalities", list(MODALITIES))
    if not isinstance(mods, list | tuple) or not all(isinstance(m, str) and m in MODALITIES
                                                     for m in mods):
        raise CardError(f"modalities must be a list of names from {MODALITIES}")
    fe = card.get("frontend", {})
    if not isinstance(fe, dict):
        raise CardError(f"frontend must be a dict, got {_kind(fe)}")
    for key, (lo, hi) in _FRONTEND_LIMITS.items():
        if key in fe:
            _number(fe, key, lo, hi, "frontend.", integer=key != "window_s")
    if "input_size" in fe:
        _int_list(fe, "input_size", (2, 2), "frontend.")
    cochlea = fe.get("cochlea", {})
    if not isinstance(cochlea, dict):
        raise CardError(f"frontend.cochlea must be a dict, got {_kind(cochlea)}")
    for key, (lo, hi) in _COCHLEA_LIMITS.items():
        if key in cochlea:
            _number(cochlea, key, lo, hi, "frontend.cochlea.", integer=True)
    for key in cochlea:
        if not isinstance(key, str):
            raise CardError("frontend.cochlea has a key that is not a name")
        if key not in _COCHLEA_LIMITS:
            _number(cochlea, key, -1e6, 1e6, "frontend.cochlea.")
    rule = card.get("decision_rule", {})
    if not isinstance(rule, dict):
        raise CardError(f"decision_rule must be a dict, got {_kind(rule)}")
    if rule:
        _number(rule, "smoothing_windows", 1, 100, "decision_rule.", integer=True)
        _number(rule, "min_confidence", 0.0, 1.0, "decision_rule.")
