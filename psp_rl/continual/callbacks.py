"""Hooks around the continual loop (Avalanche's plugins, in small)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv
    from torch.utils.tensorboard import SummaryWriter

    from psp_rl.continual.run_dir import RunDir
    from psp_rl.continual.seeds import Stream
    from psp_rl.continual.settings import EvalConfig
    from psp_rl.envs import TaskSequence


class LoopView(Protocol):
    """What a callback may read from the loop that calls it."""

    agent: BaseAlgorithm
    sequence: TaskSequence
    seed: int
    """The run's seed."""
    writer: SummaryWriter
    """The run's TensorBoard writer."""
    run_dir: Path
    paths: RunDir
    eval: EvalConfig
    """Evaluation settings (episodes, the episode cap)."""

    def stream_seed(self, stream: Stream, *parts: int) -> int:
        """The seed of ``stream`` at ``parts`` under the run's seed and seed scheme (:mod:`~psp_rl.continual.seeds`)."""


class ContinualCallback:
    """Hooks around the continual loop; override the ones you need (all are no-ops).

    Baselines that act between tasks (EWC's Fisher estimate, say) are callbacks, not forks of
    the loop. A callback that carries state across tasks returns it from :meth:`state_dict`
    (tensors, numbers, strings, lists and dicts of them): it is saved in every checkpoint under
    :attr:`name` and handed back to :meth:`load_state_dict` when a run resumes.
    """

    @property
    def name(self) -> str:
        """The key of this callback's state in a checkpoint (the class name unless overridden)."""
        return type(self).__name__

    def before_training(self, loop: LoopView) -> None:
        """Once the agent is built or restored from a checkpoint, before any training."""

    def before_task(self, loop: LoopView, stage: int, task: int) -> None:
        """Before training stage ``stage`` (task ``task``) starts."""

    def on_step(self, loop: LoopView, step: dict[str, Any]) -> None:
        """After every training env step, with SB3's rollout locals (``new_obs``, ``rewards``,
        ``dones``, ``infos``). Called only on callbacks that override it: it runs every step."""

    def after_task(self, loop: LoopView, stage: int, task: int) -> None:
        """After stage ``stage`` ends and its evaluation is written, before its checkpoint."""

    def after_eval(self, loop: LoopView, rows: list[dict[str, Any]]) -> None:
        """After each evaluation of every task, with its new ``eval.csv`` rows."""

    def at_stage_end(self, loop: LoopView, stage: int, task: int, rows: list[dict[str, Any]]) -> bool:
        """After the evaluation that ends stage ``stage`` (its ``rows``), before :meth:`after_task`.
        Return True when this changed the agent's weights: the loop then evaluates every task
        again, and that evaluation replaces ``rows`` as the stage's end (``keep_best``)."""
        return False

    def wrap_env(self, loop: LoopView, env: VecEnv, task: int, *, training: bool) -> VecEnv:
        """Wrap the vec env of task ``task``: the training env (``training``) or an evaluation env.
        Task inference writes its chosen context into the observations here."""
        return env

    def metrics(self, loop: LoopView) -> dict[str, Any]:
        """What this callback adds to ``metrics.json`` (under :attr:`name`) at the end of the run."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold for this callback to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def overrides_on_step(callback: ContinualCallback) -> bool:
    return type(callback).on_step is not ContinualCallback.on_step
