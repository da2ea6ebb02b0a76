"""--init-from: what is copied from a checkpoint, what is rebuilt, what is frozen."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from taaf_ros.model import CheckpointError, load_checkpoint
from taaf_ros.model.bundled import find_bundled_model
from taaf_ros.training.config import TrainConfig, with_method
from taaf_ros.training.loop import build_model
from taaf_ros.training.transfer import init_from_checkpoint, trainable

BUNDLED = find_bundled_model()
DIGITS = [str(d) for d in range(10)]


def _model(method: str = "taaf-balanced", n_classes: int = 3, **frontend):
    cfg = with_method(TrainConfig(), method)
    cfg = dataclasses.replace(cfg, frontend=dataclasses.replace(cfg.frontend, **frontend))
    return build_model(cfg, n_classes)[0], cfg.frontend


def test_new_classes_keep_the_encoders_and_rebuild_the_readouts():
    model, fe = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = init_from_checkpoint(model, BUNDLED, fe, ["door", "knock", "bell"], "encoders")
    src = load_checkpoint(BUNDLED).model.state_dict()
    after = model.state_dict()
    enc = [k for k in after if k.startswith("encoders.")]
    assert enc and all(torch.equal(after[k], src[k]) for k in enc)
    assert torch.equal(after["head.proj_m.0.weight"], src["head.proj_m.0.weight"])
    assert torch.equal(after["head.read.weight"], before["head.read.weight"])  # 3 classes now
    assert info["rebuilt"] == ["head.read", "head.read_m.0", "head.read_m.1", "readout_weights"]
    assert info["classes"] == DIGITS and len(info["sha256"]) == 64
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("encoders.") for n in frozen)
    assert trainable(model) + info["frozen_parameters"] == sum(
        p.numel() for p in model.parameters())


def test_the_same_classes_keep_the_readouts_and_all_but_readouts_freezes_the_head():
    model, fe = _model(n_classes=10)
    init_from_checkpoint(model, BUNDLED, fe, DIGITS, "all-but-readouts")
    src = load_checkpoint(BUNDLED).model.state_dict()
    assert all(torch.equal(v, src[k]) for k, v in model.state_dict().items())
    train = {n for n, p in model.named_parameters() if p.requires_grad}
    assert train and all(n.startswith(("head.read", "readout_weights")) for n in train)


def test_another_front_end_or_network_is_refused_with_the_fix():
    model, fe = _model(window_s=0.5)
    with pytest.raises(CheckpointError, match="another front end"):
        init_from_checkpoint(model, BUNDLED, fe, DIGITS)
    model, fe = _model("concat")
    with pytest.raises(CheckpointError, match="train with its method \\(taaf-balanced\\)"):
        init_from_checkpoint(model, BUNDLED, fe, DIGITS)
