"""Gymnasium wrappers that make a task sequence: task ids, shifted physics, permuted and padded observations.

Physics shifts go through the environment's public attributes (``env.unwrapped.gravity`` ...);
nothing here re-implements an environment's dynamics.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from psp_rl.checks import is_int


class TaskObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Turn any env's observation into ``{"obs": <original>, "task": <int>}``.

    The task id lives in a ``Discrete(max_tasks)`` space, so the capacity travels with the
    space and every SB3 component (vec envs, replay buffers, ``predict``) carries the id along.
    A drifting task (a :class:`DriftingParam` inside ``env``) adds ``"theta"``: the drifting
    parameter's place in its range, a ``Box(0, 1, (1,))``.

    :param env: the environment of one task.
    :param task: this env's task id, in ``[0, max_tasks)``.
    :param max_tasks: how many task ids the agent's networks hold.
    """

    def __init__(self, env: gym.Env, task: int, max_tasks: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, task=task, max_tasks=max_tasks)
        super().__init__(env)
        if not is_int(max_tasks) or max_tasks < 1:
            raise ValueError(f"max_tasks={max_tasks!r}: expected a positive int")
        self.max_tasks = max_tasks
        entries = {"obs": env.observation_space, "task": spaces.Discrete(max_tasks)}
        self.drift = find_drift(env)
        if self.drift is not None:
            entries["theta"] = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        self.observation_space = spaces.Dict(entries)
        self.set_task(task)

    def set_task(self, task: int) -> None:
        """Change the task id reported from the next observation on (an environment change)."""
        if not is_int(task) or not 0 <= task < self.max_tasks:
            raise ValueError(f"task={task!r}: expected an int in [0, {self.max_tasks})")
        self.task = int(task)

    def observation(self, observation: Any) -> dict[str, Any]:
        if self.drift is None:
            return {"obs": observation, "task": np.int64(self.task)}
        theta = np.array([min(1.0, max(0.0, self.drift.theta))], dtype=np.float32)
        return {"obs": observation, "task": np.int64(self.task), "theta": theta}


def _recompute_cartpole(env: Any) -> None:
    # CartPole caches these products at construction; its step() reads the cached values.
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


# Attributes that an env derives from others in __init__ and must be refreshed after a change.
_DERIVED: dict[str, Callable[[Any], None]] = {"CartPoleEnv": _recompute_cartpole}


def _same_kind(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, numbers.Real):
        return isinstance(new, numbers.Real)
    if isinstance(old, list | tuple | np.ndarray):
        return (
            isinstance(new, list | tuple | np.ndarray)
            and len(new) == len(old)
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in new)
        )
    return False


def set_params(base: Any, params: Mapping[str, Any]) -> None:
    """Set public attributes of an unwrapped env, checking each name and value kind."""
    env_name = type(base).__name__
    for name, value in params.items():
        if name.startswith("_") or not hasattr(base, name):
            public = sorted(k for k, v in vars(base).items() if not k.startswith("_") and _same_kind(v, v))
            raise ValueError(f"parameter {name!r}: {env_name} has no such attribute; numeric ones are {public}")
        old = getattr(base, name)
        if not _same_kind(old, value):
            raise ValueError(
                f"parameter {name!r}: expected a value like the current {old!r} ({type(old).__name__}), "
                f"got {value!r} ({type(value).__name__})"
            )
        setattr(base, name, type(old)(value) if isinstance(old, list | tuple) else value)
    if env_name in _DERIVED:
        _DERIVED[env_name](base)


class ShiftedParams(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Set physics parameters through the env's public attributes (``env.unwrapped.<name>``).

    Every name must already exist on the unwrapped env and the new value must have the same kind
    (a number for a number, a list of numbers of the same length for a list), otherwise a
    ``ValueError`` names the parameter. Derived attributes (CartPole's ``total_mass``,
    ``polemass_length``) are recomputed.

    :param env: the environment.
    :param params: attribute name -> new value.
    """

    def __init__(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, params=dict(params))
        super().__init__(env)
        set_params(env.unwrapped, params)
        self.params = dict(params)


class ReverseAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Negate a continuous action: the controls are swapped (the task a single network must forget)."""

    def __init__(self, env: gym.Env) -> None:
        if not isinstance(env.action_space, spaces.Box) or not np.allclose(
            env.action_space.low, -env.action_space.high
        ):
            raise ValueError(f"action_sign=-1 needs a Box action space symmetric around 0, got {env.action_space}")
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)

    def action(self, action: np.ndarray) -> np.ndarray:
        return -np.asarray(action)


class PermuteObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A fixed random permutation of a flat observation vector (the paper's permuted MNIST, carried to RL).

    ``seed=0`` is the identity (the paper's task 0); any other seed draws a permutation.
    """

    def __init__(self, env: gym.Env, seed: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, seed=seed)
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"permutation_seed needs a flat Box observation space, got {space}")
        n = space.shape[0]
        self.permutation = np.arange(n)
        rng = np.random.default_rng(seed)
        while seed != 0 and n > 1 and np.array_equal(self.permutation, np.arange(n)):
            self.permutation = rng.permutation(n)  # a short vector can draw the identity: redraw
        # The loosest common bounds, so every permutation of one env shares one space.
        low, high = np.full_like(space.low, space.low.min()), np.full_like(space.high, space.high.max())
        self.observation_space = spaces.Box(low, high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.permutation]


class PadChannels(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """MinAtar's ``(10, 10, C)`` bool frames -> ``(channels, 10, 10)`` float32, zero-padded channels.

    Padding to one channel count lets one network read every game; channel-first float32 keeps
    SB3 from treating the frame as an 8-bit image to divide by 255.
    """

    def __init__(self, env: gym.Env, channels: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, channels=channels)
        super().__init__(env)
        height, width, own = env.observation_space.shape
        if own > channels:
            raise ValueError(f"channels={channels}: the env has {own} channels, more than the padded count")
        self.own = own
        self.observation_space = spaces.Box(0.0, 1.0, (channels, height, width), dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.zeros(self.observation_space.shape, dtype=np.float32)
        out[: self.own] = np.moveaxis(observation, -1, 0)
        return out


def triangle_wave(low: float, high: float, period: int, step: int) -> float:
    """The drifting value ``step`` env steps into a run: ``low`` at 0, ``high`` half a period later, ``low`` again."""
    phase = (step % period) / period
    return low + (high - low) * (1 - abs(2 * phase - 1))


class DriftingParam(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One physics parameter that changes continuously as training goes on.

    The value follows a triangle wave from ``low`` to ``high`` and back every ``period`` env steps
    of the whole run (gravity sweeping 9.8 -> 20 -> 9.8, say). The trainer places it with
    :meth:`set_drift_step` at every chunk (the task's env steps so far, and how many envs step
    together), so the wave follows the trainer's step count whatever the chunking, the number of
    envs or a resume. ``self.value`` is the current value, :attr:`theta` the same in ``[0, 1]``
    (``(value - low) / (high - low)``), also ``info["drift"][name]`` at every step;
    :class:`TaskObservation` adds ``theta`` to the observation.

    :param frozen: the value does not move with this env's steps (evaluation envs: a fixed point).
    """

    def __init__(self, env: gym.Env, name: str, low: float, high: float, period: int, frozen: bool = False) -> None:
        if not is_int(period) or period < 2:
            raise ValueError(f"drift period={period!r}: expected an int >= 2 (env steps per sweep)")
        if not float(high) > float(low):
            raise ValueError(f"drift high={high!r}: expected a value above low={low!r}")
        gym.utils.RecordConstructorArgs.__init__(self, name=name, low=low, high=high, period=period, frozen=frozen)
        super().__init__(env)
        set_params(env.unwrapped, {name: float(low)})  # validates the name and the type
        self.name, self.low, self.high, self.period, self.frozen = name, float(low), float(high), period, frozen
        self.steps, self.stride = 0, 1
        self.value = self.low

    @property
    def theta(self) -> float:
        """The value's place in the range: 0 at ``low``, 1 at ``high``."""
        return (self.value - self.low) / (self.high - self.low)

    def _update(self) -> None:
        self.set_value(triangle_wave(self.low, self.high, self.period, self.steps))

    def set_value(self, value: float) -> None:
        """Put the parameter at ``value`` (an evaluation at a fixed point of the range)."""
        self.value = float(value)
        set_params(self.env.unwrapped, {self.name: self.value})

    def set_drift_step(self, step: int, stride: int = 1) -> None:
        """Put the drift ``step`` env steps into the task; each step of this env then counts
        ``stride`` (the number of envs stepping together), so the wave runs over the run's steps."""
        self.steps, self.stride = int(step), int(stride)
        self._update()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if not self.frozen:
            self.steps += self.stride
            self._update()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["drift"] = {self.name: self.value}
        return obs, reward, terminated, truncated, info


def find_drift(env: gym.Env) -> DriftingParam | None:
    """The :class:`DriftingParam` inside ``env``'s wrappers, if any."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, DriftingParam):
            return env
        env = env.env
    return None


__all__ = [
    "DriftingParam",
    "PadChannels",
    "PermuteObservation",
    "ReverseAction",
    "ShiftedParams",
    "TaskObservation",
    "find_drift",
]
