"""``psp-rl report``: markdown and PNG plots from one or several run directories."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from psp_rl.continual.io import atomic_write_text
from psp_rl.continual.plots import forgetting_figure, matrix_figure, returns_figure


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
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"
