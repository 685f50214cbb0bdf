"""Keep each stage's best weights (``keep_best: true``): SB3's ``EvalCallback`` best-model rule, per stage.

DQN on CartPole oscillates: a task's return reaches 500 and falls back within a few thousand
steps, so the end of a stage, where a continual benchmark reads "just learned" and where the
model is handed to the next task, lands on a dip as often as on a peak (issue 31's screens: 4 of
5 PSP-DQN seeds' ``long-pole`` curves peaked at 437-500 and ended at 154-298). This callback
remembers the agent's weights at the stage's best periodic evaluation of its own task and, at the
stage's end, goes back to them when they scored higher than the final weights. The loop then
evaluates again (the same episodes' seeds as the first evaluation at that step), so the stage's
end row in ``eval.csv`` measures the weights the agent keeps, on other episodes than the ones
that chose them.

What it costs and what it is not: the choice uses the evaluation episodes the loop plays anyway
(``eval.every``, ``eval.episodes``), so it adds one evaluation of every task per restored stage
and no training steps; those episodes are data the agent does not train on, as SB3's
``EvalCallback(best_model_save_path=...)`` uses them. Only the policy's weights and buffers go
back (for PSP, the shared weights, every task's biases and centring means; DQN's target
network); the optimizer's moments and the replay buffer stay as they are.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from psp_rl.continual.callbacks import ContinualCallback

if TYPE_CHECKING:
    from psp_rl.continual.callbacks import LoopView


class KeepStageBest(ContinualCallback):
    """At the end of every stage, restore the weights of that stage's best evaluation on its task
    if it beat the final evaluation (strictly: a tie keeps the final weights)."""

    def __init__(self) -> None:
        self.task: str | None = None  # the stage's task while it trains; None between stages
        self.best_return, self.best_step = -math.inf, -1
        self.weights: dict[str, torch.Tensor] | None = None
        self.stages: list[dict[str, Any]] = []

    def before_task(self, loop: LoopView, stage: int, task: int) -> None:
        self.task = loop.sequence[task].name
        self.best_return, self.best_step, self.weights = -math.inf, -1, None

    def after_eval(self, loop: LoopView, rows: list[dict[str, Any]]) -> None:
        if self.task is None:  # the evaluation again after a restore: the stage is decided
            return
        mean = self._own_return(rows)
        if mean > self.best_return:
            self.best_return, self.best_step = mean, int(loop.agent.num_timesteps)
            self.weights = {name: t.detach().clone() for name, t in loop.agent.policy.state_dict().items()}

    def at_stage_end(self, loop: LoopView, stage: int, task: int, rows: list[dict[str, Any]]) -> bool:
        final = self._own_return(rows)
        step = int(loop.agent.num_timesteps)
        restore = self.weights is not None and self.best_return > final
        if restore:
            loop.agent.policy.load_state_dict(self.weights)
        record = dict(stage=stage, task=self.task, final_step=step, final_return=final, restored=restore)
        record.update(best_step=self.best_step, best_return=self.best_return)
        self.stages.append(record)
        loop.writer.add_scalar(f"keep_best/{self.task}/restored", float(restore), step)
        loop.writer.add_scalar(f"keep_best/{self.task}/final_return", final, step)
        self.task, self.weights = None, None
        return restore

    def _own_return(self, rows: list[dict[str, Any]]) -> float:
        """The evaluation's mean return on the stage's task."""
        return next(float(row["mean"]) for row in rows if row["eval_task"] == self.task)

    def metrics(self, loop: LoopView) -> dict[str, Any]:
        return {"stages": self.stages, "restored": sum(s["restored"] for s in self.stages)}

    def state_dict(self) -> dict[str, Any]:
        return dict(
            task=self.task, best_return=self.best_return, best_step=self.best_step,
            weights=self.weights, stages=self.stages,
        )  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task, self.weights, self.stages = state["task"], state["weights"], list(state["stages"])
        self.best_return, self.best_step = float(state["best_return"]), int(state["best_step"])
