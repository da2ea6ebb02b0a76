"""The training split resident on the device, and augmented batches gathered there.

The split's front-end counts (uint8 or int16) are copied to the training device once, time-major,
so that a step's batch is one ``index_select`` there: no per-step host gather, cast or copy of
the batch. The augmentations (``augment.py``) run on the device too; what travels each step is
the epoch generator's small random draws (sent without waiting) and the presence mask, which is
built on the host where the model and the trainer can check it without a device read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from taaf_ros.modalities import MODALITIES

from .augment import (
    AugmentConfig,
    add_audio_noise,
    occlude_events,
    shift_channels,
    shift_events,
    shift_time,
    swap_audio_within_class,
)
from .data import TensorSet


@dataclass
class ResidentSplit:
    """A training split on its device: events (T, N, P, H, W) and audio (T, N, 2, C) counts,
    labels (N,), noisy audio copies (N, V, T, 2, C) or None; ``host_labels`` for the class
    pools of ``swap_audio``."""

    events: torch.Tensor
    audio: torch.Tensor
    labels: torch.Tensor
    noisy_audio: torch.Tensor | None
    host_labels: np.ndarray

    @classmethod
    def of(cls, data: TensorSet, device: torch.device) -> ResidentSplit:
        def resident(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(device).transpose(0, 1).contiguous()

        noisy = None if data.noisy_audio is None else torch.from_numpy(data.noisy_audio).to(device)
        return cls(resident(data.events), resident(data.audio),
                   torch.from_numpy(data.labels).to(device), noisy, data.labels)

    def __len__(self) -> int:
        return int(self.host_labels.shape[0])


def train_batch(split: ResidentSplit, idx: torch.Tensor, aug: AugmentConfig,
                modalities: tuple[str, ...], g: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An augmented training batch of the samples ``idx`` (host indices): events (T, B, P, H,
    W) and audio (T, B, 2, C) float32 and labels (B,) on the split's device, and the presence
    mask (B, M) bool on the host. Draws from ``g`` in a fixed order (a resumed run sees the
    same batches)."""
    device = split.labels.device
    audio_idx = swap_audio_within_class(idx, split.host_labels, aug.swap_audio, g)
    on_dev = torch.stack([idx, audio_idx]).to(device, non_blocking=True)
    ev = split.events.index_select(1, on_dev[0])
    au = split.audio.index_select(1, on_dev[1])
    y = split.labels.index_select(0, on_dev[0])
    ev = shift_events(ev, aug.shift, g)
    ev = occlude_events(ev, aug.occlusion, aug.occlusion_max, g)
    au = add_audio_noise(au, on_dev[1], split.noisy_audio, aug.noise, g)
    au = shift_channels(au, aug.channel_shift, g)
    ev, au = shift_time(ev, au, aug.time_shift, g)
    return ev.float(), au.float(), y, presence(len(idx), modalities, aug.modality_dropout, g)


def presence(batch: int, modalities: tuple[str, ...], dropout: float, g: torch.Generator
             ) -> torch.Tensor:
    """(B, M) bool on the host: the configured modalities, each sample of a two-modality model
    losing one at random with probability ``dropout`` (so each encoder also learns alone).

    >>> presence(3, ("events",), 0.5, torch.Generator()).tolist()
    [[True, False], [True, False], [True, False]]
    """
    M = len(MODALITIES)
    present = torch.tensor([m in modalities for m in MODALITIES]).expand(batch, M).clone()
    if dropout > 0 and len(modalities) == M:
        drop = torch.rand(batch, generator=g) < dropout
        which = torch.randint(0, M, (batch,), generator=g)
        present = present & ~(drop[:, None] & (torch.arange(M) == which[:, None]))
    return present
