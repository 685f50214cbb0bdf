"""Evidence for a context from the dynamics: a superposed model of the next observation.

Trial returns cannot tell apart tasks whose good policies all score alike (every balancing policy
scores ~500 on every CartPole variant), and neither can the critic's TD error nor the actor's
entropy (measured on a finished quickstart run: issue 33). What such tasks differ in is their
dynamics: a per-task model of ``s' - s`` from ``(s, a)`` names the task a few transitions come
from. PSP can store one such model per context without keeping any transitions:
:class:`SuperposedDynamics` is a small MLP of superposed layers, trained under the acting context
on the transitions just seen, and :meth:`DynamicsEvidence.errors` scores a short window of
transitions under every stored context (the context whose model predicts them best is the task's).

Cost: scoring a window of ``w`` transitions under ``k`` contexts is ``k`` forward passes of a
``w``-row batch through the model (``(obs + actions) x hidden + hidden x obs`` weights, plus a
bias row per context); training it is one small update every ``update_every`` env steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from psp_rl.checks import check_int
from psp_rl.layers import SuperposedLinear
from psp_rl.networks import PerTaskLinear, TaskSequential
from psp_rl.plugins.inference.channel_counts import ChannelCounts

INPUT_LAYERS = ("superposed", "per_task")


class SuperposedDynamics(nn.Module):
    """``num_tasks`` models of the observation's change ``s' - s`` from ``(s, a)``, in superposition.

    :param obs_dim: the flat observation's size.
    :param n_actions: discrete actions (one-hot inputs).
    :param num_tasks: contexts stored.
    :param context: the superposed layers' context kind (``none``: one model shared past the input
        layer, the floor), or ``separate``: every layer a separate one per context (the model is
        small: a linear one of CartPole is ``(4 + 2 + 1) x 4`` numbers per context).
    :param hidden: hidden widths (ReLU).
    :param input_layer: ``superposed`` or ``per_task``: a separate first layer per context. The
        input is narrow (CartPole: 4 + 2), and a context of a few signs decorrelates nothing, so
        a superposed first layer carries the later tasks' updates into every context.
    :param center: the superposed layers centre their inputs per context
        (:class:`~psp_rl.layers.SuperposedLinear`), which removes the common-mode crosstalk of ReLU
        features.
    :param seed: the contexts' seed.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        num_tasks: int,
        context: str = "binary",
        hidden: Sequence[int] = (64,),
        input_layer: str = "per_task",
        center: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.obs_dim, self.n_actions = check_int("obs_dim", obs_dim), check_int("n_actions", n_actions)
        if input_layer not in INPUT_LAYERS:
            raise ValueError(f"input_layer={input_layer!r}: expected one of {list(INPUT_LAYERS)}")
        widths = [obs_dim + n_actions, *hidden, obs_dim]
        center = center and context not in ("none", "separate")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if i > 0:
                layers.append(nn.ReLU())
            if context == "separate" or (i == 0 and input_layer == "per_task"):
                layers.append(PerTaskLinear(a, b, num_tasks))
            else:  # the input layer's raw features are not centred (ReLU features are)
                centred = center and i > 0
                layers.append(SuperposedLinear(a, b, num_tasks, context, seed=seed, layer_id=i, center=centred))
        self.net = TaskSequential(*layers, latent_dim=obs_dim)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, task: int) -> torch.Tensor:
        """The predicted ``s' - s`` (in the units the model is trained in), ``(batch, obs_dim)``."""
        x = torch.cat([obs, F.one_hot(actions.long().reshape(-1), self.n_actions).to(obs.dtype)], dim=1)
        return self.net(x, task)


class ChangeScale:
    """Per-dimension mean and standard deviation of the observed changes over the run's first
    ``warmup`` transitions (Welford), then fixed: the units every context's model is trained and
    scored in. (A scale that kept moving would leave the models of earlier tasks in old units.)

    ``pooled``: one standard deviation for every dimension (the root of their mean variance), for
    numbers in the same units whose spread the first task alone cannot fix: a channel the first game
    leaves dark has no spread then, and per-dimension units would weigh its changes ~1e12 times.
    """

    def __init__(self, dim: int, warmup: int, pooled: bool = False) -> None:
        self.warmup = check_int("warmup", warmup)
        self.pooled = pooled
        self.count, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)

    @property
    def fixed(self) -> bool:
        return self.count >= self.warmup

    def update(self, x: np.ndarray) -> None:
        for row in np.asarray(x, dtype=np.float64).reshape(-1, self.mean.size)[: max(self.warmup - self.count, 0)]:
            self.count += 1
            delta = row - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (row - self.mean)

    @property
    def std(self) -> np.ndarray:
        variance = self.m2 / max(self.count - 1, 1)
        if self.pooled:
            variance = np.full_like(variance, variance.mean())
        return np.sqrt(np.maximum(variance, 1e-12))


class NeuralDynamics:
    """A :class:`SuperposedDynamics` trained online by Adam under the acting context.

    Only the acting context's recent transitions are kept (``memory``, cleared when the context
    changes): nothing of an earlier task is stored; its model lives in the (superposed) weights.
    Targets are the changes in the units of ``scale``; no update runs before the scale is fixed.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        num_tasks: int,
        scale: ChangeScale,
        *,
        context: str = "separate",
        hidden: Sequence[int] = (64,),
        input_layer: str = "per_task",
        center: bool = True,
        lr: float = 1e-3,
        batch_size: int = 64,
        memory: int = 2000,
        seed: int = 0,
    ) -> None:
        with torch.random.fork_rng():  # weights drawn from ``seed``, not from the caller's generator
            torch.manual_seed(seed)
            self.model = SuperposedDynamics(obs_dim, n_actions, num_tasks, context, hidden, input_layer, center, seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.batch_size = check_int("batch_size", batch_size)
        self.memory: deque[tuple[np.ndarray, int, np.ndarray]] = deque(maxlen=check_int("memory", memory))
        self.scale, self.rng = scale, np.random.default_rng(seed)
        self.context: int | None = None

    def observe(self, obs: np.ndarray, actions: np.ndarray, delta: np.ndarray, context: int) -> None:
        if context != self.context:
            self.memory.clear()
            self.context = context
        for s, a, d in zip(obs, actions, delta, strict=True):
            self.memory.append((np.asarray(s, dtype=np.float32), int(a), d))

    def _target(self, delta: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(delta) - self.scale.mean) / self.scale.std, dtype=torch.float32)

    def update(self, steps: int) -> float | None:
        if self.context is None or len(self.memory) < self.batch_size or not self.scale.fixed:
            return None
        loss = None
        self.model.train()  # (centring layers move their means on training batches only)
        for _ in range(steps):
            rows = [self.memory[i] for i in self.rng.integers(len(self.memory), size=self.batch_size)]
            obs, actions, delta = (np.stack(col) for col in zip(*rows, strict=True))
            prediction = self.model(torch.as_tensor(obs), torch.as_tensor(actions), self.context)
            loss = F.mse_loss(prediction, self._target(delta))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return None if loss is None else float(loss.detach())

    @torch.no_grad()
    def errors(
        self, obs: np.ndarray, actions: np.ndarray, delta: np.ndarray, contexts: Sequence[int], reduce: str = "mean"
    ) -> np.ndarray:
        self.model.eval()
        x, a, target = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(actions), self._target(delta)
        if reduce == "median":
            rows = [F.mse_loss(self.model(x, a, c), target, reduction="none").mean(dim=1) for c in contexts]
            return np.array([float(r.median()) for r in rows])
        return np.array([float(F.mse_loss(self.model(x, a, c), target)) for c in contexts])


class RidgeDynamics:
    """Per context, a ridge regression of ``s' - s`` on ``(s, one-hot a, 1)``, kept as its
    sufficient statistics (``X^T X`` and ``X^T (s' - s)``: ``(d + 1)^2 + (d + 1) d`` numbers per
    context for ``d`` features, not transitions) and solved when scored. Exact at every step (no
    optimizer, no crosstalk); a returning task adds to its context's statistics.
    """

    def __init__(self, obs_dim: int, n_actions: int, num_tasks: int, scale: ChangeScale, ridge: float = 1e-3) -> None:
        if not ridge > 0:
            raise ValueError(f"ridge={ridge!r}: expected a positive number")
        self.n_actions, self.scale, self.ridge = n_actions, scale, float(ridge)
        features = obs_dim + n_actions + 1
        self.xtx = np.zeros((num_tasks, features, features))
        self.xty = np.zeros((num_tasks, features, obs_dim))
        self.count = np.zeros(num_tasks, dtype=np.int64)
        self._solved: dict[int, np.ndarray] = {}

    def _features(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        return np.hstack([obs, np.eye(self.n_actions)[np.asarray(actions, dtype=np.int64)], np.ones((len(obs), 1))])

    def observe(self, obs: np.ndarray, actions: np.ndarray, delta: np.ndarray, context: int) -> None:
        x = self._features(obs, actions)
        self.xtx[context] += x.T @ x
        self.xty[context] += x.T @ delta
        self.count[context] += len(x)
        self._solved.pop(context, None)

    def forget(self, context: int) -> None:
        self.xtx[context], self.xty[context], self.count[context] = 0.0, 0.0, 0
        self._solved.pop(context, None)

    def update(self, steps: int) -> float | None:
        return None  # (solved when scored)

    def weights(self, context: int) -> np.ndarray:
        if context not in self._solved:
            a = self.xtx[context] + self.ridge * np.eye(self.xtx.shape[1])
            self._solved[context] = np.linalg.solve(a, self.xty[context])
        return self._solved[context]

    def errors(
        self, obs: np.ndarray, actions: np.ndarray, delta: np.ndarray, contexts: Sequence[int], reduce: str = "mean"
    ) -> np.ndarray:
        x = self._features(obs, actions)
        if reduce == "median":  # each transition's mean error, then their median: a few odd states weigh little
            return np.array(
                [np.median(np.mean(((x @ self.weights(c) - delta) / self.scale.std) ** 2, axis=1)) for c in contexts]
            )
        return np.array([np.mean(((x @ self.weights(c) - delta) / self.scale.std) ** 2) for c in contexts])


MODELS = ("ridge", "neural")
WINDOW_ERRORS = ("mean", "median")
PROJECTIONS = ("dense", "channels")


def frame_projection(shape: tuple[int, ...], embed: int, kind: str) -> np.ndarray:
    """A fixed random Gaussian projection of a flattened frame of ``shape`` to ``embed`` numbers (seeded: the same
    in every run). ``dense``: every number mixes every pixel; ``channels``: each slice of the first axis (MinAtar's
    channels, Atari's stacked frames) gets its own ``embed // shape[0]`` numbers, so a game that lights channels
    another leaves dark is not averaged into the other's pixels (its errors are then measured in one pooled unit:
    :class:`ChangeScale`)."""
    rng = np.random.default_rng(0)
    size = int(np.prod(shape))
    if kind == "dense":
        return (rng.standard_normal((size, embed), dtype=np.float32) / np.float32(np.sqrt(size))).astype(np.float64)
    channels, per_channel, width = shape[0], size // shape[0], embed // shape[0]
    if width < 1:
        raise ValueError(f"dynamics embed={embed}: expected at least one number per channel ({channels} channels)")
    block = rng.standard_normal((channels, per_channel, width), dtype=np.float32) / np.float32(np.sqrt(per_channel))
    projection = np.zeros((size, channels * width))
    for c in range(channels):
        projection[c * per_channel : (c + 1) * per_channel, c * width : (c + 1) * width] = block[c]
    return projection


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """``ValueError`` naming the space, unless the observations are a ``Box`` and the actions ``Discrete``: what
    :class:`DynamicsEvidence` models (a run checks its sequence's spaces before it starts)."""
    if not isinstance(observation_space, spaces.Box):
        raise ValueError(f"dynamics evidence: observation space {observation_space}: expected a Box")
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"dynamics evidence: action space {action_space}: expected Discrete")


class DynamicsEvidence:
    """Per-context models of the dynamics, learned from the transitions the agent sees, scoring
    a window of transitions under every stored context.

    :param observation_space: a ``Box`` (the ``obs`` entry): flat, or frames (``embed``).
    :param action_space: ``Discrete``.
    :param num_tasks: contexts.
    :param model: ``ridge`` (:class:`RidgeDynamics`, default: named the task of one CartPole transition
        98% of the time in ``experiments/probe_dynamics.py``) or ``neural`` (:class:`NeuralDynamics`;
        ``neural_options`` are its keyword arguments: ``context``, ``hidden``, ``lr``, ...).
    :param ridge: the ridge penalty.
    :param warmup: the run's first transitions that fix the units errors are measured in
        (:class:`ChangeScale`).
    :param window_error: a window's error is the ``mean`` of its transitions' (default) or their
        ``median`` (a few states the model predicts badly, a falling pole's, weigh little).
    :param embed: frames (a ``Box`` of more than one axis, MinAtar's or Atari's): the models see a
        fixed random Gaussian projection of the flattened frame to ``embed`` numbers (seeded, the
        same in every run), so a model is ``embed``-sized whatever the frame. On MinAtar's 5 games
        (random play, 2,000 transitions each, ``tests/plugins/test_dynamics.py``) 256 numbers name the
        game of 5 transitions 46-50 times in 50, 64 numbers miss Freeway (0 of 50).
    :param projection: how frames are embedded (:func:`frame_projection`): ``dense`` (default) or ``channels``.
    :param counts: frames: each context also keeps its frames' per-channel counts (:class:`ChannelCounts`),
        which :meth:`count_ratios` scores a window on.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        num_tasks: int,
        *,
        model: str = "ridge",
        ridge: float = 1e-3,
        warmup: int = 2000,
        embed: int = 256,
        window_error: str = "mean",
        projection: str = "dense",
        counts: bool = False,
        **neural_options: Any,
    ) -> None:
        if window_error not in WINDOW_ERRORS:
            raise ValueError(f"dynamics window_error={window_error!r}: expected one of {list(WINDOW_ERRORS)}")
        self.window_error = window_error
        check_spaces(observation_space, action_space)
        check_int("embed", embed)
        obs_dim = int(np.prod(observation_space.shape))
        self.projection: np.ndarray | None = None
        if projection not in PROJECTIONS:
            raise ValueError(f"dynamics projection={projection!r}: expected one of {list(PROJECTIONS)}")
        self.counts: ChannelCounts | None = None
        if len(observation_space.shape) > 1:
            self.projection = frame_projection(observation_space.shape, embed, projection)
            obs_dim = self.projection.shape[1]
            if counts:
                self.counts = ChannelCounts(observation_space.shape[0], num_tasks)
        elif counts:
            raise ValueError(f"dynamics counts: observation space {observation_space}: expected frames (2+ axes)")
        if model not in MODELS:
            raise ValueError(f"dynamics model={model!r}: expected one of {list(MODELS)}")
        if model == "ridge" and neural_options:
            raise ValueError(f"dynamics model='ridge': {sorted(neural_options)} are options of model 'neural'")
        n_actions = int(action_space.n)
        self.scale = ChangeScale(obs_dim, warmup, pooled=projection == "channels")
        self.model: RidgeDynamics | NeuralDynamics = (
            RidgeDynamics(obs_dim, n_actions, num_tasks, self.scale, ridge)
            if model == "ridge"
            else NeuralDynamics(obs_dim, n_actions, num_tasks, self.scale, **neural_options)
        )

    def observe(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, context: int) -> None:
        """Learn from transitions ``(obs[i], actions[i]) -> next_obs[i]`` gathered under ``context``
        (rows whose episode ended are left out by the caller: their ``next_obs`` is a reset)."""
        if self.counts is not None:
            self.counts.observe(obs, context)
        obs, next_obs = self.embed(obs), self.embed(next_obs)
        delta = next_obs - obs
        self.scale.update(delta)
        self.model.observe(obs, np.asarray(actions).reshape(-1), delta, context)

    def embed(self, obs: np.ndarray) -> np.ndarray:
        """What the models see of ``obs``: itself, or a frame's projection (``embed``)."""
        obs = np.asarray(obs, dtype=np.float64)
        return obs if self.projection is None else obs.reshape(len(obs), -1) @ self.projection

    def forget(self, context: int) -> None:
        """Drop ``context``'s model (``ridge``: its statistics; it learns afresh from what comes next)."""
        if not isinstance(self.model, RidgeDynamics):
            raise ValueError("dynamics evidence: only model 'ridge' forgets a context")
        self.model.forget(context)
        if self.counts is not None:
            self.counts.forget(context)

    def count_ratios(self, obs: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
        """Each context's distance from the window's frames over its own frames' usual one
        (:class:`ChannelCounts`; ``counts`` only)."""
        if self.counts is None:
            raise ValueError("dynamics evidence: count ratios need counts=True (frames)")
        distances = self.counts.distances(obs, contexts)
        return distances / np.array([self.counts.usual(c) for c in contexts])

    def update(self, steps: int = 1) -> float | None:
        """Train the model (``neural``: ``steps`` Adam steps; ``ridge``: nothing to do); the last loss."""
        return self.model.update(steps)

    def errors(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        next_obs: np.ndarray,
        contexts: Sequence[int],
        reduce: str | None = None,
    ) -> np.ndarray:
        """Mean squared error of each context's model on the window (``reduce``, default ``window_error``:
        the ``mean`` or ``median`` of its transitions'), per dimension in the units of the observed changes'
        standard deviation; the lowest names the window's task."""
        obs, next_obs = self.embed(obs), self.embed(next_obs)
        reduce = reduce or self.window_error
        return self.model.errors(obs, np.asarray(actions).reshape(-1), next_obs - obs, contexts, reduce)

    def state_dict(self) -> dict[str, Any]:
        """The ridge statistics and the scale, as lists (a resume goes on with them exactly)."""
        if not isinstance(self.model, RidgeDynamics):
            raise ValueError("dynamics evidence: only model 'ridge' saves its state")
        model, scale = self.model, self.scale
        return {
            "xtx": model.xtx.tolist(),
            "xty": model.xty.tolist(),
            "count": model.count.tolist(),
            "scale": [scale.count, scale.mean.tolist(), scale.m2.tolist()],
            **({"counts": self.counts.state_dict()} if self.counts is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(self.model, RidgeDynamics):
            raise ValueError("dynamics evidence: only model 'ridge' loads a state")
        model, scale = self.model, self.scale
        model.xtx[:], model.xty[:], model.count[:] = state["xtx"], state["xty"], state["count"]
        model._solved.clear()
        count, mean, m2 = state["scale"]
        scale.count, scale.mean, scale.m2 = int(count), np.array(mean, dtype=np.float64), np.array(m2, dtype=np.float64)
        if self.counts is not None:
            self.counts.load_state_dict(state["counts"])
