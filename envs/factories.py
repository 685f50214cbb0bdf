"""Environment factories for task specs: classic control with shifted physics, Atari, MinAtar.

Every factory takes ``training`` (Atari clips rewards only when training), ``render_mode``
(gymnasium's: ``"rgb_array"`` for videos) plus its own parameters, and raises ``ValueError`` naming
the parameter on bad input.
"""

from __future__ import annotations

import difflib
import hashlib
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
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
    render_mode: str | None = None,
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
    env = _gym_make(env_id, render_mode=render_mode)
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
    render_mode: str | None = None,
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
    check_atari_game(game)
    env = _gym_make(
        f"ALE/{game}-v5",
        frameskip=1,
        full_action_space=True,
        repeat_action_probability=sticky_actions,
        render_mode=render_mode,
    )
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=noop_max, frame_skip=4, screen_size=84, terminal_on_life_loss=terminal_on_life_loss
    )
    env = gym.wrappers.FrameStackObservation(env, frame_stack)
    if training:
        env = gym.wrappers.ClipReward(env, -1.0, 1.0)
    return env


def make_minatar_env(
    game: str, *, training: bool = True, channels: int = MINATAR_CHANNELS, render_mode: str | None = None
) -> gym.Env:
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
    env = _gym_make(f"MinAtar/{game}-v1", use_minimal_action_set=False, render_mode=render_mode)
    # MinAtar sets no time limit: a greedy agent that keeps the ball in play would never end an evaluation.
    return PadChannels(gym.wrappers.TimeLimit(env, MINATAR_MAX_EPISODE_STEPS), channels)


FACTORIES = {"gym": make_gym_env, "atari": make_atari_env, "minatar": make_minatar_env}


def software_versions(specs: Iterable[Any]) -> dict[str, Any]:
    """The versions behind a run of these tasks (what ``metrics.json`` records next to the scores):
    torch's, SB3's, gymnasium's, and ale-py's with each game's ROM (md5) for Atari tasks, MinAtar's
    for MinAtar tasks. Read from the installed packages' metadata: nothing is imported."""
    from importlib.metadata import version

    out: dict[str, Any] = {name: version(name) for name in ("torch", "stable-baselines3", "gymnasium")}
    games = sorted({spec.params["game"] for spec in specs if spec.make_env is make_atari_env})
    if games:
        import ale_py.roms

        out["ale-py"] = version("ale-py")
        out["roms_md5"] = {}
        for game in games:
            rom = ale_py.roms.get_rom_path(rom_name(game))
            out["roms_md5"][game] = hashlib.md5(Path(rom).read_bytes()).hexdigest() if rom else None
    if any(spec.make_env is make_minatar_env for spec in specs):
        out["minatar"] = version("minatar")
    return out


def check_atari_game(game: str) -> None:
    """Raise ``ValueError`` in one line, naming the closest games, for a game ALE does not register
    (call after ``gym.register_envs(ale_py)``)."""
    games = [env_id[4:-3] for env_id in gym.registry if env_id.startswith("ALE/") and env_id.endswith("-v5")]
    if game not in games:
        close = difflib.get_close_matches(game, games, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; ALE registers {len(games)} games (ALE/<Game>-v5)"
        raise ValueError(f"game {game!r}: not an Atari game{hint}")


def rom_name(game: str) -> str:
    """ale-py's ROM id of ``game`` (``"SpaceInvaders"`` -> ``"space_invaders"``), or ``ValueError``
    naming the close ones."""
    from ale_py import roms

    rom = "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(game))
    available = roms.get_all_rom_ids()
    if rom not in available:
        close = difflib.get_close_matches(rom, available, n=3)
        raise ValueError(f"game {game!r}: not an Atari ROM ale-py ships; close: {close or 'none'}")
    return rom
