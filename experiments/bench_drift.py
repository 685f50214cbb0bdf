"""A drifting physics parameter: does a context that follows the drift beat one fixed context?

    python experiments/bench_drift.py experiments/configs/cartpole-drift.yaml --seeds 0 1 2 --max-parallel 2

Four variants of the config's agent, run through the sweep runner (:mod:`psp_rl.sweep.runner`,
finished runs reused, unfinished ones resumed) into ``<out>/runs/<variant>-s<seed>/``:

- ``drift-fixed``: one context (``agent.drift: none``), the agent sees theta but its context does not move;
- ``drift-smooth``: powers of one context on a grid of ``max_tasks`` points, theta picks the nearest;
- ``drift-smooth-bins``: the same powers at the centres of ``max_tasks`` equal bins of theta (the grid's
  end points get half a bin's data under ``drift-smooth``);
- ``drift-binned``: an independent context per bin of theta (a hard switch every ``period / (2 K)``
  env steps while the drift sweeps up or down);
- ``drift-mixture``: the grid's contexts mix the two nearest of 4 independent contexts (``--variants``
  picks some of the four).

Each run's final model is then evaluated at fixed gravity values across the range (the drift held
still there), ``--episodes`` deterministic episodes each; ``<out>/table.md``, ``table.csv`` and
``command.txt`` hold the returns (default out: ``experiments/results/drift``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv

from psp_rl.agents import ContinualPPO
from psp_rl.config.build import build_sequence
from psp_rl.config.compat import merge_agent_options
from psp_rl.config.loading import add_set_option, parse_config, read_config
from psp_rl.continual.checkpoints import MODEL, CheckpointStore
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.continual.files import atomic_write_csv, atomic_write_text, markdown_table
from psp_rl.continual.run_dir import RunDir
from psp_rl.continual.seeds import legacy_seed
from psp_rl.envs import TaskSequence
from psp_rl.errors import ConfigError
from psp_rl.reporting.aggregates import mean_interval
from psp_rl.sweep.runner import run_sweep

VARIANTS = {
    "drift-fixed": {"drift": "none"},
    "drift-smooth": {"drift": "smooth"},
    "drift-smooth-bins": {"drift": "smooth_bins"},
    "drift-binned": {"drift": "binned"},
    "drift-mixture": {"drift": "mixture"},
}


def final_agent(run_dir: Path, config: dict, checkpoint: Path | None = None) -> tuple[TaskSequence, ContinualPPO]:
    """The run's sequence and its newest checkpoint's agent (or ``checkpoint``'s)."""
    checkpoint = checkpoint or CheckpointStore(RunDir(run_dir).checkpoints).list()[0]
    return build_sequence(parse_config(config).sequence), ContinualPPO.load(checkpoint / MODEL, device="cpu")


def held_at(value: float) -> Callable[[VecEnv, int], VecEnv]:
    """An ``evaluate_tasks`` wrap that holds the drifting parameter of the eval envs at ``value``."""

    def hold(env: VecEnv, task: int) -> VecEnv:
        env.env_method("set_value", value)
        return env

    return hold


def drift_range(config: dict, points: int) -> tuple[dict, list[float]]:
    """The config's drifting parameter (``{"name", "low", "high", "period"}``) and ``points`` values across it."""
    drift = build_sequence(parse_config(config).sequence)[0].params["drift"]
    return drift, list(np.linspace(drift["low"], drift["high"], points))


def evaluate_range(
    run_dir: Path, config: dict, values: list[float], episodes: int, seed: int, checkpoint: Path | None = None
) -> list[float]:
    """Mean return of the run's newest model (or ``checkpoint``'s) at each drift value, the drift held there."""
    sequence, agent = final_agent(run_dir, config, checkpoint)
    out = []
    for value in values:
        (result,) = evaluate_tasks(
            agent,
            sequence,
            episodes=episodes,
            n_envs=min(episodes, 4),
            seed=lambda t: legacy_seed(seed, 9, t),  # the seeds its committed results drew
            wrap=held_at(value),
        )
        out.append(result.mean)
    return out


PLAYABLE = 100.0
"""An evaluated value is playable when the oracle's mean return there reaches this (random play scores
~20; at force 0 nothing balances the pole and the oracle gets ~45)."""


def ratio_cell(returns: np.ndarray, oracle: float) -> str:
    """The seeds' mean return over the oracle's, and with 2 seeds or more the 95% bootstrap interval of that
    mean over the seeds, over the same oracle mean (the oracle's own spread is not in it)."""
    if len(returns) < 2:
        return f"{returns.mean() / oracle:.2f}"
    estimate = mean_interval(list(returns))
    return f"{estimate.value / oracle:.2f} [{estimate.low / oracle:.2f}, {estimate.high / oracle:.2f}]"


def oracle_lines(oracle_runs: list[Path], rows: list[dict], columns: list[str]) -> list[str]:
    """Each variant's mean return at every playable value over the oracle's (mean over seeds; with its
    interval over the variant's seeds), and the target (>= 0.9x at each, on the means)."""
    finals = np.array([json.loads(RunDir(run).metrics.read_text())["eval_matrix"][-1] for run in oracle_runs])
    oracle = finals.mean(axis=0)
    if len(oracle) != len(columns):
        raise SystemExit(f"--oracle: {len(oracle)} tasks per run, expected one per evaluated value ({len(columns)})")
    playable = [i for i, value in enumerate(oracle) if value >= PLAYABLE]
    lines = [
        f"Per-value oracle ({len(oracle_runs)} runs): "
        + ", ".join(f"{columns[i]} {oracle[i]:.1f}" for i in range(len(columns)))
        + f"; playable (oracle >= {PLAYABLE:.0f}): {', '.join(columns[i] for i in playable)}",
        "",
        "| variant | " + " | ".join(f"{columns[i]} / oracle" for i in playable) + " | mean | target >= 0.9x at each |",
        "|---" * (len(playable) + 3) + "|",
    ]
    for variant in dict.fromkeys(row["variant"] for row in rows):
        mine = np.array([[row[columns[i]] for i in playable] for row in rows if row["variant"] == variant])
        ratios = mine.mean(axis=0) / oracle[playable]
        verdict = "met" if (ratios >= 0.9).all() else "MISSED"
        cells = " | ".join(ratio_cell(mine[:, k], oracle[i]) for k, i in enumerate(playable))
        lines.append(f"| {variant} | {cells} | {ratios.mean():.2f} | {verdict} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "drift")
    parser.add_argument("--max-parallel", type=int, default=None)
    parser.add_argument("--points", type=int, default=5, help="drift values evaluated across the range")
    parser.add_argument("--episodes", type=int, default=10)
    add_set_option(parser, "agent.task_lr_schedule=task_linear")
    parser.add_argument("--finished-only", action="store_true", help="evaluate finished runs only, train none")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--oracle",
        type=Path,
        nargs="+",
        default=[],
        help="finished runs of a per-value oracle (drift-force-oracle.yaml: one task per evaluated value, in "
        "the same order); each variant's return at every playable value is compared with the oracle's",
    )
    args = parser.parse_args(argv)
    variants = {name: VARIANTS[name] for name in args.variants}
    torch.set_num_threads(1)
    try:
        base = read_config(args.config, args.settings)
    except ConfigError as exc:
        parser.error(str(exc))
    if not args.finished_only:
        run_sweep(base, list(variants), args.seeds, args.out, overlays=variants, max_parallel=args.max_parallel)
    drift, values = drift_range(base, args.points)
    rows, tabulated = [], tabulated_rows(args.out / "table.csv")
    for variant in variants:
        for seed in args.seeds:
            run_dir = args.out / "runs" / f"{variant}-s{seed}"
            if not RunDir(run_dir).metrics.exists():
                continue
            if not CheckpointStore(RunDir(run_dir).checkpoints).list():  # committed runs keep no checkpoint
                if (variant, seed) not in tabulated:
                    raise SystemExit(f"{run_dir}: finished, but no checkpoint to play and no row in table.csv")
                rows.append(tabulated[variant, seed])
                continue
            config = {**base, "seed": seed, "agent": merge_agent_options(base["agent"], VARIANTS[variant])}
            returns = evaluate_range(run_dir, config, values, args.episodes, seed)
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    **{f"{drift['name']}={v:.2f}": round(r, 1) for v, r in zip(values, returns, strict=True)},
                    "range_mean": round(float(np.mean(returns)), 1),
                }
            )
    if not rows:
        print("no finished run yet")
        return 0
    header = list(rows[0])
    atomic_write_csv(args.out / "table.csv", header, [list(row.values()) for row in rows])
    by = {(r["variant"], r["seed"]): r["range_mean"] for r in rows}
    lines = []
    for seed in args.seeds:
        fixed, smooth = by.get(("drift-fixed", seed)), by.get(("drift-smooth", seed))
        if fixed is not None and smooth is not None:
            lines.append(f"- seed {seed}: smooth {smooth} vs fixed {fixed} -> {'met' if smooth >= fixed else 'MISSED'}")
    command = shlex.join(["python", "experiments/bench_drift.py", *(argv if argv is not None else sys.argv[1:])])
    table = markdown_table(header, [list(row.values()) for row in rows])
    text = (
        f"# Drifting {drift['name']}: the context follows theta\n\n`{command}`\n\n"
        f"Final models, {args.episodes} deterministic episodes at each fixed {drift['name']} "
        f"(the drift held still):\n\n{table}\n\n"
        "Target: the drifting (smooth) context's mean return over the range >= the fixed context's, per seed:\n\n"
    )
    if args.oracle:
        lines += ["", *oracle_lines(args.oracle, rows, header[2:-1])]
    atomic_write_text(args.out / "table.md", text + "\n".join(lines) + "\n")
    atomic_write_text(args.out / "command.txt", command + "\n")
    print("\n".join(lines))
    return 0


def tabulated_rows(path: Path) -> dict[tuple[str, int], dict]:
    """The rows of an earlier ``table.csv`` by (variant, seed): a finished run whose checkpoints were not kept
    (committed results keep none) is read back from there rather than played again."""
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        returns = {key: float(value) for key, value in row.items() if key not in ("variant", "seed")}
        out[row["variant"], int(row["seed"])] = {"variant": row["variant"], "seed": int(row["seed"]), **returns}
    return out


if __name__ == "__main__":
    sys.exit(main())
