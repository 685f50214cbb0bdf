"""Evaluation: returns on every task of a sequence, through SB3's ``evaluate_policy``.

One function serves the trainer (every ``eval.every`` steps and at each task's end), ``psp-rl
evaluate`` and the random-policy baseline of normalized returns; only the seeds differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from psp_rl.continual.seeds import SEED_SCHEME, Stream, stream_seed
from psp_rl.envs import TaskSequence


@dataclass(frozen=True)
class TaskReturns:
    """The returns of one task's evaluation episodes.

    :param task: the task's name.
    :param returns: one undiscounted return per episode.
    :param capped: episodes cut at ``max_episode_steps`` (their returns are floors).
    """

    task: str
    returns: list[float]
    capped: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def row(self) -> dict[str, Any]:
        """Its ``eval.csv`` columns (besides the step and the task being trained)."""
        return dict(eval_task=self.task, mean=self.mean, std=self.std, episodes=len(self.returns))


def evaluate_tasks(
    policy: Any,
    sequence: TaskSequence,
    *,
    episodes: int,
    seed: Callable[[int], int],
    n_envs: int = 1,
    max_episode_steps: int | None = None,
    deterministic: bool = True,
    tasks: Sequence[int] | None = None,
    wrap: Callable[[VecEnv, int], VecEnv] | None = None,
) -> list[TaskReturns]:
    """Evaluate ``policy`` on every task of ``sequence``, in task order.

    :param policy: anything with SB3's ``predict(obs, state, episode_start, deterministic)``.
    :param episodes: episodes per task.
    :param seed: the seed of task ``t``'s eval envs is ``seed(t)`` (env ``i`` gets ``seed(t) + i``).
    :param n_envs: envs stepped together per task (SB3 splits the episodes among them).
    :param max_episode_steps: cut episodes this long (an agent that never ends one must not hang).
    :param deterministic: act greedily; otherwise sample, with torch's generator seeded by
        ``seed(t)`` for the task and restored afterwards (training's random stream is untouched, so
        a resumed run samples as the uninterrupted one).
    :param tasks: evaluate only these task ids (default: all).
    :param wrap: ``wrap(env, task)`` wraps task ``task``'s eval vec env (task inference does, when
        the task ids are hidden).
    """
    out = []
    for task in range(len(sequence)) if tasks is None else tasks:
        spec = sequence[task]
        env = sequence.make_vec_env(task, n_envs, seed=seed(task), training=False, max_episode_steps=max_episode_steps)
        if wrap is not None:
            env = wrap(env, task)
        try:
            with seeded_sampling(seed(task), enabled=not deterministic):
                returns, lengths = evaluate_policy(
                    policy, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True
                )
        finally:
            env.close()
        capped = 0 if max_episode_steps is None else sum(length >= max_episode_steps for length in lengths)
        out.append(TaskReturns(spec.name, [float(r) for r in returns], int(capped)))
    return out


@contextlib.contextmanager
def seeded_sampling(seed: int, enabled: bool = True) -> Iterator[None]:
    """Torch's generators seeded with ``seed`` inside and as they were after (when ``enabled``:
    a policy that samples; a greedy one draws nothing, so nothing is forked)."""
    if not enabled:
        yield
        return
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


class RandomPolicy:
    """Uniform random actions from ``action_space``, seeded: the 0 of normalized returns."""

    def __init__(self, action_space: Any, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, obs: dict, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        return np.stack([self.action_space.sample() for _ in range(len(obs["task"]))]), None


def random_returns(
    sequence: TaskSequence, episodes: int, seed: int, max_episode_steps: int | None, scheme: int = SEED_SCHEME
) -> list[float]:
    """Each task's mean return under uniformly random actions (its own seeded envs and actions)."""
    out = []
    for task in range(len(sequence)):
        policy = RandomPolicy(sequence.spaces[1], stream_seed(seed, Stream.RANDOM_POLICY, task, scheme=scheme))
        (result,) = evaluate_tasks(
            policy,
            sequence,
            episodes=episodes,
            seed=lambda t: stream_seed(seed, Stream.RANDOM_EPISODES, t, scheme=scheme),
            max_episode_steps=max_episode_steps,
            tasks=[task],
        )
        out.append(result.mean)
    return out


def reference_returns(sequence: TaskSequence, given: dict[str, float] | None) -> list[float | None]:
    """Each task's return that counts as solved: ``given`` (by task name), else the env's
    ``spec.reward_threshold`` (``None`` if it has none)."""
    out: list[float | None] = []
    for task, name in enumerate(sequence.names):
        if given and name in given:
            out.append(given[name])
            continue
        env = sequence.make_env(task)
        out.append(env.spec.reward_threshold if env.spec is not None else None)
        env.close()
    return out
