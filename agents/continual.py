"""SB3 agents that know about task switches: ``ContinualDQN`` and ``ContinualPPO``.

Both are thin subclasses. The continual trainer calls ``on_task_switch(task, steps)`` at each
environment change; the rest is SB3's own ``learn`` with ``reset_num_timesteps=False``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3 import DQN, PPO
from stable_baselines3.common.policies import BasePolicy

from psp_rl.policies import PSPActorCriticPolicy, PSPDQNPolicy

REPLAY_ON_SWITCH = ("clear", "keep")


class TaskSwitchMixin:
    """Bookkeeping of the current task shared by the continual agents.

    At each switch the optimizer's state (Adam moments) is reset, so parameters the new task
    does not use stay exactly where the old task left them.
    """

    current_task: int = 0
    task_start: int = 0
    task_steps: int | None = None

    def on_task_switch(self, task: int, steps: int | None = None) -> None:
        """Called once at each environment change, before training on ``task``.

        :param task: the new task's id.
        :param steps: how many env steps the task will be trained for (task-local schedules).
        """
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
            raise ValueError(f"steps={steps!r}: expected a positive int or None")
        self.current_task, self.task_start, self.task_steps = int(task), self.num_timesteps, steps
        # Adam's moments are cleared: a finished task's own parameters (per-task biases, first
        # layers, heads, separate networks) get zero gradients from now on, yet stale momentum
        # would keep moving them for dozens of steps (measured: ~0.02 per weight on DQN
        # cartpole-shift, enough to drop a frozen separate network from 444 to 42).
        self.policy.optimizer.state.clear()

    def task_progress_remaining(self) -> float:
        """1 at the start of the current task, 0 at its end (SB3's progress, per task)."""
        if not self.task_steps:
            return self._current_progress_remaining
        return min(1.0, max(0.0, 1.0 - (self.num_timesteps - self.task_start) / self.task_steps))


class ContinualDQN(TaskSwitchMixin, DQN):
    """DQN that restarts exploration at each task and clears or keeps its replay buffer.

    ``policy="PSPPolicy"`` (or :class:`PSPDQNPolicy`) gives the superposed Q-network.

    :param replay_on_switch: ``"clear"`` (default) empties the buffer at a switch, so a task is
        learned from its own transitions only and retention comes from the network, not from
        replaying old tasks, and updates wait ``learning_starts`` new transitions again;
        ``"keep"`` keeps old transitions, each with its own task id, so replay batches mix
        tasks (superposed layers handle that per sample).
    Other arguments are SB3 ``DQN``'s. The epsilon schedule (``exploration_fraction``,
    ``exploration_initial_eps``, ``exploration_final_eps``) runs over each task's own steps.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**DQN.policy_aliases, "PSPPolicy": PSPDQNPolicy}

    def __init__(self, policy: str | type[BasePolicy], env: Any, *, replay_on_switch: str = "clear", **kwargs: Any):
        if replay_on_switch not in REPLAY_ON_SWITCH:
            raise ValueError(f"replay_on_switch={replay_on_switch!r}: expected one of {list(REPLAY_ON_SWITCH)}")
        self.replay_on_switch = replay_on_switch
        super().__init__(policy, env, **kwargs)
        self.base_learning_starts = self.learning_starts

    def on_task_switch(self, task: int, steps: int | None = None) -> None:
        super().on_task_switch(task, steps)
        if self.replay_on_switch == "clear" and self.replay_buffer is not None:
            self.replay_buffer.reset()
            # An emptied buffer fills again before updates resume, as at the very start.
            self.learning_starts = self.num_timesteps + self.base_learning_starts
        # Exploration restarts for the new task: epsilon is read from task-local progress.
        self.exploration_rate = self.exploration_schedule(self.task_progress_remaining())

    def _on_step(self) -> None:
        super()._on_step()  # target-network sync and SB3's global epsilon ...
        # ... which is replaced by the task-local one, so each task explores from the start.
        self.exploration_rate = self.exploration_schedule(self.task_progress_remaining())
        self.logger.record("rollout/exploration_rate", self.exploration_rate)


class ContinualPPO(TaskSwitchMixin, PPO):
    """PPO with the continual hook. ``policy="PSPPolicy"`` gives :class:`PSPActorCriticPolicy`.

    PPO is on-policy: its rollout buffer holds one rollout, so nothing of the old task is
    carried over at a switch. Arguments are SB3 ``PPO``'s.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**PPO.policy_aliases, "PSPPolicy": PSPActorCriticPolicy}
