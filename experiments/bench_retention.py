"""Does superposition keep what it learned? Every method on one sequence, several seeds, one table.

    python experiments/bench_retention.py experiments/configs/cartpole-shift-ppo.yaml \\
        --methods psp-binary finetune multihead separate --seeds 0 1 2

The same as ``psp-rl sweep CONFIG ... --out experiments/results/<config name>`` (one runner:
:mod:`psp_rl.continual.sweep`): each method is the config with another ``agent.method`` /
``agent.context`` (a baseline is a config, not another loop), run as a Ray trial into
``<out>/runs/<method>-s<seed>/`` (finished ones reused, unfinished ones resumed); the table goes
to ``<out>/table.csv`` and ``table.md`` (means with 95% bootstrap intervals over seeds; rliable's IQM,
probability of improvement and performance profiles in ``aggregates.md``), the targets to
``targets.md``, the plots to ``report.md`` (seed 0 of every method). ``--variants FILE`` adds
named methods (``name -> agent settings`` over the config's). ``psp-rl sweep --help`` lists
every option.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from psp_rl.cli import main as cli


def main() -> None:
    argv = sys.argv[1:]
    if "--out" not in argv and argv and Path(argv[0]).is_file():
        name = yaml.safe_load(Path(argv[0]).read_text())["name"]
        # relative to the working directory, so the command.txt it writes runs on any clone
        argv += ["--out", os.path.relpath(Path(__file__).parent / "results" / name)]
    sys.exit(cli(["sweep", *argv]))


if __name__ == "__main__":
    main()
