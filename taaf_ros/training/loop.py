"""Training and evaluation: model/loss from the method, the optimiser of ``optim.py`` (AdamW
or SGD, warm-up/cosine, per-modality learning rates), per-epoch evaluation, atomic per-epoch
checkpoints and an exact ``resume``.

Checkpoints in the run folder:
    last.pt   training state after the last finished epoch (weights, optimizer, scheduler,
              epoch, RNG state, history, the TrainConfig); rewritten atomically every epoch,
              so an interrupt or crash loses at most the epoch in progress.
    model.pt  the final model with its model card (what the ROS node loads).
Validation: one training speaker (``val_speaker``) is held out of training, speaker-disjoint as
the test speaker is. It is evaluated every ``eval_every`` epochs and picks the reported epoch
(the best validation accuracy; the earliest on a tie); the test split is evaluated once, at the
end, on that epoch's weights, and the metrics say which epoch was chosen. Without a validation
speaker the final epoch is reported and the test split is evaluated along the way (learning
curves only: choosing an epoch by test accuracy would report an optimistic number).

Imbalance ratio (reported per evaluation): ``acc_dominant / acc_weaker`` of the two unimodal
readouts (``TAAFOutput.unimodal_logits``) on the test split; 1.0 means both modalities alone
are equally good, larger means one modality carries the decision. Also logged per epoch: the
mean contribution ratio rho_events (DESIGN 3.4: events' attention-weighted true-class
probability over audio's, > 1 = events dominate) and the mean balancing coefficients k_m.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.data.readers import EadDataset
from taaf_ros.frontend import FrontEndConfig
from taaf_ros.model import (
    MODALITIES,
    BalancedFusionLoss,
    CheckpointError,
    ModelConfig,
    TAAFNet,
    load_checkpoint,
    load_training_state,
    make_model_card,
    measure_energy,
    remove_orphans,
    save_checkpoint,
    save_training_state,
    select_device,
)
from taaf_ros.model.calibration import fit_readout_weights, identity_weights
from taaf_ros.model.loss import contributions

from .augment import (
    add_audio_noise,
    noisy_audio_variants,
    occlude_events,
    shift_channels,
    shift_events,
    shift_time,
    swap_audio_within_class,
)
from .config import TrainConfig, flatten
from .data import TensorSet, epoch_generator, load_split, split_validation
from .distributed import Distributed, init_distributed, shutdown_distributed
from .evaluation import evaluate, predict, summarize, tensor_batches
from .optim import make_optimizer, scale_encoder_lr
from .transfer import init_from_checkpoint, trainable

#: Config keys that may differ between a run and its resumption (they do not change results).
RESUME_FREE_KEYS = {"resume", "progress", "num_threads", "device", "out_dir", "data_root",
                    "cache_dir", "checkpoint", "eval_every", "eval_batch_size", "stop_after",
                    "feature_cache"}


#: Config keys renamed since a run may have been saved: old name -> new (resume maps them).
RENAMED_KEYS = {"augment.repair": "augment.swap_audio"}


def model_config(cfg: TrainConfig, n_classes: int) -> ModelConfig:
    """``cfg.model`` with what the data and the front end decide: the classes, T and the
    input sizes. A value set to something else is an error, never silently replaced."""
    fe = cfg.frontend
    derived = {"n_classes": n_classes, "T": fe.n_time_bins,
               "event_shape": (2, fe.input_size[1], fe.input_size[0]),
               "audio_channels": fe.cochlea.n_channels}
    unset = ModelConfig()
    for key, value in derived.items():
        have = getattr(cfg.model, key)
        if have != getattr(unset, key) and have != value:
            raise ValueError(f"model.{key} is {have} but the data / front end give {value}: "
                             "leave it unset")
    return replace(cfg.model, **derived)


def build_model(cfg: TrainConfig, n_classes: int) -> tuple[TAAFNet, BalancedFusionLoss]:
    """The method's network and loss (``cfg.model`` and ``cfg.loss`` carry its preset)."""
    mcfg = model_config(cfg, n_classes)
    return TAAFNet(mcfg), BalancedFusionLoss(cfg.loss, mcfg)


def fit_late_fusion(model: TAAFNet, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Late-fusion weights fitted on held-out ``outputs`` (``evaluation.predict``); the identity
    for a one-modality model, whose readout is its head."""
    used = torch.tensor([m in model.cfg.modalities for m in MODALITIES])
    if int(used.sum()) < 2:
        return identity_weights(len(MODALITIES))
    return fit_readout_weights(outputs["head_logits"], outputs["unimodal_logits"],
                               outputs["present"], outputs["y"], used)


def _energy(model: TAAFNet, data: TensorSet, n: int = 64,
            device: torch.device | None = None) -> dict[str, Any]:
    """Energy per inference window from ``measure_energy`` on the first ``n`` test samples."""
    ev, au, _ = data.batch(np.arange(min(n, len(data))))
    device = device or torch.device("cpu")
    rep = measure_energy(model, ev.to(device), au.to(device))
    return {"energy_uj": rep.energy_pj / 1e6, "ann_energy_uj": rep.ann_energy_pj / 1e6,
            "energy_ratio_ann_over_snn": rep.ratio, "sops": rep.sops, "macs": rep.macs,
            "ann_macs": rep.ann_macs, "firing_rates": rep.firing_rates}


def _setup_torch(cfg: TrainConfig) -> tuple[torch.device, Distributed]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.num_threads > 0:
        torch.set_num_threads(max(1, cfg.num_threads // world))  # the cores are shared
    # cheap on CPU; on CUDA some kernels fall back to slower deterministic versions
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = select_device(cfg.device)
    if world > 1 and device.type == "cuda":  # one GPU per process (written; untested here)
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device, init_distributed(device)


def _dataset_info(root: Path, ds_meta: dict, train: TensorSet | None, test: TensorSet
                  ) -> dict[str, Any]:
    return {"root": str(root), "name": ds_meta.get("name", root.name),
            "n_train": len(train) if train is not None else None, "n_test": len(test),
            "split_rule": ds_meta.get("split_rule")}


def _card(model: TAAFNet, classes: list[str], fe: FrontEndConfig, audio_rate: int,
          metrics: dict[str, Any], command: str, method: str,
          init_from: dict[str, Any] | None = None) -> dict[str, Any]:
    card = make_model_card(model, classes=classes, window_s=fe.window_s, audio_rate=audio_rate,
                           frontend=fe.to_dict(), metrics=metrics, command=command,
                           method=method)
    if init_from:
        card["init_from"] = init_from  # where the weights started: path, sha256, classes
    return card


def _check_dataset(ds: EadDataset, cfg: TrainConfig) -> None:
    """A dataset built for another front end, or without a modality the method reads, would
    train on tensors the node never computes: refused with the fix."""
    missing = [m for m in cfg.model.modalities if m not in ds.modalities]
    if missing:
        raise ValueError(f"{ds.root}: the dataset has no {' or '.join(missing)} "
                         f"(modalities {', '.join(ds.modalities)}): train it with --method "
                         f"{'events-only' if 'events' in ds.modalities else 'audio-only'}")
    window = ds.meta.get("window_s")
    if window is not None and abs(float(window) - cfg.frontend.window_s) > 1e-9:
        raise ValueError(f"{ds.root}: samples are {window} s windows, the front end's are "
                         f"{cfg.frontend.window_s} s: give --frontend.window-s {window} or "
                         "rebuild the dataset with a model of that window (taaf_dataset "
                         "--model)")
    rate = ds.meta.get("audio_rate")
    if "frontend" in ds.meta and rate is not None and int(rate) != \
            cfg.frontend.cochlea.sample_rate:
        raise ValueError(f"{ds.root}: audio at {rate} Hz (the model rate it was built for), "
                         f"the front end's cochlea runs at {cfg.frontend.cochlea.sample_rate} "
                         "Hz: rebuild the dataset with taaf_dataset --model of this front end")


def _share_held_out_contributions(loss_fn: BalancedFusionLoss, dctx: Distributed) -> None:
    """Every process balances with the contributions rank 0 measured on validation (a sum
    in which the other ranks put zeros); called by all ranks at the end of each epoch."""
    if loss_fn.cfg.balance_on != "validation" or not dctx.enabled:
        return
    T, M = loss_fn.model_cfg.T, len(MODALITIES)
    buf = torch.zeros(T * M + 1)
    if dctx.is_main and loss_fn.held_out_contributions is not None:
        buf[:-1], buf[-1] = loss_fn.held_out_contributions.reshape(-1), 1.0
    buf = dctx.all_reduce_sum(buf)
    loss_fn.set_held_out_contributions(buf[:-1].reshape(T, M) if float(buf[-1]) > 0 else None)


def _check_resume_config(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = flatten(cfg.to_dict())
    saved = {RENAMED_KEYS.get(k, k): v for k, v in flatten(saved).items()}
    diff = {k: (saved.get(k), v) for k, v in now.items()
            if k not in RESUME_FREE_KEYS and saved.get(k) != v}
    if diff:
        raise CheckpointError(
            f"{path}: cannot resume with different settings (saved, now): {diff}")


def _train_batch(data: TensorSet, idx: torch.Tensor, cfg: TrainConfig, model: TAAFNet,
                 g: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An augmented training batch: (events, audio, labels, present (B, M) bool)."""
    ev, _, y = data.batch(idx)
    aug = cfg.augment
    audio_idx = swap_audio_within_class(idx, data.labels, aug.swap_audio, g)
    _, au, _ = data.batch(audio_idx)
    ev = shift_events(ev, aug.shift, g)
    ev = occlude_events(ev, aug.occlusion, aug.occlusion_max, g)
    au = add_audio_noise(au, audio_idx, data.noisy_audio, aug.noise, g)
    au = shift_channels(au, aug.channel_shift, g)
    ev, au = shift_time(ev, au, aug.time_shift, g)
    B, M = len(idx), len(MODALITIES)
    present = torch.tensor([m in model.cfg.modalities for m in MODALITIES]).expand(B, M)
    present = present.clone()
    if aug.modality_dropout > 0 and bool(present.all()):
        drop = torch.rand(B, generator=g) < aug.modality_dropout
        which = torch.randint(0, M, (B,), generator=g)
        present[drop, which[drop]] = False
    return ev, au, y, present


def train(cfg: TrainConfig, command: str = "") -> dict[str, Any]:
    """Train ``cfg.method`` on the dataset; returns the metrics written to metrics.json.

    ``cfg.stop_after`` ends this invocation early (the schedule still spans ``cfg.epochs``,
    so ``resume`` continues exactly).
    Raises CheckpointError when ``cfg.resume`` is set and the checkpoint is unusable.
    Under ``torchrun`` it trains on every process (see ``distributed.py``); rank 0 returns
    the metrics, the others ``{"rank": r}``.
    """
    device, dctx = _setup_torch(cfg)
    try:
        return _train(cfg, command, device, dctx)
    finally:
        shutdown_distributed()


def _train(cfg: TrainConfig, command: str, device: torch.device, dctx: Distributed
           ) -> dict[str, Any]:
    from .report import write_outputs

    out = cfg.resolved_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    if not dctx.is_main:
        dctx.barrier()  # rank 0 builds the dataset and the feature cache first
    root = ensure_ead_dataset(cfg.resolved_data_root(), cfg.cache_dir, cfg.seed,
                              cfg.limit_per_class, cfg.progress)
    fe = cfg.frontend
    cache = out / "cache" if cfg.feature_cache else None
    t0 = time.perf_counter()
    train_set, ds = load_split(root, cfg.train_split, fe, cfg.limit_per_class, cache,
                               cfg.progress)
    test_set, _ = load_split(root, cfg.test_split, fe, cfg.limit_per_class, cache,
                             cfg.progress)
    _check_dataset(ds, cfg)
    val_set, val_speaker = None, None
    if cfg.val_speaker:
        train_set, val_set, val_speaker = split_validation(train_set, cfg.val_speaker,
                                                           ds.groups)
    if cfg.augment.noise > 0:  # noisy copies of the training recordings only (augment.py)
        train_set.noisy_audio = noisy_audio_variants(
            root, cfg.train_split, train_set.ids, fe, cfg.augment.noise_variants,
            cfg.augment.noise_snr, cfg.seed, cache, cfg.progress and dctx.is_main)
    frontend_s = time.perf_counter() - t0
    if dctx.is_main:
        dctx.barrier()
        if val_set is not None:
            print(f"validation: speaker {val_speaker} ({len(val_set)} samples) held out of "
                  f"training ({len(train_set)} left); it picks the epoch"
                  + (" and fits the late fusion" if cfg.late_fusion else ""))
    classes = ds.classes
    audio_rate = int(ds.meta.get("audio_rate", fe.cochlea.sample_rate))

    torch.manual_seed(cfg.seed)
    model, loss_fn = build_model(cfg, len(classes))
    provenance: dict[str, Any] = {}
    if cfg.init_from:
        provenance = init_from_checkpoint(model, cfg.init_from, fe, classes, cfg.init_freeze)
        if dctx.is_main:
            print(f"initialised from {cfg.init_from}: {provenance['copied_tensors']} tensors "
                  f"copied, rebuilt {', '.join(provenance['rebuilt']) or 'nothing'}; "
                  f"freeze {cfg.init_freeze}: {trainable(model):,} parameters train")
    model.to(device)
    net: torch.nn.Module = model
    if dctx.enabled:
        model.run_every_encoder = True  # the same collectives on every process
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)
        loss_fn.reduce = dctx.all_reduce_sum
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg.optim, cfg.epochs * steps_per_epoch)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}  # validation's pick: epoch, val_acc, state (CPU tensors)
    start_epoch, train_time = 0, 0.0
    last = out / "last.pt"
    if dctx.is_main:
        for name in ("last.pt", "model.pt"):
            remove_orphans(out / name)
    if cfg.resume:
        path = Path(cfg.checkpoint) if cfg.checkpoint else last
        state = load_training_state(path, model, opt)
        extra = state.extra
        _check_resume_config(extra.get("train_config", {}), cfg, path)
        try:
            sched.load_state_dict(extra["scheduler"])
            torch.set_rng_state(extra["rng_state"])
            history, train_time = list(extra["history"]), float(extra["train_time_s"])
            best = dict(extra.get("best") or {})
            held_out = extra.get("held_out_contributions", extra.get("held_out_s"))  # older name
            if held_out is not None:
                loss_fn.set_held_out_contributions(torch.tensor(held_out))
        except (KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: incomplete training state: {e}") from e
        start_epoch = state.epoch
        if dctx.is_main:
            print(f"resumed from {path} after epoch {start_epoch}")

    end_epoch = cfg.epochs if cfg.stop_after <= 0 else min(cfg.epochs, cfg.stop_after)
    show = cfg.progress and dctx.is_main
    epochs_bar = tqdm(range(start_epoch, end_epoch), desc=cfg.method, unit="epoch",
                      disable=not show, initial=start_epoch, total=cfg.epochs)
    for epoch in epochs_bar:
        t_ep = time.perf_counter()
        model.train()
        g = epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(train_set), generator=g)
        sums: dict[str, float] = {"loss": 0.0, "ce": 0.0, "correct": 0.0, "rho_events": 0.0,
                                  "k_events": 0.0, "k_audio": 0.0}
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", unit="batch",
                   leave=False, disable=not show)
        for b in bar:
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            # every rank draws the whole global batch (same generator), then takes its share
            ev, au, y, present = _train_batch(train_set, idx, cfg, model, g)
            sl = dctx.share(len(idx))
            ev, au, y, present = (ev[:, sl].to(device), au[:, sl].to(device), y[sl].to(device),
                                  present[sl].to(device))
            k = loss_fn.new_grad_scale()
            outp = net(ev, au, present=present, grad_scale=k)
            loss, info = loss_fn(outp, y, grad_scale=k)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss_fn.after_backward(model, info)
            scale_encoder_lr(opt, info["lr_scale"])  # this step only: sched.step() resets it
            opt.step()
            sched.step()
            nb = len(y)
            sums["loss"] += info["loss"] * nb
            sums["ce"] += info["ce"] * nb
            sums["correct"] += float((outp.logits.argmax(-1) == y).sum())
            for key in ("rho_events", "k_events", "k_audio"):
                sums[key] += info[key] * nb
            bar.set_postfix(loss=f"{info['loss']:.3f}")
        keys = list(sums)
        totals = dctx.all_reduce_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64))
        sums = dict(zip(keys, totals.tolist(), strict=True))
        n = len(train_set)
        row: dict[str, Any] = {
            "epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
            "train_loss": sums["loss"] / n, "train_ce": sums["ce"] / n,
            "train_acc": sums["correct"] / n,
            "train_rho_events": sums["rho_events"] / n,
            "train_k_events": sums["k_events"] / n, "train_k_audio": sums["k_audio"] / n,
        }
        train_time += time.perf_counter() - t_ep
        row["epoch_time_s"] = time.perf_counter() - t_ep
        if not dctx.is_main:  # rank 0 evaluates and writes; the history lives there
            history.append(row)
            _share_held_out_contributions(loss_fn, dctx)
            dctx.barrier()
            continue
        if (epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == cfg.epochs:
            split = "val" if val_set is not None else "test"
            outputs = predict(model, tensor_batches(
                val_set if val_set is not None else test_set, cfg.eval_batch_size), device)
            weights = None
            if val_set is not None and cfg.late_fusion:
                weights = fit_late_fusion(model, outputs)
            ev_res = summarize(model, outputs, readout_weights=weights)
            row.update({f"{split}_acc": ev_res["acc"], f"{split}_acc_head": ev_res["acc_head"],
                        **{f"{split}_acc_{m}": a for m, a in ev_res["acc_per_modality"].items()},
                        f"{split}_imbalance": ev_res["imbalance"],
                        f"{split}_modality_attention": ev_res["modality_attention"]})
            if weights is not None:
                row["readout_weights"] = weights.tolist()
            if val_set is not None and loss_fn.cfg.balance_on == "validation":
                s_sum, n_v = contributions(outputs["attention_map"],
                                           outputs["step_logits_per_modality"], outputs["y"],
                                           torch.ones(len(outputs["y"])))
                loss_fn.set_held_out_contributions(s_sum / n_v)
            if val_set is not None and ev_res["acc"] > best.get("val_acc", -1.0):
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                if weights is not None:
                    state["readout_weights"] = weights.clone()
                best = {"epoch": epoch + 1, "val_acc": ev_res["acc"], "state": state}
        history.append(row)
        acc = f"{row.get('val_acc', row.get('test_acc', float('nan'))):.3f}"
        epochs_bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=acc)
        if not cfg.progress:  # logs of unattended runs (taaf_loso) still show progress
            print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.3f}, "
                  f"{'val' if val_set is not None else 'test'} acc {acc}", flush=True)
        # After every epoch: atomic, so an interrupt never loses a finished epoch.
        save_training_state(
            last, model,
            _card(model, classes, fe, audio_rate, {}, command, cfg.method, provenance), opt,
            epoch + 1,
            extra={"scheduler": sched.state_dict(), "rng_state": torch.get_rng_state(),
                   "history": history, "train_time_s": train_time, "best": best,
                   "train_config": cfg.to_dict(),
                   "held_out_contributions": (None if loss_fn.held_out_contributions is None
                                             else loss_fn.held_out_contributions.tolist())})
        _share_held_out_contributions(loss_fn, dctx)
        dctx.barrier()
    if end_epoch < cfg.epochs:
        return {"stopped_after_epoch": end_epoch, "history": history}
    if not dctx.is_main:
        return {"rank": dctx.rank}

    if best:
        model.load_state_dict(best["state"])  # validation's epoch, for the test and model.pt
    final = evaluate(model, test_set, cfg.eval_batch_size, device)
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "selected_epoch": best.get("epoch", cfg.epochs),
        "selected_by": f"validation speaker {val_speaker}" if best else "final epoch",
        "val_acc": best.get("val_acc"),
        "late_fusion_weights": dict(zip(("head", *MODALITIES),
                                        model.readout_weights.tolist(), strict=True)),
        "test_acc": final["acc"],
        "test_acc_head": final["acc_head"],
        "test_acc_per_modality": final["acc_per_modality"],
        "imbalance": final["imbalance"],
        "modality_attention": final["modality_attention"],
        "attention_map": final["attention_map"],
        "confusion": final["confusion"],
        "energy": _energy(model, test_set, device=device),
        "train_time_s": train_time,
        "time_per_epoch_s": train_time / max(1, len(history)),
        "frontend_time_s": frontend_s,
        "epochs": cfg.epochs,
        "n_params": model.n_params(),
        "history": history,
        "dataset": {**_dataset_info(root, ds.meta, train_set, test_set),
                    "val_speaker": val_speaker, "n_val": len(val_set) if val_set else 0},
        "classes": classes,
        "command": command,
        "config": cfg.to_dict(),
        "torch_threads": torch.get_num_threads(),
    }
    card_metrics = {k: metrics[k] for k in ("test_acc", "test_acc_per_modality", "imbalance",
                                            "train_time_s", "epochs", "selected_epoch",
                                            "val_acc")}
    card_metrics["dataset"] = metrics["dataset"]["name"]
    save_checkpoint(out / "model.pt", model,
                    _card(model, classes, fe, audio_rate, card_metrics, command, cfg.method,
                          provenance))
    write_outputs(out, metrics)
    return metrics


def evaluate_checkpoint(cfg: TrainConfig, command: str = "") -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.data_root``'s test split; front end from the card.

    Writes metrics.json, results.md and plots into out_dir (default: <checkpoint dir>/eval).
    """
    from .report import write_outputs

    if not cfg.checkpoint:
        raise ValueError("--eval-only needs --checkpoint FILE")
    device, _ = _setup_torch(cfg)
    loaded = load_checkpoint(cfg.checkpoint)
    card = loaded.card
    model = loaded.model.to(device)
    fe = FrontEndConfig.from_dict(card["frontend"])  # tensors exactly as in training
    root = ensure_ead_dataset(cfg.resolved_data_root(), cfg.cache_dir, cfg.seed,
                              cfg.limit_per_class, cfg.progress)
    out = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.checkpoint).parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    test_set, ds = load_split(root, cfg.test_split, fe, cfg.limit_per_class,
                              out / "cache" if cfg.feature_cache else None, cfg.progress)
    if list(ds.classes) != list(card["classes"]):
        raise CheckpointError(f"dataset classes {ds.classes} differ from the model's "
                              f"{card['classes']}")
    res = evaluate(model, test_set, cfg.eval_batch_size, device, cfg.progress)
    metrics = {
        "method": card.get("method", ""), "eval_only": True, "checkpoint": cfg.checkpoint,
        "test_acc": res["acc"], "test_acc_per_modality": res["acc_per_modality"],
        "imbalance": res["imbalance"], "modality_attention": res["modality_attention"],
        "attention_map": res["attention_map"], "confusion": res["confusion"],
        "energy": _energy(model, test_set, device=device), "history": [],
        "dataset": _dataset_info(root, ds.meta, None, test_set), "classes": ds.classes,
        "command": command, "training_command": card.get("command", ""),
        "card_metrics": card.get("metrics", {}),
    }
    write_outputs(out, metrics)
    return metrics


__all__ = ["build_model", "evaluate", "evaluate_checkpoint", "model_config",
           "make_optimizer", "train"]
