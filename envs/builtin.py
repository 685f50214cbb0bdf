"""Built-in task sequences, registered by name (``psp-rl list`` shows them)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from psp_rl.envs.factories import MINATAR_GAMES, make_atari_env, make_gym_env, make_minatar_env
from psp_rl.envs.sequence import TaskSequence, TaskSpec

_REGISTRY: dict[str, tuple[Callable[[int], list[TaskSpec]], int, str]] = {}


def register_sequence(name: str, default_steps: int, description: str):
    """Register ``fn(steps) -> list[TaskSpec]`` as a built-in sequence."""

    def decorate(fn: Callable[[int], list[TaskSpec]]) -> Callable[[int], list[TaskSpec]]:
        _REGISTRY[name] = (fn, default_steps, description)
        return fn

    return decorate


def list_sequences() -> dict[str, str]:
    """Built-in sequence name -> one-line description."""
    return {name: description for name, (_, _, description) in sorted(_REGISTRY.items())}


def get_sequence(
    name: str,
    *,
    steps: int | None = None,
    tasks: list[str] | None = None,
    cycles: int = 1,
    max_tasks: int | None = None,
    task_ids: str = "announced",
    switch: str = "reset",
) -> TaskSequence:
    """A built-in sequence by name.

    :param name: see :func:`list_sequences`.
    :param steps: training steps per task (default: the sequence's own).
    :param tasks: keep only these tasks, in this order (e.g. a 3-task cartpole-shift).
    :param cycles: train the whole sequence this many times.
    :param max_tasks: capacity of the task id (default: the number of tasks).
    :param task_ids: ``"announced"`` or ``"hidden"`` (see :class:`TaskSequence`).
    :param switch: ``"reset"`` or ``"mid_episode"`` (see :class:`TaskSequence`).
    """
    if name not in _REGISTRY:
        raise ValueError(f"sequence {name!r}: not a built-in sequence; expected one of {sorted(_REGISTRY)}")
    build, default_steps, _ = _REGISTRY[name]
    specs = build(default_steps if steps is None else steps)
    if tasks is not None:
        by_name = {t.name: t for t in specs}
        unknown = [t for t in tasks if t not in by_name]
        if unknown:
            raise ValueError(f"tasks {unknown}: not in sequence {name!r}; its tasks are {list(by_name)}")
        specs = [by_name[t] for t in tasks]
    return TaskSequence(specs, name=name, cycles=cycles, max_tasks=max_tasks, task_ids=task_ids, switch=switch)


def _control(env_id: str, steps: int, variants: dict[str, dict[str, Any]]) -> list[TaskSpec]:
    make = partial(make_gym_env, env_id)
    return [TaskSpec(name, make, params, steps) for name, params in variants.items()]


@register_sequence(
    "cartpole-shift", 30_000, "CartPole-v1: default, long pole, heavy pole, high gravity, reversed force"
)
def _cartpole_shift(steps: int) -> list[TaskSpec]:
    # 'reversed' swaps the controls (force_mag < 0): the task a single network must forget.
    return _control(
        "CartPole-v1",
        steps,
        {
            "default": {},
            "long-pole": {"length": 1.0},
            "heavy-pole": {"masspole": 0.5},
            "high-gravity": {"gravity": 20.0},
            "reversed": {"force_mag": -10.0},
        },
    )


@register_sequence("cartpole-permuted", 30_000, "CartPole-v1 with a fixed random permutation of the observation")
def _cartpole_permuted(steps: int) -> list[TaskSpec]:
    # Seed 0 is the identity permutation; sharing the wrapper keeps one observation space.
    variants = {"identity": {"permutation_seed": 0}} | {f"perm-{s}": {"permutation_seed": s} for s in range(1, 5)}
    return _control("CartPole-v1", steps, variants)


@register_sequence("cartpole-drift", 100_000, "CartPole-v1 whose gravity sweeps 9.8 -> 20 -> 9.8 every 50k steps")
def _cartpole_drift(steps: int) -> list[TaskSpec]:
    drift = {"name": "gravity", "low": 9.8, "high": 20.0, "period": 50_000}
    return _control("CartPole-v1", steps, {"drifting-gravity": {"drift": drift}})


@register_sequence(
    "cartpole-drift-force", 100_000, "CartPole-v1 whose push force sweeps -10 -> 10 -> -10 every 50k steps"
)
def _cartpole_drift_force(steps: int) -> list[TaskSpec]:
    # The controls reverse as the force crosses 0: no single policy plays both ends of the range.
    drift = {"name": "force_mag", "low": -10.0, "high": 10.0, "period": 50_000}
    return _control("CartPole-v1", steps, {"drifting-force": {"drift": drift}})


@register_sequence("acrobot-shift", 50_000, "Acrobot-v1: default, heavy link 2, long link 1, reversed torque")
def _acrobot_shift(steps: int) -> list[TaskSpec]:
    return _control(
        "Acrobot-v1",
        steps,
        {
            "default": {},
            "heavy-link": {"LINK_MASS_2": 2.0},
            "long-link": {"LINK_LENGTH_1": 1.5},
            "reversed": {"AVAIL_TORQUE": [1.0, 0.0, -1.0]},
        },
    )


@register_sequence("mountaincar-shift", 100_000, "MountainCar-v0: default, strong force, high gravity, reversed")
def _mountaincar_shift(steps: int) -> list[TaskSpec]:
    return _control(
        "MountainCar-v0",
        steps,
        {
            "default": {},
            "strong-force": {"force": 0.0015},
            "high-gravity": {"gravity": 0.0035},
            "reversed": {"force": -0.001},
        },
    )


@register_sequence("pendulum-shift", 50_000, "Pendulum-v1 (continuous): default, heavy, long, low gravity, reversed")
def _pendulum_shift(steps: int) -> list[TaskSpec]:
    return _control(
        "Pendulum-v1",
        steps,
        {
            "default": {},
            "heavy": {"m": 1.5},
            "long": {"l": 1.5},
            "low-gravity": {"g": 5.0},
            "reversed": {"action_sign": -1},
        },
    )


@register_sequence("minatar", 500_000, "The 5 MinAtar games, channels padded to 10, full 6-action set")
def _minatar(steps: int) -> list[TaskSpec]:
    return [TaskSpec(game.lower(), make_minatar_env, {"game": game}, steps) for game in MINATAR_GAMES]


def _atari(games: list[str], steps: int) -> list[TaskSpec]:
    return [TaskSpec(game.lower(), make_atari_env, {"game": game}, steps) for game in games]


@register_sequence(
    "atari-cora", 5_000_000, "CORA's Atari cycle: SpaceInvaders, Krull, BeamRider, Hero, StarGunner, MsPacman"
)
def _atari_cora(steps: int) -> list[TaskSpec]:
    return _atari(["SpaceInvaders", "Krull", "BeamRider", "Hero", "StarGunner", "MsPacman"], steps)


@register_sequence("atari-small", 1_000_000, "Four fast-learning Atari games: Pong, Breakout, SpaceInvaders, Freeway")
def _atari_small(steps: int) -> list[TaskSpec]:
    return _atari(["Pong", "Breakout", "SpaceInvaders", "Freeway"], steps)
