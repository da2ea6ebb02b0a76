"""Every training default in one place (nanoGPT style), overridable from YAML and the CLI.

Precedence: the dataclass defaults below < ``config/train_ead.yaml`` (or ``--config FILE``) <
``--key value`` / ``--key=value`` on the command line. Every override is type-checked against
the default's type: ``--epochs 2.5`` and ``--progress maybe`` are errors, ``--progress false``
is ``False`` (never Python's truthy ``bool("false")``), and an unknown key is an error.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

#: The repository's default config file (absent when the package is installed elsewhere).
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "train_ead.yaml"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass
class TrainConfig:
    """Training settings. Each field's ``help`` metadata is what ``--help`` prints."""

    # ---- data
    data_root: str = ""
    """EAD-layout dataset (has meta.json), or a folder with fsdd/ and mnist/ sources from which
    AV-digits is built into cache_dir first. Empty: $TAAF_DATA_ROOT."""
    cache_dir: str = ""
    """where AV-digits built from sources goes. Empty: ~/.cache/taaf_ros."""
    train_split: str = "train"
    """split folder used for training."""
    val_speaker: str = "auto"
    """training speaker held out for validation, speaker-disjoint like the test split; it
    picks the reported epoch, and the test split is evaluated once, at the end. auto: the
    training speaker with the most samples; empty: no validation (the final epoch is
    reported, and the test split is evaluated every eval_every epochs)."""
    test_split: str = "test"
    """split folder used for evaluation (AV-digits: held-out speaker)."""
    limit_per_class: int = 0
    """use at most N samples per class and split (0: all); also passed to the AV-digits
    builder."""
    feature_cache: bool = True
    """store the front-end tensors as an .npz in out_dir/cache (keyed by a hash of the front-end
    settings and the dataset), so a rerun skips the ~40 ms/sample front end."""
    # ---- front end (FrontEndConfig; the model's T follows n_time_bins)
    window_s: float = 0.6
    """window length (s)."""
    n_time_bins: int = 8
    """T, time bins per window = network time steps."""
    max_count: int = 15
    """clip of every bin count."""
    # ---- model (ModelConfig overrides; fusion/modalities come from the method)
    hidden: int = 128
    """D, per-step embedding size."""
    event_widths: tuple[int, ...] = (16, 32, 64)
    """channels of the event encoder's 2-D convs (comma-separated)."""
    audio_widths: tuple[int, ...] = (32, 64)
    """channels of the audio encoder's 1-D convs (comma-separated)."""
    input_scale: float = 1.0
    """counts are multiplied by this before the first conv."""
    # ---- method and loss (LossConfig)
    method: str = "taaf-balanced"
    """taaf-balanced | taaf | concat | concat-ogmge | events-only | audio-only."""
    aux_weight: float = -1.0
    """lambda, weight of the unimodal auxiliary losses (-1: the method's default)."""
    eta: float = 1.0
    """balancing strength in k = 1 - tanh(eta * relu(rho - 1))."""
    ogm_alpha: float = 0.5
    """OGM-GE alpha (concat-ogmge)."""
    # ---- augmentation (training batches only; drawn from a per-epoch generator)
    aug_shift: int = 2
    """random translation of each event sample by up to N pixels in x and y (zero fill)."""
    aug_channel_shift: int = 1
    """random shift of each audio sample by up to N cochlea channels (zero fill): a crude
    vocal-tract-length perturbation against over-fitting to the training speakers."""
    aug_repair: float = 0.5
    """fraction of training samples whose audio is swapped for that of another training
    sample of the same class. Only valid where the event/audio pairing is arbitrary within a
    class, as in AV-digits; set 0 for synchronously recorded data such as EAD."""
    modality_dropout: float = 0.1
    """probability that one (random) modality of a training sample is marked absent, so each
    encoder must also work alone (two-modality methods only)."""
    # ---- optimisation
    epochs: int = 30
    """training epochs."""
    batch_size: int = 32
    """samples per optimiser step."""
    optimizer: str = "adamw"
    """adamw | sgd. The modulated methods slow an encoder through its learning rate, which
    either optimiser honours."""
    momentum: float = 0.9
    """SGD momentum (optimizer sgd)."""
    lr: float = 0.003
    """peak learning rate (cosine decay to lr_min_ratio * lr, per step)."""
    lr_min_ratio: float = 0.02
    """final learning rate as a fraction of lr."""
    warmup_steps: int = 20
    """linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.01
    """weight decay (decoupled for AdamW, L2 for SGD); none on biases, norm scales, warping."""
    seed: int = 0
    """seed of initialisation, shuffling and any noise."""
    # ---- run
    out_dir: str = ""
    """run folder (checkpoints, metrics, plots). Empty: runs/<method>."""
    device: str = "cpu"
    """auto | cpu | cuda | cuda:N."""
    num_threads: int = 2
    """torch CPU threads (0: torch's default)."""
    eval_every: int = 1
    """evaluate on the test split every N epochs (the last epoch always)."""
    eval_batch_size: int = 100
    """samples per evaluation batch."""
    progress: bool = True
    """tqdm progress bars."""
    stop_after: int = 0
    """end this invocation after this many epochs in total (0: run to epochs); the schedule
    still spans epochs, so --resume continues exactly (CPU-budget slicing)."""
    resume: bool = False
    """continue from out_dir/last.pt (or --checkpoint) exactly where it stopped."""
    eval_only: bool = False
    """only evaluate --checkpoint on data_root's test split and write metrics."""
    checkpoint: str = ""
    """checkpoint file for --eval-only / --resume."""

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be adamw or sgd, got {self.optimizer!r}")
        # tuples arrive as lists from YAML / checkpoints
        self.event_widths = tuple(int(v) for v in self.event_widths)
        self.audio_widths = tuple(int(v) for v in self.audio_widths)

    def resolved_data_root(self) -> str:
        """data_root, else $TAAF_DATA_ROOT, else an error."""
        root = self.data_root or os.environ.get("TAAF_DATA_ROOT", "")
        if not root:
            raise ValueError("no data: give --data-root DIR or set TAAF_DATA_ROOT")
        return root

    def resolved_out_dir(self) -> Path:
        return Path(self.out_dir or f"runs/{self.method}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def field_help() -> dict[str, str]:
    """Field name -> its docstring (the attribute docstrings in the class body)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)):
            out[node.target.id] = " ".join(str(nxt.value.value).split())
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` (a CLI string or a YAML scalar/list) to the type of ``default``."""
    if isinstance(default, bool):  # before int: bool is a subclass of int
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if isinstance(default, tuple):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"{key}: expected a comma-separated list, got {value!r}")
        return tuple(_coerce(key, v.strip() if isinstance(v, str) else v, default[0])
                     for v in items)
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ValueError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"{key}: unsupported default type {type(default).__name__}")


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of ``cfg`` with ``overrides`` applied, each checked against the default's type.

    Keys may use dashes or underscores. Raises ValueError on an unknown key or a bad value.
    """
    known = {f.name for f in fields(TrainConfig)}
    d = asdict(cfg)
    for raw_key, value in overrides.items():
        key = raw_key.replace("-", "_")
        if key not in known:
            raise ValueError(f"unknown config key {raw_key!r}; see --help for the list")
        d[key] = _coerce(key, value, getattr(TrainConfig(), key))
    return TrainConfig(**d)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of overrides (an empty file is an empty mapping)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of key: value")
    return data


def parse_cli_overrides(argv: list[str]) -> tuple[dict[str, str], str | None]:
    """``--key value`` / ``--key=value`` / bare ``--flag`` (= true) / ``--no-flag`` (= false)
    -> (overrides, --config).

    Bare flags and ``--no-`` are only allowed for boolean keys; ``--flag false`` works too.
    """
    defaults = TrainConfig()
    out: dict[str, str] = {}
    config_file: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ValueError(f"unexpected argument {arg!r}; use --key value")
        body = arg[2:]
        if "=" in body:
            key, value = body.split("=", 1)
            i += 1
        elif body.startswith("no-") and isinstance(
                getattr(defaults, body[3:].replace("-", "_"), None), bool):
            key, value = body[3:], "false"
            i += 1
        else:
            key = body
            attr = key.replace("-", "_")
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            is_bool = isinstance(getattr(defaults, attr, None), bool)
            if is_bool and (nxt is None or nxt.startswith("--")
                            or nxt.lower() not in _TRUE | _FALSE):
                value, i = "true", i + 1
            elif nxt is None:
                raise ValueError(f"--{key} needs a value")
            else:
                value, i = nxt, i + 2
        if key == "config":
            config_file = value
        else:
            out[key] = value
    return out, config_file


def build_config(argv: list[str], config_file: str | Path | None = None) -> TrainConfig:
    """Defaults < YAML (``--config`` or the repo's config/train_ead.yaml if present) < CLI."""
    cli, cli_file = parse_cli_overrides(argv)
    path = cli_file or config_file or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file()
                                       else None)
    cfg = TrainConfig()
    if path:
        cfg = apply_overrides(cfg, load_yaml(path))
    return apply_overrides(cfg, cli)


def help_text() -> str:
    """Every key with its default and meaning (printed by --help)."""
    docs = field_help()
    lines = []
    for f in fields(TrainConfig):
        default = getattr(TrainConfig(), f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else repr(default)
        lines.append(f"  --{f.name.replace('_', '-'):18s} {docs.get(f.name, '')} "
                     f"Default: {shown}")
    return "\n".join(lines)
