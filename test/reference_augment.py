"""Reference: the training batch as the trainer built it on the host, sample by sample (a
loop per augmentation, numpy gather and cast per step). ``taaf_ros.training.batches`` builds
the same batch on the device in a few vectorised ops; test_batches.py holds them equal."""

from __future__ import annotations

import numpy as np
import torch

from taaf_ros.data.corruptions import Occlusion
from taaf_ros.modalities import MODALITIES
from taaf_ros.training.augment import AugmentConfig
from taaf_ros.training.data import TensorSet


def host_batch(data: TensorSet, idx: np.ndarray | torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    idx = np.asarray(idx)
    ev = torch.from_numpy(data.events[idx].astype(np.float32)).transpose(0, 1)
    au = torch.from_numpy(data.audio[idx].astype(np.float32)).transpose(0, 1)
    return ev.contiguous(), au.contiguous(), torch.from_numpy(data.labels[idx])


def reference_train_batch(data: TensorSet, idx: torch.Tensor, aug: AugmentConfig,
                          modalities: tuple[str, ...], g: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ev, _, y = host_batch(data, idx)
    audio_idx = swap_audio_within_class(idx, data.labels, aug.swap_audio, g)
    _, au, _ = host_batch(data, audio_idx)
    ev = shift_events(ev, aug.shift, g)
    ev = occlude_events(ev, aug.occlusion, aug.occlusion_max, g)
    au = add_audio_noise(au, audio_idx, data.noisy_audio, aug.noise, g)
    au = shift_channels(au, aug.channel_shift, g)
    ev, au = shift_time(ev, au, aug.time_shift, g)
    B, M = len(idx), len(MODALITIES)
    present = torch.tensor([m in modalities for m in MODALITIES]).expand(B, M).clone()
    if aug.modality_dropout > 0 and bool(present.all()):
        drop = torch.rand(B, generator=g) < aug.modality_dropout
        which = torch.randint(0, M, (B,), generator=g)
        present[drop, which[drop]] = False
    return ev, au, y, present


def shift_events(ev: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """ev (T, B, P, H, W): each sample translated by its own random (dy, dx) in
    [-max_shift, max_shift], zero fill (the emulated saccades already move the digit by a few
    pixels, so small shifts stay on the data's manifold)."""
    if max_shift <= 0:
        return ev
    T, B, P, H, W = ev.shape
    d = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=g)
    pad = torch.nn.functional.pad(ev, (max_shift,) * 4)
    out = torch.empty_like(ev)
    for b in range(B):
        y0, x0 = max_shift - int(d[b, 0]), max_shift - int(d[b, 1])
        out[:, b] = pad[:, b, :, y0:y0 + H, x0:x0 + W]
    return out


def shift_time(ev: torch.Tensor, au: torch.Tensor, max_shift: int, g: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """ev (T, B, ...) and au (T, B, ...): each sample's time bins moved by its own random k in
    [-max_shift, max_shift], the same k for both modalities, zero fill: k > 0 is a window
    that starts k bins before the sample (the sample arrives late in it)."""
    if max_shift <= 0:
        return ev, au
    T, B = ev.shape[:2]
    k = torch.randint(-max_shift, max_shift + 1, (B,), generator=g)
    out_ev, out_au = torch.zeros_like(ev), torch.zeros_like(au)
    for b in range(B):
        s = int(k[b])
        if s >= 0:
            out_ev[s:, b], out_au[s:, b] = ev[:T - s, b], au[:T - s, b]
        else:
            out_ev[:T + s, b], out_au[:T + s, b] = ev[-s:, b], au[-s:, b]
    return out_ev, out_au


def shift_channels(au: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """au (T, B, 2, C): each sample's cochlea channels shifted by its own random offset in
    [-max_shift, max_shift], zero fill (mel-spaced channels: a shift scales all formants
    alike, as a different vocal-tract length does)."""
    if max_shift <= 0:
        return au
    C = au.shape[-1]
    d = torch.randint(-max_shift, max_shift + 1, (au.shape[1],), generator=g)
    pad = torch.nn.functional.pad(au, (max_shift, max_shift))
    out = torch.empty_like(au)
    for b in range(au.shape[1]):
        c0 = max_shift - int(d[b])
        out[:, b] = pad[:, b, :, c0:c0 + C]
    return out


def swap_audio_within_class(idx: torch.Tensor, labels: np.ndarray, frac: float, g: torch.Generator
                 ) -> torch.Tensor:
    """Audio indices for the training samples ``idx``: a fraction ``frac`` of them replaced by
    a random training sample of the same class (new event/audio pairs every epoch)."""
    if frac <= 0:
        return idx
    lab = torch.from_numpy(labels)
    swap = torch.rand(len(idx), generator=g) < frac
    r = torch.rand(len(idx), generator=g)
    out = idx.clone()
    for j in torch.nonzero(swap).flatten().tolist():
        pool = torch.nonzero(lab == lab[idx[j]]).flatten()
        out[j] = pool[int(r[j] * len(pool)) % len(pool)]
    return out


def occlude_events(ev: torch.Tensor, prob: float, max_fraction: float, g: torch.Generator
                   ) -> torch.Tensor:
    """ev (T, B, P, H, W): with probability ``prob`` a sample loses a random square patch
    covering a fraction drawn uniformly from (0, max_fraction] of the sensor (all steps and
    polarities: an object in front of the camera)."""
    if prob <= 0 or max_fraction <= 0:
        return ev
    T, B, P, H, W = ev.shape
    hit = torch.rand(B, generator=g) < prob
    frac = torch.rand(B, generator=g) * max_fraction
    seeds = torch.randint(0, 2**31 - 1, (B,), generator=g)
    out = ev.clone()
    for b in torch.nonzero(hit).flatten().tolist():
        rng = np.random.default_rng(int(seeds[b]))
        x0, y0, sx, sy = Occlusion(max(float(frac[b]), 1e-3)).patch(W, H, rng)
        out[:, b, :, y0:y0 + sy, x0:x0 + sx] = 0
    return out


def add_audio_noise(au: torch.Tensor, audio_idx: torch.Tensor, variants: np.ndarray | None,
                    prob: float, g: torch.Generator) -> torch.Tensor:
    """au (T, B, 2, C) of the samples ``audio_idx``: each replaced, with probability ``prob``,
    by one of its noisy variants (``variants``: (N, V, T, 2, C) from
    :func:`noisy_audio_variants`)."""
    if prob <= 0 or variants is None:
        return au
    B = au.shape[1]
    hit = torch.rand(B, generator=g) < prob
    which = torch.randint(0, variants.shape[1], (B,), generator=g)
    out = au.clone()
    for b in torch.nonzero(hit).flatten().tolist():
        out[:, b] = torch.from_numpy(
            variants[int(audio_idx[b]), int(which[b])].astype(np.float32))
    return out
