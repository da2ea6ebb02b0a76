"""One LIF layer over T steps, forward and backward: the fused kernel against the torch loop and
norse's step loop, on the CPU (numba) or CUDA (Triton).

    python benchmarks/bench_lif.py                               # CPU, T=8, 64 x 4,096 neurons
    python benchmarks/bench_lif.py --device cuda --neurons 65536 --dtype float16

Prints milliseconds per forward + backward and ratios against the fused kernel, after checking
that the three give the same spikes.
"""

from __future__ import annotations

import argparse
import time

import record
import torch

from taaf_ros.model import select_device
from taaf_ros.model.encoders import LIFLayer


def time_ms(fn, sync, iters: int, warm: int = 3) -> float:
    for _ in range(warm):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--neurons", type=int, default=4096, help="neurons per sample")
    ap.add_argument("--iters", type=int, default=20)
    record.add_argument(ap)
    args = ap.parse_args()
    dev = select_device(args.device)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(args.T * args.batch, args.neurons, generator=g) * 1.5).to(dev, dtype)
    x.requires_grad_(True)
    w = torch.randn(x.shape, generator=g).to(dev, dtype)
    layers = {impl: LIFLayer(args.T, 500.0, 500.0, 0.5, 1e-3, impl=impl).to(dev)
              for impl in LIFLayer.IMPLS}
    with torch.no_grad():
        spikes = {impl: layer(x) for impl, layer in layers.items()}
    agree = {impl: float((z != spikes["norse"]).float().mean()) for impl, z in spikes.items()}

    def step(layer: LIFLayer):
        def run() -> None:
            (layer(x) * w).sum().backward()
            x.grad = None
        return run

    ms = {impl: time_ms(step(layer), sync, args.iters) for impl, layer in layers.items()}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"LIF fwd+bwd, device {dev} ({name}), {args.dtype}, T={args.T}, "
          f"{args.batch} x {args.neurons:,} neurons, threads {torch.get_num_threads()}")
    print(f"{'implementation':10s} {'ms':>9s} {'vs fused':>9s} {'spikes != norse':>16s}")
    for impl in LIFLayer.IMPLS:
        print(f"{impl:10s} {ms[impl]:9.3f} {ms[impl] / ms['fused']:8.2f}x {agree[impl]:16.2e}")
    what = (f"one LIF layer forward + backward, {args.batch} x {args.neurons:,} neurons, "
            f"T = {args.T}, {args.dtype}")
    record.write(args.record, f"The LIF layer ({dev.type}, {torch.get_num_threads()} "
                 "thread(s))", [
        record.Row(what, f"fused kernel {ms['fused']:.2f} ms", f"{impl} {ms[impl]:.2f} ms",
                   ms[impl] / ms["fused"]) for impl in LIFLayer.IMPLS if impl != "fused"],
                 [f"spikes differing from norse's: {agree}"])


if __name__ == "__main__":
    main()
