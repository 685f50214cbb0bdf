"""Stock SB3 PPO (``CnnPolicy``) on a one-game Atari config's env chain: the reference curve of the
Breakout proof (issue 34, item 2), evaluated by the same protocol as the PSP run beside it.

    python experiments/atari_stock_ppo.py experiments/configs/atari-single.yaml \\
        --run-dir experiments/results/atari-single/runs/stock-s0 --seed 0 [--resume]

What a user would run with SB3 alone: ``PPO("CnnPolicy")`` with SB3's defaults except the config's
hyperparameters (CleanRL's), the learning rate annealed linearly to 0 over the task as
``task_lr_schedule: task_linear`` does, the config's training vec env (``agent.vec_env``: ale-py's
C++ vector env) with the ``{"obs", "task"}`` observation reduced to its frames. Every ``eval.every``
steps it is evaluated with :func:`psp_rl.continual.evaluation.evaluate_tasks` on the seeds the
continual loop draws for the same run seed and step, and the row appended to ``eval.csv`` in the
loop's columns, so ``psp-rl report``-style comparisons read both runs alike. Training goes in chunks
of ``eval.every`` steps, each from freshly seeded episodes and RNGs (as the loop's chunks), and a
checkpoint follows each chunk: ``--resume`` goes on from the last one and redoes what followed it.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import ConstantSchedule
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from psp_rl.config.build import build_sequence
from psp_rl.config.loading import load_config
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.continual.files import atomic_write_csv, atomic_write_text
from psp_rl.continual.seeds import Stream, stream_seed
from psp_rl.threads import set_threads

COLUMNS = ("step", "trained_task", "eval_task", "mean", "std", "episodes")


class FramesOnly(VecEnvWrapper):
    """The ``obs`` entry of a ``{"obs", "task"}`` vec env: the same envs and frames, no task id."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv, observation_space=venv.observation_space["obs"])

    def reset(self) -> Any:
        return self.venv.reset()["obs"]

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:  # SB3 bootstraps truncated episodes from this
            if "terminal_observation" in info:
                info["terminal_observation"] = info["terminal_observation"]["obs"]
        return obs["obs"], rewards, dones, infos


class FramesPolicy:
    """``model.predict`` on the frames of ``{"obs", "task"}`` observations (for the eval envs)."""

    def __init__(self, model: PPO) -> None:
        self.model = model

    def predict(self, obs: dict, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        return self.model.predict(obs["obs"], state, episode_start, deterministic)


class TaskLinearRate(BaseCallback):
    """The learning rate falls linearly to 0 at the task's end, set before each update from the
    steps done so far, as ``task_lr_schedule: task_linear`` does (SB3's own progress restarts with
    every ``learn`` call, and the loop's chunks are separate calls). A constant schedule object is
    what the model holds, so a checkpoint pickles no closure."""

    def __init__(self, peak: float, total: int, anneal: bool) -> None:
        super().__init__()
        self.peak, self.total, self.anneal = peak, total, anneal

    def _on_rollout_end(self) -> None:
        fraction = max(0.0, 1.0 - self.model.num_timesteps / self.total) if self.anneal else 1.0
        self.model.lr_schedule = ConstantSchedule(self.peak * fraction)

    def _on_step(self) -> bool:
        return True


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("checkpoints/stock-*.zip"))


def _write_rows(path: Path, rows: list[dict[str, Any]], keep_until: int) -> None:
    """``eval.csv`` with the rows of steps <= ``keep_until`` kept and ``rows`` appended, atomically."""
    old = []
    if path.exists():
        with path.open() as f:
            old = [row for row in csv.DictReader(f) if int(row["step"]) <= keep_until]
    atomic_write_csv(path, COLUMNS, ([row[c] for c in COLUMNS] for row in old + rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="go on from the run dir's last checkpoint")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config settings, as psp-rl train's")
    args = parser.parse_args(argv)

    config = load_config(args.config, overrides={"seed": args.seed}, settings=args.set).resolved()
    sequence = build_sequence(config.sequence)
    if len(sequence) != 1 or config.agent.algo != "ppo":
        sys.exit(f"{args.config}: expected a one-task PPO config, got {len(sequence)} tasks of {config.agent.algo!r}")
    set_threads(config.threads)
    agent, total, every = config.agent, sequence[0].steps, config.eval.every
    hparams = agent.sb3_kwargs()
    if agent.task_lr_schedule not in (None, "task_linear", "constant"):
        sys.exit(f"agent.task_lr_schedule={agent.task_lr_schedule!r}: expected task_linear or constant")

    args.run_dir.mkdir(parents=True, exist_ok=True)
    (args.run_dir / "checkpoints").mkdir(exist_ok=True)
    atomic_write_text(args.run_dir / "config.yaml", config.to_yaml())
    saved = _checkpoints(args.run_dir)
    if args.resume and saved:
        model = PPO.load(saved[-1], device="cpu")
        print(f"resuming from {saved[-1]} at step {model.num_timesteps}", flush=True)
    elif saved:
        sys.exit(f"--run-dir {args.run_dir}: has checkpoints; pass --resume or choose an empty dir")
    else:
        env = FramesOnly(sequence.make_vec_env(0, agent.n_envs, seed=args.seed, vec_env=agent.vec_env))
        model = PPO("CnnPolicy", env, seed=args.seed, device="cpu", **hparams)

    rate = TaskLinearRate(agent.learning_rate, total, anneal=agent.task_lr_schedule == "task_linear")
    _write_rows(args.run_dir / "eval.csv", [], keep_until=model.num_timesteps)
    name = sequence[0].name
    while model.num_timesteps < total:
        stage_steps = model.num_timesteps
        env = FramesOnly(sequence.make_vec_env(0, agent.n_envs, seed=args.seed, vec_env=agent.vec_env))
        model.set_env(env, force_reset=True)
        chunk_seed = stream_seed(args.seed, Stream.CHUNK, 0, stage_steps)
        env.seed(chunk_seed)
        model.set_random_seed(chunk_seed)
        model.learn(min(every, total - stage_steps), callback=rate, reset_num_timesteps=False, progress_bar=False)
        env.close()
        step = model.num_timesteps
        results = evaluate_tasks(
            FramesPolicy(model),
            sequence,
            episodes=config.eval.episodes,
            n_envs=min(config.eval.episodes, 4),
            seed=lambda task, step=step: stream_seed(args.seed, Stream.EVAL, step, task),
            max_episode_steps=config.eval.max_episode_steps,
            deterministic=config.eval.act == "greedy",
        )
        _write_rows(args.run_dir / "eval.csv", [dict(step=step, trained_task=name, **r.row()) for r in results], step)
        tmp = args.run_dir / "checkpoints" / f"partial-{step:012d}.zip"
        model.save(tmp)
        os.replace(tmp, args.run_dir / "checkpoints" / f"stock-{step:012d}.zip")
        print(f"step {step}: {name} {results[0].mean:.2f} (capped {results[0].capped})", flush=True)


if __name__ == "__main__":
    main()
