"""Why a switch went unseen under hidden task ids: the detector's statistic around it, the training
returns of every stage, and the acting policies on the new task's states (issue 33 item 2).

    python experiments/probe_switch.py RUN --stage 9 [--checkpoint CKPT]

RUN is a finished hidden-id run (its ``metrics.json`` and ``tb/``); ``--stage`` the stage whose
switch to explain; ``--checkpoint`` (default: the newest at or before the switch) the weights whose
policies are probed, under every context, on random-play states of the stage's task.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from psp_rl.agents import ContinualPPO
from psp_rl.config import load_config
from psp_rl.config.build import build_sequence
from psp_rl.continual import RunDir
from psp_rl.threads import set_threads


def scalars(events: EventAccumulator, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``tag`` in a loaded run's TensorBoard events (empty when absent)."""
    found = events.Scalars(tag) if tag in events.Tags()["scalars"] else []
    return np.array([e.step for e in found]), np.array([e.value for e in found])


def policy_lines(agent: ContinualPPO, sequence, task: int, contexts: int, seed: int = 0) -> list[str]:
    """Each context's policy on 2,000 random-play states of ``task``: how often it would push
    right, how sure it is (entropy, nats) and the median logit gap."""
    env, states = sequence.make_env(task), []
    env.action_space.seed(seed)  # (the random play is part of what is reported: the same every run)
    obs, _ = env.reset(seed=seed)
    for _ in range(2000):
        states.append(obs["obs"])
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    batch = torch.tensor(np.array(states), dtype=torch.float32)
    lines = ["| context | P(action 1) mean | entropy mean | median logit gap |", "|---|---|---|---|"]
    for context in range(contexts):
        with torch.no_grad():
            dist = agent.policy.get_distribution({"obs": batch, "task": torch.full((len(batch),), context)})
        logits = dist.distribution.logits
        gap = float((logits[:, 1] - logits[:, 0]).abs().median())
        p = dist.distribution.probs[:, 1]
        lines.append(f"| {context} | {p.mean():.3f} | {dist.entropy().mean():.3f} | {gap:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args(argv)
    set_threads(1)
    metrics = json.loads((args.run / "metrics.json").read_text())
    inference = metrics["TaskInference"]
    switch = next(s for s in inference["switches"] if s["stage"] == args.stage)
    ends = metrics["stage_end_steps"]
    events = EventAccumulator(str(args.run / "tb"), size_guidance={"scalars": 0})
    events.Reload()  # (once: it reads every event file of the run)
    print(f"# Switch at stage {args.stage} ({metrics['stages'][args.stage - 1]} -> {metrics['stages'][args.stage]})")
    print(f"\n{json.dumps(switch)}\n")
    print("| stage | task | context acting most | training return: first 20 episodes | last 20 |")
    print("|---|---|---|---|---|")
    for stage, (task, start, end) in enumerate(zip(metrics["stages"], [0, *ends[:-1]], ends, strict=True)):
        steps, values = scalars(events, f"train/{task}/return")
        inside = values[(steps >= start) & (steps < end)]
        context = int(np.argmax(inference["stage_contexts"][stage]))
        first, last = (f"{inside[:20].mean():.1f}", f"{inside[-20:].mean():.1f}") if len(inside) else ("-", "-")
        print(f"| {stage} | {task} | {context} | {first} | {last} |")
    steps, values = scalars(events, "inference/cusum")
    at = ends[args.stage - 1]
    near = (steps >= at - 500) & (steps <= at + 2000)
    print(f"\nCUSUM statistic per finished episode from {at - 500} to {at + 2000} (alarm at the config's threshold):")
    print(f"{len(values[near])} episodes, max {values[near].max() if near.any() else float('nan'):.1f}\n")
    checkpoint = args.checkpoint or max(
        (c for c in (args.run / "checkpoints").iterdir() if int(c.name.split("-")[1]) <= at), key=lambda c: c.name
    )
    sequence = build_sequence(load_config(RunDir(args.run).config).sequence)
    agent = ContinualPPO.load(checkpoint / "model.zip", device="cpu")
    task = metrics["tasks"].index(metrics["stages"][args.stage])
    print(f"Policies in {checkpoint.name} on random-play states of {metrics['stages'][args.stage]}:\n")
    print("\n".join(policy_lines(agent, sequence, task, sequence.max_tasks)))


if __name__ == "__main__":
    main()
