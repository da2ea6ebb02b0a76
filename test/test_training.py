"""Offline training program: config overrides, a short real training, exact resume, eval-only.

The end-to-end tests build a small AV-digits subset from the real data (``data_root``
fixture) once per module and train a narrow network for a few epochs (CI-sized, ~1 min).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from taaf_ros.apps import train as cli
from taaf_ros.inference.rule_choice import CONFIDENCE_GRID, SMOOTHING_GRID, card_rule
from taaf_ros.model import METHODS
from taaf_ros.training.config import (
    DEFAULT_CONFIG_FILE,
    TrainConfig,
    build_config,
    flatten,
    leaf_keys,
    load_yaml,
)

# ---------------------------------------------------------------- config


def test_yaml_holds_only_overrides_the_code_knows() -> None:
    """config/train_ead.yaml holds overrides only: every key exists and differs from the
    code's default (a copy of a default could silently drift from it)."""
    data = flatten(load_yaml(DEFAULT_CONFIG_FILE))
    defaults = flatten(TrainConfig().to_dict())
    assert data, "an empty file needs no test"
    for key, value in data.items():
        assert key in defaults, f"{key} is not a config key"
        assert value != defaults[key], f"{key}: {value!r} is the code's default"
    assert build_config([]).augment.swap_audio == data["augment.swap_audio"]


def test_every_key_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    keys = leaf_keys()
    assert "optim.lr" in keys and "frontend.cochlea.threshold_db" in keys
    for key in keys:
        assert f"--{key.replace('_', '-')}" in text, key
    # every key has words of its own besides the default
    assert "(default: 30)" in text and "training epochs" in text
    assert "SNR range (dB)" in text and "level change that makes one event" in text


@pytest.mark.parametrize(
    ("argv", "key", "value"),
    [
        (["--epochs", "3"], "epochs", 3),
        (["--epochs=3"], "epochs", 3),
        (["--optim.lr", "1e-3"], "optim.lr", 1e-3),
        (["--optim.lr=2"], "optim.lr", 2.0),
        (["--no-progress"], "progress", False),
        (["--resume"], "resume", True),
        (["--resume", "--epochs", "2"], "resume", True),
        (["--no-feature-cache", "--epochs", "2"], "feature_cache", False),
        (["--optim.name", "sgd"], "optim.name", "sgd"),
        (["--val-speaker", ""], "val_speaker", ""),
        (["--model.event-widths", "8", "16"], "model.event_widths", (8, 16)),
        (["--augment.noise-snr", "-5", "10"], "augment.noise_snr", (-5.0, 10.0)),
        (["--frontend.cochlea.threshold-db", "3"], "frontend.cochlea.threshold_db", 3.0),
        (["--loss.balance-on", "validation"], "loss.balance_on", "validation"),
        (["--method", "concat"], "method", "concat"),
    ],
)
def test_cli_overrides_are_typed(argv: list[str], key: str, value: object) -> None:
    got = build_config(argv)
    for part in key.split("."):
        got = getattr(got, part)
    assert got == value and type(got) is type(value)


def test_method_preset_yaml_and_cli_layer_in_order(tmp_path: Path) -> None:
    """defaults < the method's preset < YAML < command line."""
    cfg = build_config(["--method", "concat"])
    assert cfg.model.fusion == "concat" and cfg.loss.aux_weight == 0.0 and not cfg.loss.balance
    assert build_config(["--method", "audio-only"]).model.modalities == ("audio",)
    (tmp_path / "c.yaml").write_text("method: concat\nloss:\n  aux_weight: 0.3\n"
                                     "progress: false\noptim:\n  lr: 0.01\n")
    cfg = build_config(["--config", str(tmp_path / "c.yaml")])
    assert (cfg.method, cfg.loss.aux_weight, cfg.progress, cfg.optim.lr) == (
        "concat", 0.3, False, 0.01)
    assert cfg.augment.swap_audio == 0.0  # another file: the repository's overrides do not apply
    cfg = build_config(["--config", str(tmp_path / "c.yaml"), "--loss.aux-weight", "0.1",
                        "--progress", "--method", "taaf"])
    assert (cfg.method, cfg.loss.aux_weight, cfg.progress, cfg.loss.balance) == (
        "taaf", 0.1, True, False)


@pytest.mark.parametrize(
    "argv",
    [["--epochs", "2.5"], ["--progress", "maybe"], ["--no-such-key", "1"],
     ["--optim.lr", "fast"], ["--model.event-widths", "8", "x"], ["--epochs"], ["stray"],
     ["--no-epochs"], ["--optim.name", "adam"], ["--method", "nope"],
     ["--method", "concat", "--model.fusion", "taaf"], ["--augment.noise-snr", "10", "-5"],
     ["--loss.balance-on", "validation", "--val-speaker", ""], ["--config"]],
)
def test_bad_overrides_are_errors(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        build_config(argv)


def test_yaml_types_checked(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("epochs: 'many'\n")
    with pytest.raises(ValueError, match="epochs"):
        build_config(["--config", str(tmp_path / "c.yaml")])
    (tmp_path / "d.yaml").write_text("optim:\n  lrr: 1\n")
    with pytest.raises(ValueError, match="lrr"):
        build_config([f"--config={tmp_path / 'd.yaml'}"])
    (tmp_path / "e.yaml").write_text("optim:\n  lr: 1\n")  # an int is a fine float
    assert build_config(["--config", str(tmp_path / "e.yaml")]).optim.lr == 1.0


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(  # 9**9 items once expanded
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize("text, reason", [
    (BOMB, "aliases"),
    ("epochs: -3\n", "epochs must be an integer >= 1"),
    ("epochs: 0\n", "epochs must be an integer >= 1"),
    ("batch_size: 0\n", "batch_size must be an integer >= 1"),
    ("limit_per_class: -1\n", "limit_per_class must be an integer >= 0"),
    ("epochs: [1\n", "not valid YAML"),
])
def test_hostile_or_wrong_configs_are_refused_at_once(tmp_path: Path, text: str,
                                                      reason: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason):
        build_config(["--config", str(path)])


def test_damaged_cache_is_rebuilt_and_orphans_removed(tmp_path: Path) -> None:
    import numpy as np

    from taaf_ros.training.data import read_cache, write_cache

    cache = tmp_path / "train-abc.npz"
    write_cache(cache, lambda f: np.savez(f, x=np.arange(1000)))
    cache.write_bytes(cache.read_bytes()[:100])  # truncated
    assert read_cache(cache, lambda f: np.load(f)["x"]) is None and not cache.exists()
    dead = tmp_path / "train-abc.npz.999999999.tmp.npz"  # a killed writer's (no such pid)
    dead.write_bytes(b"partial")
    write_cache(cache, lambda f: np.savez(f, x=np.arange(3)))
    assert not dead.exists()
    assert read_cache(cache, lambda f: np.load(f)["x"]).tolist() == [0, 1, 2]


def test_full_disk_is_named_and_orphaned_checkpoints_removed(tmp_path: Path) -> None:
    import subprocess

    from taaf_ros.model import (
        CheckpointError,
        ModelConfig,
        TAAFNet,
        make_model_card,
        remove_orphans,
        save_checkpoint,
    )

    model = TAAFNet(ModelConfig())
    card = make_model_card(model, classes=list("0123456789"), window_s=0.6, audio_rate=8000)
    (tmp_path / ".last.pt.k2j3.tmp").write_bytes(b"left by a killed write")
    assert remove_orphans(tmp_path / "last.pt") == 1
    small = tmp_path / "small"
    small.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                       capture_output=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")
    try:
        with pytest.raises(CheckpointError, match="no space left on the device"):
            save_checkpoint(small / "model.pt", model, card)
        assert not list(small.iterdir())  # no partial file left
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_cli_reports_errors_cleanly() -> None:
    with pytest.raises(SystemExit, match="epochz"):
        cli.main(["--epochz", "2"])


def test_model_fields_the_data_decide_are_checked() -> None:
    from taaf_ros.training.loop import model_config

    cfg = build_config(["--frontend.n-time-bins", "4"])
    assert model_config(cfg, 10).T == 4  # unset: follows the front end
    with pytest.raises(ValueError, match="model.T"):
        model_config(build_config(["--frontend.n-time-bins", "4", "--model.T", "6"]), 10)
    with pytest.raises(ValueError, match="n_classes"):
        model_config(build_config(["--model.n-classes", "3"]), 10)


# ---------------------------------------------------------------- end to end

TINY = ["--model.hidden", "32", "--model.event-widths", "8", "16", "--model.audio-widths", "16",
        "32", "--batch-size", "10", "--optim.lr", "0.005", "--optim.warmup-steps", "2",
        "--no-progress", "--eval-batch-size", "50", "--augment.swap-audio", "0",
        "--augment.modality-dropout", "0", "--rule-samples", "12"]


@pytest.fixture(scope="module")
def tiny_data(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AV-digits with 10 samples per class and split, built from the real sources by the
    same path ``--data-root <sources>`` takes."""
    from taaf_ros.data.avdigits import ensure_ead_dataset

    cache = tmp_path_factory.mktemp("cache")
    out = ensure_ead_dataset(data_root, cache, limit_per_class=10, progress=False)
    assert out.parent == cache and (out / "meta.json").is_file()
    assert ensure_ead_dataset(data_root, cache, limit_per_class=10) == out  # built once, reused
    return out


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    assert cli.main(["--data-root", str(tiny_data), "--out-dir", str(run), "--epochs", "5",
                     *TINY]) == 0
    return run


@pytest.mark.slow
def test_training_learns(trained: Path) -> None:
    m = json.loads((trained / "metrics.json").read_text())
    # the fused CE: the total loss also holds the balancing weights w_m, which grow as the
    # modalities drift apart, so it need not fall monotonically
    ce = [h["train_ce"] for h in m["history"]]
    assert ce[-1] < 0.92 * ce[0] and ce == sorted(ce, reverse=True), ce
    assert m["test_acc"] > 0.25  # chance is 0.10 with 10 classes
    assert len(m["history"]) == 5 and m["energy"]["energy_uj"] > 0
    # validation: one training speaker held out, speaker-disjoint; it chose the epoch, and
    # the test split was not evaluated along the way
    vs = m["dataset"]["val_speaker"]
    assert vs in {"george", "jackson", "lucas", "yweweler"} and m["dataset"]["n_val"] > 0
    assert all("val_acc" in h and "test_acc" not in h for h in m["history"])
    best = max(h["val_acc"] for h in m["history"])
    assert m["selected_epoch"] == next(h["epoch"] for h in m["history"]
                                       if h["val_acc"] == best)
    assert m["val_acc"] == best and m["selected_by"] == f"validation speaker {vs}"
    assert set(m["test_acc_per_modality"]) == {"events", "audio"}
    assert m["command"].startswith("python train_ead.py")
    for name in ("learning_curves.png", "attention.png", "confusion.png", "results.md",
                 "model.pt", "last.pt"):
        assert (trained / name).is_file(), name
    card = torch.load(trained / "model.pt", weights_only=True)["model_card"]
    assert card["T"] == 8 and card["frontend"]["window_s"] == 0.6
    assert card["metrics"]["test_acc"] == m["test_acc"] and card["method"] == "taaf-balanced"
    # the decision rule the node deploys the model with, chosen on the validation speaker
    rule = card["decision_rule"]
    assert rule == m["decision_rule"] and rule["chosen_on"].startswith(
        f"validation speaker {vs}, 12 samples")
    assert card_rule(card) in {(n, c) for n in SMOOTHING_GRID for c in CONFIDENCE_GRID}
    assert rule["scores"]["majority"] >= rule["each_window_own"]["majority"]
    assert "The node deploys this model with smoothing_windows" in (
        trained / "results.md").read_text()


@pytest.mark.slow
def test_a_run_in_another_folder_reuses_the_front_end_tensors(trained: Path, tiny_data: Path,
                                                               tmp_path: Path) -> None:
    """The feature cache is keyed by data and front end, not by the run folder: a second run
    with another --out-dir reads the first run's tensors (no file rewritten, none added); a
    changed front end is a new entry beside them."""
    from taaf_ros.defaults import user_cache_dir

    cache = user_cache_dir() / "features"
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert any(n.startswith("train-") for n in before) and any(n.startswith("test-")
                                                                for n in before)
    assert cli.main(["--data-root", str(tiny_data), "--out-dir", str(tmp_path / "again"),
                     "--epochs", "1", *TINY]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    assert cli.main(["--data-root", str(tiny_data), "--out-dir", str(tmp_path / "other"),
                     "--epochs", "1", "--frontend.n-time-bins", "6", *TINY]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    # train, test and the noisy variants anew (other runs of the session share the folder)
    assert before.items() < after.items() and len(after) == len(before) + 3


@pytest.mark.slow
def test_resume_equals_uninterrupted(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    """Stop after 2 of 5 epochs, resume: same weights and history as the run above."""
    common = ["--data-root", str(tiny_data), "--out-dir", str(tmp_path), "--epochs", "5",
              *TINY]
    assert cli.main([*common, "--stop-after", "2"]) == 0
    assert not (tmp_path / "model.pt").exists()
    assert cli.main([*common, "--resume"]) == 0
    a = torch.load(trained / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((trained / "metrics.json").read_text())["history"]
    hb = json.loads((tmp_path / "metrics.json").read_text())["history"]
    key = ("train_loss", "val_acc", "lr")
    assert [[h[k] for k in key] for h in ha] == [[h[k] for k in key] for h in hb]
    ma = json.loads((trained / "metrics.json").read_text())
    mb = json.loads((tmp_path / "metrics.json").read_text())
    assert mb["selected_epoch"] == ma["selected_epoch"] and mb["test_acc"] == ma["test_acc"]


@pytest.mark.slow
@pytest.mark.parametrize("method, precision", [("taaf-balanced", "float32"),
                                               ("concat-ogmge", "float32"),
                                               ("taaf-balanced", "bfloat16")])
def test_a_training_step_reads_nothing_back(method: str, precision: str, trained: Path,
                                            tiny_data: Path, tmp_path: Path) -> None:
    """No training step reads one of its tensors' values back to the host (item, float, bool
    of a tensor): on a GPU each would wait for the device. Every augmentation and the
    modulated learning rates are on. The CPU's fused optimiser reads its learning rate inside
    its own kernel (on CUDA it takes the tensor), so the optimiser step is not counted."""
    from torch.profiler import profile

    from taaf_ros.training import loop
    from taaf_ros.training.data import epoch_generator
    from taaf_ros.training.distributed import Distributed
    from taaf_ros.training.run_data import load_run_data

    cfg = build_config(["--method", method, "--data-root", str(tiny_data), "--out-dir",
                        str(tmp_path), *TINY, "--augment.swap-audio", "0.5",
                        "--augment.modality-dropout", "0.3", "--augment.time-shift", "1",
                        "--precision", precision])
    run = loop.setup(cfg, load_run_data(cfg, Distributed()), torch.device("cpu"), Distributed())
    g = epoch_generator(cfg.seed, 0)
    order = torch.randperm(len(run.data.train), generator=g)
    sums = torch.zeros(len(loop.EPOCH_SUMS), dtype=torch.float64)
    with profile() as prof:
        for b in range(3):
            loop._step(run, order[b * 10:(b + 1) * 10], g, sums)
    reads = []
    for event in prof.events():
        if event.name in ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero",
                          "aten::nonzero"):  # nonzero: boolean indexing waits for its count
            chain, parent = [], event.cpu_parent
            while parent is not None:
                chain.append(parent.name)
                parent = parent.cpu_parent
            if not any(name.startswith("Optimizer.step") for name in chain):
                reads.append(chain)
    assert not reads, reads[:3]
    steps = [e for e in prof.events() if e.name.startswith("Optimizer.step")]
    assert len(steps) == 3  # the profile saw the steps
    assert float(sums[-1]) > 0 and float(sums[0]) > 0  # correct and loss were summed


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (make bench-gpu)")
def test_a_cuda_training_step_never_synchronizes(trained: Path, tiny_data: Path,
                                                 tmp_path: Path) -> None:
    """On CUDA, torch's sync debug mode raises at any call that waits for the device: none
    in a training step with every augmentation and the balanced loss on, and the epoch's
    sums equal a per-step host tally."""
    from taaf_ros.training import loop
    from taaf_ros.training.data import epoch_generator
    from taaf_ros.training.distributed import Distributed
    from taaf_ros.training.run_data import load_run_data

    cfg = build_config(["--data-root", str(tiny_data), "--out-dir", str(tmp_path), *TINY,
                        "--augment.swap-audio", "0.5", "--augment.modality-dropout", "0.3",
                        "--device", "cuda"])
    device = torch.device("cuda")
    run = loop.setup(cfg, load_run_data(cfg, Distributed()), device, Distributed())
    g = epoch_generator(cfg.seed, 0)
    order = torch.randperm(len(run.data.train), generator=g)
    sums = torch.zeros(len(loop.EPOCH_SUMS), dtype=torch.float64, device=device)
    loop._step(run, order[:10], g, sums)  # first calls: allocations, kernel selection
    losses = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        for b in range(1, 4):
            losses.append(loop._step(run, order[b * 10:(b + 1) * 10], g, sums))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(loss.device.type == "cuda" for loss in losses)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (make bench-gpu)"))])
def test_a_bfloat16_step_computes_in_bfloat16_and_keeps_float32_state(
        device: str, trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    """``--precision bfloat16``: the convolutions and linear layers of a training step run in
    bfloat16, while the weights, the optimiser state, the LIF currents, the normalisation
    statistics and the loss stay float32; the steps learn."""
    from taaf_ros.model.encoders import LIFLayer
    from taaf_ros.training import loop
    from taaf_ros.training.data import epoch_generator
    from taaf_ros.training.distributed import Distributed
    from taaf_ros.training.run_data import load_run_data

    cfg = build_config(["--data-root", str(tiny_data), "--out-dir", str(tmp_path), *TINY,
                        "--precision", "bfloat16", "--device", device])
    run = loop.setup(cfg, load_run_data(cfg, Distributed()), torch.device(device),
                     Distributed())
    seen: dict[str, set[torch.dtype]] = {"conv": set(), "linear": set(), "lif in": set()}
    for mod in run.model.modules():
        if isinstance(mod, torch.nn.Conv2d | torch.nn.Linear):
            kind = "conv" if isinstance(mod, torch.nn.Conv2d) else "linear"
            mod.register_forward_hook(lambda m, a, out, k=kind: seen[k].add(out.dtype))
        elif isinstance(mod, LIFLayer):
            mod.register_forward_hook(lambda m, a, out: seen["lif in"].add(a[0].dtype))
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    g = epoch_generator(cfg.seed, 0)
    order = torch.randperm(len(run.data.train), generator=g)
    sums = torch.zeros(len(loop.EPOCH_SUMS), dtype=torch.float64, device=device)
    losses = [loop._step(run, order[b * 10:(b + 1) * 10], g, sums) for b in range(4)]
    assert seen["conv"] == {torch.bfloat16} and seen["linear"] == {torch.bfloat16}
    assert seen["lif in"] == {torch.float32}  # the normalised current: float32 statistics
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses)
    state = run.model.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in state.items())
    assert all(t.dtype == torch.float32 for s in run.opt.state.values() for t in s.values()
               if t.is_floating_point())
    assert any(not torch.equal(state[k], before[k]) for k in state if "weight" in k)
    assert all(bool(torch.isfinite(p).all()) for p in run.model.parameters())


@pytest.mark.slow
def test_a_compiled_step_trains_as_the_eager_one(trained: Path, tiny_data: Path,
                                                 tmp_path: Path) -> None:
    """``--compile``: the first epoch through torch.compile has the eager run's loss and
    validation accuracy (the same batches; float rounding apart)."""
    from torch._dynamo.utils import counters

    argv = ["--data-root", str(tiny_data), "--out-dir", str(tmp_path), "--epochs", "5", *TINY,
            "--compile"]
    counters.clear()
    assert cli.main([*argv, "--stop-after", "1"]) == 0
    assert counters["stats"]["unique_graphs"] >= 1  # the step really went through dynamo
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    eager = json.loads((trained / "metrics.json").read_text())["history"][0]
    compiled = saved["extra"]["history"][0]
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3)
    assert compiled["val_acc"] == pytest.approx(eager["val_acc"], abs=0.05)


@pytest.mark.slow
def test_resume_refuses_corrupt_or_changed(trained: Path, tiny_data: Path,
                                           tmp_path: Path) -> None:
    bad = tmp_path / "last.pt"
    bad.write_bytes((trained / "last.pt").read_bytes()[:1000])  # truncated
    argv = ["--data-root", str(tiny_data), "--out-dir", str(tmp_path), "--epochs", "5",
            "--resume", *TINY]
    with pytest.raises(SystemExit, match="corrupt"):
        cli.main(argv)
    bad.write_bytes((trained / "last.pt").read_bytes())
    with pytest.raises(SystemExit, match="different settings"):
        cli.main([*argv, "--optim.lr", "0.5"])


@pytest.mark.slow
def test_eval_only_reproduces_accuracy(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    recorded = json.loads((trained / "metrics.json").read_text())
    assert cli.main(["--eval-only", "--checkpoint", str(trained / "model.pt"), "--data-root",
                     str(tiny_data), "--out-dir", str(tmp_path), "--no-progress"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["test_acc"] == recorded["test_acc"]
    assert m["test_acc_per_modality"] == recorded["test_acc_per_modality"]
    assert (tmp_path / "confusion.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in METHODS if m != "taaf-balanced"])
def test_every_method_runs(method: str, trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    assert cli.main(["--data-root", str(tiny_data), "--out-dir", str(tmp_path), "--epochs", "1",
                     "--method", method, "--limit-per-class", "4", *TINY]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["method"] == method and 0.0 <= m["test_acc"] <= 1.0
    per = m["test_acc_per_modality"]
    if method.endswith("-only"):
        assert sum(a is None for a in per.values()) == 1 and m["imbalance"] is None


def test_compare_writes_table(tmp_path: Path) -> None:
    from taaf_ros.training.report import compare

    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({
        "method": "taaf", "test_acc": 0.9, "test_acc_per_modality": {"events": 0.8,
                                                                     "audio": 0.4},
        "imbalance": 2.0, "energy": {"energy_uj": 1.5}, "train_time_s": 120, "epochs": 3,
        "command": "python train_ead.py --method taaf", "dataset": {"name": "AV-digits"}}))
    text = compare([run])
    assert "| taaf | 90.0 % | 80.0 % | 40.0 % | 2.00 | 1.50 µJ | 2.0 min | 3 |" in text
    assert "97.5 %" in text and "not the paper's EAD" in text
    assert "python train_ead.py --method taaf" in text


def test_validation_split_is_speaker_disjoint() -> None:
    from taaf_ros.training.data import TensorSet, split_validation

    ids = [f"{d}_{s}_{t}_mnist{t:05d}" for d in range(3) for s in ("ann", "bob", "cy")
           for t in range(2 if s == "bob" else 1)]
    ts = TensorSet(np.zeros((len(ids), 1)), np.zeros((len(ids), 1)),
                   np.arange(len(ids)), ids)
    train, val, who = split_validation(ts, "auto")
    assert who == "bob"  # the most samples
    assert {i.split("_")[1] for i in val.ids} == {"bob"} and len(val) == 6
    assert "bob" not in {i.split("_")[1] for i in train.ids} and len(train) + len(val) == len(ts)
    assert list(train.labels) == [ids.index(i) for i in train.ids]  # rows stay together
    assert split_validation(ts, "cy")[2] == "cy"
    with pytest.raises(ValueError, match="not among"):
        split_validation(ts, "dan")
    with pytest.raises(ValueError, match="carry no speaker"):
        split_validation(TensorSet(ts.events, ts.audio, ts.labels, ["x"] * len(ids)), "auto")
    one = TensorSet(ts.events[:1], ts.audio[:1], ts.labels[:1], ids[:1])
    with pytest.raises(ValueError, match="only one training speaker"):
        split_validation(one, "auto")


@pytest.mark.slow
def test_torchrun_two_processes_match_one_and_resume_exactly(trained: Path, tiny_data: Path,
                                                             tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 train_ead.py`` (gloo on CPU, DistributedDataParallel):
    completes, matches a one-process run with the same global batch (batch statistics and the
    balanced loss's coefficients are summed over the processes; float summation order differs,
    and spiking amplifies it: seen here, epoch 1 equal to 1e-8, epoch 2 within 0.2 %), and a
    run stopped after one epoch and resumed on two processes ends exactly where the
    uninterrupted one does."""
    import os
    import signal
    import subprocess
    import sys

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.is_file():
        pytest.skip("torchrun not installed beside this interpreter")
    common = ["--data-root", str(tiny_data), "--epochs", "2", *TINY, "--num-threads", "2"]
    runs = {name: tmp_path / name for name in ("one", "two", "resumed")}
    for run in runs.values():
        run.mkdir()
    assert cli.main([*common, "--out-dir", str(runs["one"])]) == 0

    def torchrun_train(*extra: str) -> str:
        # A run takes ~15 s; a hang (a worker that never exits) fails the test with the
        # output so far, after torchrun and its workers are killed as a group (no orphan).
        cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / "train_ead.py"), *common, *extra]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"torchrun {' '.join(extra)} hung; its output:\n{out[-2000:]}"
                        f"{err[-3000:]}")
        assert proc.returncode == 0, out[-2000:] + err[-3000:]
        return out

    out = torchrun_train("--out-dir", str(runs["two"]))
    assert out.count("fused test acc") == 1  # rank 0 reports, rank 1 stays quiet
    torchrun_train("--out-dir", str(runs["resumed"]), "--stop-after", "1")
    torchrun_train("--out-dir", str(runs["resumed"]), "--resume")
    m = {k: json.loads((v / "metrics.json").read_text()) for k, v in runs.items()}
    loss_one = [h["train_loss"] for h in m["one"]["history"]]
    loss_two = [h["train_loss"] for h in m["two"]["history"]]
    assert loss_two[0] == pytest.approx(loss_one[0], rel=1e-6), (loss_one, loss_two)
    assert loss_two == pytest.approx(loss_one, rel=0.01), (loss_one, loss_two)
    assert abs(m["two"]["test_acc"] - m["one"]["test_acc"]) <= 0.15
    assert [h["train_loss"] for h in m["resumed"]["history"]] == loss_two
    a = torch.load(runs["two"] / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(runs["resumed"] / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_saved_before_a_key_was_renamed_still_resumes(tmp_path: Path) -> None:
    from taaf_ros.model import CheckpointError
    from taaf_ros.training.run_state import check_resume_config as _check_resume_config

    cfg = build_config(["--augment.swap-audio", "0.5"])
    saved = cfg.to_dict()
    saved["augment"] = {("repair" if k == "swap_audio" else k): v
                        for k, v in saved["augment"].items()}  # the older name
    _check_resume_config(saved, cfg, tmp_path / "last.pt")
    saved["augment"]["repair"] = 0.25
    with pytest.raises(CheckpointError, match="augment.swap_audio"):
        _check_resume_config(saved, cfg, tmp_path / "last.pt")


def test_a_run_saved_before_a_key_existed_resumes_with_its_default(tmp_path: Path) -> None:
    from taaf_ros.model import CheckpointError
    from taaf_ros.training.run_state import check_resume_config

    cfg = build_config([])
    saved = cfg.to_dict()
    del saved["precision"], saved["compile"]  # a run saved before they existed
    check_resume_config(saved, cfg, tmp_path / "last.pt")
    check_resume_config(cfg.to_dict(), build_config(["--compile"]), tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="precision"):
        check_resume_config(saved, build_config(["--precision", "bfloat16"]),
                            tmp_path / "last.pt")


@pytest.mark.slow
def test_samples_whose_audio_was_repaired_are_counted_and_reported(tiny_data: Path,
                                                                   tmp_path: Path, capsys
                                                                   ) -> None:
    """A WAV holding NaN and infinite values trains (zeroed, as the live node zeroes them),
    and the run says which sample it was, on stderr and in metrics.json."""
    from scipy.io import wavfile

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    wav = sorted((data / "train").rglob("*.wav"))[3]
    rate, x = wavfile.read(wav)
    bad = (x.astype(np.float32) / 32768.0)
    bad[100:110] = np.nan
    bad[200] = np.inf
    wavfile.write(wav, rate, bad)
    assert cli.main(["--data-root", str(data), "--out-dir", str(tmp_path / "run"), "--epochs",
                     "1", *TINY]) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["dataset"]["repaired_audio"] == {"samples": 1, "ids": [wav.name[:-4]]}
    assert "1 sample(s) with NaN, infinite or out-of-range audio" in capsys.readouterr().err
