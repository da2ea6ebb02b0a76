"""The trainer, in stages around one :class:`Run`: ``setup`` (model and loss from the method,
the optimiser of ``optim.py``: AdamW or SGD, warm-up/cosine, per-modality learning rates;
``--init-from``; a resumed :class:`RunState`), ``train_epoch``, ``validate``, ``save_state``
(atomic, every epoch) and ``finish`` (test, model.pt, reports). The data comes in built
(``run_data.load_run_data``); the evaluation is ``evaluation.py``'s.

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

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from taaf_ros.data.avdigits import ensure_ead_dataset
from taaf_ros.frontend import FrontEndConfig
from taaf_ros.model import (
    MODALITIES,
    BalancedFusionLoss,
    CheckpointError,
    ModelConfig,
    TAAFNet,
    TAAFOutput,
    load_checkpoint,
    load_training_state,
    make_model_card,
    measure_energy,
    remove_orphans,
    save_checkpoint,
    save_training_state,
    select_device,
)
from taaf_ros.model.device import DTYPES
from taaf_ros.model.encoders import set_lif_impl
from taaf_ros.model.late_fusion import fit_readout_weights, identity_weights
from taaf_ros.model.loss import contributions

from .batches import ResidentSplit, train_batch
from .config import TrainConfig
from .data import TensorSet, epoch_generator, load_split
from .distributed import Distributed, init_distributed, shutdown_distributed
from .evaluation import evaluate, predict, summarize, tensor_batches
from .host_memory import retain_freed_memory
from .optim import learning_rate, make_optimizer, scale_encoder_lr
from .run_data import RunData, dataset_info, load_run_data
from .run_state import RunState
from .transfer import init_from_checkpoint, trainable


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
    return set_lif_impl(TAAFNet(mcfg), cfg.lif_impl), BalancedFusionLoss(cfg.loss, mcfg)


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
    # Deterministic mode also fills every new tensor with NaN to expose reads of uninitialised
    # memory: a debugging aid that cost 8 ms of a 68 ms CPU step (the LIF kernels' outputs are
    # large and fully written), not needed for determinism.
    torch.utils.deterministic.fill_uninitialized_memory = False
    device = select_device(cfg.device)
    if device.type == "cpu":
        retain_freed_memory()  # no page faults for each step's large tensors (host_memory.py)
    if world > 1 and device.type == "cuda":  # one GPU per process (written; untested here)
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device, init_distributed(device)


def _card(model: TAAFNet, classes: list[str], fe: FrontEndConfig, audio_rate: int,
          metrics: dict[str, Any], command: str, method: str,
          init_from: dict[str, Any] | None = None) -> dict[str, Any]:
    card = make_model_card(model, classes=classes, window_s=fe.window_s, audio_rate=audio_rate,
                           frontend=fe.to_dict(), metrics=metrics, command=command,
                           method=method)
    if init_from:
        card["init_from"] = init_from  # where the weights started: path, sha256, classes
    return card


def _share_held_out_contributions(loss_fn: BalancedFusionLoss, dctx: Distributed,
                                  device: torch.device) -> None:
    """Every process balances with the contributions rank 0 measured on validation (a sum
    in which the other ranks put zeros); called by all ranks at the end of each epoch."""
    if loss_fn.cfg.balance_on != "validation" or not dctx.enabled:
        return
    T, M = loss_fn.model_cfg.T, len(MODALITIES)
    buf = torch.zeros(T * M + 1, device=device)  # nccl reduces device tensors only
    if dctx.is_main and loss_fn.held_out_contributions is not None:
        buf[:-1], buf[-1] = loss_fn.held_out_contributions.reshape(-1), 1.0
    buf = dctx.all_reduce_sum(buf)
    loss_fn.set_held_out_contributions(buf[:-1].reshape(T, M) if float(buf[-1]) > 0 else None)


@dataclass
class Run:
    """Everything one training run holds between its stages."""

    cfg: TrainConfig
    command: str
    device: torch.device
    dctx: Distributed
    data: RunData
    model: TAAFNet
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    loss_fn: BalancedFusionLoss
    opt: torch.optim.Optimizer
    sched: Any
    provenance: dict[str, Any]  # where --init-from started the weights ({} without it)
    state: RunState
    train_split: ResidentSplit  # data.train on the device

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.cfg.batch_size)

    def card(self, metrics: dict[str, Any]) -> dict[str, Any]:
        fe = self.cfg.frontend
        rate = int(self.data.dataset.meta.get("audio_rate", fe.cochlea.sample_rate))
        return _card(self.model, self.data.classes, fe, rate, metrics, self.command,
                     self.cfg.method, self.provenance)


def setup(cfg: TrainConfig, data: RunData, device: torch.device, dctx: Distributed,
          command: str = "") -> Run:
    """The model, loss and optimiser of ``cfg`` on ``data``; resumed from ``last.pt`` (or
    ``cfg.checkpoint``) when ``cfg.resume``."""
    torch.manual_seed(cfg.seed)
    model, loss_fn = build_model(cfg, len(data.classes))
    provenance: dict[str, Any] = {}
    if cfg.init_from:
        provenance = init_from_checkpoint(model, cfg.init_from, cfg.frontend, data.classes,
                                          cfg.init_freeze)
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
    if cfg.compile:  # the training step only: evaluation calls run.model, eager
        net = torch.compile(net)
    steps = math.ceil(len(data.train) / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg.optim, cfg.epochs * steps)
    run = Run(cfg, command, device, dctx, data, model, net, loss_fn, opt, sched, provenance,
              RunState(), ResidentSplit.of(data.train, device))
    out = cfg.resolved_out_dir()
    if dctx.is_main:
        for name in ("last.pt", "model.pt"):
            remove_orphans(out / name)
    if cfg.resume:
        _resume(run, Path(cfg.checkpoint) if cfg.checkpoint else out / "last.pt")
    return run


def _resume(run: Run, path: Path) -> None:
    saved = load_training_state(path, run.model, run.opt)
    run.state = RunState.from_extra(saved.extra, saved.epoch, run.cfg, run.sched, path)
    if run.state.held_out_contributions is not None:
        run.loss_fn.set_held_out_contributions(torch.tensor(run.state.held_out_contributions))
    if run.dctx.is_main:
        print(f"resumed from {path} after epoch {run.state.epoch}")


#: The per-step values a training epoch sums (on the device), in this order.
EPOCH_SUMS = ("loss", "ce", "rho_events", "k_events", "k_audio", "correct")


def train_epoch(run: Run, epoch: int, show: bool = False) -> dict[str, Any]:
    """One pass over the training split (every process draws the same global batches and
    takes its share); the epoch's row of the history, summed over processes. The steps' values
    are summed on the device and read back at the end (and for the progress bar every
    ``log_every`` steps): a step never waits for the device."""
    cfg, data = run.cfg, run.data
    t0 = time.perf_counter()
    run.model.train()
    g = epoch_generator(cfg.seed, epoch)
    order = torch.randperm(len(data.train), generator=g)
    sums = torch.zeros(len(EPOCH_SUMS), dtype=torch.float64, device=run.device)
    bar = tqdm(range(run.steps_per_epoch), desc=f"epoch {epoch + 1}", unit="batch",
               leave=False, disable=not show)
    for b in bar:
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        loss = _step(run, idx, g, sums)
        if show and (b + 1) % cfg.log_every == 0:
            bar.set_postfix(loss=f"{float(loss):.3f}")
    totals = dict(zip(EPOCH_SUMS, run.dctx.all_reduce_sum(sums).tolist(), strict=True))
    n = len(data.train)
    seconds = time.perf_counter() - t0
    run.state.train_time_s += seconds
    return {"epoch": epoch + 1, "lr": learning_rate(run.opt),
            "train_loss": totals["loss"] / n, "train_ce": totals["ce"] / n,
            "train_acc": totals["correct"] / n, "train_rho_events": totals["rho_events"] / n,
            "train_k_events": totals["k_events"] / n, "train_k_audio": totals["k_audio"] / n,
            "epoch_time_s": seconds}


def _step(run: Run, idx: torch.Tensor, g: torch.Generator, sums: torch.Tensor) -> torch.Tensor:
    """One optimiser step on this process's share of the global batch ``idx``; adds its values
    to ``sums`` (EPOCH_SUMS order) and returns its loss, both on the device."""
    ev, au, y, present = train_batch(run.train_split, idx, run.cfg.augment,
                                     run.model.cfg.modalities, g)
    sl = run.dctx.share(len(idx))
    ev, au, y, present = ev[:, sl], au[:, sl], y[sl], present[sl]  # present stays on the host
    k = run.loss_fn.new_grad_scale(run.device)
    with _autocast(run):
        outp = run.net(ev, au, present=present, grad_scale=k)
    if run.cfg.precision != "float32":  # the loss in float32: its outputs are small
        outp = TAAFOutput(*(t.float() if t.is_floating_point() else t for t in outp))
    loss, info = run.loss_fn(outp, y, grad_scale=k)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.loss_fn.after_backward(run.model, info)
    if run.loss_fn.modulates_lr:
        scale_encoder_lr(run.opt, info["lr_scale"])  # this step only: sched.step() resets it
    run.opt.step()
    run.sched.step()
    nb = len(y)
    correct = (outp.logits.argmax(-1) == y).sum()
    per_batch = torch.stack([info[key] for key in EPOCH_SUMS[:-1]]).to(sums.dtype) * nb
    sums += torch.cat([per_batch, correct.reshape(1).to(sums.dtype)])
    return info["loss"]


def _autocast(run: Run) -> contextlib.AbstractContextManager:
    """The training forward's autocast (``precision``); nothing for float32."""
    if run.cfg.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(run.device.type, dtype=DTYPES[run.cfg.precision])


def validate(run: Run, row: dict[str, Any]) -> None:
    """Evaluate on the validation speaker (the test split for learning curves where there is
    none) into ``row``; fit the late fusion, update the held-out contributions and validation's
    pick of the epoch."""
    cfg, data, model, state = run.cfg, run.data, run.model, run.state
    split = "val" if data.val is not None else "test"
    outputs = predict(model, tensor_batches(data.val if data.val is not None else data.test,
                                            cfg.eval_batch_size), run.device)
    weights = None
    if data.val is not None and cfg.late_fusion:
        weights = fit_late_fusion(model, outputs)
    res = summarize(model, outputs, readout_weights=weights)
    row.update({f"{split}_acc": res["acc"], f"{split}_acc_head": res["acc_head"],
                **{f"{split}_acc_{m}": a for m, a in res["acc_per_modality"].items()},
                f"{split}_imbalance": res["imbalance"],
                f"{split}_modality_attention": res["modality_attention"]})
    if weights is not None:
        row["readout_weights"] = weights.tolist()
    if data.val is None:
        return
    if run.loss_fn.cfg.balance_on == "validation":
        s_sum, n_v = contributions(outputs["attention_map"], outputs["step_logits_per_modality"],
                                   outputs["y"], torch.ones(len(outputs["y"])))
        run.loss_fn.set_held_out_contributions(s_sum / n_v)
    if res["acc"] > state.best.get("val_acc", -1.0):
        weights_now = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if weights is not None:
            weights_now["readout_weights"] = weights.clone()
        state.best = {"epoch": row["epoch"], "val_acc": res["acc"], "state": weights_now}


def save_state(run: Run) -> None:
    """``last.pt``: weights, optimiser and the whole :class:`RunState`, atomically (an
    interrupt never loses a finished epoch)."""
    held = run.loss_fn.held_out_contributions
    run.state.held_out_contributions = None if held is None else held.tolist()
    save_training_state(run.cfg.resolved_out_dir() / "last.pt", run.model, run.card({}),
                        run.opt, run.state.epoch,
                        extra=run.state.to_extra(run.cfg, run.sched))


def finish(run: Run) -> dict[str, Any]:
    """The test split on validation's epoch, model.pt with its card, metrics.json and the
    reports; returns the metrics."""
    from .report import write_outputs

    cfg, data, model, state = run.cfg, run.data, run.model, run.state
    if state.best:
        model.load_state_dict(state.best["state"])  # validation's epoch
    final = evaluate(model, data.test, cfg.eval_batch_size, run.device)
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "selected_epoch": state.best.get("epoch", cfg.epochs),
        "selected_by": (f"validation {data.val_rule}" if state.best
                        else "final epoch"),
        "val_acc": state.best.get("val_acc"),
        "late_fusion_weights": dict(zip(("head", *MODALITIES),
                                        model.readout_weights.tolist(), strict=True)),
        "test_acc": final["acc"], "test_acc_head": final["acc_head"],
        "test_acc_per_modality": final["acc_per_modality"], "imbalance": final["imbalance"],
        "modality_attention": final["modality_attention"],
        "attention_map": final["attention_map"], "confusion": final["confusion"],
        "energy": _energy(model, data.test, device=run.device),
        "train_time_s": state.train_time_s,
        "time_per_epoch_s": state.train_time_s / max(1, len(state.history)),
        "frontend_time_s": data.frontend_s, "epochs": cfg.epochs, "n_params": model.n_params(),
        "history": state.history, "dataset": data.info(), "classes": data.classes,
        "command": run.command, "config": cfg.to_dict(),
        "torch_threads": torch.get_num_threads(),
    }
    card_metrics = {k: metrics[k] for k in ("test_acc", "test_acc_per_modality", "imbalance",
                                            "train_time_s", "epochs", "selected_epoch",
                                            "val_acc")}
    card_metrics["dataset"] = metrics["dataset"]["name"]
    card_metrics["train_recordings"] = data.train_recordings()  # for taaf_stream_eval's check
    out = cfg.resolved_out_dir()
    card = run.card(card_metrics)
    save_checkpoint(out / "model.pt", model, card)
    try:
        rule = choose_decision_rule(out / "model.pt", data, cfg)
    except Exception as exc:  # the model and its metrics are kept all the same
        rule = None
        print(f"warning: no decision rule chosen ({type(exc).__name__}: {exc}): the node will "
              "publish each window's own argmax unless smoothing_windows and min_confidence are "
              "given", file=sys.stderr)
    if rule is not None:  # the node deploys the model with it (rule_choice.deployed_rule)
        card["decision_rule"] = metrics["decision_rule"] = rule
        save_checkpoint(out / "model.pt", model, card)
    write_outputs(out, metrics)
    return metrics


def choose_decision_rule(checkpoint: Path, data: Any, cfg: TrainConfig
                         ) -> dict[str, Any] | None:
    """The decision rule (smoothing, abstention) chosen for the trained model on its validation
    split, replayed as a stream (``rule_choice.choose_rule``), for its card; None without a
    validation split or with ``rule_samples`` 0."""
    if data.val is None or cfg.rule_samples <= 0:
        return None
    from taaf_ros.inference.classifier import Classifier
    from taaf_ros.inference.rule_choice import card_entry, choose_rule
    from taaf_ros.inference.stream_eval import placed_windows, replay_windows
    from taaf_ros.stream.replay_plan import replay_order

    ds = data.dataset
    index = {s[3]: i for i, s in enumerate(ds.samples)}
    val = [index[i] for i in data.val.ids if i in index]
    placed = bool(val) and all(ds.samples[i][3] in ds.places for i in val)
    if placed:  # one's own recordings: in time order, as the node meets them
        val.sort(key=lambda i: ds.places[ds.samples[i][3]])
    else:
        val = [val[k] for k in replay_order([ds.samples[i][2] for i in val])]
    val = val[:cfg.rule_samples]
    t0 = time.perf_counter()
    clf = Classifier(checkpoint, "cpu")
    if placed:
        windows = placed_windows(clf, ds, val, ds.places)
        how = (f"{len(val)} samples at their recorded times, windows slid along "
               f"{len({ds.places[ds.samples[i][3]][0] for i in val})} recording(s)")
    else:
        windows = replay_windows(clf, ds, val, gap_s=1.0)
        how = f"{len(val)} samples replayed with 1 s of silence between them"
    choice = choose_rule(windows, clf.classes)
    n, c = choice.rule
    print(f"decision rule: smoothing_windows {n}, min_confidence {c:g}, chosen on "
          f"validation {data.val_rule}: {how} ({time.perf_counter() - t0:.0f} s)")
    return card_entry(choice, f"validation {data.val_rule}, {how}")


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
        return _run(cfg, command, device, dctx)
    finally:
        shutdown_distributed()


def _run(cfg: TrainConfig, command: str, device: torch.device, dctx: Distributed
         ) -> dict[str, Any]:
    # The Run (and with it DistributedDataParallel's reducer, which holds the process group)
    # lives in this frame only, so it is freed when this returns, before the group is
    # destroyed. Freed after destroy_process_group, gloo's teardown deadlocked: the reducer's
    # destructor joined gloo's threads with the GIL held while one of them needed the GIL
    # (seen as a torchrun worker that never exited).
    run = setup(cfg, load_run_data(cfg, dctx), device, dctx, command)
    return _epochs(run)


def _epochs(run: Run) -> dict[str, Any]:
    cfg, dctx, state = run.cfg, run.dctx, run.state
    end = cfg.epochs if cfg.stop_after <= 0 else min(cfg.epochs, cfg.stop_after)
    show = cfg.progress and dctx.is_main
    bar = tqdm(range(state.epoch, end), desc=cfg.method, unit="epoch", disable=not show,
               initial=state.epoch, total=cfg.epochs)
    for epoch in bar:
        row = train_epoch(run, epoch, show)
        state.epoch = epoch + 1
        if dctx.is_main:  # rank 0 evaluates and writes; the history lives there
            if (epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == cfg.epochs:
                validate(run, row)
            state.history.append(row)
            _log_epoch(run, row, bar)
            save_state(run)
        else:
            state.history.append(row)
        _share_held_out_contributions(run.loss_fn, dctx, run.device)
        dctx.barrier()
    if end < cfg.epochs:
        return {"stopped_after_epoch": end, "history": state.history}
    if not dctx.is_main:
        return {"rank": dctx.rank}
    return finish(run)


def _log_epoch(run: Run, row: dict[str, Any], bar: Any) -> None:
    acc = f"{row.get('val_acc', row.get('test_acc', float('nan'))):.3f}"
    bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=acc)
    if not run.cfg.progress:  # logs of unattended runs (taaf_loso) still show progress
        split = "val" if run.data.val is not None else "test"
        print(f"epoch {row['epoch']}/{run.cfg.epochs}: train loss {row['train_loss']:.3f}, "
              f"{split} acc {acc}", flush=True)


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
                              cfg.feature_cache_dir(), cfg.progress)
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
        "dataset": dataset_info(root, ds.meta, None, test_set), "classes": ds.classes,
        "command": command, "training_command": card.get("command", ""),
        "card_metrics": card.get("metrics", {}),
    }
    write_outputs(out, metrics)
    return metrics


__all__ = ["Run", "RunState", "build_model", "evaluate", "evaluate_checkpoint", "finish",
           "model_config", "save_state", "setup", "train", "train_epoch", "validate"]
