"""``ContinualPPO``: SB3's PPO with the task-switch hook, holding its updates while task inference tries contexts."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from psp_rl.agents.buffers import RolloutStates
from psp_rl.agents.task_switch import TaskSwitchMixin
from psp_rl.policies import PSPActorCriticPolicy


class ContinualPPO(TaskSwitchMixin, RolloutStates, PPO):
    """PPO with the continual hook. ``policy="PSPPolicy"`` gives :class:`PSPActorCriticPolicy`.

    PPO is on-policy: its rollout buffer holds one rollout, so nothing of the old task is
    carried over at a switch. Arguments are SB3 ``PPO``'s.
    """

    # The actor's modules: the critic does not act (probes read the crosstalk on these only).
    acting_modules: ClassVar[tuple[str, ...]] = ("pi_torso", "action_head")
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (
        spaces.Box,
        spaces.Discrete,
        spaces.MultiDiscrete,
        spaces.MultiBinary,
    )
    config_options: ClassVar[tuple[str, ...]] = ()
    policy_options: ClassVar[tuple[str, ...]] = ()  # center is named only when set: as saved policies name it
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**PPO.policy_aliases, "PSPPolicy": PSPActorCriticPolicy}

    def __init__(self, policy: str | type[BasePolicy], env: Any, *, task_lr_schedule: str = "constant", **kwargs: Any):
        self._check_lr_schedule(task_lr_schedule)
        super().__init__(policy, env, **kwargs)

    def acting_network(self) -> nn.Module:
        """The modules that decide the action: the policy, whose actor path (:attr:`acting_modules`) acts."""
        return self.policy

    def acting_output(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The actor's raw logits (or Gaussian means) on ``obs``, not SB3's normalised log-probabilities."""
        captured: list[torch.Tensor] = []
        hook = self.policy.action_head.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.policy.get_distribution(obs)
        finally:
            hook.remove()
        return captured[0]

    def action_distribution(self, obs: dict[str, torch.Tensor]) -> Distribution:
        """The policy's action distribution on ``obs``."""
        return self.policy.get_distribution(obs)

    def train(self) -> None:
        """SB3's ``PPO.train`` (under :meth:`update_precision`), skipped while :attr:`updates_held`
        (the rollout is dropped)."""
        if not self.updates_held:
            with self.update_precision():
                super().train()
