"""Reproduce the paper's supervised experiments on 8x8 digits and write experiments/results/paper-replica/.

    python -m experiments.paper_replica [--seeds 0 1] [--quick | --demo]

Permuting digits (K = 10 and 50; kinds none / binary / complex / rotation; online EWC), a
width sweep for binary, and rotating digits (context schedules). Settings: MLP
64-256-256-10, Adam lr 1e-3, batch 128, 30 epochs per task (the paper used RMSprop 1e-4 and
1,000 steps per task on MNIST; 8x8 digits learn faster with Adam, as in the issue's prototype).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments.paper_replica.permuting import train_permuted
from experiments.paper_replica.rotating import SCHEDULES, train_rotating

OUT = Path(__file__).resolve().parents[1] / "results" / "paper-replica"
KINDS = ("none", "binary", "complex", "rotation")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def permuting(seeds: list[int], ks: list[int], ewc_lambdas: list[float]) -> None:
    rows, curves = [], {}
    for k in ks:
        for kind in KINDS:
            mats = [train_permuted(kind, k, seed=s) for s in seeds]
            mean = np.mean(mats, axis=0)
            curves[(k, kind)] = mean[:, 0]
            rows.append([k, kind, "", f"{mean[-1, 0]:.3f}", f"{mean[-1].mean():.3f}"])
            np.savetxt(OUT / f"accuracy-matrix-k{k}-{kind}.csv", mean, delimiter=",", fmt="%.4f")
            print(f"K={k:<3} {kind:<9} task-0 {mean[-1, 0]:.3f}  mean {mean[-1].mean():.3f}", flush=True)
        for lam in ewc_lambdas:
            mats = [train_permuted("none", k, seed=s, ewc_lambda=lam) for s in seeds]
            mean = np.mean(mats, axis=0)
            curves[(k, f"ewc {lam:g}")] = mean[:, 0]
            rows.append([k, "ewc", lam, f"{mean[-1, 0]:.3f}", f"{mean[-1].mean():.3f}"])
            print(f"K={k:<3} ewc {lam:<8g} task-0 {mean[-1, 0]:.3f}  mean {mean[-1].mean():.3f}", flush=True)
    _write_csv(OUT / "permuting.csv", ["K", "kind", "ewc_lambda", "task0_acc_final", "mean_acc_final"], rows)
    fig = Figure(figsize=(5.0 * len(ks), 3.6), layout="constrained")
    for ax, k in zip(fig.subplots(1, len(ks), squeeze=False)[0], ks, strict=True):
        for (kk, kind), curve in curves.items():
            if kk == k:
                ax.plot(np.arange(1, k + 1), curve, label=kind)
        ax.set(title=f"permuting digits, K={k}", xlabel="tasks trained", ylabel="task-0 test accuracy", ylim=(0, 1))
        ax.legend(fontsize="small")
    fig.savefig(OUT / "task0-accuracy.png", dpi=110)


def width_sweep(seeds: list[int], widths: list[int], k: int) -> None:
    rows = []
    for width in widths:
        mats = [train_permuted("binary", k, hidden=width, seed=s) for s in seeds]
        mean = np.mean(mats, axis=0)
        rows.append([width, k, f"{mean[-1, 0]:.3f}", f"{mean[-1].mean():.3f}"])
        print(f"width {width:<5} K={k} binary task-0 {mean[-1, 0]:.3f}  mean {mean[-1].mean():.3f}", flush=True)
    _write_csv(OUT / "width-sweep.csv", ["hidden", "K", "task0_acc_final", "mean_acc_final"], rows)
    fig = Figure(figsize=(4.5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([r[0] for r in rows], [float(r[2]) for r in rows], marker="o", label="task 0")
    ax.plot([r[0] for r in rows], [float(r[3]) for r in rows], marker="o", label="mean over tasks")
    ax.set(xscale="log", xlabel="hidden units", ylabel="final test accuracy", title=f"binary, K={k}", ylim=(0, 1))
    ax.legend()
    fig.savefig(OUT / "width-sweep.png", dpi=110)


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
    fig.savefig(OUT / "rotating.png", dpi=110)
    _write_csv(
        OUT / "rotating.csv",
        ["schedule", "online_acc_last_turn", "test_acc_mean_over_angles", "test_acc_worst_angle"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--quick", action="store_true", help="K=10 only, 3 widths, 3 turns (a couple of minutes)")
    parser.add_argument("--demo", action="store_true", help="K=10, none vs binary vs complex, one seed (~30 s)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per task in --demo (default 30)")
    args = parser.parse_args()
    if args.demo:
        for kind in ("none", "binary", "complex"):
            matrix = train_permuted(kind, 10, seed=args.seeds[0], epochs=args.epochs)
            task0, mean = matrix[-1, 0], matrix[-1].mean()
            print(f"{kind:<8} task-0 accuracy after 10 tasks {task0:.2f}   mean over tasks {mean:.2f}")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ks = [10] if args.quick else [10, 50]
    permuting(args.seeds, ks, ewc_lambdas=[1e3, 1e5])
    width_sweep(args.seeds, [128, 512, 2048] if args.quick else [128, 256, 512, 1024, 2048], k=10)
    rotating(args.seeds, turns=3 if args.quick else 10)
    command = "python -m experiments.paper_replica " + " ".join(sys.argv[1:])
    (OUT / "command.txt").write_text(f"{command.strip()}\n# {time.perf_counter() - start:.0f} s on a 2-core CPU\n")
    print(f"results in {OUT}")


if __name__ == "__main__":
    main()
