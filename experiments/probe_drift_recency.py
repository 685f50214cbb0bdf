"""Every kept checkpoint of drifting runs played across the range: is an end of the range lost to recency?

The force drift's final models miss the per-value oracle at the ends (-10 and +10). The triangle wave ends
its run at ``low`` (-10) and last passed ``high`` (+10) a quarter period earlier, so a model evaluated at the
end may play ``high`` worse because the drift has been away from it, not because it never learned it. This
probe evaluates each kept checkpoint (a run keeps its last two) at the same values and seeds as
``bench_drift.py`` and prints where the drift stood at that step: a return at ``high`` that falls from the
earlier checkpoint to the final one, while the drift moved away from ``high``, is forgetting within the run.

    python -m experiments.probe_drift_recency experiments/results/drift-force-10seeds/runs/drift-smooth-s*
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from experiments.bench_drift import drift_range, evaluate_range
from psp_rl.continual.checkpoints import CheckpointStore
from psp_rl.continual.files import markdown_table
from psp_rl.continual.run_dir import RunDir
from psp_rl.envs.wrappers import triangle_wave


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run dirs of bench_drift.py (their seed is the config's)")
    parser.add_argument("--points", type=int, default=5, help="drift values evaluated across the range")
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for run_dir in args.runs:
        config = yaml.safe_load(RunDir(run_dir).config.read_text())
        drift, values = drift_range(config, args.points)
        for checkpoint in reversed(CheckpointStore(RunDir(run_dir).checkpoints).list()):  # oldest first
            step = int(checkpoint.name.split("-")[1])
            returns = evaluate_range(run_dir, config, values, args.episodes, config["seed"], checkpoint)
            at = triangle_wave(drift["low"], drift["high"], drift["period"], step)
            row = [run_dir.name, step, round(at, 1), *(round(r, 1) for r in returns)]
            rows.append(row)
            print(*row, sep="\t", flush=True)
    header = ["run", "step", f"{drift['name']} at step", *(f"{v:.0f}" for v in values)]
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
