"""``taaf_export``: a checkpoint's ONNX graph (:mod:`taaf_ros.inference.export`), checked
against the eager network with onnxruntime.

Usage::

    taaf_export models/taaf_avdigits.pt --onnx      # writes models/taaf_avdigits.onnx
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from taaf_ros.apps.options import add_output, parser
from taaf_ros.inference.export import (
    OPSET,
    OnnxRunner,
    check_against_eager,
    export_onnx,
    file_digest,
    onnx_path,
)
from taaf_ros.model.checkpoint import CheckpointError, load_checkpoint


def main(argv: list[str] | None = None) -> int:
    """Console script ``taaf_export``: the ONNX graph of a checkpoint, checked with onnxruntime."""
    ap = parser("taaf_export", "The ONNX graph of a checkpoint, checked against the eager "
                "network with onnxruntime.")
    ap.add_argument("checkpoint", type=Path, help="a taaf_ros checkpoint (.pt)")
    ap.add_argument("--onnx", action="store_true", required=True,
                    help="write the ONNX graph (the only format so far)")
    add_output(ap, "where (default: beside the checkpoint, .onnx)", metavar="GRAPH")
    ap.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    args = ap.parse_args(argv)
    try:
        net = load_checkpoint(args.checkpoint).model
    except CheckpointError as exc:
        print(f"taaf_export: error: {exc}", file=sys.stderr)
        return 2
    out = args.output or onnx_path(args.checkpoint)
    t0 = time.perf_counter()
    export_onnx(net, out, args.opset, file_digest(args.checkpoint))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset}) in "
          f"{time.perf_counter() - t0:.1f} s")
    try:
        diff = check_against_eager(net, OnnxRunner(out))
    except RuntimeError as exc:
        print(f"taaf_export: not checked: {exc}", file=sys.stderr)
        return 0
    print(f"onnxruntime (CPU) against the eager network: largest difference {diff:.2e}")
    if diff > 1e-4:
        print("taaf_export: error: the graph disagrees with the network", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
