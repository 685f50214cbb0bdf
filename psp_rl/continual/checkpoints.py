"""Checkpoints of a continual run: the agent, its replay buffer, the loop's state and the callbacks'.

Each checkpoint is a directory ``ckpt-<step>-<stage>/`` written into a temporary directory and
renamed into place, ``state.json`` last: a directory without it was never completed, and a kill
at any moment leaves the previous checkpoints intact.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.files import atomic_write_text
from psp_rl.errors import CheckpointError

log = logging.getLogger(__name__)

T = TypeVar("T")

# The files of one checkpoint directory (state.json is written last: without it, it never finished).
MODEL, REPLAY_BUFFER, CALLBACKS, STATE = "model.zip", "replay_buffer.pkl", "callbacks.pt", "state.json"
# what torch.load must allow to read a pickled numpy float64 (the module's name differs in numpy 1 and 2)
NUMPY_SCALARS = [np.float64(0).__reduce__()[0], np.dtype, type(np.dtype(np.float64))]
EPISODES = "episodes.pkl"  # the training envs' running episodes (tasks that change mid-episode)


@dataclass
class TrainerState:
    """Everything besides the agent that a checkpoint must hold to resume exactly."""

    fingerprint: str
    shaping_config: dict[str, Any]
    stage: int = 0
    stage_steps: int = 0
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    stage_end_steps: list[int] = field(default_factory=list)
    random_returns: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    train_steps_time: float = 0.0
    eval_capped: dict[str, int] = field(default_factory=dict)


def callback_names(callbacks: Sequence[ContinualCallback]) -> list[str]:
    """The names callback states are saved under; two callbacks with one name are refused."""
    names = [cb.name for cb in callbacks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"callbacks: two callbacks named {twice}; give each a distinct `name`")
    return names


class CheckpointStore:
    """The ``checkpoints/`` directory of a run.

    :param directory: where checkpoints live.
    :param keep: how many of the newest to keep.
    :param replay_buffer: save the agent's replay buffer too (exact resume for off-policy agents).
    """

    def __init__(self, directory: str | Path, keep: int = 2, replay_buffer: bool = True) -> None:
        self.directory, self.keep, self.replay_buffer = Path(directory), keep, replay_buffer

    def list(self) -> list[Path]:
        """Completed checkpoints, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted((p for p in self.directory.glob("ckpt-*") if p.is_dir()), reverse=True)

    def load_newest(self, load: Callable[[Path], T], on_unreadable: Callable[[Path, Exception], None] | None = None):
        """``(path, load(path))`` for the newest checkpoint that loads.

        A truncated or foreign checkpoint (any error but :class:`CheckpointError`) falls back to the
        previous one, reported through ``on_unreadable`` (default: a logged warning); when none
        loads, :class:`CheckpointError` lists why.
        """
        errors = []
        for path in self.list():
            try:
                return path, load(path)
            except CheckpointError:
                raise
            except Exception as exc:  # any unreadable file means: try the previous one
                errors.append(f"{path.name}: {type(exc).__name__}: {exc}")
                if on_unreadable is None:
                    log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, exc)
                else:
                    on_unreadable(path, exc)
        raise CheckpointError(f"no loadable checkpoint in {str(self.directory)!r}: " + "; ".join(errors))

    def remove_unfinished(self) -> None:
        """Delete checkpoint writes that a kill interrupted."""
        for stale in self.directory.glob(".tmp-*") if self.directory.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)

    def save(
        self,
        agent: BaseAlgorithm,
        state: TrainerState,
        callbacks: Sequence[ContinualCallback],
        fault: Any = None,
        episodes: list[dict[str, Any]] | None = None,
    ) -> Path:
        """Write one checkpoint; drop those beyond ``keep``. ``fault()`` runs mid-write (the kill tests);
        ``episodes``: the training envs' running episodes, where a resume must go on with them."""
        name = f"ckpt-{agent.num_timesteps:012d}-{state.stage:04d}"
        final = self.directory / name
        tmp = self.directory / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        agent.save(tmp / MODEL)
        if self.replay_buffer and getattr(agent, "replay_buffer", None) is not None:
            agent.save_replay_buffer(tmp / REPLAY_BUFFER)
        CheckpointStore.save_callbacks(tmp, callbacks)
        if episodes is not None:
            with (tmp / EPISODES).open("wb") as f:
                pickle.dump(episodes, f)
        if fault is not None:
            fault()
        atomic_write_text(tmp / STATE, json.dumps(asdict(state)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self.list()[self.keep :]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @staticmethod
    def read_state(path: Path) -> TrainerState:
        """The loop state of checkpoint ``path``; ``ValueError`` if it is not one."""
        state_file = path / STATE
        try:
            return TrainerState(**json.loads(state_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{state_file}: not a psp-rl trainer state ({exc})") from exc

    @staticmethod
    def read_episodes(path: Path) -> list[dict[str, Any]]:
        """The running episodes saved in checkpoint ``path`` (a pickle: load only your own runs)."""
        with (path / EPISODES).open("rb") as f:
            return pickle.load(f)

    @staticmethod
    def load_agent_extras(path: Path, agent: BaseAlgorithm, callbacks: Sequence[ContinualCallback]) -> None:
        """Restore the replay buffer and the callbacks' state saved in checkpoint ``path``."""
        buffer = path / REPLAY_BUFFER
        if buffer.exists():
            agent.load_replay_buffer(buffer)
        CheckpointStore.load_callbacks(path, callbacks)

    @staticmethod
    def save_callbacks(path: Path, callbacks: Sequence[ContinualCallback]) -> None:
        """Write the callbacks' states into checkpoint folder ``path`` (none when every state is empty)."""
        states = {name: cb.state_dict() for name, cb in zip(callback_names(callbacks), callbacks, strict=True)}
        states = {name: value for name, value in states.items() if value}
        if states:
            torch.save(states, path / CALLBACKS)

    @staticmethod
    def load_callbacks(path: Path, callbacks: Sequence[ContinualCallback]) -> None:
        """Restore the callbacks' state saved in checkpoint ``path`` (task inference's, to evaluate)."""
        callback_file = path / CALLBACKS
        if not callback_file.exists():
            return
        # numpy float scalars: task inference's dynamics errors were saved unconverted before 2026-12-02
        with torch.serialization.safe_globals(NUMPY_SCALARS):
            saved = torch.load(callback_file, weights_only=True)
        names = callback_names(callbacks)
        if isinstance(saved, list):  # written before states were keyed by name: matched by position
            saved = {name: value for name, value in zip(names, saved, strict=True) if value}
        for name, cb in zip(names, callbacks, strict=True):
            if name in saved:
                cb.load_state_dict(saved[name])
        for name in sorted(set(saved) - set(names)):
            log.warning("checkpoint %s holds the state of callback %r, which this run does not have", path, name)
