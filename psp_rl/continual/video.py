"""Videos of an agent playing its tasks: one MP4 per task, through gymnasium's ``RecordVideo``.

``psp-rl evaluate RUN --tasks breakout pong --video DIR`` writes ``DIR/<task>.mp4``: the first
evaluation episode of each task, the agent acting with that task's own context (under hidden ids,
with the context its task inference chooses). Writing MP4s needs moviepy (``pip install
"psp-rl[video]"``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from psp_rl.continual.evaluation import seeded_sampling
from psp_rl.envs import TaskSequence

VIDEO_INSTALL = 'writing videos needs moviepy: pip install "psp-rl[video]" (or: pip install moviepy)'


@dataclass(frozen=True)
class TaskVideo:
    """One task's video: its file, and the episode it shows (agent steps, return)."""

    task: str
    path: Path
    steps: int
    episode_return: float


def check_video_support() -> None:
    """Raise ``ImportError`` in one line when moviepy, which writes the MP4s, is missing."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ImportError(VIDEO_INSTALL) from None


def record_videos(
    policy: Any,
    sequence: TaskSequence,
    tasks: Sequence[int],
    folder: str | Path,
    *,
    seed: Callable[[int], int],
    max_episode_steps: int | None = None,
    deterministic: bool = True,
    wrap: Callable[[VecEnv, int], VecEnv] | None = None,
) -> list[TaskVideo]:
    """Write ``folder/<task name>.mp4`` for each of ``tasks``: ``policy`` playing one episode, a
    frame at its reset and one per agent step, at the env's ``render_fps`` (30 if it names none).

    :param seed: the seed of task ``t``'s env is ``seed(t)`` (and of its sampled actions).
    :param max_episode_steps: cut the episode this long (a video of a stalled game ends).
    :param deterministic: act greedily; otherwise sample, as :func:`evaluate_tasks` does.
    :param wrap: ``wrap(env, task)`` wraps the task's vec env, as the run's evaluation does.
    :return: the videos written, in ``tasks``' order. Each file appears whole or not at all.
    """
    check_video_support()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task in tasks:
        name = sequence[task].name
        env: gym.Env = sequence.make_env(task, seed=seed(task), training=False, render_mode="rgb_array")
        if max_episode_steps is not None:
            env = gym.wrappers.TimeLimit(env, max_episode_steps)
        with tempfile.TemporaryDirectory(dir=folder, prefix=f".{name}-") as scratch:
            fps = env.metadata.get("render_fps") or 30
            recorder = gym.wrappers.RecordVideo(
                env, str(Path(scratch) / "video"), episode_trigger=lambda episode: episode == 0, fps=fps
            )
            venv: VecEnv = DummyVecEnv([lambda recorder=recorder: Monitor(recorder)])
            if wrap is not None:
                venv = wrap(venv, task)
            try:
                with seeded_sampling(seed(task), enabled=not deterministic):
                    (episode_return,), (steps,) = evaluate_policy(
                        policy, venv, n_eval_episodes=1, deterministic=deterministic, return_episode_rewards=True
                    )
            finally:
                venv.close()  # RecordVideo writes its file when closed
            (video,) = Path(scratch, "video").glob("*.mp4")
            os.replace(video, folder / f"{name}.mp4")
        written.append(TaskVideo(name, folder / f"{name}.mp4", int(steps), float(episode_return)))
    return written
