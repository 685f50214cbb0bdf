"""SB3 agents that know about task switches: ``ContinualDQN`` and ``ContinualPPO``.

Both are thin subclasses. The continual loop calls ``on_task_start(task, steps)`` when a task's
training starts; the rest is SB3's own ``learn`` with ``reset_num_timesteps=False``. The context
is not switched here: every observation carries its task id, and each layer picks its context
from that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from psp_rl.agents.replay import CompactDictReplayBuffer
from psp_rl.policies import PSPActorCriticPolicy, PSPDQNPolicy

REPLAY_ON_SWITCH = ("clear", "keep")
# ContinualDQN's options added after agents were first saved; each class attribute is the
# behaviour of agents saved before it.
ADDED_OPTIONS = (
    "task_lr_schedule",
    "advantage_learning",
    "distil_loss",
    "distil_steps",
    "distil_margin",
    "distil_visits",
    "rehearsal_states",
)
LR_SCHEDULES = ("constant", "task_linear")
# Distilling a finished task's greedy policy (acting="distilled"): batch, Adam's rate, and the
# default logit margin the "margin" loss asks of every state (experiments/results/dqn-retention/).
DISTIL_BATCH, DISTIL_LR, DISTIL_MARGIN = 256, 1e-3, 5.0
DISTIL_LOSSES = ("margin", "cross_entropy")
# The rehearsal loss's weight against the TD loss (rehearsal_states > 0).
REHEARSAL_WEIGHT = 1.0


def task_rows(agent: BaseAlgorithm, task: int) -> np.ndarray:
    """Rows of ``task``'s observations in the agent's buffer (replay, or PPO's last rollout), in
    buffer order; a row is ``position * n_envs + env``. Read them with :func:`states_at`."""
    if isinstance(agent, DQN):
        buffer = agent.replay_buffer
        size = buffer.buffer_size if buffer.full else buffer.pos
        tasks = buffer.observations["task"][:size]
    else:
        tasks = agent.rollout_buffer.observations["task"]
    rows = np.flatnonzero(tasks.reshape(-1) == task)
    if len(rows) == 0:
        raise RuntimeError(f"no observations of task {task} in the agent's buffer")
    return rows


def states_at(agent: BaseAlgorithm, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The observations at buffer ``rows`` (:func:`task_rows`), ``{key: (len(rows), *shape)}``."""
    buffer = agent.replay_buffer if isinstance(agent, DQN) else None
    if isinstance(buffer, CompactDictReplayBuffer):  # frames are rebuilt, not stored per row
        out = buffer.observations_at(*np.divmod(rows, buffer.n_envs))
        out["task"] = out["task"].astype(agent.observation_space["task"].dtype)
    else:
        stored = buffer.observations if buffer is not None else agent.rollout_buffer.observations
        # (steps, n_envs, ...) or, once PPO flattened its rollout for training, (steps * n_envs, ...)
        out = {key: value.reshape(-1, *agent.observation_space[key].shape)[rows] for key, value in stored.items()}
    return {key: value.reshape(len(rows), *agent.observation_space[key].shape) for key, value in out.items()}


def task_states(agent: BaseAlgorithm, task: int, samples: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Observations of ``task`` in the agent's buffer (replay, or PPO's last rollout): all of
    them, or ``samples`` drawn without replacement under ``seed``, in buffer order."""
    rows = task_rows(agent, task)
    if samples is not None:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(samples, len(rows)), replace=False))
    return states_at(agent, rows)


def _halves(n: int) -> tuple[int, int]:
    return n // 2, n - n // 2


def _indexed(states: dict[str, np.ndarray]) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], int]:
    """``(read, size)`` of in-memory states: ``read(indices)`` gives those rows of every key."""
    return (lambda idx: {key: value[idx] for key, value in states.items()}), len(states["task"])


class TaskSwitchMixin:
    """Bookkeeping of the current task shared by the continual agents.

    At each switch the optimizer's state (Adam moments) is reset, so parameters the new task
    does not use stay exactly where the old task left them.
    """

    current_task: int = 0
    task_start: int = 0
    task_steps: int | None = None
    # Class-level default: agents saved before the option existed load with the old behaviour.
    task_lr_schedule: str = "constant"
    updates_held: bool = False
    """While True, ``train`` makes no update: task inference is trying contexts on the current
    task, and those trial episodes must not train the contexts they test."""

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
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
            raise ValueError(f"steps={steps!r}: expected a positive int or None")
        self.current_task, self.task_start, self.task_steps = int(task), self.num_timesteps, steps
        # Adam's moments are cleared: a finished task's own parameters (per-task biases, first
        # layers, heads, separate networks) get zero gradients from now on, yet stale momentum
        # would keep moving them for dozens of steps (measured: ~0.02 per weight on DQN
        # cartpole-shift, enough to drop a frozen separate network from 444 to 42).
        self.policy.optimizer.state.clear()

    def on_task_switch(self, task: int, steps: int | None = None) -> None:
        """The former name of :meth:`on_task_start`."""
        self.on_task_start(task, steps)

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
        lr = self.lr_schedule(self._current_progress_remaining) * self.task_progress_remaining()
        self.logger.record("train/learning_rate", lr)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            update_learning_rate(optimizer, lr)


class ContinualDQN(TaskSwitchMixin, DQN):
    """DQN that restarts exploration at each task and clears or keeps its replay buffer.

    ``policy="PSPPolicy"`` (or :class:`PSPDQNPolicy`) gives the superposed Q-network.

    :param replay_on_switch: ``"clear"`` (default) empties the buffer at a switch, so a task is
        learned from its own transitions only and retention comes from the network, not from
        replaying old tasks, and updates wait ``learning_starts`` new transitions again;
        ``"keep"`` keeps old transitions, each with its own task id, so replay batches mix
        tasks (superposed layers handle that per sample).
    :param task_lr_schedule: ``"constant"`` (SB3's schedule) or ``"task_linear"`` (SB3's rate
        times the task's remaining progress: annealed to 0 at each task's end).
    :param advantage_learning: ``alpha`` of advantage learning (Bellemare et al. 2016,
        "Increasing the action gap"): the TD target loses ``alpha * (max_b Q'(s, b) - Q'(s, a))``,
        which widens the gaps between actions' values by about ``1 / (1 - alpha)``. 0 is DQN.
    :param distil_loss: with a policy built with ``acting="distilled"``, how a finished task's
        greedy policy is distilled: ``"margin"`` (a multi-class hinge loss that stops once every
        state's logit margin reaches ``distil_margin``, so the shared weights move no further than
        the margin needs) or ``"cross_entropy"`` (keeps widening margins, and moving weights).
    :param distil_margin: the logit margin the ``"margin"`` loss asks of every state (default 5).
        Crosstalk from later distillations must exceed it to flip an action, and a larger margin
        carries a decision further from the replayed states, but also moves the shared weights
        further: 20 led on cartpole-shift (5 paired seeds) and lost a barely learned task of the fast
        retention test (experiments/results/dqn-retention/).
    :param distil_steps: Adam steps of each distillation (agreement with Q's greedy actions on
        the task's replayed states, fast test config: 0.93 after 1,000 steps, 0.97 after 3,000).
    :param distil_visits: env steps the distillation spends in the finished task's env, DAgger
        style (Ross et al. 2011): half acting greedily on Q, then, after a first distillation, half
        acting from the distilled policy; the states visited, labelled with Q's greedy action, fill
        half of every distillation batch (the replayed states the other half). A distilled
        policy fails on states its own actions lead to that the replay holds few of; these are
        those states. 0 (default): the replayed states only. Needs the loop's ``task_env`` (see
        :meth:`on_task_start`); the steps are not counted as training steps.
    :param rehearsal_states: states of each finished task kept, with its Q-values under its own
        context at the task's end, in a rehearsal memory; every later update adds the squared error
        between today's Q-values on a batch of them and the kept ones (``REHEARSAL_WEIGHT`` x).
        0 (default) keeps no data, as PSP means to; a baseline that departs from that idea,
        reported on its own (experiments/results/dqn-retention/).
    Other arguments are SB3 ``DQN``'s. The epsilon schedule (``exploration_fraction``,
    ``exploration_initial_eps``, ``exploration_final_eps``) runs over each task's own steps.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**DQN.policy_aliases, "PSPPolicy": PSPDQNPolicy}

    advantage_learning: float = 0.0
    distil_loss: str = "cross_entropy"  # agents saved before the options distilled this way
    distil_steps: int = 1000
    distil_margin: float = DISTIL_MARGIN  # agents saved before the option asked this margin
    distil_visits: int = 0
    rehearsal_states: int = 0
    # Finished tasks' kept states and Q-values: {"obs": {key: array}, "q": array}, all tasks pooled.
    rehearsal_memory: dict[str, Any] | None = None
    # With n_envs > 1: env transitions per `gradient_steps` updates (the user's train_freq), the
    # transitions the last rollout collected, and the fraction of an update owed.
    replay_period: int | None = None
    _rollout_transitions: int = 0
    _update_credit: float = 0.0

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: Any,
        *,
        replay_on_switch: str = "clear",
        task_lr_schedule: str = "constant",
        advantage_learning: float = 0.0,
        distil_loss: str = "margin",
        distil_steps: int = 3000,
        distil_margin: float = DISTIL_MARGIN,
        distil_visits: int = 0,
        rehearsal_states: int = 0,
        **kwargs: Any,
    ):
        if isinstance(distil_steps, bool) or not isinstance(distil_steps, int) or distil_steps <= 0:
            raise ValueError(f"distil_steps={distil_steps!r}: expected a positive int")
        self.distil_steps = distil_steps
        if isinstance(distil_margin, bool) or not isinstance(distil_margin, int | float) or not distil_margin > 0:
            raise ValueError(f"distil_margin={distil_margin!r}: expected a number > 0")
        self.distil_margin = float(distil_margin)
        if isinstance(distil_visits, bool) or not isinstance(distil_visits, int) or distil_visits < 0:
            raise ValueError(f"distil_visits={distil_visits!r}: expected an int >= 0")
        self.distil_visits = distil_visits
        if isinstance(rehearsal_states, bool) or not isinstance(rehearsal_states, int) or rehearsal_states < 0:
            raise ValueError(f"rehearsal_states={rehearsal_states!r}: expected an int >= 0")
        self.rehearsal_states = rehearsal_states
        if distil_loss not in DISTIL_LOSSES:
            raise ValueError(f"distil_loss={distil_loss!r}: expected one of {list(DISTIL_LOSSES)}")
        self.distil_loss = distil_loss
        if replay_on_switch not in REPLAY_ON_SWITCH:
            raise ValueError(f"replay_on_switch={replay_on_switch!r}: expected one of {list(REPLAY_ON_SWITCH)}")
        if isinstance(advantage_learning, bool) or not 0 <= advantage_learning < 1:
            raise ValueError(f"advantage_learning={advantage_learning!r}: expected 0 <= alpha < 1")
        self._check_lr_schedule(task_lr_schedule)
        self.replay_on_switch, self.advantage_learning = replay_on_switch, float(advantage_learning)
        train_freq = kwargs.get("train_freq", 4)
        self.replay_period = train_freq if isinstance(train_freq, int) else None
        super().__init__(policy, env, **kwargs)
        self.base_learning_starts = self.learning_starts
        if not kwargs.get("_init_setup_model", True):
            # SB3's load builds the agent this way, then restores the saved attributes: an agent
            # saved before an option existed lacks it and falls back to the class attribute, its
            # behaviour then (not today's default).
            for name in ADDED_OPTIONS:
                vars(self).pop(name, None)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.n_envs > 1 and self.replay_period is not None:
            # SB3 counts train_freq in vector steps (n_envs transitions each), so 8 envs would
            # update 8x less often per transition. Here train_freq and gradient_steps mean what
            # they mean with one env: gradient_steps updates per train_freq transitions. Updates
            # happen every ceil(train_freq / n_envs) vector steps, as many as keep that ratio
            # (a fraction is carried to the next rollout; see train).
            self.train_freq = TrainFreq(-(-self.replay_period // self.n_envs), TrainFrequencyUnit.STEP)

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> Any:
        rollout = super().collect_rollouts(*args, **kwargs)
        self._rollout_transitions = rollout.episode_timesteps  # vector steps x n_envs
        return rollout

    def _updates_owed(self, gradient_steps: int) -> int:
        """Gradient steps for the rollout just collected, keeping the one-env replay ratio."""
        if self.n_envs == 1 or self.replay_period is None or self.gradient_steps < 0:
            return gradient_steps  # SB3's own count (-1 already counts transitions)
        self._update_credit += self._rollout_transitions * self.gradient_steps / self.replay_period
        owed = int(self._update_credit)
        self._update_credit -= owed
        return owed

    def on_task_start(
        self, task: int, steps: int | None = None, task_env: Callable[[int], VecEnv] | None = None
    ) -> None:
        q_net = self.policy.q_net
        if q_net.policy_torso is not None:
            # The task that just ended is distilled before its transitions are cleared; the new
            # one acts (and explores) from Q while it trains, also when it comes back in a cycle.
            if self.num_timesteps > self.task_start and self.replay_buffer is not None and self.replay_buffer.size():
                self.distil(self.current_task, task_env)
            q_net.distilled[task] = False
        if self.rehearsal_states and self.num_timesteps > self.task_start and self.replay_buffer.size():
            self.remember(self.current_task)  # (also before the task's transitions are cleared)
        super().on_task_start(task, steps, task_env)
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
        rows = task_rows(self, task)

        def greedy_q(obs: dict[str, torch.Tensor]) -> torch.Tensor:
            return q_net(obs).argmax(dim=1)

        # States are read from the buffer a batch at a time (all of an image task's frames at
        # once would not fit: ~2.8 GB for 100k Atari states), the labels in chunks.
        replayed = (lambda idx: states_at(self, rows[idx]), len(rows))
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

    def remember(self, task: int) -> None:
        """Keep ``rehearsal_states`` of ``task``'s replayed states with their Q-values now (a task
        that comes back replaces its earlier ones)."""
        obs = task_states(self, task, self.rehearsal_states, seed=int(self.num_timesteps))
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

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's ``DQN.train`` (same steps, same loss when ``advantage_learning == 0`` and there is no
        rehearsal memory), with the advantage-learning term in the TD target and the rehearsal loss:
        SB3 has no hook for the loss. With n_envs > 1
        the number of steps keeps the one-env replay ratio (``_updates_owed``)."""
        gradient_steps = self._updates_owed(gradient_steps)
        if gradient_steps == 0 or self.updates_held:
            return
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        # The online network's parameters, listed once: only they get gradients (SB3 clips over
        # policy.parameters(), target included, walking the module tree at every step).
        online = list(self.q_net.parameters())
        losses = []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
            with torch.no_grad():
                next_q_values = self.q_net_target(replay_data.next_observations).max(dim=1)[0].reshape(-1, 1)
                # (1 - done): no bootstrap past a terminal state; SB3's buffer marks time-limit
                # truncations as not done (handle_timeout_termination).
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values
                if self.advantage_learning:
                    # Penalise an action by how far it falls below the greedy one's value, under
                    # the target network: gaps between actions widen by ~1/(1 - alpha).
                    q_target_now = self.q_net_target(replay_data.observations)
                    gap = q_target_now.max(dim=1, keepdim=True)[0] - q_target_now.gather(1, replay_data.actions.long())
                    target_q_values = target_q_values - self.advantage_learning * gap
            current_q_values = torch.gather(
                self.q_net(replay_data.observations), dim=1, index=replay_data.actions.long()
            )
            loss = F.smooth_l1_loss(current_q_values, target_q_values)
            if self.rehearsal_memory is not None:
                loss = loss + REHEARSAL_WEIGHT * self._rehearsal_loss(batch_size)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(online, self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))


class ContinualPPO(TaskSwitchMixin, PPO):
    """PPO with the continual hook. ``policy="PSPPolicy"`` gives :class:`PSPActorCriticPolicy`.

    PPO is on-policy: its rollout buffer holds one rollout, so nothing of the old task is
    carried over at a switch. Arguments are SB3 ``PPO``'s.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**PPO.policy_aliases, "PSPPolicy": PSPActorCriticPolicy}

    def __init__(self, policy: str | type[BasePolicy], env: Any, *, task_lr_schedule: str = "constant", **kwargs: Any):
        self._check_lr_schedule(task_lr_schedule)
        super().__init__(policy, env, **kwargs)

    def train(self) -> None:
        """SB3's ``PPO.train``, skipped while :attr:`updates_held` (the rollout is dropped)."""
        if not self.updates_held:
            super().train()
