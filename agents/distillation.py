"""Distillation of a finished task's greedy policy into a policy head of PSP-DQN's Q-network
(``acting="distilled"``): a superposed Q-network's action gaps are too small to survive later
tasks' crosstalk, a distilled policy's logit margins are not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

# Distilling a finished task's greedy policy (acting="distilled"): batch and Adam's rate.
DISTIL_BATCH, DISTIL_LR = 256, 1e-3
DISTIL_LOSSES = ("margin", "cross_entropy")
# The logit margin the "margin" loss asks of every state when left out, per observation kind. Flat
# vectors: 20 (cartpole-shift DQN, 10 paired seeds: final average 474.5 against margin 5's 425.0, paired
# +49.5 [19.2, 81.4]; experiments/results/dqn-budget/). Frames: 5 (MinAtar kept less at 20, 2 seeds).
ObservationKind = Literal["vector", "frames"]
DISTIL_MARGINS: dict[ObservationKind, float] = {"vector": 20.0, "frames": 5.0}


def observation_kind(space: spaces.Space) -> ObservationKind:
    """``"frames"`` for image-like observations (more than one axis), else ``"vector"``: the kinds
    whose defaults differ (:data:`DISTIL_MARGINS`). A Dict space is read by its ``"obs"`` entry."""
    obs = space["obs"] if isinstance(space, spaces.Dict) else space
    return "frames" if len(obs.shape) > 1 else "vector"


def _halves(n: int) -> tuple[int, int]:
    return n // 2, n - n // 2


def _indexed(states: dict[str, np.ndarray]) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], int]:
    """``(read, size)`` of in-memory states: ``read(indices)`` gives those rows of every key."""
    return (lambda idx: {key: value[idx] for key, value in states.items()}), len(states["task"])


class Distillation:
    """The distillation methods of :class:`~psp_rl.agents.dqn.ContinualDQN` (its options
    ``distil_loss``, ``distil_steps``, ``distil_margin``, ``distil_visits``)."""

    distil_loss: str
    distil_steps: int
    distil_margin: float
    distil_visits: int

    def distil(self, task: int, task_env: Callable[[int], VecEnv] | None = None) -> float:
        """Distil ``task``'s greedy policy (argmax Q on its replayed states, and with
        ``distil_visits`` on the states visited in ``task_env(task)``) into the Q-network's policy
        head and let the task act from it from now on; returns the share of the replayed states
        whose distilled action matches Q's.

        Large logit margins are the point: the crosstalk later tasks add must be larger than a
        margin to flip an action (see ``distil_loss``).
        """
        q_net = self.policy.q_net
        if q_net.policy_torso is None:
            raise ValueError("distil: the Q-network was built with acting='q'; use acting='distilled'")
        rows = self.task_rows(task)

        def greedy_q(obs: dict[str, torch.Tensor]) -> torch.Tensor:
            return q_net(obs).argmax(dim=1)

        # States are read from the buffer a batch at a time (all of an image task's frames at
        # once would not fit: ~2.8 GB for 100k Atari states), the labels in chunks.
        replayed = (lambda idx: self.states_at(rows[idx]), len(rows))
        labels = self._over_states(*replayed, greedy_q)
        params = [*q_net.policy_torso.parameters(), *q_net.policy_head.parameters()]
        optimizer = torch.optim.Adam(params, lr=DISTIL_LR)
        # Its own generator: the same task end distils the same way after a resume.
        rng = np.random.default_rng([int(self.seed or 0), int(task), int(self.num_timesteps)])
        if not self.distil_visits or task_env is None:
            self._fit_policy(optimizer, rng, [(replayed, labels)], self.distil_steps)
        else:
            # DAgger: the states Q's greedy policy visits, then those the first distillation's own
            # actions lead to, each labelled with Q's greedy action.
            visited, visited_labels = [], []
            rounds = zip(_halves(self.distil_visits), _halves(self.distil_steps), strict=True)
            for round_, (visits, steps) in enumerate(rounds):
                q_net.distilled[task] = round_ > 0  # who acts: Q, then the distilled policy
                visited.append(self._visit(task_env(task), visits))
                visited_labels.append(self._over_states(*_indexed(visited[-1]), greedy_q))  # Q is fixed here
                states = {key: np.concatenate([part[key] for part in visited]) for key in visited[0]}
                sets = [(replayed, labels), (_indexed(states), torch.cat(visited_labels))]
                self._fit_policy(optimizer, rng, sets, steps)
        acted = self._over_states(*replayed, lambda obs: q_net.policy_logits(obs).argmax(dim=1))
        agreement = float((acted == labels).float().mean())
        q_net.distilled[task] = True
        self.logger.record("distil/agreement", agreement)
        return agreement

    def _fit_policy(self, optimizer: torch.optim.Optimizer, rng: np.random.Generator, sets: list, steps: int) -> None:
        """``steps`` Adam steps of the distillation loss; each batch draws equally from every
        ``((read, size), labels)`` set (``read(indices)`` gives those states)."""
        q_net = self.policy.q_net
        q_net.set_training_mode(True)
        share = DISTIL_BATCH // len(sets)
        for _ in range(steps):
            obs_parts, targets = [], []
            for (read, size), labels in sets:
                batch = rng.integers(size, size=min(share, size))
                obs_parts.append(read(batch))
                targets.append(labels[torch.as_tensor(batch, device=labels.device)])
            states = {key: np.concatenate([part[key] for part in obs_parts]) for key in obs_parts[0]}
            logits = q_net.policy_logits(self.policy.obs_to_tensor(states)[0])
            target = torch.cat(targets)
            if self.distil_loss == "margin":
                loss = F.multi_margin_loss(logits, target, margin=self.distil_margin)
            else:
                loss = F.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def _visit(self, env: VecEnv, steps: int) -> dict[str, np.ndarray]:
        """The observations of ``steps`` env steps acting deterministically in ``env`` (then closed)."""
        try:
            obs, seen = env.reset(), []
            for _ in range(-(-steps // env.num_envs)):
                seen.append(obs)
                action, _ = self.predict(obs, deterministic=True)
                obs, _, _, _ = env.step(action)
        finally:
            env.close()
        return {key: np.concatenate([part[key] for part in seen])[:steps] for key in seen[0]}

    def _over_states(self, read: Callable[[np.ndarray], dict], size: int, fn: Any, chunk: int = 4096) -> torch.Tensor:
        """``fn(obs)`` (no grad) on the ``size`` states ``read(indices)`` gives, ``chunk`` at a time."""
        self.policy.q_net.set_training_mode(False)
        with torch.no_grad():
            parts = np.split(np.arange(size), range(chunk, size, chunk))
            return torch.cat([fn(self.policy.obs_to_tensor(read(part))[0]) for part in parts])
