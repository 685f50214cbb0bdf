"""Can a superposed dynamics model name the task a few transitions come from? (issue 33, item 1)

    python experiments/probe_dynamics.py [--sequence cartpole-shift] [--seeds 0 1 2] \\
        [--out experiments/results/probe-dynamics]

For each seed, one :class:`~psp_rl.plugins.inference.dynamics.DynamicsEvidence` learns the tasks of a
sequence one after another, as an agent meets them: under task ``k``'s context, on ``--transitions``
transitions of task ``k`` only (nothing of an earlier task is kept; random play, or with ``--policy
RUN`` a finished run's agent acting with each task's own id: the states a trained agent visits), for
``--updates`` Adam steps. After every task it scores held-out windows (``--windows`` consecutive
transitions of one episode, ``--trials`` per task) of every task seen so far under every context taken so far; a window
is named right when its own task's context has the lowest error. Rows: the neural models'
variants (``context/input_layer/centring/hidden``: ``binary`` superposes the tasks' models,
``none/per_task`` shares everything past a per-task first layer, ``separate`` keeps a whole model
per context) and ``ridge``, a ridge regression per context kept as its sufficient statistics. The
crosstalk shows as the first task's accuracy falling as later tasks train.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from psp_rl.envs import get_sequence
from psp_rl.plugins.inference.dynamics import DynamicsEvidence
from psp_rl.threads import set_threads


def play_episodes(sequence, task: int, transitions: int, seed: int, agent=None) -> list[tuple[np.ndarray, ...]]:
    """Episodes of random play (or of ``agent``, sampling its actions under the task's own id), as
    ``(obs, actions, next_obs)`` arrays of their non-final steps."""
    env = sequence.make_env(task, seed=seed)
    env.action_space.seed(seed)
    episodes, total, episode = [], 0, 0
    while total < transitions:
        obs, _ = env.reset(seed=seed + episode)
        rows: list[tuple[np.ndarray, int, np.ndarray]] = []
        done = False
        while not done and total + len(rows) < transitions:
            action = env.action_space.sample() if agent is None else int(agent.predict(obs, deterministic=False)[0])
            nxt, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            if not done:  # a final step's next observation is the terminal state: kept out as in training
                rows.append((obs["obs"], action, nxt["obs"]))
            obs = nxt
        if rows:
            episodes.append(tuple(np.stack(col) for col in zip(*rows, strict=True)))
            total += len(rows)
        episode += 1
    env.close()
    return episodes


def windows(episodes, size: int, count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
    """``count`` windows of ``size`` consecutive transitions, each within one episode."""
    usable = [e for e in episodes if len(e[0]) >= size]
    out = []
    for _ in range(count):
        episode = usable[rng.integers(len(usable))]
        start = rng.integers(len(episode[0]) - size + 1)
        out.append(tuple(col[start : start + size] for col in episode))
    return out


def trained_agent(run_dir: Path):
    """The sequence and the newest checkpoint's agent of a finished run."""
    from psp_rl.config import ContinualTrainer, load_config
    from psp_rl.continual import RunDir
    from psp_rl.continual.checkpoints import MODEL

    trainer = ContinualTrainer(load_config(RunDir(run_dir).config), run_dir, resume=True)
    _, agent = trainer.store.load_newest(lambda path: trainer.agent_factory.load(path / MODEL, None))
    return trainer.sequence, agent


def probe(args: argparse.Namespace, seed: int) -> list[dict]:
    sequence, agent = trained_agent(args.policy) if args.policy else (get_sequence(args.sequence), None)
    n_tasks, rng = len(sequence), np.random.default_rng(seed)
    train = [play_episodes(sequence, t, args.transitions, seed * 1000 + t, agent) for t in range(n_tasks)]
    held = [play_episodes(sequence, t, 5 * args.transitions, seed * 1000 + 500 + t, agent) for t in range(n_tasks)]
    obs_space, action_space = sequence.spaces[0]["obs"], sequence.spaces[1]
    models = {}
    spaces = (obs_space, action_space, n_tasks)
    for variant in args.variants:  # ridge, or context/input_layer/center/hidden widths (64, 256x256 or linear)
        if variant == "ridge":  # (the first task's transitions fix the units of the errors)
            models[variant] = DynamicsEvidence(*spaces, model="ridge", warmup=args.transitions)
            continue
        context, input_layer, center, widths = variant.split("/")
        hidden = [] if widths == "linear" else [int(w) for w in widths.split("x")]
        models[variant] = DynamicsEvidence(*spaces, model="neural", warmup=args.transitions, context=context,
                                           hidden=hidden, input_layer=input_layer, center=center == "center",
                                           lr=args.lr, seed=seed)  # fmt: skip
    rows = []
    for stage in range(n_tasks):
        obs, actions, next_obs = (np.concatenate(col) for col in zip(*train[stage], strict=True))
        for model in models.values():
            model.observe(obs, actions, next_obs, context=stage)
            model.update(args.updates)
        seen = list(range(stage + 1))
        for size in args.windows:
            for task in seen:
                cases = windows(held[task], size, args.trials, rng)
                for name, model in models.items():
                    right = sum(int(np.argmin(model.errors(o, a, n, seen)) == task) for o, a, n in cases)
                    rows.append(dict(seed=seed, model=name, after_task=stage, window=size, task=task,
                                     right=right, trials=args.trials))  # fmt: skip
    return rows


def summary(rows: list[dict], n_tasks: int) -> list[str]:
    """Accuracy after the last task (every task, mean over seeds) and the first task's along the way."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = sorted({r["window"] for r in rows})
    last = n_tasks - 1
    lines = [
        "| model | window | named right after the last task (all tasks) | worst task | first task after each task |"
    ]
    lines += ["|---|---|---|---|---|"]
    for model in models:
        for size in sizes:
            mine = [r for r in rows if r["model"] == model and r["window"] == size]

            def share(after: int, task: int | None, mine: list[dict] = mine) -> float:
                cells = [r for r in mine if r["after_task"] == after and task in (None, r["task"])]
                return sum(r["right"] for r in cells) / sum(r["trials"] for r in cells)

            per_task = [share(last, t) for t in range(n_tasks)]
            first = " ".join(f"{share(stage, 0):.2f}" for stage in range(n_tasks))
            worst = int(np.argmin(per_task))
            lines.append(
                f"| {model} | {size} | {share(last, None):.3f} | {per_task[worst]:.3f} (task {worst}) | {first} |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", default="cartpole-shift")
    parser.add_argument("--policy", type=Path, help="a finished run whose agent acts (default: random play)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[
            "binary/superposed/plain/64",
            "binary/per_task/plain/64",
            "binary/per_task/center/64",
            "binary/per_task/center/256",
            "none/per_task/plain/64",
            "separate/per_task/plain/64",
            "separate/per_task/plain/linear",
            "ridge",
        ],
        help="ridge, or a neural model's context/input_layer/center|plain/hidden (64, 256x256 or linear) "
        "(none: one model shared past the input layer; separate: every layer per context)",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="the models' Adam learning rate")
    parser.add_argument("--transitions", type=int, default=2000, help="training transitions per task")
    parser.add_argument("--updates", type=int, default=2000, help="Adam steps per task")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--trials", type=int, default=200, help="held-out windows per task")
    parser.add_argument("--out", type=Path, help="write table.csv and summary.md here")
    args = parser.parse_args(argv)
    set_threads(1)
    rows = [row for seed in args.seeds for row in probe(args, seed)]
    n_tasks = len(trained_agent(args.policy)[0]) if args.policy else len(get_sequence(args.sequence))
    play = f"the agent of {args.policy}" if args.policy else f"random play on {args.sequence}"
    lines = [f"# Naming the task from a window of transitions ({play}, seeds {args.seeds})", ""]
    lines += summary(rows, n_tasks)
    lines += ["", "Command: `python " + " ".join(["experiments/probe_dynamics.py", *(argv or sys.argv[1:])]) + "`", ""]
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "table.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (args.out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
