"""The parts a :class:`~psp_rl.continual.loop.ContinualLoop` is handed besides the sequence and the
callbacks: how to build (or load) its agent, and what makes a run the same run on resume."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv


class AgentFactory:
    """Builds the agent of a fresh run and loads it from a checkpoint on resume.

    :param algo: the SB3 algorithm class (``ContinualDQN``, ``ContinualPPO`` or your own).
    :param policy: the policy (``"PSPPolicy"``: the superposed one).
    :param device: torch device.
    :param kwargs: the algorithm's keyword arguments (``policy_kwargs``, ``learning_rate``, ...).
    """

    def __init__(self, algo: type[BaseAlgorithm], policy: Any = "PSPPolicy", device: str = "auto", **kwargs: Any):
        self.algo, self.policy, self.device, self.kwargs = algo, policy, device, kwargs

    def settings(self) -> dict[str, Any]:
        """The algorithm and its arguments, JSON-able (a hand-made loop's default identity)."""
        described = {"algo": self.algo.__name__, "policy": self.policy, **self.kwargs}
        return json.loads(json.dumps(described, default=_describe, sort_keys=True))

    def build(self, env: VecEnv, seed: int) -> BaseAlgorithm:
        """A fresh agent on ``env``."""
        return self.algo(self.policy, env, seed=seed, device=self.device, **self.kwargs)

    def load(self, path: Path, env: VecEnv) -> BaseAlgorithm:
        """The agent saved at ``path`` (a checkpoint's ``model.zip``), on ``env``, with the last
        observation it saw (episodes that go on across a resume need it; the loop decides whether
        the next chunk starts fresh episodes)."""
        return self.algo.load(path, env=env, device=self.device, force_reset=False)


def _describe(value: Any) -> str:
    """A JSON stand-in for a class or function (its import path: the same in every process)."""
    if hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


class RunIdentity(Protocol):
    """What makes two runs the same run: a checkpoint resumes only under a matching identity."""

    def shaping(self) -> dict[str, Any]:
        """The settings a checkpoint records (JSON-able)."""

    def fingerprint(self) -> str:
        """A short hash of :meth:`shaping`."""

    def matches(self, saved_shaping: dict[str, Any]) -> bool:
        """Whether a run saved with ``saved_shaping`` resumes under this identity."""

    def difference(self, saved_shaping: dict[str, Any]) -> str:
        """Which setting differs, as a sentence (for the error a refused resume raises)."""

    def to_yaml(self) -> str:
        """What ``config.yaml`` holds."""

    def hparams(self) -> dict[str, Any]:
        """Scalars for TensorBoard's hparams tab."""


class SettingsIdentity:
    """The identity of a loop assembled by hand: a dict of the settings that shape the run.

    :param settings: JSON-able values (the network, the algorithm's options, ...); a resume is
        refused when they differ from those the checkpoint saved.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = json.loads(json.dumps(settings))  # JSON-able now, not at the first checkpoint

    def shaping(self) -> dict[str, Any]:
        return self.settings

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]

    def matches(self, saved_shaping: dict[str, Any]) -> bool:
        return saved_shaping == self.settings

    def difference(self, saved_shaping: dict[str, Any]) -> str:
        return first_difference(saved_shaping, self.settings)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.settings, sort_keys=False)

    def hparams(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if isinstance(v, int | float | str | bool)}


def first_difference(
    saved: Any, current: Any, path: str = "", *, name: Callable[[str], str] = lambda path: path
) -> str:
    """Which setting differs between a saved config and the current one, as a sentence; ``name``
    turns a key path into the name the sentence gives it."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            if saved.get(key) != current.get(key):
                where = f"{path}.{key}" if path else key
                return first_difference(saved.get(key), current.get(key), where, name=name)
    return f"was written by a different config: {name(path) or 'config'} was {saved!r}, now {current!r}"
