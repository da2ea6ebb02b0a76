"""The training configuration: one dataclass composed of each stage's own config.

``TrainConfig`` holds what a run reads and writes (data, run folder, epochs, seed) and, as
sections, the configs the stages define themselves: ``model`` (``ModelConfig``), ``frontend``
(``FrontEndConfig`` with its ``cochlea``), ``loss`` (``LossConfig``), ``optim``
(``OptimConfig``) and ``augment`` (``AugmentConfig``). Nothing is repeated here.

Precedence, lowest first: the dataclass defaults < the method's preset (``METHOD_PRESETS``:
its fusion, modalities and loss flags; ``METHOD_OPTIMIZERS``: its optimiser) < the YAML file
of overrides (``config/train_ead.yaml`` or ``--config FILE``) < the command line. The command
line and the YAML are parsed by tyro
(nested keys as ``--optim.lr 0.001``, booleans as ``--flag`` / ``--no-flag``, tuples as
space-separated values), so every value is type-checked and an unknown key is an error.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal

from taaf_ros.defaults import user_cache_dir
from taaf_ros.frontend import FrontEndConfig
from taaf_ros.model import ModelConfig
from taaf_ros.model.loss import METHOD_PRESETS, LossConfig, method_configs

from .augment import AugmentConfig
from .optim import PEAK_LR, OptimConfig

#: The repository's file of overrides (absent when the package is installed elsewhere).
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "train_ead.yaml"

Method = Literal["taaf-balanced", "taaf", "concat", "concat-ogmge", "events-only", "audio-only"]


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Attributes:
        method: the network and loss: taaf-balanced, taaf (no balancing), concat, concat-ogmge,
            events-only, audio-only. It presets model.fusion, model.modalities and the loss flags.
        data_root: EAD-layout dataset (has meta.json), or a folder with fsdd/ and mnist/ sources
            from which AV-digits is built into cache_dir first. Empty: $TAAF_DATA_ROOT.
        cache_dir: where AV-digits built from sources and the front-end tensors (features/)
            go. Empty: ~/.cache/taaf_ros.
        train_split: split folder used for training.
        val_speaker: training speaker (or group) held out for validation, speaker-disjoint like
            the test split; it picks the reported epoch and fits the late fusion, and the test
            split is evaluated once, at the end. auto: the training speaker with the most
            samples, or, for a dataset of fewer than 3 training groups (one's own recordings,
            taaf_dataset), block; block: the last 20% of each training recording's windows (a
            time block; training windows across its edge dropped), so every recording trains;
            empty: none, the final epoch is reported and the test split evaluated every
            eval_every epochs.
        test_split: split folder used for evaluation (AV-digits: held-out speaker).
        limit_per_class: use at most N samples per class and split (0: all); also passed to the
            AV-digits builder.
        feature_cache: store the front-end tensors in cache_dir/features, keyed by a hash of
            the front-end settings and the dataset (its samples and their files' sizes and
            times), so every run on the same data and front end, whatever its out_dir, skips
            the front end.
        epochs: training epochs.
        batch_size: samples per optimiser step.
        late_fusion: fit the late-fusion weights (the head and each readout, model/late_fusion.py)
            on the validation speaker every epoch; the late-fused accuracy picks the epoch, for
            two-modality methods with a validation speaker.
        seed: seed of initialisation, shuffling and any noise.
        out_dir: run folder (checkpoints, metrics, plots). Empty: runs/<method>.
        device: auto | cpu | cuda | cuda:N.
        precision: float32, or bfloat16: each training step's forward under torch.autocast
            (convolutions and matmuls in bfloat16; weights, optimiser state, normalisation
            statistics, the LIF integration and the loss stay float32). Evaluation runs in
            float32. Meant for GPUs with bfloat16 units; on a CPU with AVX-512 BF16 an epoch
            took about as long as in float32.
        compile: run each training step's forward and backward through torch.compile (the
            first steps compile it: about a minute on a 2-core CPU, again for the epoch's last,
            smaller batch); evaluation stays eager.
        lif_impl: the LIF layers' kernel: fused (all T steps of a layer in one kernel, numba on
            the CPU, Triton on CUDA) or loop (torch ops step by step: the reference the kernels
            are tested against, about 2x slower; benchmarks/bench_training.py times both).
        num_threads: torch CPU threads (0: torch's default).
        eval_every: evaluate on the validation (else test) split every N epochs (the last epoch
            always).
        eval_batch_size: samples per evaluation batch.
        progress: progress bars.
        log_every: steps between reads of the training loss for the progress bar (each read
            waits for the device; the epoch's sums are read once, at its end).
        rule_samples: validation samples replayed as a stream to choose the decision rule
            the node deploys the model with (smoothing, abstention), stored in the model card;
            every window on the node's hop grid is scored. One's own recordings' samples go
            back where they were recorded (the windows slide along the recordings); others
            each get a slot with 1 s of silence. 0: none (the node then takes each window's
            own argmax).
        stop_after: end this invocation after this many epochs in total (0: run to epochs); the
            schedule still spans epochs, so --resume continues exactly (CPU-budget slicing).
        resume: continue from out_dir/last.pt (or --checkpoint) exactly where it stopped.
        eval_only: only evaluate --checkpoint on data_root's test split and write metrics.
        checkpoint: checkpoint file for --eval-only / --resume.
        init_from: start from this checkpoint's weights (transfer learning on one's own data):
            encoders and fusion are copied, the readouts too where the classes are the same;
            the model card records it. Needs the checkpoint's front end and method.
        init_freeze: with init_from, train only part: none, encoders (the fusion head and
            readouts learn) or all-but-readouts.
        model: the network. n_classes, T, event_shape and audio_channels follow the data and the
            front end, fusion and modalities the method: leave them unset.
        frontend: windows, bins and the cochlea: the tensors training and the live node share.
        loss: the balanced fusion loss (preset by the method).
        optim: the optimiser and its learning-rate schedule.
        augment: training augmentation, corruptions included.
    """

    method: Method = "taaf-balanced"
    data_root: str = ""
    cache_dir: str = ""
    train_split: str = "train"
    val_speaker: str = "auto"
    test_split: str = "test"
    limit_per_class: int = 0
    feature_cache: bool = True
    epochs: int = 30
    batch_size: int = 32
    late_fusion: bool = True
    seed: int = 0
    out_dir: str = ""
    device: str = "cpu"
    precision: Literal["float32", "bfloat16"] = "float32"
    compile: bool = False
    lif_impl: Literal["fused", "loop"] = "fused"
    num_threads: int = 2
    eval_every: int = 1
    eval_batch_size: int = 100
    progress: bool = True
    log_every: int = 20
    rule_samples: int = 200
    stop_after: int = 0
    resume: bool = False
    eval_only: bool = False
    checkpoint: str = ""
    init_from: str = ""
    init_freeze: Literal["none", "encoders", "all-but-readouts"] = "none"
    model: ModelConfig = field(default_factory=ModelConfig)
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("eval_every", 1),
                          ("eval_batch_size", 1), ("limit_per_class", 0), ("stop_after", 0),
                          ("log_every", 1),
                          ("num_threads", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.loss.balance_on == "validation" and not self.val_speaker:
            raise ValueError("loss.balance_on validation needs a validation speaker "
                             "(val_speaker)")
        fusion, modalities, _ = METHOD_PRESETS[self.method]
        if (self.model.fusion, tuple(self.model.modalities)) != (fusion, modalities):
            raise ValueError(f"method {self.method} uses model.fusion {fusion} and "
                             f"model.modalities {' '.join(modalities)}: leave them unset")

    def resolved_data_root(self) -> str:
        """data_root, else $TAAF_DATA_ROOT, else an error."""
        root = self.data_root or os.environ.get("TAAF_DATA_ROOT", "")
        if not root:
            raise ValueError("no data: give --data-root DIR or set TAAF_DATA_ROOT")
        return root

    def resolved_out_dir(self) -> Path:
        return Path(self.out_dir or f"runs/{self.method}")

    def feature_cache_dir(self) -> Path | None:
        """Where the front-end tensors are cached (None: feature_cache off)."""
        if not self.feature_cache:
            return None
        return Path(self.cache_dir or user_cache_dir()) / "features"

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (lists for tuples), as in metrics.json and the checkpoints."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1}} -> {"optim.lr": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


#: The optimiser of each method where it differs from OptimConfig's (AdamW at 0.003): chosen
#: on validation speakers by ``taaf_optim_select`` (docs/results-optimizer.md; a test checks
#: that the two agree).
METHOD_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "events-only": {"name": "sgd", "lr": PEAK_LR["sgd"]},
    "audio-only": {"name": "sgd", "lr": PEAK_LR["sgd"]},
}


def with_method(cfg: TrainConfig, method: str) -> TrainConfig:
    """``cfg`` with ``method`` and its preset (model fusion and modalities, loss flags,
    optimiser)."""
    model, loss = method_configs(method, cfg.model, cfg.loss)
    return replace(cfg, method=method, model=model, loss=loss,
                   optim=replace(cfg.optim, **METHOD_OPTIMIZERS.get(method, {})))


MAX_YAML_BYTES = 1_000_000


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of overrides (an empty file is an empty mapping).

    Anchors and aliases are refused: a config needs none, and a few hundred bytes of nested
    aliases ("billion laughs") expand to gigabytes.
    """
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise ValueError(f"{path}, line {mark.line + 1}: YAML aliases (*name) are not "
                                 "allowed in a training config; write the value out")
            return super().compose_node(parent, index)

    path = Path(path)
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes; a training config is at most "
                         f"{MAX_YAML_BYTES:,}")
    try:
        data = yaml.load(path.read_text(), Loader=NoAliasLoader) or {}  # noqa: S506
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of key: value")
    return data


def yaml_args(overrides: dict[str, Any]) -> list[str]:
    """A (nested) mapping of overrides as command-line arguments, for the one parser."""
    args: list[str] = []
    for key, value in flatten(overrides).items():
        opt = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            head, _, name = opt[2:].rpartition(".")
            args.append(opt if value else f"--{head + '.' if head else ''}no-{name}")
        elif isinstance(value, list | tuple):
            args += [opt, *map(str, value)]
        elif isinstance(value, dict | None):
            raise ValueError(f"{key}: expected a value, got {value!r}")
        else:
            args += [opt, str(value)]
    return args


_BOX = {c: " " for c in map(ord, "╭╮╰╯│─")}


def _parse(argv: list[str], default: TrainConfig, what: str) -> TrainConfig:
    """tyro's parse of ``argv`` over ``default``; its error message becomes a ValueError."""
    import tyro

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(TrainConfig, default=default, args=argv, prog="train_ead.py")
    except SystemExit as e:
        text = " ".join(err.getvalue().translate(_BOX).split()) or f"exit status {e.code}"
        raise ValueError(f"{what}: {text[:800]}") from None


def _option(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """(the last value of ``flag VALUE`` or ``flag=VALUE`` in ``argv``, the other arguments).

    >>> _option(["--epochs", "2", "--config=a.yaml"], "--config")
    ('a.yaml', ['--epochs', '2'])
    """
    rest, value = [], None
    it = iter(argv)
    for a in it:
        if a == flag:
            value = next(it, None)
            if value is None:
                raise ValueError(f"{flag} needs a value")
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
        else:
            rest.append(a)
    return value, rest


def build_config(argv: list[str], config_file: str | Path | None = None) -> TrainConfig:
    """Defaults < the method's preset < YAML (``--config`` or config/train_ead.yaml) < CLI.

    Raises ValueError (with tyro's message) on an unknown key or a value of the wrong type.
    """
    cli_file, argv = _option(argv, "--config")
    path = cli_file or config_file or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file()
                                       else None)
    overrides = load_yaml(path) if path else {}
    method = _option(argv, "--method")[0] or overrides.get("method", TrainConfig.method)
    cfg = with_method(TrainConfig(), str(method))
    try:
        if overrides:
            cfg = _parse(yaml_args({k: v for k, v in overrides.items() if k != "method"}), cfg,
                         str(path))
        return _parse(argv, cfg, "command line")
    except TypeError as e:  # a dataclass's own check, e.g. a wrong shape
        raise ValueError(str(e)) from e


def print_help(prog: str = "train_ead.py") -> None:
    """tyro's help: every key with its type, default and meaning."""
    import tyro

    with contextlib.suppress(SystemExit):
        tyro.cli(TrainConfig, default=with_method(TrainConfig(), TrainConfig.method),
                 args=["--help"], prog=prog)


def leaf_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """Every settable key, dotted (``optim.lr``)."""
    keys = []
    for f in fields(cls):
        typ = f.default_factory
        if typ is not MISSING and is_dataclass(typ):
            keys += leaf_keys(typ, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys
