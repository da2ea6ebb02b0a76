"""The leave-one-speaker-out results page, generated from the runs' metrics.json and each fold's
robustness.json: accuracy as mean ± std over folds, every fold, accuracy against corruption
severity (table and PNG), and the goals for taaf-balanced checked fold by fold.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taaf_ros.defaults import WINDOW_S
from taaf_ros.model import MODALITIES
from taaf_ros.training.report import PAPER_EAD_ACC

from .robustness import conditions, plot_curves

SINGLE_MODALITY = ("events-only", "audio-only")


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _readout(m: dict[str, Any], modality: str) -> float | None:
    return m["test_acc_per_modality"].get(modality)


def _optimiser(m: dict[str, Any]) -> str:
    """"AdamW 0.003": the run's optimiser and peak learning rate ("?" where not recorded)."""
    optim = m.get("config", {}).get("optim", {})
    if not isinstance(optim.get("lr"), int | float):
        return "?"
    name = {"adamw": "AdamW", "sgd": "SGD"}.get(optim.get("name"), optim.get("name", "?"))
    return f"{name} {optim['lr']:g}"


def wall_time_line(wall_times: Sequence[dict[str, Any]], n_finished: int) -> str:
    """The protocol's wall time from taaf_loso's record (``protocol_time.json``).

    >>> import textwrap
    >>> print(textwrap.fill(wall_time_line([{"seconds": 600, "runs": 4, "parallel": 2,
    ...                                       "cpu_count": 2, "corruption_evaluations": 1}], 6)))
    wall time: 10 min in 1 invocation(s) of taaf_loso (runs: 4, corruption
    evaluations: 1; 2 runs at a time on 2 cores); 2 runs were finished by
    earlier invocations, whose time was not recorded.
    """
    if not wall_times:
        return ("wall time: not recorded for these runs (taaf_loso records each invocation's "
                "in the protocol folder's protocol_time.json).")
    runs = sum(int(e.get("runs", 0)) for e in wall_times)
    setups = "; ".join(dict.fromkeys(
        f"{e.get('parallel', '?')} runs at a time on {e.get('cpu_count', '?')} cores"
        + (f", train_ead.py {e['train_flags']}" if e.get("train_flags") else "")
        for e in wall_times))
    line = (f"wall time: {sum(e['seconds'] for e in wall_times) / 60:.0f} min in "
            f"{len(wall_times)} invocation(s) of taaf_loso (runs: {runs}, corruption "
            f"evaluations: {sum(int(e.get('corruption_evaluations', 0)) for e in wall_times)}; "
            f"{setups})")
    if n_finished > runs:
        line += (f"; {n_finished - runs} runs were finished by earlier invocations, whose time "
                 "was not recorded")
    return line + "."


def load_robustness(fold_dir: Path) -> dict[str, dict[str, Any]]:
    """{method: {condition label: result}} from the fold's robustness.json (or {})."""
    path = fold_dir / "robustness.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    # names are "method (path/to/<method>/model.pt)"
    return {Path(name.rsplit("(", 1)[1].rstrip(")")).parent.name: res
            for name, res in report["results"].items()}


def corruption_means(robust: dict[str, dict[str, dict[str, Any]]], methods: list[str]
                     ) -> dict[str, dict[str, list[float]]]:
    """{method: {condition: [fused acc per fold]}} over the folds that have the method."""
    out: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for per_method in robust.values():
        for m in methods:
            for label, res in per_method.get(m, {}).items():
                if res["acc"] is not None:
                    out[m].setdefault(label, []).append(res["acc"])
    return out


def _best_single(means: dict[str, dict[str, list[float]]], label: str) -> float | None:
    accs = [statistics.mean(means[m][label]) for m in SINGLE_MODALITY
            if m in means and means[m].get(label)]
    return max(accs) if accs else None


def goals(metrics: dict[tuple[str, str], dict[str, Any]],
          robust: dict[str, dict[str, dict[str, Any]]], folds: list[str]) -> list[str]:
    """The issue's goals for taaf-balanced, as Markdown lines: met or not, fold by fold."""
    tb = {f: metrics[(f, "taaf-balanced")] for f in folds if (f, "taaf-balanced") in metrics}
    taaf = {f: metrics[(f, "taaf")] for f in folds if (f, "taaf") in metrics}
    if not tb:
        return ["No taaf-balanced run has finished yet."]
    lines = ["| goal | mean | met | per fold |", "|---|---|---|---|"]

    fused = {f: m["test_acc"] for f, m in tb.items()}
    mean = statistics.mean(fused.values())
    lines.append(f"| fused ≥ {100 * PAPER_EAD_ACC:.1f} % | {100 * mean:.1f} "
                 f"| {'yes' if mean >= PAPER_EAD_ACC else 'no'} | "
                 + ", ".join(f"{f} {100 * v:.1f}" for f, v in fused.items()) + " |")

    margin = {f: m["test_acc"] - max(a for k in MODALITIES
                                     if (a := _readout(m, k)) is not None)
              for f, m in tb.items()}
    mean = statistics.mean(margin.values())
    lines.append(f"| fused ≥ better readout + 0.5 points | {100 * mean:+.1f} "
                 f"| {'yes' if mean >= 0.005 else 'no'} | "
                 + ", ".join(f"{f} {100 * v:+.1f}" for f, v in margin.items()) + " |")

    both = [f for f in tb if f in taaf]
    if both:
        weak = min(MODALITIES, key=lambda k: statistics.mean(
            _readout(taaf[f], k) or 0.0 for f in both))
        gain = {f: (_readout(tb[f], weak) or 0.0) - (_readout(taaf[f], weak) or 0.0)
                for f in both}
        mean = statistics.mean(gain.values())
        lines.append(f"| {weak} readout (the weaker) ≥ taaf's + 3 points | {100 * mean:+.1f} "
                     f"| {'yes' if mean >= 0.03 else 'no'} | "
                     + ", ".join(f"{f} {100 * v:+.1f}" for f, v in gain.items()) + " |")

    means = corruption_means(robust, ["taaf-balanced", *SINGLE_MODALITY])
    labels = [c.label for c in conditions() if c.family != "clean"]
    deltas = {}
    for label in labels:
        best = _best_single(means, label)
        if means["taaf-balanced"].get(label) and best is not None:
            deltas[label] = statistics.mean(means["taaf-balanced"][label]) - best
    if deltas:
        worse = [f"{k} {100 * v:+.1f}" for k, v in deltas.items() if v < 0]
        lines.append(f"| every corruption ≥ best single-modality method | "
                     f"{len(deltas) - len(worse)}/{len(deltas)} conditions "
                     f"| {'yes' if not worse else 'no'} | "
                     + ("below: " + ", ".join(worse) if worse else "all at or above") + " |")
    return lines


def corruption_table(robust: dict[str, dict[str, dict[str, Any]]], methods: list[str]
                     ) -> list[str]:
    means = corruption_means(robust, methods)
    lines = ["| condition | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for cond in conditions():
        lines.append(f"| {cond.label} | "
                     + " | ".join(_mean_std(means[m].get(cond.label, [])) for m in methods)
                     + " |")
    return lines


def plot_corruptions(robust: dict[str, dict[str, dict[str, Any]]], methods: list[str],
                     path: Path) -> None:
    """Fused accuracy against severity, mean over folds with the std as error bars."""
    means = corruption_means(robust, methods)
    plot_curves({m: {label: (statistics.mean(v), statistics.pstdev(v))
                     for label, v in means[m].items() if v}
                 for m in methods}, path, "fused accuracy (mean over folds)")


def fold_cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "not run yet"
    accs = [m["test_acc"], *(_readout(m, k) for k in MODALITIES)]
    return " / ".join(map(_pct, accs)) + f", epoch {m.get('selected_epoch', '?')}"


def results_page(metrics: dict[tuple[str, str], dict[str, Any]],
                 robust: dict[str, dict[str, dict[str, Any]]], folds: list[str],
                 methods: list[str], n_jobs: int, command: str, png_name: str | None,
                 wall_times: Sequence[dict[str, Any]] = ()) -> str:
    lines = ["# Results: leave-one-speaker-out on AV-digits", "",
             f"Written by `{command}` from the runs' metrics.json and the folds' "
             f"robustness.json ({len(metrics)} of {n_jobs} runs finished). Fold s: test "
             "speaker s, validation speaker the next one (it picks the epoch and fits the late "
             "fusion), the other speakers train. Accuracy in %, mean ± std over the finished "
             "folds; the readouts are the same network's per-modality classifiers.", "",
             "**Dataset: AV-digits, our reproducible stand-in for EAD, not the paper's EAD** "
             "(which cannot be obtained here): real spoken digits (FSDD, five speakers) paired "
             "by label with MNIST digits turned into events by our DVS emulator. The paper "
             f"reports {100 * PAPER_EAD_ACC:.1f} % fused accuracy on EAD; our numbers are not "
             "comparable to it one-to-one (other data, and our own formulation of TAAF from "
             "the paper's abstract, see [model.md](model.md)). Each test speaker has 500 "
             "samples: one sample is 0.2 points.", "",
             "- fused: the network's decision (for the two-modality methods, the late fusion "
             "fitted on the validation speaker). Readouts: each modality's classifier in the "
             "same network, both inputs present; a single-modality method's own accuracy.",
             "- imbalance: the stronger readout's accuracy over the weaker's (1 = balanced).",
             f"- energy: 0.9 pJ x SOPs + 4.6 pJ x MACs per {WINDOW_S:g} s window, counted in a "
             "forward pass over test windows (`taaf_ros.model.energy`).",
             "- train time: training only (the front end is cached per fold), one torch thread "
             "per run, runs sharing the machine's cores with each other (`--parallel`) and "
             "with whatever else ran: compare within a column only roughly.",
             "- optimiser: each method's (`METHOD_OPTIMIZERS`, chosen on validation speakers "
             "by `taaf_optim_select`) and its peak learning rate, from the runs' configs.",
             f"- {wall_time_line(wall_times, len(metrics))}", "",
             "| method | folds | fused | events readout | audio readout | imbalance "
             "| energy (µJ) | train time (s) | optimiser |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        rows = [metrics[(f, m)] for f in folds if (f, m) in metrics]
        imb = [r["imbalance"] for r in rows if r.get("imbalance") is not None]
        energy = [r["energy"]["energy_uj"] for r in rows if r.get("energy")]
        times = [r["train_time_s"] for r in rows]
        lines.append(" | ".join([
            f"| {m}", f"{len(rows)}/{len(folds)}", _mean_std([r["test_acc"] for r in rows]),
            *(_mean_std([a for r in rows if (a := _readout(r, k)) is not None])
              for k in MODALITIES),
            f"{statistics.mean(imb):.2f}" if imb else "-",
            f"{statistics.mean(energy):.1f}" if energy else "-",
            f"{statistics.mean(times):.0f}" if times else "-",
            ", ".join(dict.fromkeys(_optimiser(r) for r in rows)) or "-"]) + " |")
    lines += ["", "## Goals for taaf-balanced", "",
              "Points are percentage points; a corruption condition compares means over the "
              "folds with the better of events-only and audio-only.", "",
              *goals(metrics, robust, folds),
              "", "## Every fold", "", "Fused / events readout / audio readout, and the epoch "
              "validation chose:", "",
              "| test speaker | " + " | ".join(methods) + " |",
              "|---|" + "---|" * len(methods)]
    lines += [f"| {f} | " + " | ".join(fold_cell(metrics.get((f, m))) for m in methods) + " |"
              for f in folds]
    lines += ["", "## Under corruptions", "",
              f"Fused accuracy on each fold's test speaker, mean ± std over the {len(robust)} "
              "folds evaluated (`taaf_robustness` on every method's checkpoint; conditions in "
              "`taaf_ros/studies/robustness.py`: audio white noise and babble from the "
              "training pool, event background activity, occlusion, each modality missing).",
              ""]
    if robust:
        lines += corruption_table(robust, methods)
        if png_name:
            lines += ["", f"![accuracy against severity]({png_name})"]
    else:
        lines.append("No fold has been evaluated under corruptions yet.")
    return "\n".join(lines) + "\n"
