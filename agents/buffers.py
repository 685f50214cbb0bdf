"""Reading one task's observations back from an agent's own buffer: the replay buffer (DQN) or the
last rollout (PPO). Probes, online EWC's Fisher, distillation and rehearsal read states this way."""

from __future__ import annotations

from typing import Any

import numpy as np

from psp_rl.agents.replay import CompactDictReplayBuffer


class BufferStates:
    """``task_rows`` / ``states_at`` / ``task_states`` over the buffer :meth:`_stored` names."""

    observation_space: Any

    def _stored(self) -> tuple[Any, dict[str, np.ndarray]]:
        """``(replay buffer or None, the stored observations)`` with every row of the buffer."""
        raise NotImplementedError

    def _stored_tasks(self) -> np.ndarray:
        """The task id of every stored row, in buffer order."""
        raise NotImplementedError

    def task_rows(self, task: int) -> np.ndarray:
        """Rows of ``task``'s observations in the agent's buffer, in buffer order; a row is
        ``position * n_envs + env``. Read them with :meth:`states_at`."""
        rows = np.flatnonzero(self._stored_tasks().reshape(-1) == task)
        if len(rows) == 0:
            raise RuntimeError(f"no observations of task {task} in the agent's buffer")
        return rows

    def states_at(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The observations at buffer ``rows`` (:meth:`task_rows`), ``{key: (len(rows), *shape)}``."""
        buffer, stored = self._stored()
        space = self.observation_space
        if isinstance(buffer, CompactDictReplayBuffer):  # frames are rebuilt, not stored per row
            out = buffer.observations_at(*np.divmod(rows, buffer.n_envs))
            out["task"] = out["task"].astype(space["task"].dtype)
        else:
            # (steps, n_envs, ...) or, once PPO flattened its rollout for training, (steps * n_envs, ...)
            out = {key: value.reshape(-1, *space[key].shape)[rows] for key, value in stored.items()}
        return {key: value.reshape(len(rows), *space[key].shape) for key, value in out.items()}

    def task_states(self, task: int, samples: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Observations of ``task`` in the agent's buffer: all of them, or ``samples`` drawn
        without replacement under ``seed``, in buffer order."""
        rows = self.task_rows(task)
        if samples is not None:
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(samples, len(rows)), replace=False))
        return self.states_at(rows)


class ReplayStates(BufferStates):
    """An off-policy agent's replay buffer (the part filled so far)."""

    replay_buffer: Any

    def _stored(self) -> tuple[Any, dict[str, np.ndarray]]:
        return self.replay_buffer, self.replay_buffer.observations

    def _stored_tasks(self) -> np.ndarray:
        buffer = self.replay_buffer
        size = buffer.buffer_size if buffer.full else buffer.pos
        return buffer.observations["task"][:size]


class RolloutStates(BufferStates):
    """An on-policy agent's last rollout."""

    rollout_buffer: Any

    def _stored(self) -> tuple[Any, dict[str, np.ndarray]]:
        return None, self.rollout_buffer.observations

    def _stored_tasks(self) -> np.ndarray:
        return self.rollout_buffer.observations["task"]
