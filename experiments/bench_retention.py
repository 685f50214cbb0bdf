"""Does superposition keep what it learned? Every method on one sequence, several seeds, one table.

    python experiments/bench_retention.py experiments/configs/cartpole-shift-ppo.yaml \\
        --methods psp-binary finetune multihead separate --seeds 0 1 2

The same as ``psp-rl sweep CONFIG ... --out experiments/results/<config name>`` (one runner:
:mod:`psp_rl.sweep.runner`): each method is the config with another ``agent.method`` /
``agent.context`` (a baseline is a config, not another loop), run as a Ray trial into
``<out>/runs/<method>-s<seed>/`` (finished ones reused, unfinished ones resumed); the table goes
to ``<out>/table.csv`` and ``table.md`` (means with 95% bootstrap intervals over seeds; rliable's IQM,
probability of improvement and performance profiles in ``aggregates.md``), the plots to ``report.md``
(seed 0 of every method), and then this benchmark's targets to ``targets.md`` (the lines these
benchmarks were set, below: they belong here, not to every table ``psp-rl sweep`` writes);
``--targets-only`` rewrites ``targets.md`` from the finished runs. ``--variants FILE`` adds named
methods (``name -> agent settings`` over the config's). ``psp-rl sweep --help`` lists every option.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import yaml

from psp_rl.cli import main as cli
from psp_rl.continual.files import atomic_write_text
from psp_rl.reporting.aggregates import mean_interval, normalized_scores, random_play
from psp_rl.reporting.retention_table import best_earlier_return, diagonal, on_human_normalized, relative_forgetting
from psp_rl.sweep.runner import METHODS, Trial, finished_trials


def task_forgetting(m: dict, task: str) -> float:
    """Share of ``task``'s best earlier return lost by the end (0 = kept it all)."""
    best = best_earlier_return(m, task)
    return max(m["forgetting"][task], 0.0) / best if best > 0 else 0.0


def kept_share(m: dict) -> dict[str, float]:
    """For each task trained before the last stage, its final return over its return at the end of
    its own (first) stage (1.0 where that return was 0 or less)."""
    matrix = np.array(m["eval_matrix"])
    shares = {}
    for j, task in enumerate(m["tasks"]):
        stage = m["stages"].index(task)
        if stage < len(m["stages"]) - 1:
            shares[task] = float(matrix[-1, j] / matrix[stage, j]) if matrix[stage, j] > 0 else 1.0
    return shares


def learned_tasks(runs: list[dict]) -> list[str]:
    """The tasks whose final return, mean over seeds, is >= 5x random play's (>= 5 where random play
    scores 0 or less): what "learned" means where a task has no reference return (MinAtar)."""
    tasks = runs[0]["tasks"]
    final = np.mean([m["eval_matrix"][-1] for m in runs], axis=0)
    random = np.mean([random_play(m) for m in runs], axis=0)
    bar = np.where(random > 0, 5 * random, 5.0)
    return [task for task, f, b in zip(tasks, final, bar, strict=True) if f >= b - 1e-9]  # returns are rounded


def paired_line(results: dict[str, list[dict]], method: str, reference: str) -> list[str]:
    """``method``'s final average minus ``reference``'s, paired by seed, with a 95% bootstrap interval (no line
    under 2 pairs): the interval excluding 0 is what makes one row better than another."""
    by_seed = {m["seed"]: m for m in results[reference] if m.get("seed") is not None}
    pairs = [(m, by_seed[m["seed"]]) for m in results[method] if m.get("seed") in by_seed]
    if len(pairs) < 2:
        return []
    paired = mean_interval([m["final_average_return"] - r["final_average_return"] for m, r in pairs])
    excludes = "excludes 0" if paired.low > 0 or paired.high < 0 else "includes 0"
    return [
        f"- {method} minus {reference}, final average paired by seed ({len(pairs)} seeds): "
        f"{paired.value:.1f}, 95% bootstrap interval [{paired.low:.1f}, {paired.high:.1f}] ({excludes})"
    ]


def targets(results: dict[str, list[dict]], normalized: dict[str, list[float]], hns: bool = False) -> list[str]:
    """The issue's targets as met / MISSED lines, from the mean over seeds (``hns``: ``results`` are in
    human-normalized scores, an Atari benchmark's, whose forgetting bound is 15%). Every PSP row after the
    first is also compared with the first, paired by seed (list today's default first)."""

    def mean(method: str, key: str) -> float:
        return float(np.mean([m[key] for m in results[method]]))

    def normalized_ratio(a: str, b: str) -> float | None:
        return float(np.mean(normalized[a]) / np.mean(normalized[b])) if a in normalized and b in normalized else None

    def line(name: str, value: str, ok: bool) -> str:
        return f"- {name}: {value} -> {'met' if ok else 'MISSED'}"

    lines = []
    psp_rows = [m for m in results if m.startswith("psp-")]
    for psp in psp_rows:
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
            lines += paired_line(results, psp, "separate")
        if psp != psp_rows[0]:
            lines += paired_line(results, psp, psp_rows[0])
        kept = [list(kept_share(m).values()) for m in results[psp]]
        held = sum(k >= 0.9 for shares in kept for k in shares)
        total = sum(len(shares) for shares in kept)
        lines.append(line(f"{psp} every earlier task's final return >= 0.9x its end-of-stage return, every seed",
                          f"{held} of {total} (seed, task) pairs, lowest {min(min(k, default=1.0) for k in kept):.2f}x",
                          held == total))  # fmt: skip
        forget, bound = float(np.mean([relative_forgetting(m) for m in results[psp]])), 0.15 if hns else 0.10
        lines.append(line(f"{psp} forgetting <= {bound:.0%} of the trained return", f"{forget:.1%}", forget <= bound))
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
    if hns and "finetune" in results:
        earlier = [t for t in results["finetune"][0]["tasks"] if results["finetune"][0]["forgetting"][t] is not None]
        lost = {t: float(np.mean([task_forgetting(m, t) for m in results["finetune"]])) for t in earlier}
        most = max(lost, key=lost.get) if lost else None
        value = f"{lost[most]:.1%} on {most!r}" if most else "no earlier task"
        lines.append(line("finetune loses >= 50% of an earlier task's HNS", value, bool(most) and lost[most] >= 0.5))
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


def write_targets(out: Path, methods: list[str], seeds: list[int]) -> list[str]:
    """``targets.md`` of the sweep in ``out`` (its finished trials of ``methods`` x ``seeds``)."""
    outcome = finished_trials(out, methods, seeds)
    results = outcome.results
    for method, runs in results.items():  # the seed pairs PSP with separate by seed
        for metrics, run_dir in zip(runs, outcome.run_dirs[method], strict=True):
            trial = Trial.from_name(Path(run_dir).name)
            metrics.setdefault("seed", trial.seed if trial else None)
    if not results:
        raise SystemExit(f"{out}: no finished trial of {methods} x seeds {seeds}")
    scores, normalized_by = normalized_scores(results)
    normalized = {method: [float(np.mean(row)) for row in matrix] for method, matrix in scores.items()}
    seed_note = ", ".join(f"{method} {len(runs)}" for method, runs in results.items())
    hns = on_human_normalized(results)
    goals = targets(results if hns is None else hns, normalized, hns=hns is not None)
    atomic_write_text(
        out / "targets.md",
        f"Targets (means over seeds: {seed_note}; normalized: 0 = random play, 1 = {normalized_by}, over the methods "
        f"of this table{'' if hns is None else '; every return, ratio and forgetting in human-normalized scores'}):"
        "\n\n" + "\n".join(goals) + "\n",
    )
    return goals


def main() -> None:
    argv = sys.argv[1:]
    if "--out" not in argv and argv and Path(argv[0]).is_file():
        name = yaml.safe_load(Path(argv[0]).read_text())["name"]
        # relative to the working directory, so the command.txt it writes runs on any clone
        argv += ["--out", os.path.relpath(Path(__file__).parent / "results" / name)]
    args = sweep_arguments(argv)
    if args.out is None:
        raise SystemExit("bench_retention: give the config file first, or --out")
    status = 0 if args.targets_only else cli(["sweep", *[a for a in argv if a != "--targets-only"]])
    print("\n".join(write_targets(Path(args.out), list(args.methods or METHODS), list(args.seeds))))
    sys.exit(status)


def sweep_arguments(argv: list[str]) -> argparse.Namespace:
    """The ``--out``, ``--methods`` and ``--seeds`` of a ``psp-rl sweep`` command line."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out")
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--targets-only", action="store_true")
    return parser.parse_known_args(argv)[0]


if __name__ == "__main__":
    main()
