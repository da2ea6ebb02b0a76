"""Training augmentation: small geometric jitter, new event/audio pairs, and corruptions.

Everything here draws from the epoch's generator (``data.epoch_generator``), so a resumed run
sees exactly the batches an uninterrupted run would have seen.

Corruption augmentation teaches the network what a corrupted input looks like, so that its
readouts lose confidence and its modality attention turns away from a sensor that stops
carrying the class. It uses the operations of the test-time protocol
(``taaf_ros.data.corruptions``):

- occlusion: a random square patch of the event tensor zeroed. The training data's sensor is
  the network's input size (no crop or downsampling), so this equals dropping the events inside
  the patch before binning;
- audio noise: the cochlea is non-linear, so noisy audio cannot be made on the tensors. Each
  training recording gets ``n_variants`` noisy copies (white or babble at a random SNR) run
  through the front end once, cached with the other front-end tensors; a training sample takes
  one of them with probability ``noise``. The babble is made of other *training*
  recordings, never of the validation or test speakers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from taaf_ros.data.avdigits import speaker_of
from taaf_ros.data.corruptions import NOISE_FAMILIES, Occlusion, Scene, corruption
from taaf_ros.data.readers import EadDataset
from taaf_ros.frontend import FrontEndConfig, audio_tensor

from .data import CACHE_VERSION, files_fingerprint, read_cache, write_cache


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (training batches only).

    Attributes:
        shift: random translation of each event sample by up to N pixels in x and y (zero
            fill).
        channel_shift: random shift of each audio sample by up to N cochlea channels (zero
            fill): a crude vocal-tract-length perturbation against over-fitting to the
            training speakers.
        swap_audio: fraction of training samples whose audio is swapped for that of another
            training sample of the same class. Only valid where the event/audio pairing is
            arbitrary within a class, as in AV-digits (config/train_ead.yaml sets it); keep 0
            for synchronously recorded data such as EAD.
        modality_dropout: probability that one (random) modality of a training sample is
            marked absent, so each encoder must also work alone (two-modality methods).
        occlusion: probability that a training sample's events lose a random square patch.
        occlusion_max: largest fraction of the sensor a patch covers (uniform in (0, max]).
        noise: probability that a training sample's audio is one of its noisy copies (white,
            or babble of other training recordings).
        noise_snr: SNR range (dB) of the noisy copies: low high.
        noise_variants: noisy copies per training recording (front end run once, cached).
        time_shift: window-offset jitter: the time bins of both modalities of a sample moved
            together by a random k in [-N, N] bins (zero fill), as a sliding window that starts
            k bins before or after the sample sees it. For events this is exactly that window;
            for audio nearly (the cochlea's smoothing restarts at each window's start).
    """

    shift: int = 2
    channel_shift: int = 1
    swap_audio: float = 0.0
    modality_dropout: float = 0.1
    occlusion: float = 0.2
    occlusion_max: float = 0.75
    noise: float = 0.3
    noise_snr: tuple[float, float] = (-10.0, 20.0)
    noise_variants: int = 2
    time_shift: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_snr", tuple(float(v) for v in self.noise_snr))
        if len(self.noise_snr) != 2 or self.noise_snr[0] > self.noise_snr[1]:
            raise ValueError(f"noise_snr must be low high, got {self.noise_snr}")
        probs = (self.swap_audio, self.modality_dropout, self.occlusion, self.noise)
        if not all(0.0 <= p <= 1.0 for p in probs) or not 0.0 <= self.occlusion_max <= 1.0:
            raise ValueError("augmentation probabilities and occlusion_max must be in [0, 1]")
        if (self.shift < 0 or self.channel_shift < 0 or self.time_shift < 0
                or self.noise_variants < 1):
            raise ValueError("need shift, channel_shift, time_shift >= 0 and "
                             "noise_variants >= 1")


def _draw(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A draw of the (CPU) epoch generator, sent to ``like``'s device without waiting."""
    return x.to(like.device, non_blocking=True)


def shift_events(ev: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """ev (T, B, P, H, W): each sample translated by its own random (dy, dx) in
    [-max_shift, max_shift], zero fill (the emulated saccades already move the digit by a few
    pixels, so small shifts stay on the data's manifold). One gather on ev's device."""
    if max_shift <= 0:
        return ev
    T, B, P, H, W = ev.shape
    d = _draw(torch.randint(-max_shift, max_shift + 1, (B, 2), generator=g), ev)
    pad = torch.nn.functional.pad(ev, (max_shift,) * 4)
    rows = torch.arange(H, device=ev.device) + (max_shift - d[:, :1])  # (B, H) in pad
    cols = torch.arange(W, device=ev.device) + (max_shift - d[:, 1:])  # (B, W)
    src = rows[:, :, None] * pad.shape[-1] + cols[:, None, :]  # (B, H, W) flat positions
    src = src.reshape(1, B, 1, H * W).expand(T, B, P, H * W)
    return pad.reshape(T, B, P, -1).gather(3, src).reshape(T, B, P, H, W)


def shift_time(ev: torch.Tensor, au: torch.Tensor, max_shift: int, g: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """ev (T, B, ...) and au (T, B, ...): each sample's time bins moved by its own random k in
    [-max_shift, max_shift], the same k for both modalities, zero fill: k > 0 is a window
    that starts k bins before the sample (the sample arrives late in it)."""
    if max_shift <= 0:
        return ev, au
    T, B = ev.shape[:2]
    k = _draw(torch.randint(-max_shift, max_shift + 1, (B,), generator=g), ev)
    src = torch.arange(T, device=ev.device).reshape(T, 1) - k  # (T, B): the bin shown at t
    outside = (src < 0) | (src >= T)
    b = torch.arange(B, device=ev.device)

    def move(x: torch.Tensor) -> torch.Tensor:
        moved = x[src.clamp(0, T - 1), b]
        return moved.masked_fill(outside.reshape(T, B, *(1,) * (x.dim() - 2)), 0)

    return move(ev), move(au)


def shift_channels(au: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """au (T, B, 2, C): each sample's cochlea channels shifted by its own random offset in
    [-max_shift, max_shift], zero fill (mel-spaced channels: a shift scales all formants
    alike, as a different vocal-tract length does)."""
    if max_shift <= 0:
        return au
    T, B, P, C = au.shape
    d = _draw(torch.randint(-max_shift, max_shift + 1, (B,), generator=g), au)
    pad = torch.nn.functional.pad(au, (max_shift, max_shift))
    src = torch.arange(C, device=au.device) + (max_shift - d[:, None])  # (B, C) in pad
    return pad.gather(3, src.reshape(1, B, 1, C).expand(T, B, P, C))


def swap_audio_within_class(idx: torch.Tensor, labels: np.ndarray, frac: float,
                            g: torch.Generator) -> torch.Tensor:
    """Audio indices for the training samples ``idx``: a fraction ``frac`` of them replaced by
    a random training sample of the same class (new event/audio pairs every epoch)."""
    if frac <= 0:
        return idx
    lab = torch.from_numpy(labels)
    swap = torch.rand(len(idx), generator=g) < frac
    r = torch.rand(len(idx), generator=g)
    by_class = torch.argsort(lab, stable=True)  # each class's samples, in dataset order
    count = torch.bincount(lab)
    first = torch.cumsum(count, 0) - count
    c = lab[idx]
    pick = by_class[first[c] + (r * count[c]).long() % count[c]]
    return torch.where(swap, pick, idx)


def occlude_events(ev: torch.Tensor, prob: float, max_fraction: float, g: torch.Generator
                   ) -> torch.Tensor:
    """ev (T, B, P, H, W): with probability ``prob`` a sample loses a random square patch
    covering a fraction drawn uniformly from (0, max_fraction] of the sensor (all steps and
    polarities: an object in front of the camera). The patches are placed on the host (the
    test-time protocol's ``Occlusion.patch``), the mask applied on ev's device."""
    if prob <= 0 or max_fraction <= 0:
        return ev
    T, B, P, H, W = ev.shape
    hit = torch.rand(B, generator=g) < prob
    frac = torch.rand(B, generator=g) * max_fraction
    seeds = torch.randint(0, 2**31 - 1, (B,), generator=g)
    box = torch.zeros(4, B, dtype=torch.long)  # x0, y0, sx, sy; sx = sy = 0: no patch
    for b, (on, f, seed) in enumerate(zip(hit.tolist(), frac.tolist(), seeds.tolist(),
                                          strict=True)):
        if on:
            rng = np.random.default_rng(seed)
            box[:, b] = torch.tensor(Occlusion(max(f, 1e-3)).patch(W, H, rng))
    x0, y0, sx, sy = _draw(box, ev).reshape(4, B, 1)
    xs, ys = torch.arange(W, device=ev.device), torch.arange(H, device=ev.device)
    in_x, in_y = (xs >= x0) & (xs < x0 + sx), (ys >= y0) & (ys < y0 + sy)  # (B, W), (B, H)
    return ev.masked_fill((in_y[:, :, None] & in_x[:, None, :])[None, :, None], 0)


def recording_of(sample_id: str) -> str:
    """The audio recording a sample's sound comes from: AV-digits pairs each FSDD recording
    (``{digit}_{speaker}_{take}``) with several images, so its samples share the recording."""
    return "_".join(sample_id.split("_")[:3]) if speaker_of(sample_id) else sample_id


def noisy_audio_variants(root: str | Path, split: str, ids: list[str], fe: FrontEndConfig,
                         n_variants: int, snr_db: tuple[float, float], seed: int,
                         cache_dir: str | Path | None = None, progress: bool = False
                         ) -> np.ndarray:
    """(N, n_variants, T, 2, C) audio tensors of the samples ``ids`` of ``split`` with noise.

    Variant v of a recording is white or babble noise (alternating, starting at random) at an
    SNR drawn uniformly from ``snr_db``, from a generator seeded by (seed, recording, v). The
    babble pool is the recordings of ``ids`` themselves (the training speakers only). Computed
    once per recording and cached in ``cache_dir`` under a key of everything it depends on.
    """
    ds = EadDataset(root, split)
    where = {s[3]: i for i, s in enumerate(ds.samples)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise ValueError(f"{root}/{split}: no samples {missing[:3]}")
    recordings = sorted({recording_of(i) for i in ids})
    rows = [{r: k for k, r in enumerate(recordings)}[recording_of(i)] for i in ids]
    first = {}
    for i in ids:
        first.setdefault(recording_of(i), i)
    cache = None
    if cache_dir is not None:
        blob = json.dumps({"v": CACHE_VERSION, "frontend": fe.to_dict(), "meta": ds.meta,
                           "split": split, "recordings": recordings, "n": n_variants,
                           "snr": list(snr_db), "seed": seed,
                           "files": files_fingerprint(ds, [where[first[r]] for r in recordings])},
                          sort_keys=True, default=str)
        key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"noisy-{split}-{key}.npy"
        per_rec = read_cache(cache, lambda f: np.load(f, allow_pickle=False))
        if per_rec is not None:
            return per_rec[rows]
    raw = {r: ds[where[first[r]]] for r in recordings}
    scene = Scene(ds.sensor_size, 0, babble_pool=[(s.pcm, s.sample_rate) for s in raw.values()])
    dtype = np.uint8 if fe.max_count <= 255 else np.int16
    out = []
    for k, r in enumerate(tqdm(recordings, desc="noisy audio", unit="recording",
                               disable=not progress)):
        s = raw[r]
        rng = np.random.default_rng([seed, k])
        start = int(rng.integers(len(NOISE_FAMILIES)))
        variants = []
        for v in range(n_variants):
            family = NOISE_FAMILIES[(start + v) % len(NOISE_FAMILIES)]
            snr = float(rng.uniform(*snr_db))
            noise = corruption(family, snr)  # WhiteNoise or Babble at a random SNR
            _, noisy = noise(s.events, s.pcm, s.sample_rate, scene, rng)
            variants.append(audio_tensor(noisy, s.sample_rate, fe).astype(dtype))
        out.append(np.stack(variants))
    per_rec = np.stack(out)
    if cache is not None:
        write_cache(cache, lambda f: np.save(f, per_rec))
    return per_rec[rows]


def add_audio_noise(au: torch.Tensor, audio_idx: torch.Tensor, variants: torch.Tensor | None,
                    prob: float, g: torch.Generator) -> torch.Tensor:
    """au (T, B, 2, C) of the samples ``audio_idx`` (on au's device): each replaced, with
    probability ``prob``, by one of its noisy variants (``variants``: (N, V, T, 2, C) from
    :func:`noisy_audio_variants`, on au's device, of au's dtype)."""
    if prob <= 0 or variants is None:
        return au
    B = au.shape[1]
    hit = _draw(torch.rand(B, generator=g) < prob, au)
    which = _draw(torch.randint(0, variants.shape[1], (B,), generator=g), au)
    noisy = variants[audio_idx, which].transpose(0, 1)  # (T, B, 2, C)
    return torch.where(hit.reshape(1, B, 1, 1), noisy, au)
