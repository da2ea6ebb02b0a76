"""One evaluation: the trainer, taaf_robustness and taaf_fusion_study report the same numbers
for the same checkpoint and data, single-modality checkpoints included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from taaf_ros.apps import train as cli
from taaf_ros.model import MODALITIES, ModelConfig, TAAFNet
from taaf_ros.training.evaluation import predict, presence, readout_accuracies, summarize


def test_a_one_modality_model_is_judged_by_its_head_not_its_untrained_readout() -> None:
    torch.manual_seed(0)
    net = TAAFNet(ModelConfig(hidden=16, event_widths=(4,), audio_widths=(4,),
                              modalities=("events",))).eval()
    cfg = net.cfg
    ev = torch.rand(cfg.T, 6, *cfg.event_shape) * 3
    au = torch.zeros(cfg.T, 6, 2, cfg.audio_channels)
    with torch.no_grad():
        head = net(ev, au).head_logits.argmax(-1)
        net.head.read_m[0].bias.copy_(torch.arange(cfg.n_classes) * 100.0)  # always the last
    y = head.clone()  # the head is right on every sample, the aux readout on none
    y[0] = (head[0] + 1) % cfg.n_classes
    out = predict(net, [(ev, au, y)])
    assert bool((out["unimodal_logits"][:, 0].argmax(-1) == cfg.n_classes - 1).all())
    acc = readout_accuracies(net, out)
    assert acc == {"events": pytest.approx(5 / 6), "audio": None}
    assert summarize(net, out)["imbalance"] is None
    assert predict(net, [(ev, au, y)], missing="events") is None  # nothing left to classify
    assert presence(net, 1, "audio").tolist() == [[True, False]]


@pytest.fixture(scope="module")
def tiny_runs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from taaf_ros.data.avdigits import ensure_ead_dataset

    tmp = tmp_path_factory.mktemp("runs")
    root = ensure_ead_dataset(data_root, tmp / "data", limit_per_class=8, progress=False,
                              test_speakers=("theo",))
    tiny = ["--data-root", str(root), "--val-speaker", "yweweler", "--epochs", "1",
            "--model.hidden", "16", "--model.event-widths", "8", "--model.audio-widths", "8",
            "--batch-size", "10", "--no-progress"]
    for method in ("taaf-balanced", "events-only"):
        assert cli.main([*tiny, "--method", method, "--out-dir", str(tmp / method)]) == 0
    return tmp


@pytest.mark.slow
def test_trainer_robustness_and_fusion_study_agree_on_one_checkpoint(tiny_runs: Path) -> None:
    from taaf_ros.data.corruptions import Clean
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.frontend import FrontEndConfig
    from taaf_ros.model import load_checkpoint
    from taaf_ros.model.late_fusion import combine_readouts
    from taaf_ros.studies import fusion_study, robustness

    for method in ("taaf-balanced", "events-only"):
        run = tiny_runs / method
        trained = json.loads((run / "metrics.json").read_text())
        root = trained["dataset"]["root"]
        report = robustness.run([run / "model.pt"], root, log=lambda _: None)
        (clean,) = (res["clean"] for res in report["results"].values())
        assert clean["acc"] == pytest.approx(trained["test_acc"], abs=1e-6), method
        for m in MODALITIES:
            want = trained["test_acc_per_modality"][m]
            got = clean["acc_per_modality"][m]
            assert (got is None) == (want is None), (method, m)
            assert want is None or got == pytest.approx(want, abs=1e-6), (method, m)

        loaded = load_checkpoint(run / "model.pt")
        model = loaded.model.eval()
        test = EadDataset(root, "test")
        h, u, p, y, _ = fusion_study.outputs(
            model, test, FrontEndConfig.from_dict(loaded.card["frontend"]),
            Clean(), 0.0, 600_000, [], 0, {})
        fused = combine_readouts(h, u, p, model.readout_weights).argmax(-1) if len(
            model.cfg.modalities) == 2 else h.argmax(-1)
        assert float((fused == y).float().mean()) == pytest.approx(trained["test_acc"], abs=1e-6)
    single = json.loads((tiny_runs / "events-only" / "metrics.json").read_text())
    # a one-modality model's per-modality accuracy is its head's: the decision's, here
    assert single["test_acc_per_modality"]["events"] == pytest.approx(single["test_acc_head"])
