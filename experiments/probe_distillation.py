"""How faithful is PSP-DQN's distilled policy, and how much does the next distillation move it?

    python experiments/probe_distillation.py --seed 0 --tasks heavy-pole high-gravity [--settings ...]

Trains the DQN-retention config (experiments/configs/dqn-retention.yaml) on two tasks. At the end
of task 0 it measures Q's greedy return (20 episodes), then distils task 0 with each setting below
from the same weights and measures the distilled policy's return (fidelity). At the end of task 1
each setting distils task 1 on top of its own task-0 distillation and measures task 0 again
(crosstalk between distillations). Training itself goes on as the default run would. Prints one
line per setting and writes ``<out>/probe-<seed>-<tasks>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

import psp_rl.agents.distillation as distillation
from psp_rl.config import ContinualTrainer
from psp_rl.config.loading import load_config
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.evaluation import evaluate_tasks

# setting -> agent attributes (distil_margin, distil_steps, distil_loss, distil_visits), Adam's rate,
# or the most recent N replayed states as the distillation set
SETTINGS = {
    "default": {},
    "steps10k": {"distil_steps": 10000},
    "margin1": {"distil_margin": 1.0},
    "margin20": {"distil_margin": 20.0},
    "cross-entropy": {"distil_loss": "cross_entropy"},
    "lr3e-4": {"lr": 3e-4, "distil_steps": 10000},
    "recent10k": {"recent": 10000},
    "visits5k": {"distil_visits": 5000},
    "visits5k-margin20": {"distil_visits": 5000, "distil_margin": 20.0},
}
EPISODES = 20
POLICY = ("policy_torso", "policy_head", "distilled")


def distil(agent, task: int, setting: dict, task_env) -> float:
    """``agent.distil(task, task_env)`` under ``setting``; everything is put back afterwards."""
    saved = {name: getattr(agent, name) for name in ("distil_margin", "distil_steps", "distil_loss", "distil_visits")}
    saved_lr, saved_rows = distillation.DISTIL_LR, agent.task_rows
    try:
        for name, value in setting.items():
            if name in saved:
                setattr(agent, name, value)
        distillation.DISTIL_LR = setting.get("lr", saved_lr)
        if "recent" in setting:  # the task's most recent replayed states only
            agent.task_rows = lambda t: saved_rows(t)[-setting["recent"] :]
        return agent.distil(task, task_env)
    finally:
        for name, value in saved.items():
            setattr(agent, name, value)
        distillation.DISTIL_LR = saved_lr
        vars(agent).pop("task_rows", None)


class Probe(ContinualCallback):
    def __init__(self, settings: list[str]) -> None:
        self.settings = {name: SETTINGS[name] for name in settings}
        self.out: dict[str, dict] = {}
        self.after_task0: dict[str, dict] = {}

    def returns(self, loop, task: int) -> float:
        (result,) = evaluate_tasks(loop.agent, loop.sequence, episodes=EPISODES, seed=lambda t: 1000 + t, tasks=[task])
        return float(np.mean(result.returns))

    def after_task(self, loop, stage: int, task: int) -> None:
        q_net = loop.agent.policy.q_net
        trained = copy.deepcopy(q_net.state_dict())
        self.out[f"q-return-task{task}"] = self.returns(loop, task)
        for name, setting in self.settings.items():
            weights = copy.deepcopy(trained)
            if stage > 0:  # this setting's own distillation of task 0 under the trained Q
                weights.update({k: v for k, v in self.after_task0[name].items() if k.startswith(POLICY)})
            q_net.load_state_dict(weights)
            row = {"agreement": distil(loop.agent, task, setting, loop.task_env), "return": self.returns(loop, task)}
            if stage == 0:
                self.after_task0[name] = copy.deepcopy(q_net.state_dict())
            else:
                row["task0_return"] = self.returns(loop, 0)
            self.out[f"{name}/task{task}"] = row
            print(name, task, row, flush=True)
        q_net.load_state_dict(trained)  # training goes on as the default run's would
        q_net.distilled[task] = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs=2, default=["heavy-pole", "high-gravity"])
    parser.add_argument("--out", type=Path, default=Path("runs/probe-distillation"))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    config = load_config(Path(__file__).parent / "configs" / "dqn-retention.yaml")
    config = config.model_copy(
        update={
            "seed": args.seed,
            "probes": config.probes.model_copy(update={"enabled": False}),
            "sequence": config.sequence.model_copy(update={"tasks": list(args.tasks)}),
        }
    )
    probe = Probe(args.settings)
    label = f"{args.seed}-{'-'.join(args.tasks)}"
    ContinualTrainer(config, args.out / f"run-{label}", overwrite=True, callbacks=[probe]).run()
    (args.out / f"probe-{label}.json").write_text(json.dumps(probe.out, indent=1))


if __name__ == "__main__":
    main()
