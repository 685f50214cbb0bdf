"""The retention table of a sweep: per method the final average return, forgetting, transfer,
parameters and speed over seeds (means with 95% bootstrap intervals), the normalized scores'
IQM and mean (rliable), the targets, and the report's plots.

Written to ``<out>/table.csv``, ``per_task.csv`` (just-learned and final return per task, means
over seeds), ``table.md``, ``aggregates.md``, ``performance_profile.png``, ``targets.md`` and
``report.md`` (seed 0 of every method) by :func:`write_tables`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from psp_rl.continual.aggregates import (
    aggregate_scores,
    aggregates_text,
    mean_interval,
    normalized_scores,
    plot_performance_profiles,
    random_play,
)
from psp_rl.continual.io import atomic_write_csv, atomic_write_text, markdown_table
from psp_rl.continual.probes import acting_layer
from psp_rl.continual.report import write_report
from psp_rl.continual.run_dir import RunDir
from psp_rl.continual.sweep import Trial

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


def task_forgetting(m: dict, task: str) -> float:
    """Share of ``task``'s best earlier return lost by the end (0 = kept it all)."""
    best = best_earlier_return(m, task)
    return max(m["forgetting"][task], 0.0) / best if best > 0 else 0.0


def targets(results: dict[str, list[dict]], normalized: dict[str, list[float]]) -> list[str]:
    """The issue's targets as met / MISSED lines, from the mean over seeds."""

    def mean(method: str, key: str) -> float:
        return float(np.mean([m[key] for m in results[method]]))

    def normalized_ratio(a: str, b: str) -> float | None:
        return float(np.mean(normalized[a]) / np.mean(normalized[b])) if a in normalized and b in normalized else None

    def line(name: str, value: str, ok: bool) -> str:
        return f"- {name}: {value} -> {'met' if ok else 'MISSED'}"

    lines = []
    for psp in [m for m in results if m.startswith("psp-")]:
        if "separate" in results:
            ratio = mean(psp, "final_average_return") / mean("separate", "final_average_return")
            lines.append(line(f"{psp} final average >= 0.90 x separate", f"{ratio:.2f}x", ratio >= 0.9))
            if (gap := normalized_ratio(psp, "separate")) is not None:
                lines.append(line(f"{psp} normalized within 15% of separate", f"{gap:.2f}x", gap >= 0.85))
            learned = np.mean([diagonal(m) for m in results[psp]], axis=0)
            scratch = np.mean([diagonal(m) for m in results["separate"]], axis=0)
            worst = float(np.min(learned / scratch))
            name = f"{psp} every just-learned return >= 0.90 x separate's"
            lines.append(line(name, f"min {worst:.2f}x", worst >= 0.9))
            by_seed = {m["seed"]: m for m in results["separate"] if m.get("seed") is not None}
            pairs = [(m, by_seed[m["seed"]]) for m in results[psp] if m.get("seed") in by_seed]
            if len(pairs) >= 2:
                paired = mean_interval([m["final_average_return"] - s["final_average_return"] for m, s in pairs])
                lines.append(
                    f"- {psp} minus separate, final average paired by seed ({len(pairs)} seeds): "
                    f"{paired.value:.1f}, 95% bootstrap interval [{paired.low:.1f}, {paired.high:.1f}]"
                )
        kept = [kept_share(m) for m in results[psp]]
        held = sum(k >= 0.9 for shares in kept for k in shares)
        total = sum(len(shares) for shares in kept)
        lines.append(line(f"{psp} every earlier task's final return >= 0.9x its end-of-stage return, every seed",
                          f"{held} of {total} (seed, task) pairs, lowest {min(min(k, default=1.0) for k in kept):.2f}x",
                          held == total))  # fmt: skip
        forget = float(np.mean([relative_forgetting(m) for m in results[psp]]))
        lines.append(line(f"{psp} forgetting <= 10% of the trained return", f"{forget:.1%}", forget <= 0.10))
        if "finetune" in results:
            if (ratio := normalized_ratio(psp, "finetune")) is not None:
                lines.append(line(f"{psp} normalized final average >= 2 x finetune", f"{ratio:.2f}x", ratio >= 2))
            params = results[psp][0]["parameters"] / results["finetune"][0]["parameters"]
            lines.append(line(f"{psp} parameters <= 1.10x finetune", f"{params:.3f}x", params <= 1.10))
            speed = mean(psp, "env_steps_per_s") / mean("finetune", "env_steps_per_s")
            lines.append(line(f"{psp} env-steps/s >= 0.90 x finetune", f"{speed:.2f}x", speed >= 0.9))
    if "finetune" in results and "reversed" in results["finetune"][0]["stages"][1:]:
        stages = results["finetune"][0]["stages"]
        before = stages[stages.index("reversed") - 1]
        lost = float(np.mean([task_forgetting(m, before) for m in results["finetune"]]))
        lines.append(line(f"finetune forgets >= 50% on {before!r} (before 'reversed')", f"{lost:.1%}", lost >= 0.5))
    if "separate" in results and results["separate"][0]["normalized_final_average_return"] is None:  # no reference
        learned, tasks = learned_tasks(results["separate"]), results["separate"][0]["tasks"]
        need = int(np.ceil(0.6 * len(tasks)))
        value = f"{len(learned)} of {len(tasks)} ({', '.join(learned) or 'none'})"
        lines.append(line(f"separate learns >= {need} of {len(tasks)} tasks (final >= 5x random play)", value,
                          len(learned) >= need))  # fmt: skip
    if "separate" in results and "finetune" in results:
        k = len(results["separate"][0]["tasks"])
        ratio = results["separate"][0]["parameters"] / results["finetune"][0]["parameters"]
        lines.append(f"- separate parameters: {ratio:.2f}x finetune (K = {k})")
    return lines


def kept_share(m: dict) -> list[float]:
    """For each task trained before the last stage, its final return over its return at the end of
    its own (first) stage (1.0 where that return was 0 or less)."""
    matrix = np.array(m["eval_matrix"])
    shares = []
    for j, task in enumerate(m["tasks"]):
        stage = m["stages"].index(task)
        if stage < len(m["stages"]) - 1:
            shares.append(float(matrix[-1, j] / matrix[stage, j]) if matrix[stage, j] > 0 else 1.0)
    return shares


def learned_tasks(runs: list[dict]) -> list[str]:
    """The tasks whose final return, mean over seeds, is >= 5x random play's (>= 5 where random play
    scores 0 or less): what "learned" means where a task has no reference return (MinAtar)."""
    tasks = runs[0]["tasks"]
    final = np.mean([m["eval_matrix"][-1] for m in runs], axis=0)
    random = np.mean([random_play(m) for m in runs], axis=0)
    bar = np.where(random > 0, 5 * random, 5.0)
    return [task for task, f, b in zip(tasks, final, bar, strict=True) if f >= b - 1e-9]  # returns are rounded


def diagonal(m: dict) -> np.ndarray:
    """Return on each task right after first training it."""
    matrix = np.array(m["eval_matrix"])
    return np.array([matrix[m["stages"].index(task), j] for j, task in enumerate(m["tasks"])])


def write_tables(results: dict[str, list[dict[str, Any]]], run_dirs: dict[str, list[Path]], out: Path) -> list[str]:
    """Write the table, targets and report of ``results`` (method -> metrics per finished seed,
    ``run_dirs`` the same runs' directories) into ``out``; return the table and targets as lines."""
    for method, runs in results.items():
        for metrics, run_dir in zip(runs, run_dirs[method], strict=True):
            metrics.setdefault("probes", probe_summary(run_dir))
            trial = Trial.from_name(Path(run_dir).name)
            metrics.setdefault("seed", trial.seed if trial else None)
    seed_note = ", ".join(f"{method} {len(runs)}" for method, runs in results.items())

    scratch = [diagonal(m) for m in results.get("separate", [])]
    scores, normalized_by = normalized_scores(results)
    normalized = {method: [float(np.mean(row)) for row in matrix] for method, matrix in scores.items()}
    aggregates = aggregate_scores(scores)
    header = ["method", "final_avg_return", "final_ci95_low", "final_ci95_high", "just_learned_avg",
              "normalized_final_avg", "normalized_ci95_low", "normalized_ci95_high",
              "iqm_normalized", "iqm_ci95_low", "iqm_ci95_high",
              "relative_forgetting", "forgetting_ci95_low", "forgetting_ci95_high",
              "forward_transfer_vs_separate", "parameters", "env_steps_per_s", "wall_time_s",
              *(f"probe_{q}" for q in PROBE_COLUMNS)]  # fmt: skip
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
    goals = targets(results, normalized)
    atomic_write_text(
        out / "targets.md",
        f"Targets (means over seeds: {seed_note}; normalized: 0 = random play, 1 = {normalized_by}, over the methods "
        f"of this table):\n\n" + "\n".join(goals) + "\n",
    )
    write_report([dirs[0] for dirs in run_dirs.values()], out, aggregates=False)
    return lines + ["", *goals]
