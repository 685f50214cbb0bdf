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
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from psp_rl.agents import ContinualPPO
from psp_rl.config import load_config
from psp_rl.config.build import build_sequence
from psp_rl.continual import RunDir
from psp_rl.continual.files import atomic_write_text
from psp_rl.plugins.inference.dynamics import DynamicsEvidence
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
    # n_envs envs switch at their own resets: until the last one has, a window mixes both tasks' transitions.
    before = play_windows(agent, sequence.make_env(metrics["tasks"].index(metrics["stages"][stage - 1])), acting,
                          windows, config.inference.window, seed)  # fmt: skip
    after = play_windows(agent, env, acting, windows, config.inference.window, seed)
    lines += [
        "",
        f"Windows mixing the two tasks, both played by c{acting} (the new task's share of the rows):",
        "",
        "| new task's share | best model (share of windows) |",
        "|---|---|",
    ]
    for share in (1 / 8, 2 / 8, 4 / 8, 6 / 8):
        named = []
        for old_rows, new_rows in zip(before, after, strict=True):
            n = max(1, round(share * len(new_rows[0])))
            mixed = [np.concatenate([o[: len(o) - n], m[:n]]) for o, m in zip(old_rows, new_rows, strict=True)]
            named.append(int(np.argmin(evidence.errors(*mixed, contexts))))
        counts = np.bincount(named, minlength=len(contexts))
        lines.append(f"| {share:.2f} | {', '.join(f'c{c} {n}' for c, n in zip(contexts, counts, strict=True) if n)} |")
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
