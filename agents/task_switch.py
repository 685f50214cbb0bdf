"""What every continual agent does at a task switch: restart its per-task schedules, clear the
optimizer's moments, and hold its updates while task inference tries contexts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import ClassVar

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecEnv

from psp_rl.checks import is_int
from psp_rl.precision import update_autocast

LR_SCHEDULES = ("constant", "task_linear", "task_hold_linear")


def relabel_last_observation(agent: BaseAlgorithm, task: int) -> None:
    """Give the observation SB3 acts on next (its ``_last_obs``) the task id ``task``: an episode that
    goes on across a switch (``switch="mid_episode"``) acts under its new task from its next step."""
    if agent._last_obs is not None:
        agent._last_obs["task"][...] = task


class TaskSwitchMixin:
    """Bookkeeping of the current task shared by the continual agents.

    At each switch the optimizer's state (Adam moments) is reset, so parameters the new task
    does not use stay exactly where the old task left them.
    """

    # The modules of :meth:`acting_network` on the acting path (None: all of them).
    acting_modules: ClassVar[tuple[str, ...] | None] = None
    # Options whose default depends on the observations' kind (``"vector"`` or ``"frames"``,
    # :func:`~psp_rl.agents.distillation.observation_kind`): option -> kind -> default. A config that
    # leaves one out records the value for its sequence's kind (``AgentConfig.resolved``).
    observation_defaults: ClassVar[dict[str, dict[str, object]]] = {}
    current_task: int = 0
    task_start: int = 0
    task_steps: int | None = None
    # Class-level default: agents saved before the option existed load with the old behaviour.
    task_lr_schedule: str = "constant"
    updates_held: bool = False
    """While True, ``train`` makes no update: task inference is trying contexts on the current
    task, and those trial episodes must not train the contexts they test."""
    precision: str = "fp32"
    """The update's precision, ``fp32`` or ``bf16`` (:mod:`psp_rl.precision`): a run's
    ``agent.precision`` resolved for its device, set by whoever builds or loads the agent."""

    def update_precision(self) -> AbstractContextManager:
        """The context the networks' forward passes of an update run in."""
        return update_autocast(self.precision, self.device)

    def _check_lr_schedule(self, task_lr_schedule: str) -> None:
        if task_lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"task_lr_schedule={task_lr_schedule!r}: expected one of {list(LR_SCHEDULES)}")
        self.task_lr_schedule = task_lr_schedule

    def on_task_start(
        self, task: int, steps: int | None = None, task_env: Callable[[int], VecEnv] | None = None
    ) -> None:
        """Called once when training on ``task`` starts: restarts the per-task schedules
        (exploration, learning rate) and clears the optimizer's moments.

        :param task: the new task's id (recorded as :attr:`current_task`).
        :param steps: how many env steps the task will be trained for (task-local schedules).
        :param task_env: ``task_env(t)`` builds a fresh env of task ``t`` (the loop's), for an agent
            that acts in the task just finished before it moves on (``ContinualDQN``'s
            ``distil_visits``); without it that agent works from its replay buffer alone.
        """
        if steps is not None and (not is_int(steps) or steps <= 0):
            raise ValueError(f"steps={steps!r}: expected a positive int or None")
        self.current_task, self.task_start, self.task_steps = int(task), self.num_timesteps, steps
        # Adam's moments are cleared: a finished task's own parameters (per-task biases, first
        # layers, heads, separate networks) get zero gradients from now on, yet stale momentum
        # would keep moving them for dozens of steps (measured: ~0.02 per weight on DQN
        # cartpole-shift, enough to drop a frozen separate network from 444 to 42).
        self.policy.optimizer.state.clear()

    def on_inferred_switch(self, task: int, steps: int | None = None) -> None:
        """Task inference's switch to context ``task`` (hidden task ids; ``steps``: the horizon it
        assumes for the task's schedules): what :meth:`on_task_start` does at an announced switch,
        here; an agent that keeps data of the previous context (``ContinualDQN``'s replay) keeps it
        until :meth:`confirm_switch`, since the switch can be a false alarm."""
        self.on_task_start(task, steps)

    def confirm_switch(self) -> None:
        """The last inferred switch stood long enough to be taken as real (task inference's
        ``switch_confirm_steps``): drop what was kept for a false alarm (nothing here)."""

    def task_progress_remaining(self) -> float:
        """1 at the start of the current task, 0 at its end (SB3's progress, per task)."""
        if not self.task_steps:
            return self._current_progress_remaining
        return min(1.0, max(0.0, 1.0 - (self.num_timesteps - self.task_start) / self.task_steps))

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer) -> None:
        if self.task_lr_schedule == "constant":
            return super()._update_learning_rate(optimizers)
        # task_linear: the rate falls to 0 at each task's end, so the shared weights stop moving
        # while a task's last updates settle it (Adam moves every weight by ~lr per step).
        # task_hold_linear keeps the full rate over a task's first half and falls over its second:
        # annealing from the start slowed DQN's learning of a CartPole task by half (dqn-budget).
        remaining = self.task_progress_remaining()
        if self.task_lr_schedule == "task_hold_linear":
            remaining = min(1.0, 2.0 * remaining)
        lr = self.lr_schedule(self._current_progress_remaining) * remaining
        self.logger.record("train/learning_rate", lr)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            update_learning_rate(optimizer, lr)
