"""Benchmark the default TAAF network: folded time vs a plain per-step norse loop vs an ANN.

    python benchmarks/bench_network.py                      # CPU, float32, < 2 min
    python benchmarks/bench_network.py --device cuda --dtype float16

* folded: the package implementation (conv/linear layers see all T steps at once; each LIF
  layer's T steps in one fused kernel, numba on the CPU, Triton on CUDA).
* folded, norms folded: the same with every RMSBatchNorm's scale multiplied into the weights
  before it (``taaf_ros.model.fold``): what the node's eager and CUDA graph backends run.
* folded, torch-loop LIF: the same, each LIF layer a loop of torch ops over T (the path before
  the fused kernel, and what ONNX export traces).
* per-step: the same weights, every layer called once per step with norse's
  ``lif_feed_forward_step`` (how SNN code is usually written); outputs are checked to match.
* ANN: the same layers with ReLU instead of LIF (folded time too), the non-spiking reference;
  with its norms folded too, the reference for the node's network.
* norms folded, compiled (``--compile``): that network through ``torch.compile`` (inductor).
* ONNX Runtime: the exported graph (``taaf_export``, the node's ``inference_backend``), CPU.
* CUDA graph (CUDA only): the package network captured once and replayed
  (``inference_backend:=cuda_graph``), timed with its input copies and its one wait.
Reports inference latency at batch 1, training step time, energy per inference, firing rates.
With the bundled model (``models/taaf_avdigits.pt``, or ``--checkpoint``) the trained weights are
used and, where an EAD-layout test split is found (``--data-root``, ``TAAF_DATA_ROOT`` or
../shared/data), the timed windows, the checks against the references, energy and firing rates
are real test windows (a trained model barely spikes on random counts: the header says how many
spikes the checked window had); otherwise weights are random with normalisation statistics from
sparse random input, so the network spikes at a plausible rate.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import record
import torch
from norse.torch.functional.lif import LIFFeedForwardState, lif_feed_forward_step
from torch import nn

from taaf_ros.model import (
    ModelConfig,
    TAAFNet,
    load_checkpoint,
    measure_energy,
    resolve_dtype,
    select_device,
)
from taaf_ros.model.device import inference_context
from taaf_ros.model.encoders import LIFLayer, set_lif_impl
from taaf_ros.model.fold import fold_norms


def make_inputs(cfg: ModelConfig, B: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    ev = (torch.rand(cfg.T, B, *cfg.event_shape, generator=g) < 0.05).float()
    au = (torch.rand(cfg.T, B, 2, cfg.audio_channels, generator=g) < 0.15).float()
    return ev.to(device), au.to(device)


def normalised_random_model(cfg: ModelConfig, device: torch.device) -> TAAFNet:
    torch.manual_seed(0)
    net = TAAFNet(cfg).to(device)
    with torch.no_grad():
        for _ in range(10):  # running RMS statistics from data
            net(*make_inputs(cfg, 16, device))
    return net.eval()


BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "taaf_avdigits.pt"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_windows(card: dict, data_root: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n test windows of an EAD-layout set, through the model's own front end."""
    from taaf_ros.data.avdigits import ensure_ead_dataset
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.frontend import FrontEndConfig, sample_tensors

    fe = FrontEndConfig.from_dict(card["frontend"])
    ds = EadDataset(ensure_ead_dataset(data_root), "test")
    step = max(len(ds) // n, 1)
    pairs = [sample_tensors(s.events, ds.sensor_size, s.pcm, s.sample_rate, fe)
             for s in (ds[i] for i in range(0, step * n, step))]
    ev = torch.from_numpy(np.stack([p[0] for p in pairs], axis=1))
    au = torch.from_numpy(np.stack([p[1] for p in pairs], axis=1))
    return ev, au


def per_step_forward(net: TAAFNet, ev: torch.Tensor, au: torch.Tensor) -> torch.Tensor:
    """Reference: each layer once per time step; LIF state carried layer by layer."""
    T = ev.shape[0]
    head = net.head
    states: dict[int, LIFFeedForwardState] = {}

    def lif(mod: LIFLayer, x: torch.Tensor) -> torch.Tensor:
        s = states.get(id(mod)) or LIFFeedForwardState(torch.zeros_like(x), torch.zeros_like(x))
        z, states[id(mod)] = lif_feed_forward_step(x, s, mod.params(), mod.dt)
        return z

    h = []  # per step: (B, M, D)
    for t in range(T):
        hs = []
        for m, x in (("events", ev[t]), ("audio", au[t])):
            enc = net.encoders[m]
            y = x
            for layer in enc.features:
                y = lif(layer, y) if isinstance(layer, LIFLayer) else layer(y)
            hs.append(lif(enc.lif, enc.bn(enc.fc(y.flatten(1)))))
        h.append(torch.stack(hs, dim=1))
    A = head.warp()
    logits_t, scores = [], []
    for t in range(T):
        ht = sum(A[:, t, s].reshape(1, -1, 1) * h[s] for s in range(T))  # (B, M, D)
        sc = torch.cat([head.score_m[m](ht[:, m]) for m in range(2)], dim=-1)
        beta = sc.softmax(-1)
        cur = sum(beta[:, m : m + 1] * head.proj_m[m](ht[:, m]) for m in range(2))
        g = lif(head.fusion_lif, head.fusion_bn(cur))
        scores.append(head.score(g))
        logits_t.append(head.read(g))
    alpha = torch.cat(scores, dim=-1).softmax(-1)  # (B, T)
    return sum(alpha[:, t : t + 1] * logits_t[t] for t in range(T))


def ann_copy(net: TAAFNet) -> TAAFNet:
    """Same layers and weights, ReLU in place of every LIF layer."""
    ann = copy.deepcopy(net)

    def swap(mod: nn.Module) -> None:
        for name, child in mod.named_children():
            if isinstance(child, LIFLayer):
                setattr(mod, name, nn.ReLU())
            else:
                swap(child)

    swap(ann)
    return ann


def timeit(fn: Callable[[], object], sync: Callable[[], None], n: int, warm: int = 5) -> float:
    for _ in range(warm):
        fn()
    sync()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3  # ms


def aten_ops(net: nn.Module, ev: torch.Tensor, au: torch.Tensor) -> int:
    """aten ops one forward dispatches, nested ones included (torch.profiler)."""
    with torch.inference_mode():
        net(ev, au)
        with torch.profiler.profile() as prof:
            net(ev, au)
    return sum(e.name.startswith("aten::") for e in prof.events())


def onnxruntime_row(net: TAAFNet, checkpoint: str, ev: torch.Tensor, au: torch.Tensor,
                    iters: int, threads: int) -> float | None:
    """Median ms of the exported graph in ONNX Runtime's CPU provider (the node's
    ``inference_backend:=onnxruntime``), checked against the eager network; None where
    onnxruntime is absent."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime not installed: no ONNX Runtime row (pip install onnxruntime)")
        return None
    import tempfile

    from taaf_ros.inference.export import (
        OnnxRunner,
        check_against_eager,
        export_onnx,
        file_digest,
        graph_source,
        onnx_path,
    )

    path = onnx_path(checkpoint) if checkpoint else None
    if path is None or not path.is_file() or graph_source(path) != file_digest(checkpoint):
        path = export_onnx(net, Path(tempfile.mkdtemp()) / "net.onnx")
    runner = OnnxRunner(path, threads=threads)
    diff = check_against_eager(net, runner)
    assert diff < 1e-4, f"ONNX Runtime differs from the network by {diff}"
    e, a = ev.float().cpu().numpy(), au.float().cpu().numpy()
    present = np.ones((1, 2), dtype=bool)
    return timeit(lambda: runner(e, a, present), lambda: None, iters)


def cuda_graph_row(net: TAAFNet, ev: torch.Tensor, au: torch.Tensor, dtype: torch.dtype,
                   iters: int) -> float | None:
    """Median ms of a window through ``CudaGraphRunner`` (numpy in, numpy out: the node's
    ``inference_backend:=cuda_graph``), checked against the eager network; None off CUDA."""
    if ev.device.type != "cuda":
        return None
    from taaf_ros.inference.cuda_graph import CudaGraphRunner

    runner = CudaGraphRunner(net, dtype)
    e, a = ev.float().cpu().numpy(), au.float().cpu().numpy()
    present = np.ones((1, 2), dtype=bool)
    probs = runner(e, a, present)[0]
    with inference_context(ev.device, dtype):
        want = net(ev, au).logits.float().softmax(-1).cpu().numpy()
    diff = float(np.abs(probs - want).max())
    assert diff < (1e-4 if dtype == torch.float32 else 5e-2), f"CUDA graph differs by {diff}"
    return timeit(lambda: runner(e, a, present), lambda: None, iters)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--iters", type=int, default=50, help="timed repetitions (median)")
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (shared machines: 1)")
    ap.add_argument("--checkpoint", default=str(BUNDLED_MODEL) if BUNDLED_MODEL.is_file() else "",
                    help="trained model (default: the bundled one if present; '' = random)")
    ap.add_argument("--data-root", default=os.environ.get(
                        "TAAF_DATA_ROOT", str(SHARED_DATA) if SHARED_DATA.is_dir() else ""),
                    help="EAD-layout set (or FSDD + MNIST sources) whose test windows are timed "
                    "and feed the energy measurement (default: TAAF_DATA_ROOT or "
                    "../shared/data beside the repository; '' = random input)")
    ap.add_argument("--energy-samples", type=int, default=100)
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile of the node's network (inductor: the first "
                    "call compiles, about a minute without a warm cache)")
    record.add_argument(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = select_device(args.device)
    dtype = resolve_dtype(args.dtype, dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    card = None
    if args.checkpoint:
        loaded = load_checkpoint(args.checkpoint, map_location=dev)
        net, card = loaded.model.to(dev).eval(), loaded.card  # rebuilt on the CPU: move it
        cfg = net.cfg
    else:
        cfg = ModelConfig()
        net = normalised_random_model(cfg, dev)
    ann = ann_copy(net)
    loop = set_lif_impl(copy.deepcopy(net), "loop")
    norms_folded = fold_norms(net)
    ann_folded = ann_copy(norms_folded)
    # Inputs the network spikes on: a trained model is nearly silent on random counts, and a
    # silent network would time and check little. Real test windows where there are some.
    source = "random sparse input, 5 % event / 15 % audio density"
    n_real = max(args.energy_samples, args.train_batch)
    if card is not None and args.data_root:
        real_ev, real_au = (x.to(dev).float() for x in real_windows(card, args.data_root, n_real))
        source = f"real test windows of {args.data_root}"
        ev, au = real_ev[:, :1], real_au[:, :1]
        evb, aub = real_ev[:, :args.train_batch], real_au[:, :args.train_batch]
    else:
        ev, au = make_inputs(cfg, 1, dev)
        evb, aub = make_inputs(cfg, args.train_batch, dev)

    spikes: list[float] = []  # in the checked window: a silent network would check nothing
    hooks = [m.register_forward_hook(lambda _m, _in, z: spikes.append(float(z.sum())))
             for m in net.modules() if isinstance(m, LIFLayer)]
    with torch.no_grad():  # correctness of the reference before timing it
        fold = net(ev, au).head_logits
        for hook in hooks:
            hook.remove()
        ref = per_step_forward(net, ev, au)
        folded_err = float((norms_folded(ev, au).head_logits - fold).abs().max())
    err = float((ref - fold).abs().max())
    assert err < 1e-4, f"per-step reference differs from folded model by {err}"
    assert folded_err < 1e-4, f"the network with folded norms differs by {folded_err}"

    def infer(f: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with inference_context(dev, dtype):
                return f()

        return run

    rows = {
        "folded (package)": timeit(infer(lambda: net(ev, au)), sync, args.iters),
        "folded, norms folded": timeit(infer(lambda: norms_folded(ev, au)), sync, args.iters),
        "folded, torch-loop LIF": timeit(infer(lambda: loop(ev, au)), sync, args.iters),
        "per-step norse loop": timeit(
            infer(lambda: per_step_forward(net, ev, au)), sync, args.iters
        ),
        "ANN (ReLU, same layers)": timeit(infer(lambda: ann(ev, au)), sync, args.iters),
        "ANN, norms folded": timeit(infer(lambda: ann_folded(ev, au)), sync, args.iters),
    }
    notes: list[str] = []
    if args.compile:
        compiled = torch.compile(norms_folded)
        t0 = time.perf_counter()
        with inference_context(dev, dtype):
            got = compiled(ev, au).head_logits.float()
        warm_s = time.perf_counter() - t0
        with torch.no_grad():
            compiled_err = float((got - norms_folded(ev, au).head_logits.float()).abs().max())
        assert compiled_err < 1e-3, f"the compiled network differs by {compiled_err}"
        rows["norms folded, compiled"] = timeit(infer(lambda: compiled(ev, au)), sync, args.iters)
        notes.append(f"torch.compile: first call {warm_s:.1f} s (compiling), max |diff| "
                     f"against eager {compiled_err:.1e}")

    ort_ms = onnxruntime_row(net, args.checkpoint, ev, au, args.iters, args.threads)
    graph_ms = cuda_graph_row(norms_folded, ev, au, dtype, args.iters)
    y = torch.arange(args.train_batch, device=dev) % cfg.n_classes

    def train_step(model: nn.Module, fwd: Callable[[], torch.Tensor]) -> Callable[[], object]:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def run() -> object:
            model.train()
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = nn.functional.cross_entropy(fwd().float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        return run

    tn, ta, tl = copy.deepcopy(net), copy.deepcopy(ann), copy.deepcopy(loop)
    train_rows = {
        "folded (package)": timeit(train_step(tn, lambda: tn(evb, aub).logits), sync, 10, 2),
        "folded, torch-loop LIF": timeit(train_step(tl, lambda: tl(evb, aub).logits), sync,
                                         10, 2),
        "per-step norse loop": timeit(
            train_step(tn, lambda: per_step_forward(tn, evb, aub)), sync, 10, 2
        ),
        "ANN (ReLU, same layers)": timeit(train_step(ta, lambda: ta(evb, aub).logits), sync, 10, 2),
    }

    print(
        f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}),"
        f" dtype {args.dtype}, threads {torch.get_num_threads()}, params {net.n_params():,},"
        f" T={cfg.T}\ninput: {source}; per-step reference and norms folded max |diff| "
        f"{err:.1e} / {folded_err:.1e} on a window of {sum(spikes):.0f} spikes"
    )
    base, tbase = rows["folded (package)"], train_rows["folded (package)"]
    print(
        f"\n{'implementation':26s} {'infer B=1 ms':>13s} {'vs folded':>10s} "
        f"{f'train B={args.train_batch} ms':>15s} {'vs folded':>10s}"
    )
    for name in rows:
        train = (f"{train_rows[name]:15.2f} {train_rows[name] / tbase:9.2f}x"
                 if name in train_rows else f"{'-':>15s} {'-':>10s}")  # inference-only rows
        print(f"{name:26s} {rows[name]:13.2f} {rows[name] / base:9.2f}x {train}")
    if ort_ms is not None:
        print(f"{'ONNX Runtime (exported)':26s} {ort_ms:13.2f} {ort_ms / base:9.2f}x "
              f"{'-':>15s} {'-':>10s}")
    if graph_ms is not None:
        print(f"{'CUDA graph (replayed)':26s} {graph_ms:13.2f} {graph_ms / base:9.2f}x "
              f"{'-':>15s} {'-':>10s}")
    for note in notes:
        print(note)

    ops = {"fused": aten_ops(norms_folded, ev, au),
           "loop": aten_ops(set_lif_impl(copy.deepcopy(norms_folded), "loop"), ev, au)}
    print(f"aten ops per batch-1 forward (nested included): {ops['fused']} with the fused LIF "
          f"kernels, {ops['loop']} with the torch-loop LIF")

    if card is not None and args.data_root:
        e_ev, e_au = real_ev[:, :args.energy_samples], real_au[:, :args.energy_samples]
        source = f"{e_ev.shape[1]} {source}"
    else:
        e_ev, e_au = ev.float(), au.float()
    rep = measure_energy(net, e_ev, e_au)
    weights = f"trained weights {args.checkpoint}" if card is not None else "random weights"
    print(f"\nenergy per inference ({weights}; {source}):\n{rep.table()}")
    print("\nfiring rates (spikes / neuron / step):")
    for name, r in rep.firing_rates.items():
        print(f"  {name:36s} {r:.3f}")
    record.write(args.record, f"The network ({dev.type}, {args.dtype}, batch 1, "
                 f"{torch.get_num_threads()} thread(s))",
                 network_rows(rows, train_rows, ort_ms, graph_ms, ops, rep, args),
                 [f"input: {source}", *notes])


def network_rows(rows: dict[str, float], train: dict[str, float], ort_ms: float | None,
                 graph_ms: float | None, ops: dict[str, int], energy: object,
                 args: argparse.Namespace) -> list[record.Row]:
    """The run's figures as the page's rows (record.py)."""
    R = record.Row
    eager = rows["folded, norms folded"]
    out = []
    if ort_ms is not None:
        out.append(R("network per window in ONNX Runtime (the node's default backend on a CPU)",
                     f"{ort_ms:.2f} ms", f"eager network as the node ran it before: {eager:.2f} ms",
                     eager / ort_ms, headline=True))
    if graph_ms is not None:
        out.append(R("network per window as a CUDA graph (the node's default on CUDA)",
                     f"{graph_ms:.2f} ms", f"eager network: {eager:.2f} ms", eager / graph_ms,
                     headline=True))
    ann = rows["ANN, norms folded"]
    out += [
        R("eager network per window (fused LIF kernels, norms folded)", f"{eager:.2f} ms",
          f"norse's per-step loop: {rows['per-step norse loop']:.2f} ms",
          rows["per-step norse loop"] / eager, headline=True),
        R("eager network per window", f"{eager:.2f} ms",
          f"the same network with a torch-loop LIF: {rows['folded, torch-loop LIF']:.2f} ms",
          rows["folded, torch-loop LIF"] / eager),
        R("eager network per window (the SNN)", f"{eager:.2f} ms",
          f"its ANN twin (ReLU, same layers, norms folded): {ann:.2f} ms", ann / eager),
        R("aten ops per batch-1 forward", f"{ops['fused']}",
          f"torch-loop LIF: {ops['loop']}", ops["loop"] / ops["fused"]),
    ]
    if "norms folded, compiled" in rows:
        c = rows["norms folded, compiled"]
        out.append(R("torch.compile of the eager network", f"{c:.2f} ms",
                     f"eager: {eager:.2f} ms", eager / c))
    base = train["folded (package)"]
    out += [
        R(f"training step, batch {args.train_batch}", f"{base:.1f} ms",
          f"torch-loop LIF: {train['folded, torch-loop LIF']:.1f} ms",
          train["folded, torch-loop LIF"] / base, headline=True),
        R(f"training step, batch {args.train_batch}", f"{base:.1f} ms",
          f"norse's per-step loop: {train['per-step norse loop']:.1f} ms",
          train["per-step norse loop"] / base),
        R("energy per inference (45 nm figures, real test windows where found)",
          f"{energy.energy_pj / 1e6:.1f} µJ", f"the ANN twin: {energy.ann_energy_pj / 1e6:.1f} µJ",
          energy.ann_energy_pj / energy.energy_pj, headline=True),
    ]
    return out


if __name__ == "__main__":
    main()
