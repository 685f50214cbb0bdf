"""Environment factories for task specs: classic control with shifted physics, Atari, MinAtar.

Every factory takes ``training`` (Atari clips rewards only when training) plus its own
parameters, and raises ``ValueError`` naming the parameter on bad input.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from psp_rl.envs.wrappers import DriftingParam, PadChannels, PermuteObservation, ReverseAction, ShiftedParams

MINATAR_GAMES = ("Breakout", "SpaceInvaders", "Freeway", "Asterix", "Seaquest")
MINATAR_CHANNELS = 10  # Seaquest's count, the largest of the five games
MINATAR_MAX_EPISODE_STEPS = 10_000
MINATAR_INSTALL = 'MinAtar is not installed: pip install "psp-rl[minatar]" (or: pip install minatar)'


def _gym_make(env_id: str, **kwargs: Any) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:  # NameNotFound, VersionNotFound, ... all derive from it
        raise ValueError(f"env_id {env_id!r}: not a registered gymnasium env ({exc})") from exc


def make_gym_env(
    env_id: str,
    *,
    training: bool = True,
    action_sign: int = 1,
    permutation_seed: int | None = None,
    drift: Mapping[str, Any] | None = None,
    **params: Any,
) -> gym.Env:
    """A registered gymnasium env with shifted physics.

    :param env_id: e.g. ``"CartPole-v1"``.
    :param training: False for evaluation envs: a drifting parameter stays where it is put.
    :param action_sign: ``-1`` negates a continuous action (Pendulum's reversed torque). Discrete
        envs reverse through their own parameter (CartPole ``force_mag``, MountainCar ``force``).
    :param permutation_seed: apply a fixed random permutation to the observation vector.
    :param drift: ``{"name", "low", "high", "period"}``: a parameter that sweeps continuously.
    :param params: public attributes of ``env.unwrapped`` to set (``gravity=20.0``, ...).
    """
    env = _gym_make(env_id)
    env = ShiftedParams(env, params)
    if action_sign not in (1, -1):
        raise ValueError(f"action_sign={action_sign!r}: expected 1 or -1")
    if action_sign == -1:
        env = ReverseAction(env)
    if permutation_seed is not None:
        env = PermuteObservation(env, permutation_seed)
    if drift is not None:
        missing = {"name", "low", "high", "period"} - set(drift)
        if missing or set(drift) - {"name", "low", "high", "period"}:
            raise ValueError(f"drift={dict(drift)!r}: expected exactly the keys name, low, high, period")
        env = DriftingParam(env, **drift, frozen=not training)
    return env


def make_atari_env(
    game: str,
    *,
    training: bool = True,
    sticky_actions: float = 0.25,
    frame_stack: int = 4,
    noop_max: int = 30,
    terminal_on_life_loss: bool = False,
) -> gym.Env:
    """An ALE game with the standard DQN preprocessing and the full 18-action set.

    Noop reset, frame skip 4 (max-pooled), 84x84 grey, ``frame_stack`` frames, rewards clipped
    to their sign when ``training`` (evaluation sees the true score). ``sticky_actions`` is ALE
    v5's ``repeat_action_probability`` (0.25 by default, Machado et al. 2018), who also advise
    against ending episodes on life loss, hence ``terminal_on_life_loss=False``.
    """
    import ale_py

    # ALE prints its banner to stderr at every game's start, in the middle of the CLI's own lines.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    gym.register_envs(ale_py)
    if not 0.0 <= sticky_actions <= 1.0:
        raise ValueError(f"sticky_actions={sticky_actions!r}: expected a probability in [0, 1]")
    env = _gym_make(f"ALE/{game}-v5", frameskip=1, full_action_space=True, repeat_action_probability=sticky_actions)
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=noop_max, frame_skip=4, screen_size=84, terminal_on_life_loss=terminal_on_life_loss
    )
    env = gym.wrappers.FrameStackObservation(env, frame_stack)
    if training:
        env = gym.wrappers.ClipReward(env, -1.0, 1.0)
    return env


def make_minatar_env(game: str, *, training: bool = True, channels: int = MINATAR_CHANNELS) -> gym.Env:
    """A MinAtar game: frames as ``(channels, 10, 10)`` float32 and the full 6-action set.

    The full action set is the union of the games' actions, in MinAtar's order
    ``[noop, left, up, right, down, fire]``; a game ignores the ones it does not use.
    """
    del training
    try:
        import minatar.gym
    except ImportError as exc:
        raise ImportError(MINATAR_INSTALL) from exc
    if game not in MINATAR_GAMES:
        raise ValueError(f"game {game!r}: expected one of {list(MINATAR_GAMES)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minatar re-registering its ids warns on every call
        minatar.gym.register_envs()
    env = _gym_make(f"MinAtar/{game}-v1", use_minimal_action_set=False)
    # MinAtar sets no time limit: a greedy agent that keeps the ball in play would never end an evaluation.
    return PadChannels(gym.wrappers.TimeLimit(env, MINATAR_MAX_EPISODE_STEPS), channels)


FACTORIES = {"gym": make_gym_env, "atari": make_atari_env, "minatar": make_minatar_env}
