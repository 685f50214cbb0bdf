"""Task inference's settings: its one place of defaults and checks (the config's ``inference``
section is this model; :class:`~psp_rl.plugins.inference.task_inference.TaskInference` takes its fields)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from psp_rl.continual.settings import StrictSettings


class InferenceConfig(StrictSettings):
    """Task inference under hidden task ids (psp_rl.plugins.inference.task_inference): a CUSUM on episode returns
    detects a change, trial episodes choose among the stored contexts or take a fresh one."""

    threshold: float = Field(default=20.0, gt=0, description="CUSUM alarm level, in return scales")
    slack: float = Field(default=1.0, ge=0, description="CUSUM drift allowance per episode, in return scales")
    warmup_episodes: int = Field(default=50, gt=0, description="episodes of a new context before it is watched")
    min_scale: float = Field(
        default=0.25, gt=0, le=1, description="the return scale is at least this fraction of the reference return"
    )
    fit: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a stored context fits if its trial return >= reference - (1 - fit) x |reference| "
        "(fit x reference for positive returns)",
    )
    trial_episodes: int = Field(default=4, gt=0, description="training episodes that score one candidate context")
    select: Literal["first_fit", "best"] = Field(
        default="first_fit", description="first_fit: the first candidate that fits (in `order`); best: try all"
    )
    order: Literal["recent", "oldest"] = Field(
        default="recent",
        description="stored contexts tried after the acting one: most (recent) or least (oldest) recently chosen first",
    )
    max_delay: int = Field(default=2000, gt=0, description="env steps after a switch within which a detection counts")
