"""Every task under every stored context: what a hidden-id run's deployment picks against the best it could.

    python experiments/probe_contexts.py RUN [RUN ...] [--episodes 5] [--seed 12345] [--deploy-windows 10]
        [--out FILE.md]

For each finished run (its newest checkpoint), every task is played ``--episodes`` times under each
context held fixed, and once more as the run evaluates it (with hidden task ids: the inference's
deployment, which lets the acting context play the first window and then picks a context from the
evidence). The table answers issue 33's target "a returning task acts from a context whose return on it
is >= 0.9x the best stored context's", and splits a hidden run's gap to the announced-id run into
what its contexts hold (the best fixed context per task) and what the deployment loses on the way
(the deployed return against its chosen context played from the first step). ``--deploy-windows``
adds a deployment for each ``inference.deploy_window`` given (how many transitions the acting context
plays before the choice), beside the run's own.

A run with announced ids is probed the same way: its deployment is the task's own context.

``--returning`` reads a hidden-id run that kept every stage's checkpoint (``checkpoint.keep`` >= the
stages): at the end of the stage before each returning task (a task an earlier stage trained), that
task is played under every context stored then, against the context the inference went on to give it
(``metrics.json``): the issue's ">= 0.9x the best stored context", per returning stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from psp_rl.continual.files import atomic_write_text
from psp_rl.plugins.inference.context_trials import Deployment, InferredTaskEnv
from psp_rl.threads import set_threads


def load_trainer(run_dir: Path):
    """The finished run's trainer (no checkpoint loaded yet); torch set to the run's threads."""
    from psp_rl.config import ContinualTrainer, load_config
    from psp_rl.continual import RunDir

    config = load_config(RunDir(run_dir).config)
    set_threads(config.threads)
    return ContinualTrainer(config, run_dir, resume=True)


def load_checkpoint(trainer, path: Path):
    """Checkpoint ``path``'s agent, with the callbacks' state (hidden ids: the inference's models and contexts)."""
    from psp_rl.continual.checkpoints import MODEL

    agent = trainer.agent_factory.load(path / MODEL, None)
    trainer.store.load_callbacks(path, trainer.callbacks)
    return agent


def eval_settings(config, episodes: int, seed: int) -> dict:
    return dict(
        episodes=episodes,
        seed=lambda task: seed + task,
        max_episode_steps=config.eval.max_episode_steps,
        deterministic=config.eval.act == "greedy",
    )


def under_context(agent, sequence, task: int, context: int, acting: dict) -> float:
    """``task``'s mean return with ``context`` held fixed from the first step."""
    from psp_rl.continual import evaluate_tasks

    held = lambda env, _task: InferredTaskEnv(env, Deployment(context))  # noqa: E731
    return evaluate_tasks(agent, sequence, tasks=[task], wrap=held, **acting)[0].mean


def returning(run_dir: Path, episodes: int, seed: int) -> list[str]:
    """Each returning stage's task under every context stored at the end of the stage before it."""
    import json

    from psp_rl.continual.checkpoints import CheckpointStore

    trainer = load_trainer(run_dir)
    sequence, inference = trainer.sequence, task_inference(trainer)
    acting = eval_settings(trainer.config, episodes, seed)
    given = {
        r["stage"]: r["context"]
        for r in json.loads((run_dir / "metrics.json").read_text())["TaskInference"]["returning_tasks"]
    }
    by_stage = {CheckpointStore.read_state(p).stage: p for p in trainer.store.list()}
    head = f"### `{run_dir}`: returning tasks ({episodes} episodes per cell, eval.act {trainer.config.eval.act})"
    lines = [
        head,
        "",
        "| stage | task | stored contexts' returns | given | its return / best |",
        "|---|---|---|---|---|",
    ]
    ratios = []
    for stage, context in sorted(given.items()):
        if stage not in by_stage:
            lines.append(f"| {stage} | {sequence.names[sequence.schedule[stage]]} | no checkpoint | {context} | |")
            continue
        agent = load_checkpoint(trainer, by_stage[stage])
        task = sequence.schedule[stage]
        returns = {c: under_context(agent, sequence, task, c, acting) for c in sorted(inference.used)}
        best = max(returns.values())
        ratios.append(returns[context] / best if best > 0 else 1.0)
        cells = ", ".join(f"c{c} **{r:.0f}**" if r == best else f"c{c} {r:.0f}" for c, r in returns.items())
        lines.append(f"| {stage} | {sequence.names[task]} | {cells} | c{context} | {ratios[-1]:.2f} |")
    lines += ["", f"Returning tasks given a context at >= 0.9x the best stored one: {sum(r >= 0.9 for r in ratios)} "
              f"of {len(ratios)}.", ""]  # fmt: skip
    return lines


def task_inference(trainer):
    """The run's TaskInference callback (None: announced ids)."""
    return next((callback for callback in trainer.callbacks if callback.name == "TaskInference"), None)


def probe(run_dir: Path, episodes: int, seed: int, deploy_windows: list[int]) -> list[str]:
    from psp_rl.continual import evaluate_tasks

    trainer = load_trainer(run_dir)
    path, agent = trainer.store.load_newest(lambda path: load_checkpoint(trainer, path))
    sequence, config = trainer.sequence, trainer.config
    acting = eval_settings(config, episodes, seed)
    n_contexts = sequence.max_tasks
    fixed = np.array(
        [[under_context(agent, sequence, t, c, acting) for c in range(n_contexts)] for t in range(len(sequence))]
    )
    inference = task_inference(trainer)
    windows = [None] + (deploy_windows if inference is not None else [])
    deployed, chosen = {}, {}
    for window in windows:  # None: the run's own deployment
        if window is not None:
            inference.deploy_window = window
        wrap = lambda env, t: trainer.wrap_env(env, t, training=False)  # noqa: E731 (as the run evaluates)
        deployed[window] = [r.mean for r in evaluate_tasks(agent, sequence, wrap=wrap, **acting)]
        chosen[window] = [inference._deployments[n].context if inference else t for t, n in enumerate(sequence.names)]
    names = ["deployed"] + [f"deploy_window {w}" for w in windows[1:]]
    head = "| task | " + " | ".join([f"ctx {c}" for c in range(n_contexts)] + [f"{n} (ctx)" for n in names])
    head += " | deployed / best fixed |"
    lines = [f"### `{run_dir}` ({path.name}, {episodes} episodes per cell, eval.act {config.eval.act})", "", head]
    lines.append("|" + "---|" * (n_contexts + len(windows) + 2))
    ratios = []
    for task, name in enumerate(sequence.names):
        best = fixed[task].max()
        ratios.append(deployed[None][task] / best if best > 0 else float("nan"))
        cells = [f"**{v:.0f}**" if v == best else f"{v:.0f}" for v in fixed[task]]
        cells += [f"{deployed[w][task]:.0f} ({chosen[w][task]})" for w in windows]
        lines.append(f"| {name} | {' | '.join(cells)} | {ratios[-1]:.2f} |")
    own = np.mean([fixed[t, c] for t, c in enumerate(chosen[None])])
    averages = ", ".join(f"{name} {np.mean(deployed[w]):.1f}" for name, w in zip(names, windows, strict=True))
    lines += [
        "",
        f"Average: {averages}; the run's chosen contexts played from the first step {own:.1f}; the best fixed "
        f"context per task {fixed.max(axis=1).mean():.1f}. Tasks deployed at >= 0.9x their best fixed context: "
        f"{sum(r >= 0.9 for r in ratios)} of {len(ratios)}.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=12345, help="seed of the evaluation envs (psp-rl evaluate's)")
    parser.add_argument("--deploy-windows", nargs="*", type=int, default=[], help="inference.deploy_window values")
    parser.add_argument("--returning", action="store_true", help="each returning stage (every stage's checkpoint kept)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = ["# Every task under every stored context (`experiments/probe_contexts.py`)", ""]
    for run in args.runs:
        table = (
            returning(run, args.episodes, args.seed)
            if args.returning
            else probe(run, args.episodes, args.seed, args.deploy_windows)
        )
        print("\n".join(table), flush=True)
        lines += table
    if args.out is not None:
        atomic_write_text(args.out, "\n".join(lines))
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
