"""Figures for TensorBoard and reports (matplotlib's object API: no pyplot state, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter


def matrix_figure(matrix: np.ndarray, stage_names: Sequence[str], task_names: Sequence[str]) -> Figure:
    """Heatmap of ``R[stage, task]`` with the returns written in the cells."""
    fig = Figure(figsize=(1.2 + 0.9 * len(task_names), 1.0 + 0.5 * max(len(stage_names), 1)), layout="constrained")
    ax = fig.add_subplot()
    shown = matrix if matrix.size else np.zeros((1, len(task_names)))
    image = ax.imshow(shown, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="mean return")
    ax.set_xticks(range(len(task_names)), task_names, rotation=30, ha="right")
    ax.set_yticks(range(len(stage_names)), [f"{i + 1}. {n}" for i, n in enumerate(stage_names)])
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("after training stage")
    finite = shown[np.isfinite(shown)]
    middle = (finite.max() + finite.min()) / 2 if finite.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="black" if value > middle else "white")
    return fig


@dataclass
class InferenceMarks:
    """What task inference did in one run (hidden task ids), to mark on its returns.

    :param detections: global steps of its alarms (true switches and false alarms alike).
    :param visits: per training stage, ``(first step, last step, task trained, context that acted
        most)``.
    """

    detections: Sequence[int]
    visits: Sequence[tuple[int, int, str, int]]


def returns_figure(
    runs: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    task_names: Sequence[str],
    boundaries: Mapping[str, Sequence[int]],
    inference: Mapping[str, InferenceMarks] | None = None,
) -> Figure:
    """One panel per evaluated task: eval return over steps, one line per run, task boundaries dashed
    (grey when all runs share them, else each run's own in its line's colour).

    :param runs: run label -> task name -> (steps, mean returns).
    :param boundaries: run label -> global steps at which its training stages ended.
    :param inference: run label -> its :class:`InferenceMarks` (runs with hidden task ids): each
        detection a triangle on top of every panel, and on a task's panel each of its visits labelled
        with the context it got (``c2``), in the run's colour.
    """
    shared = len({tuple(b[:-1]) for b in boundaries.values()}) <= 1
    cols = min(3, len(task_names))
    rows = int(np.ceil(len(task_names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, task in zip(axes, task_names, strict=False):
        for label, curves in runs.items():
            color = None
            if task in curves:
                steps, means = curves[task]
                (line,) = ax.plot(steps, means, label=label, marker=".", markersize=3)
                color = line.get_color()
            if not shared:
                for step in boundaries.get(label, [])[:-1]:
                    ax.axvline(step, color=color or "grey", linestyle=":", linewidth=0.9)
            if inference and label in inference:
                _mark_inference(ax, inference[label], task, color, f"{label}: detections")
        if shared and boundaries:
            for step in next(iter(boundaries.values()))[:-1]:
                ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)
        ax.xaxis.set_major_formatter(EngFormatter())  # 20k, 1M: step counts stay readable
        ax.set_title(f"eval on {task}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("mean return")
    for ax in axes[len(task_names) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small")
    return fig


def _mark_inference(ax: Any, marks: InferenceMarks, task: str, color: str | None, label: str) -> None:
    """Detections along the panel's top; the contexts ``task``'s visits got along its bottom."""
    top = ax.get_xaxis_transform()  # x in steps, y in the panel's height
    if marks.detections:
        ax.plot(marks.detections, [1.0] * len(marks.detections), "v", color=color, markersize=5, transform=top,
                clip_on=False, label=label)  # fmt: skip
    for start, end, trained, context in marks.visits:
        if trained == task:
            ax.axvspan(start, end, color=color or "grey", alpha=0.08, linewidth=0)
            ax.text((start + end) / 2, 0.02, f"c{context}", transform=top, ha="center", va="bottom",
                    fontsize="small", color=color)  # fmt: skip


def forgetting_figure(runs: Mapping[str, Mapping[str, float | None]], task_names: Sequence[str]) -> Figure:
    """Grouped bars of forgetting per task, one bar per run."""
    fig = Figure(figsize=(1.5 + 1.1 * len(task_names), 3.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(runs), 1)
    for k, (label, forgetting) in enumerate(runs.items()):
        values = [forgetting.get(t) for t in task_names]
        heights = [np.nan if v is None else v for v in values]
        ax.bar(np.arange(len(task_names)) + k * width, heights, width, label=label)
    ax.set_xticks(np.arange(len(task_names)) + width * (len(runs) - 1) / 2, task_names, rotation=30, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("forgetting (best end-of-task return before - final)")
    ax.legend(fontsize="small")
    return fig


def probes_figure(rows: Sequence[Mapping[str, str]], layer: str = "output") -> Figure:
    """For each earlier task: the acting output's crosstalk split into its common and
    state-dependent parts, and greedy-action agreement, at the end of every later task.

    :param rows: ``probes.csv`` rows (``step, trained_task, probe_task, layer, quantity, value``).
    """
    tasks = list(dict.fromkeys(r["probe_task"] for r in rows if r["layer"] == layer))
    fig = Figure(figsize=(3.2 * max(len(tasks), 1), 5.0), layout="constrained")
    axes = fig.subplots(2, max(len(tasks), 1), squeeze=False, sharex=True)
    for col, task in enumerate(tasks):
        mine = [r for r in rows if r["probe_task"] == task and r["layer"] == layer]
        for quantity, label in (("crosstalk_common", "common (shared by all states)"), ("crosstalk_spread", "spread")):
            points = [(int(r["step"]), float(r["value"])) for r in mine if r["quantity"] == quantity]
            if points:
                axes[0, col].plot(*zip(*points, strict=True), marker="o", label=label)
        agreement = [(int(r["step"]), float(r["value"])) for r in mine if r["quantity"] == "greedy_agreement"]
        if agreement:
            axes[1, col].plot(*zip(*agreement, strict=True), marker="o", color="tab:green")
        axes[0, col].set_title(task)
        axes[1, col].set_ylim(0, 1.05)
        axes[1, col].set_xlabel("env steps (end of a later task)")
        axes[1, col].xaxis.set_major_formatter(EngFormatter())
    axes[0, 0].set_ylabel(f"{layer} change / its size")
    axes[1, 0].set_ylabel("greedy agreement")
    if tasks:
        axes[0, 0].legend(fontsize="small")
    return fig
