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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psp_rl.continual.files import atomic_savefig, markdown_table

REPS = 2_000  # bootstrap resamples per interval (rliable's own default for profiles)
INSTALL = 'rliable is needed for aggregate scores and performance profiles: pip install "psp-rl[report]"'


def _rliable() -> tuple[Any, Any]:
    try:
        from rliable import library, metrics
    except ImportError as exc:
        raise ImportError(INSTALL) from exc
    return library, metrics


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """numpy's global generator seeded for the block and put back after: rliable 1.2 resamples with
    it (bootstrap intervals and profiles alike), whatever ``random_state`` it is handed."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _interval_estimates(scores: dict[str, Any], func: Any, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable's stratified bootstrap, seeded: (point estimates, intervals) per key of ``scores``."""
    library, _ = _rliable()
    with _seeded(seed):
        return library.get_interval_estimates(scores, func, reps=reps)


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
    scores: dict[str, np.ndarray], method: str, baselines: list[str] | None = None, reps: int = REPS, seed: int = 0
) -> dict[str, Estimate]:
    """P(``method`` > baseline) for each of ``baselines`` (default: every other method of
    ``scores``): the chance that a run of ``method`` scores higher than a run of the baseline on a
    task picked at random (ties count half), with its 95% stratified bootstrap interval."""
    _, metrics = _rliable()
    others = [other for other in scores if other != method] if baselines is None else baselines
    pairs = {other: (scores[method], scores[other]) for other in others}
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
    with _seeded(seed):
        profiles, bands = library.create_performance_profile(scores, taus, reps=reps)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"] if len(scores) <= 10 else plt.get_cmap("tab20").colors
    colors = {method: palette[i % len(palette)] for i, method in enumerate(scores)}  # an ablation has 20+ rows
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=bands, colors=colors, ax=ax, xlabel=r"normalized score $\tau$",
        ylabel=r"fraction of runs with score $> \tau$", labelsize="medium", ticklabelsize="medium",
    )  # fmt: skip
    ax.legend(handles=[Line2D([0], [0], color=c, label=m) for m, c in colors.items()], loc="lower left")
    atomic_savefig(fig, path)
    plt.close(fig)
    return path


def normalized_scores(results: dict[str, list[dict]]) -> tuple[dict[str, np.ndarray], str]:
    """Per method, the normalized final return of each run on each task, shape ``(runs, tasks)``:
    0 = random play, 1 = the task's reference return.

    The reference is the run's own (the env's reward threshold or ``eval.reference_returns``);
    where a task has none (MinAtar), it is the best end-of-stage return any method reached on
    that task in this benchmark, so a task nobody learned cannot blow the average up.
    """
    key = "normalized_final_returns"
    if all(None not in m[key].values() for runs in results.values() for m in runs):
        return {
            method: np.array([[m[key][task] for task in m["tasks"]] for m in runs]) for method, runs in results.items()
        }, "the reference return"
    best = np.max([np.max(m["eval_matrix"], axis=0) for runs in results.values() for m in runs], axis=0)
    out = {}
    for method, runs in results.items():
        out[method] = np.array(
            [(np.array(m["eval_matrix"])[-1] - random_play(m)) / (best - random_play(m)) for m in runs]
        )
    return out, "the best end-of-stage return any method reached on the task"


def random_play(m: dict) -> np.ndarray:
    """Random play's return on each of the run's tasks, in the run's task order."""
    return np.array([m["random_returns"][task] for task in m["tasks"]])


def aggregates_text(
    scores: dict[str, np.ndarray], aggregates: dict[str, dict[str, Estimate]], normalized_by: str, seed_note: str
) -> str:
    """``aggregates.md``: IQM and mean of the normalized final returns per method (``aggregates``
    of ``scores``), and the probability that each PSP method (``psp*``) improves on each baseline
    (every other method), with 95% stratified bootstrap intervals (rliable)."""
    rows = [[method, str(a["iqm"]), str(a["mean"])] for method, a in aggregates.items()]
    lines = [
        f"Normalized final returns (0 = random play, 1 = {normalized_by}) over every (seed, task); seeds: "
        f"{seed_note}. Point estimate [95% stratified bootstrap interval] (rliable).",
        "",
        markdown_table(["method", "IQM", "mean"], rows),
    ]
    baselines = [m for m in scores if not m.startswith("psp")]  # the ablations' psp rows are compared to these
    for method in [m for m in scores if m.startswith("psp")]:
        probabilities = improvement_probabilities(scores, method, baselines)
        if not probabilities:
            continue
        lines += ["", f"P({method} > baseline): a run of {method} scores higher on a task picked at random "
                  "(ties count half).", ""]  # fmt: skip
        lines.append(markdown_table(["baseline", "probability"], [[b, str(p)] for b, p in probabilities.items()]))
    lines += ["", "![performance profiles](performance_profile.png)", ""]
    return "\n".join(lines)
