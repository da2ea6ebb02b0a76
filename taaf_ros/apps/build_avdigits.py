"""``taaf_build_avdigits``: the AV-digits benchmark from FSDD and MNIST (see
:mod:`taaf_ros.data.avdigits` for the layout and the split rule).

Usage::

    taaf_build_avdigits --fsdd DIR --mnist DIR --out-dir DIR [--seed 0] [--test-speakers theo]
                        [--eval-only] [--limit-per-class N] [--download]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from taaf_ros.apps.options import add_out_dir, parser
from taaf_ros.data.avdigits import DEFAULT_TEST_SPEAKERS, BuildConfig, build_avdigits
from taaf_ros.defaults import FSDD_RATE_HZ, user_cache_dir


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = parser("taaf_build_avdigits", "Build AV-digits (FSDD recordings paired with MNIST "
                "images through the DVS emulator) in the EAD layout.")
    ap.add_argument("--fsdd", type=Path, help="folder with FSDD WAV files (searched recursively)")
    ap.add_argument("--mnist", type=Path, help="folder with an MNIST IDX image/label pair")
    ap.add_argument("--data-root", type=Path, default=os.environ.get("TAAF_DATA_ROOT"),
                    help="holds fsdd/recordings and mnist (default: $TAAF_DATA_ROOT)")
    add_out_dir(ap, "the dataset's folder (EAD layout)", required=True)
    ap.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    ap.add_argument("--test-speakers", nargs="+", default=list(DEFAULT_TEST_SPEAKERS),
                    help="speakers held out for the test split (default: theo)")
    ap.add_argument("--eval-only", action="store_true", help="put every sample in test")
    ap.add_argument("--limit-per-class", type=int, default=None,
                    help="at most N samples per class and split (small CI subsets)")
    ap.add_argument("--train-pairs", type=int, default=3,
                    help="images paired with each training recording (default: 3)")
    ap.add_argument("--audio-rate", type=int, default=FSDD_RATE_HZ, help="WAV sample rate, Hz")
    ap.add_argument("--download", action="store_true",
                    help="download FSDD / MNIST (checksum-verified) where no local copy exists")
    ap.add_argument("--download-dir", type=Path,
                    default=user_cache_dir() / "sources",
                    help="where downloads go (default: ~/.cache/taaf_ros/sources)")
    ap.add_argument("--overwrite", action="store_true", help="replace a dataset in --out-dir")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def _resolve_sources(args: argparse.Namespace) -> tuple[Path, Path]:
    fsdd, mnist = args.fsdd, args.mnist
    if args.data_root is not None:
        root = Path(args.data_root)
        fsdd = fsdd or root / "fsdd" / "recordings"
        mnist = mnist or root / "mnist"
    if fsdd is None or not Path(fsdd).is_dir():
        if not args.download:
            raise SystemExit(f"no FSDD folder ({fsdd}); give --fsdd or use --download")
        from taaf_ros.data.download import fetch_fsdd
        fsdd = fetch_fsdd(args.download_dir / "fsdd")
    if mnist is None or not Path(mnist).is_dir():
        if not args.download:
            raise SystemExit(f"no MNIST folder ({mnist}); give --mnist or use --download")
        from taaf_ros.data.download import fetch_mnist
        mnist = fetch_mnist(args.download_dir / "mnist")
    return Path(fsdd), Path(mnist)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``taaf_build_avdigits``)."""
    args = _parse_args(argv)
    if args.limit_per_class is not None and args.limit_per_class < 1:
        raise SystemExit("--limit-per-class must be >= 1")
    if args.train_pairs < 1:
        raise SystemExit("--train-pairs must be >= 1")
    fsdd, mnist = _resolve_sources(args)
    config = BuildConfig(seed=args.seed, test_speakers=tuple(args.test_speakers),
                         eval_only=args.eval_only, limit_per_class=args.limit_per_class,
                         train_pairs=args.train_pairs, audio_rate=args.audio_rate)
    t0 = time.perf_counter()
    try:
        meta = build_avdigits(fsdd, mnist, args.out_dir, config, progress=not args.no_progress,
                              overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    counts = {sp: c["total"] for sp, c in meta["counts"].items()}
    print(f"AV-digits written to {args.out_dir} in {time.perf_counter() - t0:.1f} s: {counts}, "
          f"mean {meta['mean_events']} events/sample, skipped {meta['skipped']['count']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
