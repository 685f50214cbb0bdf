"""Scores over seeds as the field reports them (rliable; Agarwal et al., "Deep reinforcement
learning at the edge of the statistical precipice", NeurIPS 2021): the interquartile mean (IQM)
and the mean of normalized scores with 95% stratified bootstrap intervals, the probability that
one method improves on another, and performance profiles.

Scores are per run and task, shape ``(runs, tasks)``: a run's normalized final return on each
task. Every bootstrap is seeded (numpy's global generator, which rliable draws from, is seeded for
the call and put back after), so a table regenerates to the same bytes. rliable is the ``report``
extra (``pip install "psp-rl[report]"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psp_rl.continual.io import atomic_savefig

REPS = 5_000  # bootstrap resamples per interval
INSTALL = 'rliable is needed for aggregate scores and performance profiles: pip install "psp-rl[report]"'


def _rliable() -> tuple[Any, Any]:
    try:
        from rliable import library, metrics
    except ImportError as exc:
        raise ImportError(INSTALL) from exc
    return library, metrics


def _interval_estimates(scores: dict[str, Any], func: Any, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable's stratified bootstrap, seeded: (point estimates, intervals) per key of ``scores``."""
    library, _ = _rliable()
    state = np.random.get_state()
    np.random.seed(seed)  # rliable 1.2 resamples with numpy's global generator, whatever random_state says
    try:
        return library.get_interval_estimates(scores, func, reps=reps)
    finally:
        np.random.set_state(state)


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% bootstrap interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def aggregate_scores(scores: dict[str, np.ndarray], reps: int = REPS, seed: int = 0) -> dict[str, dict[str, Estimate]]:
    """Per method: ``{"iqm": ..., "mean": ...}`` of its ``(runs, tasks)`` scores, each with its 95%
    stratified bootstrap interval (runs resampled within each task)."""
    _, metrics = _rliable()

    def both(matrix: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(matrix), metrics.aggregate_mean(matrix)])

    points, intervals = _interval_estimates(scores, both, reps, seed)
    return {
        method: {
            name: Estimate(float(points[method][i]), float(intervals[method][0, i]), float(intervals[method][1, i]))
            for i, name in enumerate(("iqm", "mean"))
        }
        for method in scores
    }


def mean_interval(values: list[float], reps: int = REPS, seed: int = 0) -> Estimate:
    """The mean of one number per run (a final average return, a forgetting) and its 95%
    bootstrap interval over runs; NaN bounds for a single run."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return Estimate(float(arr.mean()), float("nan"), float("nan"))
    return aggregate_scores({"runs": arr[:, None]}, reps, seed)["runs"]["mean"]


def improvement_probabilities(
    scores: dict[str, np.ndarray], method: str, reps: int = REPS, seed: int = 0
) -> dict[str, Estimate]:
    """P(``method`` > baseline) for every other method of ``scores``: the chance that a run of
    ``method`` scores higher than a run of the baseline on a task picked at random (ties count
    half), with its 95% stratified bootstrap interval."""
    _, metrics = _rliable()
    pairs = {other: (scores[method], scores[other]) for other in scores if other != method}
    if not pairs:
        return {}
    points, intervals = _interval_estimates(pairs, metrics.probability_of_improvement, reps, seed)
    return {
        other: Estimate(float(np.squeeze(points[other])), *(float(v) for v in np.ravel(intervals[other])))
        for other in pairs
    }


def plot_performance_profiles(scores: dict[str, np.ndarray], path: Path, reps: int = 2_000, seed: int = 0) -> Path:
    """The fraction of runs (over every task) whose normalized score exceeds tau, per method,
    with bootstrap bands: one method's curve above another's everywhere is the robust
    "better" (stochastic dominance). Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    library, _ = _rliable()
    from rliable import plot_utils

    flat = np.concatenate([s.ravel() for s in scores.values()])
    taus = np.linspace(min(0.0, float(np.nanmin(flat))), max(1.0, float(np.nanmax(flat))), 101)
    state = np.random.get_state()
    np.random.seed(seed)  # rliable's profile bootstrap draws from numpy's global generator
    try:
        profiles, bands = library.create_performance_profile(scores, taus, reps=reps)
    finally:
        np.random.set_state(state)
    colors = dict(zip(scores, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=bands, colors=colors, ax=ax, xlabel=r"normalized score $\tau$",
        ylabel=r"fraction of runs with score $> \tau$", labelsize="medium", ticklabelsize="medium",
    )  # fmt: skip
    ax.legend(handles=[Line2D([0], [0], color=c, label=m) for m, c in colors.items()], loc="lower left")
    atomic_savefig(fig, path)
    plt.close(fig)
    return path
