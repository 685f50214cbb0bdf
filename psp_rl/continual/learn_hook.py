"""The loop's hook inside SB3's ``learn``: training returns to TensorBoard, the callbacks' step hooks,
the progress bar, stop requests and the watch for non-finite weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stable_baselines3.common.callbacks import BaseCallback

from psp_rl.continual.callbacks import overrides_on_step
from psp_rl.continual.faults import fault_point

if TYPE_CHECKING:
    from psp_rl.continual.loop import ContinualLoop


class LearnHook(BaseCallback):
    """Inside SB3's learn: training returns to TensorBoard, step hooks, progress, stop requests, NaN watch."""

    def __init__(self, loop: ContinualLoop, task_name: str) -> None:
        super().__init__()
        self.loop, self.task_name = loop, task_name
        self.step_hooks = [cb for cb in loop.callbacks if overrides_on_step(cb)]

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.loop.writer.add_scalar(f"train/{self.task_name}/return", info["episode"]["r"], self.num_timesteps)
        for cb in self.step_hooks:
            cb.on_step(self.loop, self.locals)
        self.loop.advance_progress()
        fault_point("learn")
        return self.loop.keep_training()

    def _on_rollout_end(self) -> None:
        self.loop.check_finite(self.task_name)
