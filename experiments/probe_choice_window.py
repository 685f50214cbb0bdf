"""Which dynamics model names a returning task, depending on whose policy played the window (issue 33).

    python experiments/probe_choice_window.py RUN --stage 5 [--windows 40] [--out FILE.md]

At a switch under hidden task ids the inference scores the last window of transitions under every stored
context's dynamics model and takes the best (``exhausted`` when every context is taken and none fits within
``error_fit`` of its usual error). That window was played by the context acting *before* the switch, the
previous task's policy, whose states on the new task can be unusual for every model (a pole falling under a
reversed push). This probe loads RUN's checkpoint at the switch into stage ``--stage`` (its policies, its
dynamics models and their usual errors), plays ``--windows`` windows of the stage's task under each context in
turn (sampled actions, as in training; each window from a fresh episode's first ``window`` steps, or fewer
where the episode ends), and scores every window under every model: how often each model is the best, and its
mean error over its usual one. A row per acting context; the first is the context that acted before the switch.
Then it replays the run from that checkpoint to its first choice (a copy, in a temporary folder; exact on the
float path the run was made on) and scores the window that choice was made on, transition by transition: its mean
and median error under each model ("best": the lowest, which names the task) and the transitions each model
predicts best. With n_envs envs, each switching at its own reset, that window can mix both tasks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from psp_rl.agents import ContinualPPO
from psp_rl.config import load_config
from psp_rl.config.build import ContinualTrainer, build_sequence
from psp_rl.continual import RunDir
from psp_rl.continual.files import atomic_write_text
from psp_rl.plugins.inference.dynamics import DynamicsEvidence
from psp_rl.plugins.inference.task_inference import TaskInference
from psp_rl.threads import set_threads


def play_windows(agent, env, context: int, windows: int, length: int, seed: int) -> list[list[np.ndarray]]:
    """``windows`` windows ``[obs, actions, next_obs]`` of ``env`` played by ``context``'s sampled actions."""
    out = []
    for episode in range(windows):
        obs, _ = env.reset(seed=seed + episode)
        rows = []
        while len(rows) < length:
            observation = {"obs": torch.as_tensor(obs["obs"])[None], "task": torch.tensor([context])}
            with torch.no_grad():
                action = int(agent.policy.get_distribution(observation).sample()[0])
            next_obs, _, terminated, truncated, _ = env.step(action)
            rows.append((obs["obs"], action, next_obs["obs"]))
            if terminated or truncated:  # (the last row's next_obs is the true last state, not a reset)
                break
            obs = next_obs
        out.append([np.stack(col) for col in zip(*rows, strict=True)])
    return out


class _Decided(Exception):
    """Raised by the replay's hook at the inference's first choice, with its window."""


def replay_lines(run: Path, checkpoint: Path, contexts: list[int], usual: dict[int, float]) -> list[str]:
    """Resume a copy of RUN from ``checkpoint`` until its first choice at an alarm (exactly as the run did, on
    this machine's float path) and score that choice's window: mean and median error per model, and how many
    of its transitions each model predicts best."""
    recorded = {}

    def record(inference: TaskInference) -> None:
        recorded["window"] = [np.stack(col) for col in zip(*inference.recent, strict=True)]
        recorded["step"], recorded["evidence"] = inference._step(), inference.dynamics
        raise _Decided

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / run.name
        (copy / "checkpoints").mkdir(parents=True)
        shutil.copytree(checkpoint, copy / "checkpoints" / checkpoint.name)
        shutil.copy(run / "config.yaml", copy / "config.yaml")
        best_stored, TaskInference._best_stored = TaskInference._best_stored, record
        try:
            ContinualTrainer(load_config(copy / "config.yaml"), copy, resume=True).run()
        except _Decided:
            pass
        finally:
            TaskInference._best_stored = best_stored
    if "window" not in recorded:
        return ["The replay reached no choice."]
    window, evidence = recorded["window"], recorded["evidence"]
    rows = np.array(
        [[evidence.errors(*(w[i : i + 1] for w in window), [c])[0] for c in contexts] for i in range(len(window[0]))]
    )
    votes = np.bincount(rows.argmin(axis=1), minlength=len(contexts))
    mean, median = rows.mean(axis=0), np.median(rows, axis=0)
    return [
        f"The run's own window at its choice (step {recorded['step']}, replayed from {checkpoint.name}; "
        f"{len(rows)} transitions of n_envs envs, each switching at its own reset):",
        "",
        "| model | mean error / usual | median error / usual | transitions it predicts best |",
        "|---|---|---|---|",
        *(f"| c{c} | {mean[k] / usual[c]:.3g}{' (best)' if k == mean.argmin() else ''} | "
          f"{median[k] / usual[c]:.3g}{' (best)' if k == median.argmin() else ''} | {votes[k]} |"
          for k, c in enumerate(contexts)),
    ]  # fmt: skip


def probe(run: Path, stage: int, windows: int, seed: int) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    config = load_config(RunDir(run).config)
    switch_at = metrics["stage_end_steps"][stage - 1]
    checkpoint = max((c for c in (run / "checkpoints").iterdir() if int(c.name.split("-")[1]) <= switch_at), key=str)
    state = next(
        s for s in torch.load(checkpoint / "callbacks.pt", weights_only=False).values()
        if isinstance(s, dict) and "usual_error" in s
    )  # fmt: skip
    sequence = build_sequence(config.sequence)
    evidence = DynamicsEvidence(
        sequence.spaces[0]["obs"], sequence.spaces[1], sequence.max_tasks,
        warmup=config.inference.dynamics_warmup, window_error=config.inference.window_error,
    )  # fmt: skip
    evidence.load_state_dict(state["dynamics"])
    usual = {int(c): float(e) for c, e in state["usual_error"]}
    contexts = sorted(usual)
    agent = ContinualPPO.load(checkpoint / "model.zip", device="cpu")
    task_name = metrics["stages"][stage]
    env = sequence.make_env(metrics["tasks"].index(task_name))
    acting = int(state["context"])
    choices = [c for c in metrics["TaskInference"]["choices"] if switch_at <= c[0] < metrics["stage_end_steps"][stage]]
    lines = [
        f"### `{run}`: stage {stage} ({metrics['stages'][stage - 1]} -> {task_name}), {checkpoint.name}",
        "",
        f"Acting before the switch: c{acting}; the run's choices in the stage: {choices or 'none'}. "
        f"Usual errors: {', '.join(f'c{c} {usual[c]:.2e}' for c in contexts)}. {windows} windows of "
        f"{config.inference.window} transitions per row.",
        "",
        "| window played by | best model (share of windows) | error / usual, per model |",
        "|---|---|---|",
    ]
    for actor in [acting, *(c for c in contexts if c != acting)]:
        played = play_windows(agent, env, actor, windows, config.inference.window, seed)
        errors = np.array([evidence.errors(*w, contexts) for w in played])
        ratios = errors / np.array([usual[c] for c in contexts])
        best = np.bincount(errors.argmin(axis=1), minlength=len(contexts))  # the lowest raw error names the task
        share = ", ".join(f"c{c} {n}" for c, n in zip(contexts, best, strict=True) if n)
        mean = ", ".join(f"c{c} {r:.1f}" for c, r in zip(contexts, ratios.mean(axis=0), strict=True))
        lines.append(f"| c{actor}{' (acting)' if actor == acting else ''} | {share} | {mean} |")
    lines += ["", *replay_lines(run, checkpoint, contexts, usual)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(1)
    text = "\n".join(probe(run, args.stage, args.windows, args.seed) for run in args.runs)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
