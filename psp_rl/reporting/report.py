"""``psp-rl report``: markdown and PNG plots from one or several run directories."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from psp_rl.continual.files import atomic_savefig, atomic_write_text
from psp_rl.continual.run_dir import RunDir
from psp_rl.plugins.probes import acting_layer
from psp_rl.reporting.aggregates import aggregate_scores, aggregates_text, normalized_scores, plot_performance_profiles
from psp_rl.reporting.plots import (
    InferenceMarks,
    forgetting_figure,
    matrix_figure,
    probes_figure,
    returns_figure,
)
from psp_rl.sweep.runner import Trial


class RunData:
    """What a run left: eval rows, metrics (``None`` while it is unfinished) and its label."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        paths = RunDir(run_dir)
        eval_csv, metrics_json = paths.eval_csv, paths.metrics
        if not eval_csv.is_file():
            raise FileNotFoundError(f"{str(eval_csv)!r}: missing; is {str(self.run_dir)!r} a psp-rl run?")
        with eval_csv.open() as f:
            self.rows = list(csv.DictReader(f))
        self.metrics: dict[str, Any] | None = json.loads(metrics_json.read_text()) if metrics_json.is_file() else None
        self.label = self.run_dir.name
        if self.metrics is None:  # plotted up to its last evaluation, and marked so
            last = max((int(row["step"]) for row in self.rows), default=0)
            self.label += f" (partial, step {last})"
        probes_csv = paths.probes_csv
        self.probes: list[dict[str, str]] = []
        if probes_csv.is_file():
            with probes_csv.open() as f:
                self.probes = list(csv.DictReader(f))

    @property
    def tasks(self) -> list[str]:
        if self.metrics is not None:
            return list(self.metrics["tasks"])
        return list(dict.fromkeys(row["eval_task"] for row in self.rows))

    def boundaries(self) -> list[int]:
        """Global steps at which this run's training stages ended (its own, not another run's)."""
        if self.metrics is not None and "stage_end_steps" in self.metrics:
            return list(self.metrics["stage_end_steps"])
        ends: list[int] = []
        previous = None
        for row in self.rows:  # a stage's rows share trained_task; its last evaluation is at its end
            if previous is not None and row["trained_task"] != previous["trained_task"]:
                ends.append(int(previous["step"]))
            previous = row
        return ends

    def inference(self) -> InferenceMarks | None:
        """Task inference's detections and the context of each stage (hidden task ids; a finished
        run's ``metrics.json``), or None."""
        found = (self.metrics or {}).get("TaskInference")
        if found is None:
            return None
        ends = self.boundaries()
        starts = [0, *ends[:-1]]
        visits = [
            (start, end, stage, int(np.argmax(steps)))
            for start, end, stage, steps in zip(
                starts, ends, self.metrics["stages"], found["stage_contexts"], strict=False
            )
        ]
        return InferenceMarks([int(d[0]) for d in found["detections"]], visits)

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out: dict[str, tuple[list[int], list[float]]] = {}
        for row in self.rows:
            steps, means = out.setdefault(row["eval_task"], ([], []))
            steps.append(int(row["step"]))
            means.append(float(row["mean"]))
        return {task: (np.array(s), np.array(m)) for task, (s, m) in out.items()}


def _unique_labels(runs: list[RunData]) -> None:
    """Runs whose folders share a name are told apart by their parent folders, then by position."""
    for depth in (1, 2, 3):
        labels = [r.label for r in runs]
        clashes = {label for label in labels if labels.count(label) > 1}
        if not clashes:
            return
        for r in runs:
            if r.label in clashes:
                parts = r.run_dir.resolve().parts[-1 - depth : -1]
                r.label = "/".join(parts) + "/" + r.label
    for i, r in enumerate(runs):
        if [x.label for x in runs].count(r.label) > 1:
            r.label += f" #{i + 1}"


def _file_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _probe_lines(run: RunData) -> list[str]:
    """One table row per (earlier task, later stage) from the acting output's probes."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    layer = acting_layer(run.probes)
    for row in run.probes:
        if row["layer"] == layer:
            table.setdefault((row["probe_task"], row["trained_task"]), {})[row["quantity"]] = float(row["value"])
    lines = []
    for (task, after), q in table.items():
        shift = f"{q.get('margin_shift_mean', float('nan')):.3g} +- {q.get('margin_shift_spread', float('nan')):.3g}"
        cells = [_fmt(q.get(k)) for k in ("crosstalk", "crosstalk_common", "crosstalk_spread")]
        lines.append(
            f"| {run.label} | {task} | {after} | {' | '.join(cells)} | {shift} | {_fmt(q.get('greedy_agreement'))} |"
        )
    return lines


def _inference_lines(inferred: dict[str, InferenceMarks]) -> list[str]:
    """Hidden task ids: per run label, its detections and the context each stage acted under (the
    triangles and ``c<k>`` labels of the returns plot)."""
    if not inferred:
        return []
    lines = ["", "## Task inference (hidden task ids)", ""]
    lines += ["| run | detections (step) | context per stage (task: context) |", "|---|---|---|"]
    for label, marks in inferred.items():
        detections = ", ".join(f"{step:,}" for step in marks.detections) or "none"
        visits = ", ".join(f"{task}: c{context}" for _, _, task, context in marks.visits)
        lines.append(f"| {label} | {detections} | {visits} |")
    return lines


def _aggregate_lines(finished: list[RunData], out: Path) -> list[str]:
    """With two or more finished runs of the same tasks: rliable's IQM and mean of the normalized
    final returns per method (runs named ``<method>-s<seed>`` pool their seeds) with stratified
    bootstrap intervals, P(PSP > each other method), and ``performance_profile.png``."""
    if len(finished) < 2 or len({tuple(r.tasks) for r in finished}) != 1:
        return []
    groups: dict[str, list[dict]] = {}
    for r in finished:
        trial = Trial.from_name(r.label)
        groups.setdefault(trial.method if trial else r.label, []).append(r.metrics)
    scores, normalized_by = normalized_scores(groups)
    seed_note = ", ".join(f"{method} {len(runs)}" for method, runs in groups.items())
    text = aggregates_text(scores, aggregate_scores(scores), normalized_by, seed_note)
    plot_performance_profiles(scores, out / "performance_profile.png")
    return ["", "## Aggregate scores", "", text]


def write_report(run_dirs: list[str | Path], out_dir: str | Path | None = None, aggregates: bool = True) -> Path:
    """Write ``report.md`` and its PNGs into ``out_dir`` (default: the first run dir); with
    ``aggregates``, rliable's scores over the runs too (:func:`_aggregate_lines`)."""
    runs = [RunData(d) for d in run_dirs]
    _unique_labels(runs)
    out = Path(out_dir) if out_dir is not None else runs[0].run_dir
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(task for r in runs for task in r.tasks))
    finished = [r for r in runs if r.metrics is not None]
    inferred = {r.label: marks for r in runs if (marks := r.inference()) is not None}

    figures = {
        "returns.png": returns_figure(
            {r.label: r.curves() for r in runs},
            tasks,
            {r.label: r.boundaries() for r in runs},
            inferred,
        ),
        "forgetting.png": forgetting_figure({r.label: r.metrics["forgetting"] for r in finished}, tasks),
    }
    for r in finished:
        matrix = np.array(r.metrics["eval_matrix"], dtype=float)
        figures[f"matrix-{_file_label(r.label)}.png"] = matrix_figure(matrix, r.metrics["stages"], r.tasks)
        if r.probes:
            figures[f"probes-{_file_label(r.label)}.png"] = probes_figure(r.probes, acting_layer(r.probes))
    for name, fig in figures.items():
        atomic_savefig(fig, out / name)

    lines = [f"# psp-rl report: {', '.join(r.label for r in runs)}", ""]
    keys = [
        ("final_average_return", "final avg return"),
        ("normalized_final_average_return", "normalized"),
        ("backward_transfer", "backward transfer"),
        ("forward_transfer", "forward transfer"),
        ("parameters", "parameters"),
        ("env_steps_per_s", "env steps/s"),
        ("wall_time_s", "wall time (s)"),
    ]
    lines += ["| run | " + " | ".join(title for _, title in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in runs:
        lines.append(f"| {r.label} | " + " | ".join(_fmt((r.metrics or {}).get(k)) for k, _ in keys) + " |")
    lines += ["", "## Final return and forgetting per task", ""]
    lines += ["| run | task | final return | forgetting |", "|---|---|---|---|"]
    for r in finished:
        for task in r.tasks:
            final, forgot = r.metrics["final_returns"][task], r.metrics["forgetting"][task]
            lines.append(f"| {r.label} | {task} | {_fmt(final)} | {_fmt(forgot)} |")
    lines += _inference_lines(inferred)
    lines += ["", "## Plots", "", "![eval returns per task](returns.png)", "", "![forgetting](forgetting.png)", ""]
    lines += [f"![evaluation matrix {r.label}](matrix-{_file_label(r.label)}.png)" for r in finished]
    probed = [r for r in runs if r.probes]
    if probed:
        lines += ["", "## Retention probes (earlier tasks at the end of each later task)", ""]
        lines += ["| run | task | after | crosstalk | common | spread | margin shift (mean +- sd) | agreement |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for r in probed:
            lines += _probe_lines(r)
        lines += [""] + [f"![retention probes {r.label}](probes-{_file_label(r.label)}.png)" for r in probed]
    if aggregates:
        lines += _aggregate_lines(finished, out)
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"
