"""Each drift slot's context played at one fixed value of the drifting parameter.

A drifting run's final model acts from the slot its ``theta`` picks; this probe holds the physics at
``--value`` and overrides ``theta`` so that every slot in turn acts there. It shows whether the slot
theta picks plays its own value as well as its neighbours do (the force drift's end slot did not:
docs/results.md, "Why smooth misses at -10").

    python -m experiments.probe_drift_slots experiments/results/drift-force-mixture/runs/drift-smooth-s0 --value -10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from stable_baselines3.common.vec_env import VecEnvWrapper

from experiments.bench_drift import final_agent, held_at
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.continual.run_dir import RunDir


class HeldTheta(VecEnvWrapper):
    """Every observation's ``theta`` set to ``theta`` (the physics keep their own value)."""

    def __init__(self, venv, theta: float) -> None:  # noqa: ANN001
        super().__init__(venv)
        self.theta = theta

    def reset(self):  # noqa: ANN201
        obs = self.venv.reset()
        obs["theta"][...] = self.theta
        return obs

    def step_wait(self):  # noqa: ANN201
        obs, rewards, dones, infos = self.venv.step_wait()
        obs["theta"][...] = self.theta
        return obs, rewards, dones, infos


def slot_returns(run_dir: Path, value: float, episodes: int, seed: int) -> list[float]:
    """Mean return of each slot's context at the drifting parameter held at ``value``."""
    sequence, agent = final_agent(run_dir, yaml.safe_load(RunDir(run_dir).config.read_text()))
    slots = int(agent.observation_space["task"].n)
    hold = held_at(value)
    out = []
    for slot in range(slots):

        def wrap(env, task, slot=slot):  # noqa: ANN001, ANN202
            return HeldTheta(hold(env, task), slot / (slots - 1))  # theta every drift kind maps to this slot

        (result,) = evaluate_tasks(agent, sequence, episodes=episodes, n_envs=4, seed=lambda t: seed + t, wrap=wrap)
        out.append(result.mean)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished drifting runs (their newest checkpoint)")
    parser.add_argument("--value", type=float, required=True, help="the drifting parameter's value, held")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for run in args.runs:
        returns = slot_returns(run, args.value, args.episodes, args.seed)
        print(f"{run.name} at {args.value:g}: " + " ".join(f"{r:.0f}" for r in returns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
