"""The retention table of a sweep: per method the final average return, forgetting, transfer,
parameters and speed over seeds (means with 95% bootstrap intervals), the normalized scores'
IQM and mean (rliable), and the report's plots.

Written to ``<out>/table.csv``, ``per_task.csv`` (just-learned and final return per task, means
over seeds), ``table.md``, ``aggregates.md``, ``performance_profile.png`` and ``report.md`` (seed 0 of every
method) by :func:`write_tables`. A benchmark's own acceptance lines are its script's
(``experiments/retention_targets.py``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from psp_rl.continual.files import atomic_write_csv, atomic_write_text, markdown_table
from psp_rl.continual.metrics import final_average_return, forgetting, normalized
from psp_rl.continual.run_dir import RunDir
from psp_rl.plugins.probes import acting_layer
from psp_rl.reporting.aggregates import (
    aggregate_scores,
    aggregates_text,
    mean_interval,
    normalized_scores,
    plot_performance_profiles,
    random_play,
)
from psp_rl.reporting.report import write_report
from psp_rl.sweep.runner import Trial

PROBE_COLUMNS = (
    "crosstalk_common",
    "crosstalk_spread",
    "advantage_shift_common",
    "advantage_shift_spread",
    "gap_over_output",
    "greedy_agreement",
    "distil_agreement",
)


def probe_summary(run_dir: Path) -> dict[str, float]:
    """The acting output's probes (``probes.csv``), averaged over every (earlier task, later
    task end) pair; empty where the run had no probes. The table averages them over the seeds
    that have them."""
    path = RunDir(run_dir).probes_csv
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    layer = acting_layer(rows)
    rows = [r for r in rows if r["layer"] == layer and r["quantity"] in PROBE_COLUMNS]
    return {
        q: float(np.mean([float(r["value"]) for r in rows if r["quantity"] == q] or [np.nan])) for q in PROBE_COLUMNS
    }


def best_earlier_return(m: dict, task: str) -> float:
    """``task``'s best end-of-stage return from its first training up to (not including) the end."""
    matrix = np.array(m["eval_matrix"])
    return float(np.max(matrix[m["stages"].index(task) : -1, m["tasks"].index(task)]))


def relative_forgetting(m: dict) -> float:
    """Total forgetting over the total best earlier return (0 = kept everything)."""
    tasks = [task for task in m["tasks"] if m["forgetting"][task] is not None]
    lost = sum(max(m["forgetting"][task], 0.0) for task in tasks)
    best = sum(best_earlier_return(m, task) for task in tasks)
    return lost / best if best > 0 else 0.0


def human_normalized(m: dict) -> dict | None:
    """``m`` with its evaluation matrix, final average and forgetting in human-normalized scores, HNS =
    (score - random play) / (human - random play): for an Atari run (its ROMs recorded) with a reference
    return for every task (``eval.reference_returns``: the human scores); None otherwise. An Atari table's
    forgetting and ratios are computed on it: raw Pong scores are negative, and a share of them means nothing."""
    refs = m.get("reference_returns") or {}
    if "roms_md5" not in m.get("versions", {}) or any(refs.get(task) is None for task in m["tasks"]):
        return None
    human = np.array([refs[task] for task in m["tasks"]], dtype=float)
    matrix = normalized(np.array(m["eval_matrix"], dtype=float), random_play(m), human)
    forgot = forgetting(matrix, [m["tasks"].index(task) for task in m["stages"]])
    return {
        **m,
        "eval_matrix": matrix.tolist(),
        "final_average_return": final_average_return(matrix),
        "forgetting": dict(zip(m["tasks"], forgot, strict=True)),
    }


def on_human_normalized(results: dict[str, list[dict]]) -> dict[str, list[dict]] | None:
    """``results`` (method -> runs' metrics) in HNS (:func:`human_normalized`) when every run has a human
    reference for every game; None otherwise (a table in HNS or not at all, never mixed)."""
    hns = {method: [human_normalized(m) for m in runs] for method, runs in results.items()}
    return hns if all(h is not None for runs in hns.values() for h in runs) else None


def diagonal(m: dict) -> np.ndarray:
    """Return on each task right after first training it."""
    matrix = np.array(m["eval_matrix"])
    return np.array([matrix[m["stages"].index(task), j] for j, task in enumerate(m["tasks"])])


def write_tables(results: dict[str, list[dict[str, Any]]], run_dirs: dict[str, list[Path]], out: Path) -> list[str]:
    """Write the table and report of ``results`` (method -> metrics per finished seed, ``run_dirs``
    the same runs' directories) into ``out``; return the table as lines."""
    for method, runs in results.items():
        for metrics, run_dir in zip(runs, run_dirs[method], strict=True):
            metrics.setdefault("probes", probe_summary(run_dir))
            trial = Trial.from_name(Path(run_dir).name)
            metrics.setdefault("seed", trial.seed if trial else None)
    seed_note = ", ".join(f"{method} {len(runs)}" for method, runs in results.items())

    scratch = [diagonal(m) for m in results.get("separate", [])]
    scores, normalized_by = normalized_scores(results)
    aggregates = aggregate_scores(scores)
    header = ["method", "final_avg_return", "final_ci95_low", "final_ci95_high", "just_learned_avg",
              "normalized_final_avg", "normalized_ci95_low", "normalized_ci95_high",
              "iqm_normalized", "iqm_ci95_low", "iqm_ci95_high",
              "relative_forgetting", "forgetting_ci95_low", "forgetting_ci95_high",
              "forward_transfer_vs_separate", "parameters", "env_steps_per_s", "wall_time_s",
              *(f"probe_{q}" for q in PROBE_COLUMNS)]  # fmt: skip
    hns = on_human_normalized(results)
    if hns is not None:
        header += ["hns_final_avg", "hns_ci95_low", "hns_ci95_high", "hns_relative_forgetting",
                   "hns_forgetting_ci95_low", "hns_forgetting_ci95_high"]  # fmt: skip
    rows = []
    for method, runs in results.items():
        final = mean_interval([m["final_average_return"] for m in runs])
        forget = mean_interval([relative_forgetting(m) for m in runs])
        mean, iqm = aggregates[method]["mean"], aggregates[method]["iqm"]
        transfer = (
            f"{np.mean([np.mean(diagonal(m) - s) for m, s in zip(runs, scratch, strict=False)]):.1f}" if scratch else ""
        )
        rows.append([
            method, f"{final.value:.1f}", f"{final.low:.1f}", f"{final.high:.1f}",
            f"{np.mean([diagonal(m).mean() for m in runs]):.1f}",
            f"{mean.value:.3f}", f"{mean.low:.3f}", f"{mean.high:.3f}", f"{iqm.value:.3f}", f"{iqm.low:.3f}",
            f"{iqm.high:.3f}", f"{forget.value:.3f}", f"{forget.low:.3f}", f"{forget.high:.3f}", transfer,
            runs[0]["parameters"],
            f"{np.mean([m['env_steps_per_s'] for m in runs]):.0f}", f"{np.mean([m['wall_time_s'] for m in runs]):.0f}",
            *(f"{np.nanmean([m['probes'].get(q, np.nan) for m in runs]):.3f}"
              if any(np.isfinite(m["probes"].get(q, np.nan)) for m in runs) else "" for q in PROBE_COLUMNS),
        ])  # fmt: skip
        if hns is not None:
            hns_final = mean_interval([h["final_average_return"] for h in hns[method]])
            hns_forget = mean_interval([relative_forgetting(h) for h in hns[method]])
            rows[-1] += [f"{v:.3f}" for e in (hns_final, hns_forget) for v in (e.value, e.low, e.high)]
    atomic_write_csv(out / "table.csv", header, rows)
    per_task = [
        [method, task, f"{np.mean([diagonal(m)[j] for m in runs]):.1f}",
         f"{np.mean([m['eval_matrix'][-1][j] for m in runs]):.1f}"]
        for method, runs in results.items() for j, task in enumerate(runs[0]["tasks"])
    ]  # fmt: skip
    atomic_write_csv(out / "per_task.csv", ["method", "task", "just_learned", "final"], per_task)
    lines = markdown_table(header, rows).split("\n")
    atomic_write_text(
        out / "table.md",
        f"Seeds per method: {seed_note}; means with 95% bootstrap intervals over seeds (rliable); normalized: "
        f"0 = random play, 1 = {normalized_by}; IQM: the interquartile mean over every (seed, task).\n\n"
        + "\n".join(lines)
        + "\n",
    )
    atomic_write_text(out / "aggregates.md", aggregates_text(scores, aggregates, normalized_by, seed_note))
    plot_performance_profiles(scores, out / "performance_profile.png")
    write_report([dirs[0] for dirs in run_dirs.values()], out, aggregates=False)
    return lines
