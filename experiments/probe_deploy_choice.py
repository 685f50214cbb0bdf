"""Which stored context does evaluation give each task, with and without the frames' channel counts? (issue 33)

    python -m experiments.probe_deploy_choice RUN [RUN ...] [--episodes 10]

Under hidden task ids evaluation plays ``inference.deploy_window`` transitions of each task under the acting
context, then the stored context the evidence names plays the task (:class:`DynamicsDeployment`). A run with
``inference.count_fit`` names it by the product of the window's error over each context's usual error and its
counts' distance over their usual one; runs of hidden-ids-minatar's counts-10 finished before that rule, naming
it by the dynamics error alone. This loads a finished run's newest checkpoint as ``psp-rl evaluate`` does and
evaluates every task under both rules, printing the context each task got and its return.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from psp_rl.config import ContinualTrainer, load_config
from psp_rl.continual import RunDir
from psp_rl.continual.checkpoints import MODEL
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.plugins.inference.task_inference import TaskInference
from psp_rl.threads import set_threads


def probe(run_dir: Path, episodes: int) -> list[str]:
    config = load_config(RunDir(run_dir).config)
    trainer = ContinualTrainer(config, run_dir, resume=True)
    path, model = trainer.store.load_newest(lambda p: trainer.agent_factory.load(p / MODEL, None))
    trainer.store.load_callbacks(path, trainer.callbacks)
    inference = next(c for c in trainer.callbacks if isinstance(c, TaskInference))
    if inference.count_fit is None:
        raise SystemExit(f"{run_dir}: inference.count_fit is not set; nothing to compare")
    lines, count_fit = [f"{run_dir} ({path.name})"], inference.count_fit
    # counts first: the evidence is built (with its counts) at the first evaluation, as count_fit says then
    for rule, fit in (("counts", count_fit), ("dynamics", None)):
        inference.count_fit = fit  # (the deployment weighs the counts only with count_fit set)
        results = evaluate_tasks(
            model,
            trainer.sequence,
            episodes=episodes,
            seed=lambda task: task,  # psp-rl evaluate's default
            max_episode_steps=config.eval.max_episode_steps,
            deterministic=config.eval.act == "greedy",
            wrap=lambda env, task: trainer.wrap_env(env, task, training=False),
        )
        contexts = {name: d.context for name, d in inference._deployments.items()}
        average = sum(r.mean for r in results) / len(results)
        cells = " ".join(f"{r.task} {r.mean:.1f} (context {contexts.get(r.task)})" for r in results)
        lines.append(f"  {rule:8s} average {average:.2f}: {cells}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args(argv)
    set_threads(1)
    for run in args.runs:
        print("\n".join(probe(run, args.episodes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
