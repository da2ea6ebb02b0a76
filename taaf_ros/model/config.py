"""Model configuration: one dataclass that fully describes a TAAF network (nanoGPT style).

The config is stored in every checkpoint's model card (``to_dict``) so a consumer rebuilds the
network from the file alone (``from_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from taaf_ros.modalities import MODALITIES

FUSIONS: tuple[str, ...] = ("taaf", "concat")


@dataclass
class ModelConfig:
    """Hyperparameters of the multimodal spiking network.

    Attributes:
        n_classes: number of output classes K.
        T: time steps (bins) per window.
        event_shape: event input (polarities, H, W) in pixels.
        audio_channels: cochlea channels C of the audio input (2, C).
        event_widths: output channels of the 2-D stride-2 convs.
        audio_widths: output channels of the 1-D convs (first stride 1, then 2).
        hidden: D, size of the per-step embedding h_m[t].
        tau_syn_inv: inverse synaptic time constant (1/s).
        tau_mem_inv: inverse membrane time constant (1/s).
        v_th: firing threshold (a.u.).
        dt: integration step (s).
            With dt * tau = 0.5 the synaptic current halves and the membrane closes half its gap
            each step, so a batch-normalised current of ~1 fires on the first step; norse's
            defaults (dt * tau_mem_inv = 0.1, v_th = 1) stay silent for inputs below ~0.2 and
            need many more than T = 8 steps to charge.
        fusion: "taaf" (hierarchical attention) or "concat" (baseline).
        modalities: which encoders exist, a subset of MODALITIES in that order.
        warp_init: diagonal logit of the time-warping matrices at init; 5 gives ~0.95 on the
            diagonal for T = 8 (near identity, still trainable).
        input_scale: counts are multiplied by this before the first conv.
    """

    n_classes: int = 10
    T: int = 8
    event_shape: tuple[int, int, int] = (2, 34, 34)
    audio_channels: int = 32
    event_widths: tuple[int, ...] = (16, 32, 64)
    audio_widths: tuple[int, ...] = (32, 64)
    hidden: int = 128
    tau_syn_inv: float = 500.0
    tau_mem_inv: float = 500.0
    v_th: float = 0.5
    dt: float = 0.001
    fusion: str = "taaf"
    modalities: tuple[str, ...] = field(default_factory=lambda: MODALITIES)
    warp_init: float = 5.0
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        # Lists arrive from JSON / checkpoints; store tuples so configs compare equal.
        self.event_shape = tuple(int(v) for v in self.event_shape)  # type: ignore[assignment]
        self.event_widths = tuple(int(v) for v in self.event_widths)
        self.audio_widths = tuple(int(v) for v in self.audio_widths)
        self.modalities = tuple(str(m) for m in self.modalities)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not self.modalities or any(m not in MODALITIES for m in self.modalities):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}")
        if list(self.modalities) != [m for m in MODALITIES if m in self.modalities]:
            raise ValueError(f"modalities must keep the order {MODALITIES}")
        if len(self.event_shape) != 3:
            raise ValueError("event_shape must be (polarities, H, W)")
        if self.T < 1 or self.n_classes < 2 or self.hidden < 1:
            raise ValueError("T >= 1, n_classes >= 2 and hidden >= 1 are required")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) safe for JSON and ``torch.load(weights_only=True)``."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
        return cls(**d)
