"""Time faults against the perception node's live core: predictions and inputs before, during
and after each, the recovery time and what /diagnostics said.

    python benchmarks/time_faults.py --output docs/results-time-faults.md

A robot-style recording (EventPacket evt3 + AudioDataStamped + AudioInfo, 16 real AV-digits
test samples, 24.5 s) is played message by message into the live core as the node's
callbacks feed it, on a simulated node clock, with the network polled every 10 ms and
/diagnostics read every second (the test suite's harness: test/test_time_jumps.py and
test/recordings.py); each fault strikes 6 s in. Per phase, on the steady clock of the run:
predictions per second and the share of them with both inputs. Before: from the play's second
second to the fault (for a bag played again: the first play); during: the fault and one
window, the wait and two polls after its end; after: the rest but the recording's last second
(where its inputs end). Recovery: from the fault's end to the first prediction from which
every prediction has both inputs; after it, the share of predictions with the label of the
same window without the fault (a re-anchored stream is off by its receipt jitter, a few ms).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))

from recordings import AUDIO_TOPIC, EVENTS_TOPIC, T0_NS, bag_messages, timeline  # noqa: E402
from test_time_jumps import RECOVERY_US, Node, shifted  # noqa: E402

T0 = T0_NS // 1000
AT = T0 + 6_000_000  # where each fault strikes (log µs)
STEP_BACK = 60_000_000


@dataclasses.dataclass
class Fault:
    """begin/end: log times (of the last play) where the fault starts and stops acting;
    node_shift: what the fault adds to the node's clock after it (to match windows)."""

    name: str
    begin: int = AT
    end: int = AT
    clock: Callable[[int], int] | None = None
    edit: Callable | None = None
    replay: bool = False
    sensor_reset_us: int | None = None
    node_shift: int = 0


def faults() -> list[Fault]:
    def stamps(topics, shift, lo=AT, hi=10**20):
        return lambda t, m, log: shifted(m, shift) if t in topics and lo <= log < hi else m

    back = lambda log: log - STEP_BACK if log >= AT else log  # noqa: E731
    return [
        Fault("bag played again (use_sim_time: the clock goes back by the bag's length)",
              begin=T0, end=T0, replay=True),
        Fault("system clock stepped back 60 s (the driver and the node on it)", clock=back,
              edit=stamps((AUDIO_TOPIC, EVENTS_TOPIC), -STEP_BACK), node_shift=-STEP_BACK),
        Fault("node clock stepped back 60 s alone (the driver on another machine)",
              clock=back, node_shift=-STEP_BACK),
        Fault("audio driver restarted: stamps 2 s back, then on",
              edit=stamps((AUDIO_TOPIC,), -2_000_000)),
        Fault("event stamps stepped back 10 s, then on",
              edit=stamps((EVENTS_TOPIC,), -10_000_000)),
        Fault("camera time base restarts from 0 (header stamps go on)",
              sensor_reset_us=AT - T0),
        Fault("audio stamps 3 s behind from the start (another machine's clock)", begin=T0,
              end=T0, edit=stamps((AUDIO_TOPIC,), -3_000_000, lo=0)),
        Fault("audio stamps 8 s behind for 4 s, then right", end=AT + 4_000_000,
              edit=stamps((AUDIO_TOPIC,), -8_000_000, hi=AT + 4_000_000)),
        Fault("subscriber stalled 1.5 s, then the backlog at once", end=AT + 1_500_000,
              clock=lambda log: AT + 1_500_000 if AT <= log < AT + 1_500_000 else log),
    ]


def play(classifier, tl, fault: Fault | None) -> Node:
    node = Node(classifier, T0)
    node.session.time.sim_time = bool(fault and fault.replay)  # a bag plays on /clock
    msgs = bag_messages(tl, sensor_reset_us=fault.sensor_reset_us if fault else None)
    if fault is not None and fault.replay:
        node.play(msgs)
    node.play(msgs, **({} if fault is None else
                       {"edit": fault.edit, **({"clock_us": fault.clock} if fault.clock
                                              else {})}))
    return node


def mono_at(node: Node, play: int, log: int) -> float:
    """The steady clock when the play's first message at or after ``log`` was handled."""
    return next(m for p, t, m in node.handled if p == play and t >= log)


def phase(node: Node, lo: float, hi: float) -> tuple[float, float] | None:
    got = [p for m, _, p in node.published if lo <= m < hi]
    if hi <= lo or not got:
        return None
    full = sum(p["present"] == ["events", "audio"] for p in got)
    return len(got) / (hi - lo), full / len(got)


def measure(classifier, tl, base: Node, f: Fault) -> dict:
    node = play(classifier, tl, f)
    last = node.plays
    first_msg = mono_at(node, last, T0)
    stop = max(m for p, _, m in node.handled if p == last) - 1.0
    begin, end = mono_at(node, last, f.begin), mono_at(node, last, f.end)
    settle = end + RECOVERY_US / 1e6
    before = ((mono_at(node, 1, T0) + 1.0, max(m for p, _, m in node.handled if p == 1) - 1.0)
              if f.replay else (first_msg + 1.0, begin))
    later = [(m, p) for m, _, p in node.published if end <= m < stop]
    full = [p["present"] == ["events", "audio"] for _, p in later]
    recovered = next((later[k][0] - end for k in range(len(later)) if all(full[k:])), None)
    labels = {s: p["label"] for s, p in base.preds.items()}
    after = [(s, p) for m, s, p in node.published if settle <= m < stop]
    same = sum(labels.get(s - f.node_shift) == p["label"] for s, p in after)
    # what /diagnostics said within 3 s of the fault that it did not say before it
    before_parts = {part for m, text in node.said if m < begin for part in text.split("; ")}
    new_parts = {part: None for m, text in node.said if begin <= m < begin + 3.0
                 for part in text.split("; ") if part not in before_parts
                 and not part.startswith(("all modalities", "degraded"))}
    return {"fault": f.name, "before": phase(node, *before),
            "during": phase(node, begin, settle), "after": phase(node, settle, stop),
            "recovery_s": recovered, "same_label": same / len(after) if after else None,
            "warn": " / ".join(new_parts)}


def cell(p: tuple[float, float] | None) -> str:
    return "-" if p is None else f"{p[0]:.1f} /s, {100 * p[1]:.0f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get(
        "TAAF_DATA_ROOT", REPO.parent / "shared" / "data")))
    ap.add_argument("--output", type=Path, default=None, help="write the table here (markdown)")
    args = ap.parse_args()
    from taaf_ros.data.avdigits import ensure_ead_dataset
    from taaf_ros.data.readers import EadDataset
    from taaf_ros.inference.session import LiveSession
    from taaf_ros.params import PERCEPTION_PARAMS, defaults

    ds = EadDataset(ensure_ead_dataset(args.data_root, limit_per_class=2, progress=False),
                    "test")
    tl = timeline([(ds[i], ds.classes[ds[i].label]) for i in range(16)], sensor=ds.sensor_size)
    p = defaults(PERCEPTION_PARAMS) | {"device": "cpu", "smoothing_windows": 1,
                                       "min_confidence": 0.0}
    classifier = LiveSession.load_classifier(p)
    t0 = time.perf_counter()
    base = play(classifier, tl, None)
    rows = [measure(classifier, tl, base, f) for f in faults()]
    lines = ["| fault | before: predictions, with both inputs | during | after | recovery (s) "
             "| after: label as without the fault | /diagnostics said (new within 3 s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rec = "never" if r["recovery_s"] is None else f"{r['recovery_s']:.2f}"
        lines.append(f"| {r['fault']} | {cell(r['before'])} | {cell(r['during'])} | "
                     f"{cell(r['after'])} | {rec} | {100 * r['same_label']:.0f} % | "
                     f"{r['warn'] or '(nothing)'} |")
    table = "\n".join(lines)
    print(table)
    print(f"\n{len(rows)} faults in {time.perf_counter() - t0:.0f} s")
    if args.output:
        doc = __doc__.split("\n\n", 2)[2]
        args.output.write_text(
            f"# Time faults\n\nWritten by `python benchmarks/time_faults.py --output "
            f"{args.output}` on {time.strftime('%Y-%m-%d')}. {doc}\nRecovery is held by the "
            f"tests (test/test_time_jumps.py) to one window, the wait and two polls "
            f"({RECOVERY_US / 1e6:.2f} s) where the data after the fault is exactly the data "
            f"before it.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
