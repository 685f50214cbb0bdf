"""Continual-learning metrics: pure functions of the evaluation matrix.

``R[i, j]`` is the mean return on task ``j`` evaluated at the end of training stage ``i``
(stage ``i`` trains task ``schedule[i]``; a cycled sequence visits a task more than once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def last_trained_stage(schedule: Sequence[int], task: int) -> int | None:
    """The last stage that trained ``task`` (``None`` if never)."""
    stages = [i for i, t in enumerate(schedule) if t == task]
    return stages[-1] if stages else None


def final_average_return(matrix: np.ndarray) -> float:
    """Mean over tasks of the return after the last stage."""
    return float(np.mean(matrix[-1]))


def forgetting(matrix: np.ndarray, schedule: Sequence[int]) -> list[float | None]:
    """Per task: the best return seen after it was first trained (before the last stage) minus the final one.

    ``None`` for tasks first trained at the last stage (nothing could be forgotten yet) or never.
    """
    out: list[float | None] = []
    last = matrix.shape[0] - 1
    for task in range(matrix.shape[1]):
        first = next((i for i, t in enumerate(schedule) if t == task), None)
        if first is None or first >= last:
            out.append(None)
            continue
        out.append(float(np.max(matrix[first:last, task]) - matrix[last, task]))
    return out


def backward_transfer(matrix: np.ndarray, schedule: Sequence[int]) -> float | None:
    """Mean over tasks (except the last trained) of final return minus the return right after
    the task was last trained (Lopez-Paz & Ranzato 2017); negative means forgetting."""
    last = matrix.shape[0] - 1
    diffs = []
    for task in range(matrix.shape[1]):
        stage = last_trained_stage(schedule, task)
        if stage is not None and stage < last:
            diffs.append(matrix[last, task] - matrix[stage, task])
    return float(np.mean(diffs)) if diffs else None


def forward_transfer(matrix: np.ndarray, schedule: Sequence[int], scratch: Mapping[int, float] | None) -> float | None:
    """Mean over tasks of (return after first training it in the sequence) minus (return of a
    from-scratch agent trained on it alone for the same steps). ``None`` without references."""
    if not scratch:
        return None
    diffs = []
    for task, ref in scratch.items():
        first = next((i for i, t in enumerate(schedule) if t == task), None)
        if first is not None:
            diffs.append(matrix[first, task] - ref)
    return float(np.mean(diffs)) if diffs else None


def normalized(returns: np.ndarray, random: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """0 = random policy, 1 = reference; NaN where the reference is missing or equals random."""
    span = reference - random
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(span) & (span != 0), (returns - random) / span, np.nan)


def continual_eval_curve(rows: Sequence[Mapping[str, float]]) -> list[tuple[int, float]]:
    """CORA-style continual evaluation: at every evaluation step, the mean return over all tasks."""
    by_step: dict[int, list[float]] = {}
    for row in rows:
        by_step.setdefault(int(row["step"]), []).append(float(row["mean"]))
    return [(step, float(np.mean(values))) for step, values in sorted(by_step.items())]
