"""The Breakout proof's learning curves (issue 34, item 2): every run's evaluations, and a table of the
final return, the mean of the last three evaluations and their human-normalized scores.

    python experiments/atari_single_curves.py experiments/results/atari-single

Reads ``RESULTS/runs/<name>-s<seed>/eval.csv`` (PSP runs by ``psp-rl train``, stock SB3 by
``atari_stock_ppo.py``: the same columns) and writes ``RESULTS/curves.png`` and ``RESULTS/curves.md``.
A group is a run name without its seed (``psp``, ``stock``, ``psp-ortho``); its mean over seeds is
compared with ``--reference`` (default ``stock``, the issue's vanilla SB3), on the runs that reached
``--steps``. HNS = (score - random) / (human - random), with ``--random`` the run's measured random play
(the atari-screen's random play on Breakout is 1.4, atari-single's untrained evaluations 0.8-2.1) and
``--human`` the DQN paper's 31.8.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from psp_rl.continual.files import atomic_write_text, markdown_table
from psp_rl.continual.metrics import normalized

RUN_NAME = re.compile(r"^(?P<group>.+)-s(?P<seed>\d+)$")


def read_curves(runs: Path) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """``group -> seed -> (steps, mean returns)`` of every run dir with an ``eval.csv``."""
    out: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for path in sorted(runs.glob("*/eval.csv")):
        match = RUN_NAME.match(path.parent.name)
        rows = list(csv.DictReader(path.open()))
        if match and rows:
            steps = np.array([int(r["step"]) for r in rows])
            means = np.array([float(r["mean"]) for r in rows])
            out[match["group"]][int(match["seed"])] = (steps, means)
    return dict(out)


def summary_rows(
    curves: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]], steps: int, random: float, human: float
) -> list[dict]:
    """One row per run: its last evaluation's step, final return, mean of the last three, and HNS."""
    rows = []
    for group, seeds in sorted(curves.items()):
        for seed, (at, means) in sorted(seeds.items()):
            final, last3 = float(means[-1]), float(means[-3:].mean())
            hns_final, hns_last3 = normalized(np.array([final, last3]), np.array(random), np.array(human))
            rows.append(
                {
                    "run": f"{group}-s{seed}",
                    "group": group,
                    "step": int(at[-1]),
                    "finished": bool(at[-1] >= steps),
                    "final": round(final, 2),
                    "last3": round(last3, 2),
                    "hns_final": round(float(hns_final), 3),
                    "hns_last3": round(float(hns_last3), 3),
                }
            )
    return rows


def group_lines(rows: list[dict], reference: str) -> list[str]:
    """Each group's mean over its finished seeds, and its ratio to ``reference``'s."""
    finished = defaultdict(list)
    for row in rows:
        if row["finished"]:
            finished[row["group"]].append(row)
    if reference not in finished:
        return [f"No finished `{reference}` run yet: no ratios."]
    ref_final = np.mean([r["final"] for r in finished[reference]])
    ref_last3 = np.mean([r["last3"] for r in finished[reference]])
    lines = [
        "| group | finished seeds | final (mean) | / reference | last 3 (mean) | / reference |",
        "|---|---|---|---|---|---|",
    ]
    for group, members in sorted(finished.items()):
        final, last3 = np.mean([r["final"] for r in members]), np.mean([r["last3"] for r in members])
        ratios = f"{final / ref_final:.2f}x | {last3:.2f} | {last3 / ref_last3:.2f}x"
        lines.append(f"| {group} | {len(members)} | {final:.2f} | {ratios} |")
    return lines


def plot(curves: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for index, (group, seeds) in enumerate(sorted(curves.items())):
        for seed, (steps, means) in sorted(seeds.items()):
            style = "-" if seed == 0 else "--"
            ax.plot(steps / 1e6, means, style, marker=".", color=f"C{index}", label=f"{group} seed {seed}")
    ax.set_xlabel("agent steps (millions)")
    ax.set_ylabel("evaluation return (8 sampled episodes)")
    ax.set_title("Breakout, PPO with CleanRL's Atari settings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a directory with runs/<name>-s<seed>/eval.csv")
    parser.add_argument("--steps", type=int, default=1_000_000, help="a run is finished at this many steps")
    parser.add_argument("--reference", default="stock")
    parser.add_argument("--random", type=float, default=1.7)
    parser.add_argument("--human", type=float, default=31.8)
    args = parser.parse_args(argv)
    curves = read_curves(args.results / "runs")
    if not curves:
        parser.error(f"results: no runs/<name>-s<seed>/eval.csv under {args.results}")
    rows = summary_rows(curves, args.steps, args.random, args.human)
    columns = ["run", "step", "final", "last3", "hns_final", "hns_last3"]
    text = [
        "# Breakout learning curves",
        "",
        f"`python experiments/atari_single_curves.py {args.results}` (HNS with random {args.random}, human "
        f"{args.human}). ![curves](curves.png)",
        "",
        markdown_table(columns, [[row[c] for c in columns] for row in rows]),
        "",
        f"Means over the seeds that reached {args.steps:,} steps, against `{args.reference}`:",
        "",
        *group_lines(rows, args.reference),
    ]
    plot(curves, args.results / "curves.png")
    atomic_write_text(args.results / "curves.md", "\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
