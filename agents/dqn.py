"""``ContinualDQN``: SB3's DQN with per-task exploration and replay, its own update (advantage
learning, rehearsal, the one-env replay ratio with n_envs > 1), and a distilled policy for finished
tasks (:mod:`.distillation`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.distributions import Categorical
from torch.nn import functional as F

from psp_rl.agents.buffers import ReplayStates
from psp_rl.agents.distillation import DISTIL_LOSSES, DISTIL_MARGINS, Distillation, observation_kind
from psp_rl.agents.rehearsal import REHEARSAL_WEIGHT, Rehearsal
from psp_rl.agents.replay import keep_task
from psp_rl.agents.task_switch import TaskSwitchMixin
from psp_rl.checks import check_int, is_number
from psp_rl.policies import PSPDQNPolicy

REPLAY_ON_SWITCH = ("clear", "keep")
# What an agent saved before each option existed did. SB3's load builds the agent, then restores
# the attributes it saved: one saved before an option lacks it and keeps the value here, its
# behaviour then, not today's default (the constructor's).
LEGACY_OPTIONS: dict[str, Any] = {
    "task_lr_schedule": "constant",
    "advantage_learning": 0.0,
    "distil_loss": "cross_entropy",
    "distil_steps": 1000,
    "distil_margin": 5.0,
    "distil_visits": 0,
    "rehearsal_states": 0,
}


class ContinualDQN(TaskSwitchMixin, Distillation, Rehearsal, ReplayStates, DQN):
    """DQN that restarts exploration at each task and clears or keeps its replay buffer.

    ``policy="PSPPolicy"`` (or :class:`PSPDQNPolicy`) gives the superposed Q-network.

    :param replay_on_switch: ``"clear"`` (default) empties the buffer at a switch, so a task is
        learned from its own transitions only and retention comes from the network, not from
        replaying old tasks, and updates wait ``learning_starts`` new transitions again;
        ``"keep"`` keeps old transitions, each with its own task id, so replay batches mix
        tasks (superposed layers handle that per sample).
    :param task_lr_schedule: ``"constant"`` (SB3's schedule), ``"task_linear"`` (SB3's rate
        times the task's remaining progress: annealed to 0 at each task's end) or
        ``"task_hold_linear"`` (SB3's rate over each task's first half, annealed to 0 over its second).
    :param advantage_learning: ``alpha`` of advantage learning (Bellemare et al. 2016,
        "Increasing the action gap"): the TD target loses ``alpha * (max_b Q'(s, b) - Q'(s, a))``,
        which widens the gaps between actions' values by about ``1 / (1 - alpha)``. 0 is DQN.
    :param distil_loss: with a policy built with ``acting="distilled"``, how a finished task's
        greedy policy is distilled: ``"margin"`` (a multi-class hinge loss that stops once every
        state's logit margin reaches ``distil_margin``, so the shared weights move no further than
        the margin needs) or ``"cross_entropy"`` (keeps widening margins, and moving weights).
    :param distil_margin: the logit margin the ``"margin"`` loss asks of every state; None
        (default): per observation kind, 20 for flat vectors and 5 for frames (:data:`DISTIL_MARGINS`).
        Crosstalk from later distillations must exceed it to flip an action, and a larger margin
        carries a decision further from the replayed states, but also moves the shared weights
        further (measured: docs/results.md).
    :param distil_steps: Adam steps of each distillation.
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
    # What a run config hands this class: the action spaces it acts in, its continual options (beside
    # SB3's hyperparameters) and its policy's (saved policies always named ``center``).
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete,)
    config_options: ClassVar[tuple[str, ...]] = (
        "replay_on_switch",
        "advantage_learning",
        "distil_loss",
        "distil_steps",
        "distil_margin",
        "distil_visits",
        "rehearsal_states",
    )
    policy_options: ClassVar[tuple[str, ...]] = ("dueling", "acting", "center", "distil_arch")
    observation_defaults: ClassVar[dict[str, dict[str, object]]] = {"distil_margin": DISTIL_MARGINS}

    # With n_envs > 1: env transitions per `gradient_steps` updates (the user's train_freq), the
    # transitions the last rollout collected, and the fraction of an update owed.
    replay_period: int | None = None
    # The context that acted before an inferred switch not yet confirmed (its transitions are kept).
    pending_switch: int | None = None
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
        distil_margin: float | None = None,
        distil_visits: int = 0,
        rehearsal_states: int = 0,
        **kwargs: Any,
    ):
        self.distil_steps = check_int("distil_steps", distil_steps)
        if distil_margin is not None and (not is_number(distil_margin) or not distil_margin > 0):
            raise ValueError(f"distil_margin={distil_margin!r}: expected a number > 0 or None")
        self.distil_margin = None if distil_margin is None else float(distil_margin)
        self.distil_visits = check_int("distil_visits", distil_visits, low=0)
        self.rehearsal_states = check_int("rehearsal_states", rehearsal_states, low=0)
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
            vars(self).update(LEGACY_OPTIONS)  # SB3's load: the saved attributes come next
        elif self.distil_margin is None:
            self.distil_margin = DISTIL_MARGINS[observation_kind(self.observation_space)]

    def acting_network(self) -> nn.Module:
        """The modules that decide the action: the online Q-network (with its distilled policy)."""
        return self.policy.q_net

    def acting_output(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The Q-values on ``obs``; the distilled policy's layers run too (``acting="distilled"``),
        so hooks on them see its crosstalk."""
        q_net = self.policy.q_net
        output = q_net(obs)
        if getattr(q_net, "policy_torso", None) is not None:
            q_net.policy_logits(obs)
        return output

    def action_distribution(self, obs: dict[str, torch.Tensor]) -> Categorical:
        """A softmax over the Q-values (online EWC's Fisher samples actions from it)."""
        return Categorical(logits=self.policy.q_net(obs))

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
        self._switch_to(task, steps, task_env)
        if self.replay_on_switch == "clear" and self.replay_buffer is not None:
            self.replay_buffer.reset()
            # An emptied buffer fills again before updates resume, as at the very start.
            self.learning_starts = self.num_timesteps + self.base_learning_starts

    def _switch_to(self, task: int, steps: int | None, task_env: Callable[[int], VecEnv] | None) -> None:
        """A switch but for the replay: distil the task that ends, restart the schedules."""
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
        # Exploration restarts for the new task: epsilon is read from task-local progress.
        self.exploration_rate = self.exploration_schedule(self.task_progress_remaining())

    def on_inferred_switch(self, task: int, steps: int | None = None) -> None:
        """Task inference's switch to context ``task``, which may be a false alarm: the acting
        context is distilled and ``task`` acts and explores as at an announced switch, but the
        replay buffer (``replay_on_switch="clear"``) keeps every transition, each under the context
        that gathered it, until :meth:`confirm_switch` drops the other contexts'. A switch back to
        the context that acted before the unconfirmed one undoes it, with nothing lost; one that
        keeps the acting context (every context taken) drops none of its data either."""
        if self.replay_on_switch != "clear":
            self.on_task_start(task, steps)
            return
        back = self.pending_switch is not None and task == self.pending_switch
        before = self.current_task if self.pending_switch is None else self.pending_switch
        self._switch_to(task, steps, None)
        self.pending_switch = None if back else before

    def confirm_switch(self) -> None:
        """The last inferred switch stands: the replay keeps the acting context's transitions only
        (no data of another task stays, as at an announced switch); updates wait until it holds
        ``learning_starts`` transitions again."""
        if self.pending_switch is None:
            return
        self.pending_switch = None
        if self.replay_buffer is not None:
            kept = keep_task(self.replay_buffer, self.current_task) * self.n_envs
            self.learning_starts = self.num_timesteps + max(0, self.base_learning_starts - kept)

    def _on_step(self) -> None:
        super()._on_step()  # target-network sync and SB3's global epsilon ...
        # ... which is replaced by the task-local one, so each task explores from the start.
        self.exploration_rate = self.exploration_schedule(self.task_progress_remaining())
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

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
        # The online network's parameters, as the optimizer holds them (q_net.parameters(), in its order): only
        # they get gradients. SB3 clips over policy.parameters(), target included, walking the module tree at
        # every call; a walk of the Q-network alone (two torsos with a distilled policy) still cost ~60 us, ~1% of
        # a MinAtar update (the list from the optimizer: ~1 us).
        online = [param for group in self.policy.optimizer.param_groups for param in group["params"]]
        losses = []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            with self.update_precision():
                loss = self._td_loss(replay_data, batch_size)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(online, self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))

    def _td_loss(self, replay_data: Any, batch_size: int) -> torch.Tensor:
        """One batch's loss: the Huber TD error (with advantage learning's gap) plus rehearsal's."""
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
        current_q_values = torch.gather(self.q_net(replay_data.observations), dim=1, index=replay_data.actions.long())
        loss = F.smooth_l1_loss(current_q_values, target_q_values)
        if self.rehearsal_memory is not None:
            loss = loss + REHEARSAL_WEIGHT * self._rehearsal_loss(batch_size)
        return loss
