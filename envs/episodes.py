"""Carrying a running episode from one task's env into another's: tasks that change mid-episode.

A task switch normally starts fresh episodes. With ``TaskSequence(switch="mid_episode")`` the
pole that was balancing under the old task's physics keeps balancing, from the same state, under
the new task's: the physics state and random generator of ``env.unwrapped`` move into the new
task's env, and so do the wrappers' episode counters (``TimeLimit``'s elapsed steps, SB3
``Monitor``'s rewards so far, gymnasium's reset-order check), so the episode's length limit and
its return span the switch. The same snapshot is what a checkpoint keeps, so a resumed run goes
on with the episodes it was in.

Only envs whose dynamics are a ``state`` attribute (gymnasium's classic control) can be carried;
:func:`check_carryable` says so in one line for the others.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

# The unwrapped env's episode: its physics state (``last_u``: Pendulum's last torque, for rendering).
PHYSICS_STATE = ("state", "steps_beyond_terminated", "last_u")
# Wrappers' episode counters: TimeLimit, gymnasium's OrderEnforcing and PassiveEnvChecker, SB3's Monitor.
WRAPPER_STATE = (
    "_elapsed_steps",
    "_has_reset",
    "checked_reset",
    "checked_step",
    "checked_data_reuse",
    "_previous_data",
    "rewards",
    "needs_reset",
)


def check_carryable(env: gym.Env, task: str) -> None:
    """``ValueError`` unless ``env``'s episodes can move into another task's env."""
    if not hasattr(env.unwrapped, "state"):
        raise ValueError(
            f"task {task!r}: switch='mid_episode' carries an env's physics `state` into the next task, "
            f"and {type(env.unwrapped).__name__} has none; expected a classic-control env (CartPole, ...)"
        )


def check_vec_env_carries(switch: str, vec_env: str) -> None:
    """``ValueError`` unless episodes of ``switch`` can go on in envs stepped by ``vec_env`` (the
    config checks this at parse time, the loop for a loop built by hand)."""
    if switch == "mid_episode" and vec_env != "dummy":
        raise ValueError(
            "sequence.switch: 'mid_episode' moves running episodes between envs of the training process, "
            f"agent.vec_env={vec_env!r} steps them elsewhere; expected vec_env: dummy"
        )


def _stack(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def episode_state(env: gym.Env) -> dict[str, Any]:
    """A copy of ``env``'s running episode (see the module docstring); picklable."""
    base = env.unwrapped
    return {
        "physics": {name: copy.deepcopy(getattr(base, name)) for name in PHYSICS_STATE if hasattr(base, name)},
        "np_random": copy.deepcopy(base.np_random),
        "wrappers": [
            (
                type(layer).__name__,
                {name: copy.deepcopy(vars(layer)[name]) for name in WRAPPER_STATE if name in vars(layer)},
            )
            for layer in _stack(env)[:-1]
        ],
    }


def restore_episode(env: gym.Env, state: dict[str, Any]) -> None:
    """Put ``env`` into the episode ``state`` holds (taken from this task's env or another's).

    Wrappers are matched by class, in order: a wrapper the other task's env lacks (``ReverseAction``,
    say) keeps its own state.
    """
    base = env.unwrapped
    for name, value in state["physics"].items():
        setattr(base, name, copy.deepcopy(value))
    base.np_random = copy.deepcopy(state["np_random"])
    saved = list(state["wrappers"])
    for layer in _stack(env)[:-1]:
        match = next((i for i, (kind, _) in enumerate(saved) if kind == type(layer).__name__), None)
        if match is not None:
            for name, value in saved.pop(match)[1].items():
                setattr(layer, name, copy.deepcopy(value))


def carry_episodes(old: Sequence[gym.Env], new: Sequence[gym.Env]) -> None:
    """Move each of ``old``'s running episodes into the env at the same place in ``new``."""
    if len(old) != len(new):
        raise ValueError(f"carry_episodes: {len(old)} envs to carry into {len(new)}")
    for source, target in zip(old, new, strict=True):
        restore_episode(target, episode_state(source))


def vec_episode_states(venv: Any) -> list[dict[str, Any]]:
    """:func:`episode_state` of each env of an SB3 ``DummyVecEnv`` (possibly wrapped)."""
    return [episode_state(env) for env in venv.unwrapped.envs]


def restore_vec_episodes(venv: Any, states: Sequence[dict[str, Any]]) -> None:
    """:func:`restore_episode` into each env of an SB3 ``DummyVecEnv`` (possibly wrapped)."""
    envs = venv.unwrapped.envs
    if len(envs) != len(states):
        raise ValueError(f"restore_vec_episodes: {len(states)} saved episodes for {len(envs)} envs")
    for env, state in zip(envs, states, strict=True):
        restore_episode(env, state)
