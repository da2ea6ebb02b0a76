"""``taaf_dataset``: a user's recordings and a labels CSV -> a dataset in the EAD layout
(:mod:`taaf_ros.data.dataset_builder` builds it; docs/data.md documents it).

Usage::

    taaf_dataset bag   LABELS.csv --out-dir DIR [--events-topic T] [--audio-topic T] ...
    taaf_dataset files LABELS.csv --out-dir DIR [--audio-offset-s S] ...
    (--dry-run: the report only; --on-bad report: skip bad samples, counted, instead of
     stopping at the first)
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from taaf_ros.apps.options import add_out_dir, parser
from taaf_ros.data.bags import BagError
from taaf_ros.data.dataset_builder import UNITS, BuildSettings, DatasetError, build_dataset
from taaf_ros.data.labels import LabelError
from taaf_ros.data.readers import EventFileError
from taaf_ros.data.span_cutter import BACKGROUND
from taaf_ros.defaults import HOP_S, STREAM_AUDIO_RATE_HZ


def _parser() -> argparse.ArgumentParser:
    ap = parser("taaf_dataset", "Build a training dataset (EAD layout, docs/data.md) from "
                "recordings and a labels CSV: each sample is a window the perception node would "
                "cut, decoded and timed by the node's own code.")
    sub = ap.add_subparsers(dest="source", required=True)
    for name, text in (("bag", "ROS 2 bags (sqlite3 or mcap; no ROS install needed)"),
                       ("files", "event files (.raw EVT 3.0, .aedat4, .h5, .npy, .bin) with "
                        "WAVs of the same name")):
        p = sub.add_parser(name, help=text, description=text)
        if name == "bag":
            p.add_argument("labels", type=Path, nargs="+", help="labels CSV: recording,start,"
                           "end,label[,split][,group][,time] (recordings relative to the CSV's "
                           "folder); with --label-topic, the bags themselves")
        else:
            p.add_argument("labels", type=Path, help="labels CSV: recording,start,end,label"
                           "[,split][,group][,time]; recordings relative to the CSV's folder")
        add_out_dir(p, "the dataset folder to write", required=True)
        p.add_argument("--model", default="", help="take window, bins and audio rate from "
                       "this checkpoint (default: the bundled model)")
        p.add_argument("--classes", default="", help="comma-separated class names, in the "
                       "model's order: a label outside them is an error (default: the labels "
                       "found, sorted)")
        p.add_argument("--times", choices=("relative", "absolute"), default="relative",
                       help="label times: from the recording's start, or ROS time (s since "
                       "the epoch); a time column overrides it per row")
        p.add_argument("--time-unit", choices=tuple(UNITS), default="s",
                       help="what the labels' start and end count (a spreadsheet may export "
                       "ms or ns)")
        p.add_argument("--grid-s", type=float, default=HOP_S, help="windows start on this "
                       "grid of the ROS clock (the node's hop_s)")
        p.add_argument("--stride-s", type=float, default=0.0, help="between the windows of "
                       "a span longer than one (default: the window length)")
        p.add_argument("--background", action="store_true", help="also cut windows that "
                       f"overlap no labelled span, as the class '{BACKGROUND}'")
        p.add_argument("--background-stride-s", type=float, default=0.0,
                       help="between background windows (default: the window length)")
        p.add_argument("--test-ratio", type=float, default=0.25, help="without a split "
                       "column: share of spans whose groups (else recordings) go to test")
        p.add_argument("--seed", type=int, default=0, help="seed of the split by ratio")
        p.add_argument("--on-bad", choices=("error", "report"), default="error",
                       help="a bad span stops the build (error) or is skipped and reported")
        p.add_argument("--min-audio-coverage", type=float, default=0.9,
                       help="least share of a window that must have audio")
        p.add_argument("--dry-run", action="store_true", help="print the report, write "
                       "nothing")
        p.add_argument("--overwrite", action="store_true", help="replace --out-dir if it exists")
        p.add_argument("--sensor-size", type=int, nargs=2, default=(0, 0),
                       metavar=("W", "H"), help="event sensor size where the data does not "
                       "carry it (PointCloud2, .npy, .h5, .bin)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        if name == "bag":
            p.add_argument("--events-topic", default="", help="default: the bag's only "
                           "event topic")
            p.add_argument("--audio-topic", default="", help="default: the bag's only audio "
                           "topic")
            p.add_argument("--audio-info-topic", default="", help="AudioInfo of "
                           "AudioDataStamped (default: the bag's only AudioInfo topic)")
            p.add_argument("--audio-rate", type=int, default=STREAM_AUDIO_RATE_HZ,
                           help="sample rate of MultiArray audio, which does not carry it, "
                           "and of AudioDataStamped recorded without its AudioInfo (with "
                           "--audio-format)")
            p.add_argument("--audio-format", choices=("wave", "mp3"), default=None,
                           help="AudioDataStamped recorded without its AudioInfo: what the "
                           "microphone sent (wave: S16LE mono)")
            p.add_argument("--label-topic", default="", help="take the spans from this "
                           "std_msgs/String topic of the bags (JSON: label, start_ns, end_ns, "
                           "as the replay node's ground truth) instead of a CSV")
        else:
            p.add_argument("--audio-offset-s", type=float, default=0.0,
                           help="time of the WAV's first sample on the event file's clock "
                           "(its first event is 0)")
    return ap


class Terminated(BaseException):
    """SIGTERM, raised where the build is. Not KeyboardInterrupt: caught and answered with
    exit status 130, that still ended the process by SIGINT about once in six builds."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Console script ``taaf_dataset``; exit status 2 on bad input, with the reason."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    labels = a.labels if a.source == "files" else a.labels[0]
    if a.source == "bag" and len(a.labels) > 1 and not a.label_topic:
        print("taaf_dataset: error: several positional arguments are bags, for --label-topic; "
              "without it, give one labels CSV", file=sys.stderr)
        return 2
    st = BuildSettings(labels=labels, out=a.out_dir, source=a.source, model=a.model,
                       classes=tuple(c.strip() for c in a.classes.split(",") if c.strip()),
                       times=a.times, grid_s=a.grid_s, stride_s=a.stride_s,
                       background=a.background, background_stride_s=a.background_stride_s,
                       test_ratio=a.test_ratio, seed=a.seed, on_bad=a.on_bad,
                       min_audio_coverage=a.min_audio_coverage, dry_run=a.dry_run,
                       overwrite=a.overwrite, sensor_size=tuple(a.sensor_size),
                       time_unit=a.time_unit, progress=not a.quiet)
    if a.source == "bag":
        st.events_topic, st.audio_topic = a.events_topic, a.audio_topic
        st.audio_info_topic, st.audio_rate = a.audio_info_topic, a.audio_rate
        st.audio_format = a.audio_format or ""
        st.label_topic, st.bags = a.label_topic, tuple(a.labels)
    else:
        st.audio_offset_s = a.audio_offset_s
    # SIGTERM as Ctrl-C: the half-built folder is removed on the way out either way
    signal.signal(signal.SIGTERM, _terminate)
    try:
        report = build_dataset(st, argv)
    except (DatasetError, LabelError, BagError, EventFileError, ValueError, OSError) as exc:
        print(f"taaf_dataset: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated):
        print("taaf_dataset: interrupted; nothing written", file=sys.stderr)
        return 130
    print(report.render())
    rate = report.events_decoded / max(report.seconds, 1e-9) / 1e6
    print(f"\n{report.events_decoded:,} events decoded in {report.seconds:.1f} s "
          f"({rate:.1f} M events/s)")
    print("dry run: nothing written" if st.dry_run else f"wrote {st.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
