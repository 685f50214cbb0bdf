"""Rehearsal, the data-keeping reference for PSP-DQN (``rehearsal_states > 0``): keep some states
of each finished task with their Q-values, and pull today's Q-values on them back in every update."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

# The rehearsal loss's weight against the TD loss (rehearsal_states > 0).
REHEARSAL_WEIGHT = 1.0


class Rehearsal:
    """The rehearsal methods of :class:`~psp_rl.agents.dqn.ContinualDQN` (option ``rehearsal_states``)."""

    rehearsal_states: int
    # Finished tasks' kept states and Q-values: {"obs": {key: array}, "q": array}, all tasks pooled.
    rehearsal_memory: dict[str, Any] | None = None

    def remember(self, task: int) -> None:
        """Keep ``rehearsal_states`` of ``task``'s replayed states with their Q-values now (a task
        that comes back replaces its earlier ones)."""
        obs = self.task_states(task, self.rehearsal_states, seed=int(self.num_timesteps))
        self.q_net.set_training_mode(False)
        with torch.no_grad():
            q = self.q_net(self.policy.obs_to_tensor(obs)[0]).cpu().numpy()
        memory = self.rehearsal_memory
        if memory is not None:
            keep = memory["obs"]["task"].reshape(-1) != task
            obs = {key: np.concatenate([memory["obs"][key][keep], value]) for key, value in obs.items()}
            q = np.concatenate([memory["q"][keep], q])
        self.rehearsal_memory = {"obs": obs, "q": q}

    def _rehearsal_loss(self, batch_size: int) -> torch.Tensor:
        """Squared error of today's Q-values against the kept ones, on a batch of the memory."""
        memory = self.rehearsal_memory
        rows = np.random.randint(len(memory["q"]), size=batch_size)
        obs, _ = self.policy.obs_to_tensor({key: value[rows] for key, value in memory["obs"].items()})
        return F.mse_loss(self.q_net(obs), torch.as_tensor(memory["q"][rows], device=self.device))
