"""The settings the continual loop is handed: how it evaluates and how it checkpoints.

They are validated models (unknown keys and bad values raise naming the field), the sections
``eval`` and ``checkpoint`` of a run config: the config composes them, the loop imports nothing
of the config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class StrictSettings(BaseModel):
    """Settings that refuse unknown keys and validate their defaults (the base of every config section)."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


class EvalConfig(StrictSettings):
    """Evaluation of every task during training."""

    every: int = Field(default=5000, gt=0, description="env steps between evaluations (within a task)")
    episodes: int = Field(default=5, gt=0)
    max_episode_steps: int = Field(
        default=10_000,
        gt=0,
        description="an evaluation episode is cut after this many env steps (CORA's 10,000 for Atari): a greedy "
        "policy that never starts the game would otherwise play until the emulator's cap",
    )
    reference_returns: dict[str, float] | None = Field(
        default=None, description="task -> return counted as 1.0 in normalized return (default: the env's threshold)"
    )
    video_every: int | None = Field(
        default=None,
        gt=0,
        description="env steps between videos of every task in TensorBoard (one episode each, at an evaluation; "
        "needs moviepy: pip install 'psp-rl[video]'); default none",
    )
    act: Literal["greedy", "sample"] = Field(
        default="greedy",
        description="greedy: the most likely action (DQN's argmax); sample: PPO's policy sampled, from a torch "
        "generator seeded per task (a greedy Breakout policy that never presses FIRE stalls until the cap)",
    )


class CheckpointConfig(StrictSettings):
    """Checkpoints: after each task and every ``every`` steps."""

    every: int = Field(default=10_000, gt=0)
    keep: int = Field(default=2, gt=0, description="how many recent checkpoints to keep (older ones are deleted)")
    replay_buffer: bool = Field(default=True, description="save DQN's replay buffer (exact resume; larger files)")


def format_validation_error(
    exc: ValidationError, prefix: str = "", hint: Callable[[tuple[Any, ...]], str] | None = None
) -> str:
    """One line per problem, ``key.path: what was expected, got <value>``, joined by ``"; "``.

    :param prefix: put before every key path (``"inference."``).
    :param hint: ``hint(loc)`` is added to an unknown key's line (``"; did you mean ..."``).
    """
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"] if p not in ("function-after",))
        path = f"{prefix}{path}" if path else prefix.rstrip(".") or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key{hint(err['loc']) if hint else ''}")
            continue
        if err["type"] == "missing":
            lines.append(f"{path}: missing (required)")
            continue
        if msg.startswith("Value error, "):
            lines.append(msg.removeprefix("Value error, "))
            continue
        expected = {
            "float_parsing": "expected float",
            "float_type": "expected float",
            "int_parsing": "expected int",
            "int_type": "expected int",
            "int_from_float": "expected int",
            "string_type": "expected string",
            "bool_parsing": "expected bool",
            "bool_type": "expected bool",
            "list_type": "expected a list",
            "dict_type": "expected a mapping",
        }.get(err["type"], msg[0].lower() + msg[1:])
        lines.append(f"{path}: {expected}, got {_describe(err.get('input'))}")
    return "; ".join(lines)


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, dict | list) else type(value).__name__


def validated(model: type[Model], section: str, values: Mapping[str, Any]) -> Model:
    """``model(**values)``, or a one-line ``ValueError`` naming ``section.key``, what was expected
    and the value (the settings a Python caller gives, checked as a config file's are)."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, prefix=f"{section}.")) from None
