"""Late fusion fitted on held-out samples, and the corruption augmentation of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from taaf_ros.data.corruptions import occlude
from taaf_ros.data.readers import EVENT_DTYPE
from taaf_ros.frontend import FrontEndConfig, event_tensor
from taaf_ros.model import ModelConfig, TAAFNet, load_checkpoint, make_model_card, save_checkpoint
from taaf_ros.model.late_fusion import combine_readouts, fit_readout_weights, identity_weights
from taaf_ros.training.augment import occlude_events

SMALL = ModelConfig(hidden=16, event_widths=(8,), audio_widths=(8,))


def _experts(n: int, k: int = 10) -> tuple[torch.Tensor, ...]:
    """A confident but often wrong head, a reliable events readout, a useless audio one."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, k, (n,), generator=g)
    wrong = (y + 1) % k
    head = 3 * F.one_hot(torch.where(torch.rand(n, generator=g) < 0.6, y, wrong), k).float()
    events = 2 * F.one_hot(torch.where(torch.rand(n, generator=g) < 0.9, y, wrong), k).float()
    audio = torch.randn(n, k, generator=g)
    return head, torch.stack([events, audio], 1), y


def test_identity_weights_give_the_head_alone() -> None:
    head, uni, _ = _experts(50)
    present = torch.ones(50, 2, dtype=torch.bool)
    out = combine_readouts(head, uni, present, identity_weights(2))
    torch.testing.assert_close(out, F.log_softmax(head, -1))


def test_fit_trusts_the_reliable_readout_and_drops_absent_terms() -> None:
    head, uni, y = _experts(1000)
    present = torch.ones(1000, 2, dtype=torch.bool)
    w = fit_readout_weights(head, uni, present, y, used=torch.tensor([True, True]))
    assert w[1] > w[0] and w[1] > 5 * w[2], w  # events trusted most, noise-audio least
    fused = combine_readouts(head, uni, present, w).argmax(-1)
    assert (fused == y).float().mean() >= (uni[:, 0].argmax(-1) == y).float().mean()
    # a modality the method does not use keeps weight 0
    w_ev = fit_readout_weights(head, uni, present, y, used=torch.tensor([True, False]))
    assert w_ev[2] == 0
    # an absent modality's term is dropped: its logits cannot change the decision
    absent = torch.tensor([[True, False]]).expand(1000, 2)
    a = combine_readouts(head, uni, absent, w)
    b = combine_readouts(head, torch.stack([uni[:, 0], 100 * torch.randn(1000, 10)], 1),
                         absent, w)
    torch.testing.assert_close(a, b)


def test_a_late_fused_network_decides_by_the_fitted_weights_and_saves_them(tmp_path: Path
                                                                          ) -> None:
    torch.manual_seed(0)
    net = TAAFNet(SMALL).eval()
    ev = (torch.rand(8, 4, 2, 34, 34) < 0.1).float()
    au = (torch.rand(8, 4, 2, 32) < 0.2).float()
    before = net(ev, au)
    torch.testing.assert_close(before.logits, before.head_logits)  # no late fusion yet: the head
    w = torch.tensor([0.5, 2.0, 0.25])
    net.set_readout_weights(w)
    after = net(ev, au)
    torch.testing.assert_close(after.logits, combine_readouts(
        after.head_logits, after.unimodal_logits, after.present, w))
    card = make_model_card(net, classes=[str(i) for i in range(10)], window_s=0.6,
                           audio_rate=8000, frontend=FrontEndConfig().to_dict(), method="taaf")
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", net, card)).model.eval()
    assert loaded.late_fusion_fitted
    torch.testing.assert_close(loaded(ev, au).logits, after.logits)
    # a checkpoint written before late fusion existed loads as the head alone
    state = {k: v for k, v in net.state_dict().items() if k != "readout_weights"}
    torch.save({**torch.load(tmp_path / "m.pt", weights_only=True), "state_dict": state},
               tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt").model.eval()
    assert not old.late_fusion_fitted
    torch.testing.assert_close(old(ev, au).logits, after.head_logits)


def test_tensor_occlusion_equals_dropping_the_events_before_binning() -> None:
    """The augmentation zeroes a patch of the tensor; at the network's own sensor size that is
    the test-time corruption (events inside the patch dropped, then binned)."""
    fe = FrontEndConfig()
    rng = np.random.default_rng(3)
    n = 20_000
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, 34, n), rng.integers(0, 34, n)
    ev["t"], ev["p"] = np.sort(rng.integers(0, 600_000, n)), rng.integers(0, 2, n)
    clean = torch.from_numpy(event_tensor(ev, (34, 34), 0, fe).astype(np.float32))
    g = torch.Generator().manual_seed(5)
    hit = occlude_events(clean.unsqueeze(1), 1.0, 0.5, g)[:, 0]
    assert 0 < int((hit != clean).any(0).any(0).sum()) < 34 * 34  # a patch, not everything
    # replay the same draws to get the patch's seed and fraction, then occlude the events
    g = torch.Generator().manual_seed(5)
    torch.rand(1, generator=g)
    frac = max(float(torch.rand(1, generator=g) * 0.5), 1e-3)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    dropped = occlude(ev, (34, 34), frac, np.random.default_rng(seed))
    expected = torch.from_numpy(event_tensor(dropped, (34, 34), 0, fe).astype(np.float32))
    assert torch.equal(hit, expected)


@pytest.mark.slow
def test_noisy_variants_are_cached_and_drawn_from_training_recordings(data_root: Path,
                                                                      tmp_path: Path) -> None:
    from taaf_ros.data.avdigits import ensure_ead_dataset
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.frontend import audio_tensor
    from taaf_ros.training.augment import noisy_audio_variants, recording_of

    root = ensure_ead_dataset(data_root, tmp_path / "data", limit_per_class=2, progress=False)
    ds = EadDataset(root, "train")
    ids = [s[3] for s in ds.samples]
    fe = FrontEndConfig()
    first = noisy_audio_variants(root, "train", ids, fe, 2, (0.0, 0.0), 0, tmp_path / "c")
    assert first.shape[:2] == (len(ids), 2)
    assert len(list((tmp_path / "c").glob("noisy-train-*.npy"))) == 1
    again = noisy_audio_variants(root, "train", ids, fe, 2, (0.0, 0.0), 0, tmp_path / "c")
    assert np.array_equal(first, again)  # read back from the cache
    # samples of one recording share its variants; the variants differ from the clean audio
    by_rec: dict[str, int] = {}
    for j, i in enumerate(ids):
        k = by_rec.setdefault(recording_of(i), j)
        assert np.array_equal(first[j], first[k])
    s = ds[0]
    clean = audio_tensor(s.pcm, s.sample_rate, fe)
    assert not np.array_equal(first[0, 0], clean) and not np.array_equal(first[0, 1], clean)
    with pytest.raises(ValueError, match="no samples"):
        noisy_audio_variants(root, "train", ["nope"], fe, 1, (0.0, 0.0), 0)


def test_time_shift_equals_binning_a_window_that_starts_earlier() -> None:
    """k bins of window-offset jitter on the event tensor = the tensor of the window that
    starts k bins before the sample (its events arrive k bins late), exactly; the audio bins
    move by the same k."""
    from taaf_ros.training.augment import shift_time

    fe = FrontEndConfig()
    T, bin_us = fe.n_time_bins, fe.window_us // fe.n_time_bins
    rng = np.random.default_rng(0)
    n = 4000
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, 34, n), rng.integers(0, 34, n)
    ev["t"] = np.sort(rng.integers(0, fe.window_us, n))
    ev["p"] = rng.integers(0, 2, n)
    B = 8
    frames = torch.from_numpy(event_tensor(ev, (34, 34), 0, fe))[:, None].expand(
        -1, B, -1, -1, -1).contiguous()
    audio = (torch.arange(T, dtype=torch.float32) + 1).view(T, 1, 1).expand(T, B, 4).contiguous()
    shifted, au = shift_time(frames, audio, 3, torch.Generator().manual_seed(3))
    windows = {k: torch.from_numpy(event_tensor(ev, (34, 34), -k * bin_us, fe))
               for k in range(-3, 4)}
    seen = set()
    for b in range(B):
        k = next(k for k, want in windows.items() if torch.equal(shifted[:, b], want))
        first = int(au[:, b, 0].nonzero()[0])
        assert (first, int(au[first, b, 0])) == ((k, 1) if k >= 0 else (0, 1 - k))
        seen.add(k)
    assert len(seen) > 2
    assert shift_time(frames, audio, 0, torch.Generator())[0] is frames
