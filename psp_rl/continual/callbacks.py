"""Hooks around the continual loop (Avalanche's plugins, in small)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psp_rl.continual.trainer import ContinualTrainer


class ContinualCallback:
    """Hooks around the continual loop; override the ones you need (all are no-ops).

    Baselines that act between tasks (EWC's Fisher estimate, say) are callbacks, not forks of
    the loop. A callback that carries state across tasks returns it from :meth:`state_dict`
    (tensors, numbers, strings, lists and dicts of them): it is saved in every checkpoint and
    handed back to :meth:`load_state_dict` when a run resumes.
    """

    def before_training(self, trainer: ContinualTrainer) -> None:
        """Once the agent is built or restored from a checkpoint, before any training."""

    def before_task(self, trainer: ContinualTrainer, stage: int, task: int) -> None:
        """Before training stage ``stage`` (task ``task``) starts."""

    def after_task(self, trainer: ContinualTrainer, stage: int, task: int) -> None:
        """After stage ``stage`` ends and its evaluation is written, before its checkpoint."""

    def after_eval(self, trainer: ContinualTrainer, rows: list[dict[str, Any]]) -> None:
        """After each evaluation of every task, with its new ``eval.csv`` rows."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold for this callback to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
