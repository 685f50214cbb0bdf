"""Where do dynamics evidence's false alarms come from? (issue 33, item 4's false-alarm target)

    python -m experiments.probe_false_alarms [--policy experiments/results/quickstart/runs/quickstart] \\
        [--seeds 0 1 2] [--floors 0 5e-5] [--out experiments/results/hidden-ids-dynamics/false-alarms.md]

Two measurements on cartpole-shift, without training an agent (a finished run's agent, ``--policy``,
plays the balancing policy):

1. **Window errors.** A ridge model of ``default``'s dynamics (the one
   :class:`~psp_rl.plugins.inference.dynamics.DynamicsEvidence` keeps per context) learns from random play
   or from the trained agent's play; the table gives the error quantiles of 50-transition windows of each
   task, random play and (``default`` only) the agent's. The gap between a task's own windows and the
   closest other task's is where a threshold can sit.
2. **Alarms on one task.** :class:`~psp_rl.plugins.inference.task_inference.TaskInference` with the
   benchmark's settings (``window`` 50, ``dynamics_warmup`` 2,000, ``error_fit`` 4, ``surprises`` 3) reads
   one stream of ``default`` transitions: random play (2,000; the scale and context 0 warm up), then
   the agent's play (30,000: what a context sees once its policy balances), then random play again
   (30,000: a policy that fails, as one does after an update, an exploration spell or a false switch),
   and then 3,000 of ``high-gravity`` (a true switch, to show a floor does not hide it). Every alarm
   before the switch is a false one. ``--floors`` are the ``inference.error_floor`` values compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from experiments.probe_dynamics import play_episodes, trained_agent, windows
from psp_rl.continual.files import atomic_write_text
from psp_rl.envs import get_sequence
from psp_rl.plugins.inference.dynamics import DynamicsEvidence
from psp_rl.plugins.inference.task_inference import TaskInference
from psp_rl.threads import set_threads

WINDOW = 50
PHASES = (("random play", None, 2000), ("the agent", "agent", 30_000), ("random play again", None, 30_000))


def _columns(episodes) -> list[np.ndarray]:
    return [np.concatenate(col) for col in zip(*episodes, strict=True)]


def error_quantiles(sequence, agent, seed: int) -> list[str]:
    rows = []
    rng = np.random.default_rng(seed)
    for warm in ("random play", "the agent"):
        evidence = DynamicsEvidence(sequence.spaces[0]["obs"], sequence.spaces[1], 1, warmup=2000)
        evidence.observe(*_columns(play_episodes(sequence, 0, 2000, seed)), 0)  # fixes the units
        if warm == "the agent":
            evidence.forget(0)
            evidence.observe(*_columns(play_episodes(sequence, 0, 5000, seed + 1, agent)), 0)
        for task, name in enumerate(sequence.names):
            for player, actor in (("random", None), ("agent", agent)):
                if actor is not None and task != 0:
                    continue  # the agent's context 0 plays default only
                episodes = play_episodes(sequence, task, 3000, seed + 10 + task, actor)
                errors = [float(evidence.errors(*w, [0])[0]) for w in windows(episodes, WINDOW, 60, rng)]
                q = np.quantile(errors, [0.05, 0.5, 0.95])
                rows.append(f"| {warm} | {name} | {player} | {q[0]:.2g} | {q[1]:.2g} | {q[2]:.2g} |")
    return rows


def _feed(inference: TaskInference, sequence, task: int, count: int, seed: int, actor) -> list[list[int]]:
    """``count`` transitions of ``task`` (random play, or ``actor``'s) read by ``inference`` as the wrapper
    reports them, in vector steps of 8 envs; the detections they raised."""
    before, agent = len(inference.detections), inference.loop.agent
    for obs, actions, next_obs in play_episodes(sequence, task, count, seed, actor):
        for i in range(0, len(obs), 8):
            inference.transitions(obs[i : i + 8], actions[i : i + 8], next_obs[i : i + 8], inference.context)
            agent.num_timesteps += len(obs[i : i + 8])
    return inference.detections[before:]


def alarms(sequence, agent, seed: int, floor: float) -> dict[str, int]:
    """Alarms in each phase of the one-task stream, and the env steps to detect the true switch (-1: none)."""
    loop = SimpleNamespace(
        agent=SimpleNamespace(num_timesteps=0, updates_held=False),  # what task inference asks of an agent
        writer=SimpleNamespace(add_scalar=lambda *args: None),
        sequence=sequence,
        seed=seed,
    )
    inference = TaskInference(evidence="dynamics", window=WINDOW, error_floor=floor)
    inference.before_training(loop)
    out = {}
    for index, (name, player, count) in enumerate(PHASES):
        out[name] = len(_feed(inference, sequence, 0, count, seed * 100 + index, agent if player else None))
    start = loop.agent.num_timesteps
    switch = _feed(inference, sequence, sequence.names.index("high-gravity"), 3000, seed * 100 + len(PHASES), None)
    out["true switch"] = switch[0][0] - start if switch else -1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", type=Path, default=Path("experiments/results/quickstart/runs/quickstart"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--floors", type=float, nargs="+", default=[0.0, 5e-5])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/hidden-ids-dynamics/false-alarms.md"))
    args = parser.parse_args(argv)
    set_threads(1)
    _, agent = trained_agent(args.policy)
    sequence = get_sequence("cartpole-shift")
    lines = [
        "# Where dynamics evidence's false alarms come from",
        "",
        f"`python -m experiments.probe_false_alarms {' '.join(sys.argv[1:] if argv is None else argv)}`"
        f" (the agent: `{args.policy}`, PSP-PPO trained on default, reversed, long pole).",
        "",
        f"## Window errors (mean squared, in the observed changes' standard deviations; seed {args.seeds[0]})",
        "",
        "| model learned from | windows of | played by | 5% | median | 95% |",
        "|---|---|---|---|---|---|",
        *error_quantiles(sequence, agent, args.seeds[0]),
        "",
        "## Alarms on one task, then a true switch",
        "",
        "| error_floor | seed | alarms: " + " | alarms: ".join(p[0] for p in PHASES) + " | steps to see high gravity |",
        "|---|---|" + "---|" * (len(PHASES) + 1),
    ]
    for floor in args.floors:
        for seed in args.seeds:
            counts = alarms(sequence, agent, seed, floor)
            cells = " | ".join(str(counts[p[0]]) for p in PHASES)
            lines.append(f"| {floor:g} | {seed} | {cells} | {counts['true switch']} |")
            print(lines[-1], flush=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
