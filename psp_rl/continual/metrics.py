"""Continual-learning metrics: pure functions of the evaluation matrix.

``R[i, j]`` is the mean return on task ``j`` evaluated at the end of training stage ``i``
(stage ``i`` trains task ``schedule[i]``; a cycled sequence visits a task more than once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def eval_matrix(rows: Sequence[Mapping[str, Any]], stage_end_steps: Sequence[int], names: Sequence[str]) -> np.ndarray:
    """``R[stage, task]`` from ``eval.csv`` rows: the evaluation at the end of each finished stage."""
    matrix = np.full((len(stage_end_steps), len(names)), np.nan)
    for i, step in enumerate(stage_end_steps):
        for row in rows:
            if row["step"] == step:
                matrix[i, list(names).index(row["eval_task"])] = row["mean"]
    return matrix


def compute_metrics(
    matrix: np.ndarray,
    schedule: Sequence[int],
    names: Sequence[str],
    random_returns: Sequence[float],
    reference_returns: Sequence[float | None],
    scratch_returns: dict[int, float] | None = None,
) -> dict[str, Any]:
    """metrics.json's continual-learning part, from the evaluation matrix."""
    stages = matrix.shape[0]
    schedule = list(schedule)[:stages]
    random = np.asarray(random_returns, dtype=float)
    reference = np.asarray([np.nan if r is None else r for r in reference_returns], dtype=float)
    final = matrix[-1]
    norm = normalized(final, random, reference)
    forgot = forgetting(matrix, schedule)
    return dict(
        tasks=list(names),
        stages=[names[t] for t in schedule],
        eval_matrix=matrix.tolist(),
        final_returns=dict(zip(names, final.tolist(), strict=True)),
        final_average_return=final_average_return(matrix),
        normalized_final_returns=dict(zip(names, [None if np.isnan(v) else float(v) for v in norm], strict=True)),
        normalized_final_average_return=None if np.isnan(norm).any() else float(np.mean(norm)),
        random_returns=dict(zip(names, random.tolist(), strict=True)),
        reference_returns=dict(zip(names, list(reference_returns), strict=True)),
        forgetting=dict(zip(names, forgot, strict=True)),
        backward_transfer=backward_transfer(matrix, schedule),
        forward_transfer=forward_transfer(matrix, schedule, scratch_returns),
    )
