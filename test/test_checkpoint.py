"""Checkpoint round trip, resume, and refusal of bad files with CheckpointError."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taaf_ros.model import (
    CheckpointError,
    ModelConfig,
    TAAFNet,
    load_checkpoint,
    load_training_state,
    make_model_card,
    save_checkpoint,
    save_training_state,
)

CFG = ModelConfig(
    event_shape=(2, 10, 10),
    audio_channels=8,
    event_widths=(4,),
    audio_widths=(4,),
    hidden=16,
    n_classes=3,
    T=4,
    input_scale=3.0,
)
CLASSES = ["zero", "one", "two"]


def card_for(net: TAAFNet) -> dict:
    return make_model_card(
        net,
        classes=CLASSES,
        window_s=0.3,
        audio_rate=16000,
        frontend={"n_mels": 8, "delta": 0.1},
        metrics={"acc": 0.5},
        command="python train_ead.py --epochs 1",
        method="taaf",
    )


def inputs(B: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randint(0, 3, (4, B, 2, 10, 10), generator=g).to(torch.int16),
        torch.randint(0, 2, (4, B, 2, 8), generator=g).to(torch.int16),
    )


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, TAAFNet]:
    torch.manual_seed(0)
    net = TAAFNet(CFG)
    net(*inputs(8))  # train-mode pass: BatchNorm statistics differ from init
    net.eval()
    path = save_checkpoint(tmp_path / "m.pt", net, card_for(net))
    return path, net


def test_round_trip_gives_same_outputs(saved: tuple[Path, TAAFNet]) -> None:
    path, net = saved
    loaded = load_checkpoint(path, expected={"T": 4, "classes": CLASSES, "hidden": 16})
    assert loaded.card["frontend"] == {"n_mels": 8, "delta": 0.1}
    assert loaded.card["window_s"] == 0.3 and loaded.card["method"] == "taaf"
    assert loaded.model.cfg == CFG and not loaded.model.training
    with torch.no_grad():
        a, b = net(*inputs()), loaded.model(*inputs())
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temporary


def test_default_checkpoint_is_under_3_mb(tmp_path: Path) -> None:
    net = TAAFNet(ModelConfig())
    card = make_model_card(net, classes=[str(i) for i in range(10)], window_s=0.3, audio_rate=16000)
    assert save_checkpoint(tmp_path / "d.pt", net, card).stat().st_size < 3e6


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_bytes(saved: tuple[Path, TAAFNet]) -> None:
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would call print(...): weights_only must refuse it."""

    def __reduce__(self) -> tuple:
        return (print, ("payload executed",))


def test_malicious_pickle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "format": "taaf_ros.checkpoint",
            "format_version": 1,
            "model_card": {},
            "state_dict": {},
            "x": _Payload(),
        },
        path,
    )
    with pytest.raises(CheckpointError, match="refused") as refused:
        load_checkpoint(path)
    assert "payload executed" not in capsys.readouterr().out
    assert "GLOBAL print" in str(refused.value)  # names the object it refused
    assert "weights_only=False" not in str(refused.value)  # and never advises running it
    assert "safe_globals" not in str(refused.value)


def test_wrong_format(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)
    torch.save({"format": "taaf_ros.checkpoint", "format_version": 99}, path)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(path)


def test_card_mismatch(saved: tuple[Path, TAAFNet]) -> None:
    path, _ = saved
    with pytest.raises(CheckpointError, match="T is 4"):
        load_checkpoint(path, expected={"T": 8})
    with pytest.raises(CheckpointError, match="no 'sensor'"):
        load_checkpoint(path, expected={"sensor": "davis"})


def _tamper(path: Path, fn) -> None:  # noqa: ANN001
    obj = torch.load(path, weights_only=True)
    fn(obj)
    torch.save(obj, path)


def test_missing_key_and_wrong_shape(saved: tuple[Path, TAAFNet]) -> None:
    path, _ = saved
    _tamper(path, lambda o: o["state_dict"].pop("head.read.weight"))
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(path)
    _tamper(path, lambda o: o["state_dict"].update({"head.read.weight": torch.zeros(5, 16)}))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path)


def test_card_config_disagrees_with_weights(saved: tuple[Path, TAAFNet]) -> None:
    path, _ = saved
    _tamper(path, lambda o: o["model_card"]["model_config"].update({"hidden": 32}))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path)
    _tamper(path, lambda o: o["model_card"]["model_config"].update({"fusion": "magic"}))
    with pytest.raises(CheckpointError, match="model_config"):
        load_checkpoint(path)


def test_training_state_resume(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TAAFNet(CFG)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(*inputs()).logits.sum().backward()
    opt.step()
    path = save_training_state(
        tmp_path / "s.pt", net, card_for(net), opt, epoch=3, extra={"best_acc": 0.7}
    )
    state = load_training_state(path)
    assert state.epoch == 3 and state.extra == {"best_acc": 0.7} and state.model.training
    opt2 = torch.optim.Adam(state.model.parameters(), lr=1e-3)
    opt2.load_state_dict(state.optimizer_state)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    for i in s1:
        torch.testing.assert_close(s1[i]["exp_avg"], s2[i]["exp_avg"])
    net3 = TAAFNet(CFG)
    opt3 = torch.optim.Adam(net3.parameters(), lr=1e-3)
    load_training_state(path, model=net3, optimizer=opt3)
    torch.testing.assert_close(net3.head.read.weight, net.head.read.weight)
    assert opt3.state_dict()["state"]
    # a weights-only checkpoint is not a training state
    save_checkpoint(tmp_path / "w.pt", net, card_for(net))
    with pytest.raises(CheckpointError, match="training state"):
        load_training_state(tmp_path / "w.pt")


# ----------------------------------------------------------------------------- hostile cards
BUNDLED = Path(__file__).resolve().parent.parent / "models" / "taaf_avdigits.pt"


def _tampered(tmp_path: Path, name: str, change) -> Path:
    """The bundled checkpoint with one change made to its raw dict, saved as torch saves."""
    obj = torch.load(BUNDLED, map_location="cpu", weights_only=True)
    change(obj)
    path = tmp_path / f"{name}.pt"
    torch.save(obj, path)
    return path


def _shared_nest(obj) -> None:
    nest: list = ["a"]
    for _ in range(60):  # 2**60 names once expanded: small on disk, endless when printed
        nest = [nest, nest]
    obj["model_card"]["classes"] = nest


def _nan_weights(obj) -> None:
    k = next(iter(obj["state_dict"]))
    obj["state_dict"][k] = torch.full_like(obj["state_dict"][k], float("nan"))


HOSTILE_CARDS = {
    "shared_nested_classes": (_shared_nest, r"classes\[0\] must be a name of 1-256 characters"),
    "three_classes_for_ten": (lambda o: o["model_card"].update(classes=["a", "b", "c"]),
                              "3 class names for a head of 10 classes"),
    "nan_weights": (_nan_weights, "weights are not finite"),
    "window_of_a_million_s": (lambda o: o["model_card"].update(window_s=1e6),
                              r"window_s = 1e\+06 is outside"),
    "frontend_window": (lambda o: o["model_card"]["frontend"].update(window_s=1e6),
                        r"frontend.window_s = 1e\+06 is outside"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CARDS))
def test_hostile_model_cards_are_refused_with_a_reason(tmp_path, name):
    change, reason = HOSTILE_CARDS[name]
    path = _tampered(tmp_path, name, change)
    with pytest.raises(CheckpointError, match=reason):
        load_checkpoint(path)


def test_the_node_exits_2_naming_the_card_fault(tmp_path):
    pytest.importorskip("rclpy")
    import os
    import subprocess
    import sys

    path = _tampered(tmp_path, "nest", _shared_nest)
    r = subprocess.run([sys.executable, "-m", "taaf_ros.nodes.perception_node", "--ros-args",
                        "-p", f"model_path:={path}", "-p", "device:=cpu"],
                       capture_output=True, text=True, timeout=120,
                       env=os.environ | {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cannot load the model" in r.stderr and "invalid model card" in r.stderr
