"""Reproduce the paper's supervised experiments on 8x8 digits and write experiments/results/paper-replica/.

    python -m experiments.paper_replica [--seeds 0 1] [--parts permuting width rotating] [--quick | --demo]

Permuting digits (K = 10 and 50; kinds none / binary / complex / rotation; online EWC), a
width sweep for binary, and rotating digits (context schedules); `--parts` runs some of them
(each part rewrites only its own files and its line of command.txt). Permuting digits writes
each seed's final accuracies (permuting-seeds.csv) and the means over seeds with 95% bootstrap
intervals (permuting.csv). Settings: MLP
64-256-256-10, Adam lr 1e-3, batch 128, 30 epochs per task (the paper used RMSprop 1e-4 and
1,000 steps per task on MNIST; 8x8 digits learn faster with Adam, as in the issue's prototype).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments.paper_replica.permuting import train_permuted
from experiments.paper_replica.rotating import SCHEDULES, train_rotating
from psp_rl.continual.files import atomic_savefig, atomic_write_csv, atomic_write_text
from psp_rl.reporting.aggregates import mean_interval
from psp_rl.threads import set_threads

OUT = Path(__file__).resolve().parents[1] / "results" / "paper-replica"
KINDS = ("none", "binary", "complex", "rotation")
PARTS = ("permuting", "width", "rotating")


def _final_accuracies(
    k: int, kind: str, seeds: list[int], seed_rows: list[list], **train: float | int
) -> tuple[list, np.ndarray]:
    """Train one row of the table on every seed: the summary row's cells (task-0 and mean-over-tasks
    accuracy after the last task, each a mean over seeds with its 95% bootstrap interval) and the mean
    accuracy matrix; each seed's numbers go to ``seed_rows``."""
    lam = train.get("ewc_lambda", "")
    name = "ewc" if lam else kind
    mats = [train_permuted(kind, k, seed=s, **train) for s in seeds]
    for seed, mat in zip(seeds, mats, strict=True):
        seed_rows.append([k, name, lam, seed, f"{mat[-1, 0]:.3f}", f"{mat[-1].mean():.3f}"])
    cells = []
    for values in ([m[-1, 0] for m in mats], [m[-1].mean() for m in mats]):
        est = mean_interval(values)
        cells += [f"{est.value:.3f}", f"{est.low:.3f}", f"{est.high:.3f}"]
    return [k, name, lam, *cells], np.mean(mats, axis=0)


def permuting(seeds: list[int], ks: list[int], ewc_lambdas: list[float], epochs: int) -> None:
    rows, seed_rows, curves = [], [], {}
    for k in ks:
        settings = [(kind, kind, {}) for kind in KINDS]
        settings += [(f"ewc {lam:g}", "none", {"ewc_lambda": lam}) for lam in ewc_lambdas]
        for label, kind, train in settings:
            row, mean = _final_accuracies(k, kind, seeds, seed_rows, epochs=epochs, **train)
            rows.append(row)
            curves[(k, label)] = mean[:, 0]
            if not train:
                text = io.StringIO()
                np.savetxt(text, mean, delimiter=",", fmt="%.4f")
                atomic_write_text(OUT / f"accuracy-matrix-k{k}-{kind}.csv", text.getvalue())
            print(f"K={k:<3} {label:<9} task-0 {row[3]} [{row[4]}, {row[5]}]  mean {row[6]}", flush=True)
    final = ["task0_acc_final", "task0_ci95_low", "task0_ci95_high"]
    final += ["mean_acc_final", "mean_ci95_low", "mean_ci95_high"]
    atomic_write_csv(OUT / "permuting.csv", ["K", "kind", "ewc_lambda", *final], rows)
    atomic_write_csv(
        OUT / "permuting-seeds.csv", ["K", "kind", "ewc_lambda", "seed", "task0_acc_final", "mean_acc_final"], seed_rows
    )
    fig = Figure(figsize=(5.0 * len(ks), 3.6), layout="constrained")
    for ax, k in zip(fig.subplots(1, len(ks), squeeze=False)[0], ks, strict=True):
        for (kk, label), curve in curves.items():
            if kk == k:
                ax.plot(np.arange(1, k + 1), curve, label=label)
        ax.set(title=f"permuting digits, K={k} (mean over {len(seeds)} seeds)", xlabel="tasks trained",
               ylabel="task-0 test accuracy", ylim=(0, 1))  # fmt: skip
        ax.legend(fontsize="small")
    atomic_savefig(fig, OUT / "task0-accuracy.png")


def width_sweep(seeds: list[int], widths: list[int], k: int, epochs: int) -> None:
    rows = []
    for width in widths:
        mats = [train_permuted("binary", k, hidden=width, seed=s, epochs=epochs) for s in seeds]
        mean = np.mean(mats, axis=0)
        rows.append([width, k, f"{mean[-1, 0]:.3f}", f"{mean[-1].mean():.3f}"])
        print(f"width {width:<5} K={k} binary task-0 {mean[-1, 0]:.3f}  mean {mean[-1].mean():.3f}", flush=True)
    atomic_write_csv(OUT / "width-sweep.csv", ["hidden", "K", "task0_acc_final", "mean_acc_final"], rows)
    fig = Figure(figsize=(4.5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([r[0] for r in rows], [float(r[2]) for r in rows], marker="o", label="task 0")
    ax.plot([r[0] for r in rows], [float(r[3]) for r in rows], marker="o", label="mean over tasks")
    ax.set(xscale="log", xlabel="hidden units", ylabel="final test accuracy", title=f"binary, K={k}", ylim=(0, 1))
    ax.legend()
    atomic_savefig(fig, OUT / "width-sweep.png")


def rotating(seeds: list[int], turns: int) -> None:
    rows = []
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax_online, ax_final = fig.subplots(1, 2)
    for schedule in SCHEDULES:
        runs = [train_rotating(schedule, turns=turns, seed=s) for s in seeds]
        online = np.mean([r["online"] for r in runs], axis=0)
        final = np.mean([r["final"] for r in runs], axis=0)
        rows.append([schedule, f"{online[-1]:.3f}", f"{final.mean():.3f}", f"{final.min():.3f}"])
        print(
            f"rotating {schedule:<10} online (last turn) {online[-1]:.3f}  test over angles {final.mean():.3f}",
            flush=True,
        )
        ax_online.plot(np.arange(1, turns + 1), online, marker=".", label=schedule)
        ax_final.plot(np.degrees(runs[0]["angles"]), final, label=schedule)
    ax_online.set(xlabel="turn", ylabel="online training accuracy", title="rotating digits", ylim=(0, 1))
    ax_final.set(xlabel="angle (degrees)", ylabel="test accuracy after training", ylim=(0, 1))
    ax_online.legend(fontsize="small")
    atomic_savefig(fig, OUT / "rotating.png")
    atomic_write_csv(
        OUT / "rotating.csv",
        ["schedule", "online_acc_last_turn", "test_acc_mean_over_angles", "test_acc_worst_angle"],
        rows,
    )


def _read_commands() -> dict[str, str]:
    """command.txt's line per part (``part: command  # seconds``), so a part rerun alone keeps the others'."""
    path = OUT / "command.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split(": ", 1) for line in lines if line.split(": ", 1)[0] in PARTS)


def _write_commands(commands: dict[str, str]) -> None:
    atomic_write_text(OUT / "command.txt", "".join(f"{part}: {commands[part]}\n" for part in PARTS if part in commands))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which experiments to run")
    parser.add_argument("--quick", action="store_true", help="K=10 only, 3 widths, 3 turns (a couple of minutes)")
    parser.add_argument("--demo", action="store_true", help="K=10, none vs binary vs complex, one seed (~30 s)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per task of permuted digits (default 30)")
    args = parser.parse_args()
    set_threads(1)  # the project's timing rule: one torch thread (the README's seconds assume it)
    if args.demo:
        for kind in ("none", "binary", "complex"):
            matrix = train_permuted(kind, 10, seed=args.seeds[0], epochs=args.epochs)
            task0, mean = matrix[-1, 0], matrix[-1].mean()
            print(f"{kind:<8} task-0 accuracy after 10 tasks {task0:.2f}   mean over tasks {mean:.2f}")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    parts = {
        "permuting": lambda: permuting(args.seeds, [10] if args.quick else [10, 50], [1e3, 1e5], args.epochs),
        "width": lambda: width_sweep(
            args.seeds, [128, 512, 2048] if args.quick else [128, 256, 512, 1024, 2048], 10, args.epochs
        ),
        "rotating": lambda: rotating(args.seeds, turns=3 if args.quick else 10),
    }
    commands = _read_commands()
    for part in args.parts:
        start = time.perf_counter()
        parts[part]()
        options = ["--seeds", *map(str, args.seeds), "--parts", part] + (["--quick"] if args.quick else [])
        options += [] if args.epochs == parser.get_default("epochs") else ["--epochs", str(args.epochs)]
        seconds = time.perf_counter() - start
        commands[part] = f"python -m experiments.paper_replica {' '.join(options)}  # {seconds:.0f} s"
        _write_commands(commands)
    print(f"results in {OUT}")


if __name__ == "__main__":
    main()
