"""Which finished tasks does PSP-DQN's distilled policy lose, and does its probe say why?

    python -m experiments.probe_distilled_retention experiments/results/dqn-budget/cartpole-shift-keepbest

Reads a retention sweep's finished PSP runs (``<out>/runs/<method>-s<seed>/``: ``metrics.json`` and the probes'
``probes.csv``, ``probes.enabled: true``). An earlier task is *kept* when its final return is at least 0.9x its
return at the end of its own stage (the issue's bar, as ``bench_retention``'s targets read it). For each method it
prints how many earlier (task, seed) pairs were kept, the distillation's fidelity (``distil_agreement``: the
distilled policy agrees with Q's greedy action at the task's end), the distilled policy's ``greedy_agreement`` at
the run's last probe (the share of the sample whose distilled action is still the one it took after its
distillation: what the later distillations' crosstalk left of it), split into kept and lost pairs, and the lost
pairs per task. Lost pairs at a lower final agreement than the kept ones were lost to crosstalk between
distillations; lost pairs whose actions are unchanged were lost at the distillation itself.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from experiments.bench_retention import kept_share
from psp_rl.continual.run_dir import RunDir
from psp_rl.plugins.probes import DISTILLED
from psp_rl.sweep.runner import Trial

KEPT_SHARE = 0.9


def earlier_tasks(run_dir: Path) -> list[dict]:
    """One row per earlier task of a finished run: kept or not, fidelity, final agreement."""
    run = RunDir(run_dir)
    shares = kept_share(json.loads(run.metrics.read_text()))
    with run.probes_csv.open() as f:
        probes = [r for r in csv.DictReader(f) if r["layer"] == DISTILLED]
    last = max((int(r["step"]) for r in probes), default=None)
    fidelity = {r["probe_task"]: float(r["value"]) for r in probes if r["quantity"] == "distil_agreement"}
    agreement = {
        r["probe_task"]: float(r["value"])
        for r in probes
        if r["quantity"] == "greedy_agreement" and int(r["step"]) == last
    }
    return [
        {
            "task": task,
            "kept": share >= KEPT_SHARE,
            "fidelity": fidelity.get(task),
            "agreement": agreement.get(task),  # none for the task distilled at the last switch
        }
        for task, share in shares.items()
    ]


def _mean(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{np.mean(present):.3f} (n={len(present)})" if present else "-"


def summary(out: Path, prefix: str = "psp") -> list[str]:
    """One line per method of ``out``'s finished runs whose name starts with ``prefix``."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for run_dir in sorted((out / "runs").iterdir()):
        trial, run = Trial.from_name(run_dir.name), RunDir(run_dir)
        if trial and trial.method.startswith(prefix) and run.metrics.exists() and run.probes_csv.exists():
            rows[trial.method].extend(earlier_tasks(run_dir))
    lines = []
    for method, pairs in rows.items():
        kept = [p for p in pairs if p["kept"]]
        lost = [p for p in pairs if not p["kept"]]
        by_task = {task: sum(p["task"] == task for p in lost) for task in dict.fromkeys(p["task"] for p in pairs)}
        lines.append(
            f"{method}: kept {len(kept)} of {len(pairs)} earlier task-seeds; fidelity "
            f"{_mean([p['fidelity'] for p in pairs])}; final agreement kept {_mean([p['agreement'] for p in kept])}, "
            f"lost {_mean([p['agreement'] for p in lost])}; lost per task {by_task}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a retention sweep's --out directory")
    parser.add_argument("--prefix", default="psp", help="methods whose names start with it (default psp)")
    args = parser.parse_args()
    if not (args.out / "runs").is_dir():
        parser.error(f"out={str(args.out)!r}: expected a sweep directory with a runs/ folder")
    print("\n".join(summary(args.out, args.prefix)) or f"no finished {args.prefix}* runs with probes in {args.out}")


if __name__ == "__main__":
    main()
