"""``psp-rl report``: markdown and PNG plots from one or several run directories."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from psp_rl.continual.io import atomic_write_text
from psp_rl.continual.plots import forgetting_figure, matrix_figure, probes_figure, returns_figure


class RunData:
    """What a finished run left: eval rows, metrics and its name."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        eval_csv, metrics_json = self.run_dir / "eval.csv", self.run_dir / "metrics.json"
        for path in (eval_csv, metrics_json):
            if not path.is_file():
                raise FileNotFoundError(f"{str(path)!r}: missing; is {str(self.run_dir)!r} a finished psp-rl run?")
        with eval_csv.open() as f:
            self.rows = list(csv.DictReader(f))
        self.metrics: dict[str, Any] = json.loads(metrics_json.read_text())
        self.label = self.run_dir.name
        probes_csv = self.run_dir / "probes.csv"
        self.probes: list[dict[str, str]] = []
        if probes_csv.is_file():
            with probes_csv.open() as f:
                self.probes = list(csv.DictReader(f))

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out: dict[str, tuple[list[int], list[float]]] = {}
        for row in self.rows:
            steps, means = out.setdefault(row["eval_task"], ([], []))
            steps.append(int(row["step"]))
            means.append(float(row["mean"]))
        return {task: (np.array(s), np.array(m)) for task, (s, m) in out.items()}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _probe_lines(run: RunData) -> list[str]:
    """One table row per (earlier task, later stage) from the acting output's probes."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    for row in run.probes:
        if row["layer"] == "output":
            table.setdefault((row["probe_task"], row["trained_task"]), {})[row["quantity"]] = float(row["value"])
    lines = []
    for (task, after), q in table.items():
        shift = f"{q.get('margin_shift_mean', float('nan')):.3g} +- {q.get('margin_shift_spread', float('nan')):.3g}"
        cells = [_fmt(q.get(k)) for k in ("crosstalk", "crosstalk_common", "crosstalk_spread")]
        lines.append(
            f"| {run.label} | {task} | {after} | {' | '.join(cells)} | {shift} | {_fmt(q.get('greedy_agreement'))} |"
        )
    return lines


def write_report(run_dirs: list[str | Path], out_dir: str | Path | None = None) -> Path:
    """Write ``report.md`` and its PNGs into ``out_dir`` (default: the first run dir)."""
    runs = [RunData(d) for d in run_dirs]
    out = Path(out_dir) if out_dir is not None else runs[0].run_dir
    out.mkdir(parents=True, exist_ok=True)
    tasks = runs[0].metrics["tasks"]
    boundaries = runs[0].metrics.get("stage_end_steps", [])

    figures = {
        "returns.png": returns_figure({r.label: r.curves() for r in runs}, tasks, boundaries),
        "forgetting.png": forgetting_figure({r.label: r.metrics["forgetting"] for r in runs}, tasks),
    }
    for r in runs:
        matrix = np.array(r.metrics["eval_matrix"], dtype=float)
        figures[f"matrix-{r.label}.png"] = matrix_figure(matrix, r.metrics["stages"], tasks)
        if r.probes:
            figures[f"probes-{r.label}.png"] = probes_figure(r.probes)
    for name, fig in figures.items():
        tmp = out / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=110)
        tmp.replace(out / name)

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
        lines.append(f"| {r.label} | " + " | ".join(_fmt(r.metrics.get(k)) for k, _ in keys) + " |")
    lines += ["", "## Final return and forgetting per task", ""]
    lines += ["| run | task | final return | forgetting |", "|---|---|---|---|"]
    for r in runs:
        for task in tasks:
            final, forgot = r.metrics["final_returns"][task], r.metrics["forgetting"][task]
            lines.append(f"| {r.label} | {task} | {_fmt(final)} | {_fmt(forgot)} |")
    lines += ["", "## Plots", "", "![eval returns per task](returns.png)", "", "![forgetting](forgetting.png)", ""]
    lines += [f"![evaluation matrix {r.label}](matrix-{r.label}.png)" for r in runs]
    probed = [r for r in runs if r.probes]
    if probed:
        lines += ["", "## Retention probes (earlier tasks at the end of each later task)", ""]
        lines += ["| run | task | after | crosstalk | common | spread | margin shift (mean +- sd) | agreement |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for r in probed:
            lines += _probe_lines(r)
        lines += [""] + [f"![retention probes {r.label}](probes-{r.label}.png)" for r in probed]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"
