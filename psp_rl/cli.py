"""The ``psp-rl`` command: train, evaluate, report, list.

User errors (bad config, bad arguments, a run dir in use) print one line naming the field and
exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psp_rl.envs import TaskSequence

EPILOG = """examples:
  psp-rl list                                           shipped configs, sequences, agents, context kinds
  psp-rl train quickstart                               train the main job (results in runs/quickstart/)
  psp-rl train experiments/configs/quickstart.yaml      the same from a config file
  psp-rl train CONFIG --seed 3 --run-dir runs/q-seed3   another seed, another directory
  psp-rl train CONFIG --set agent.learning_rate=1e-3 sequence.steps=50000
                                                        change settings without editing the file
  psp-rl train CONFIG --resume                          continue a stopped or killed run
  psp-rl evaluate runs/quickstart                       re-evaluate the final model on every task
  psp-rl evaluate RUN --tasks breakout pong --video videos
                                                        two past games' returns, and an MP4 of each
  psp-rl report runs/quickstart runs/finetune           plots + report.md comparing runs
  psp-rl sweep CONFIG --methods psp-binary finetune --seeds 0 1 2
                                                        every method x seed on Ray, then the retention table
  tensorboard --logdir runs                             watch returns while it trains
"""


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


CONFIG_HELP = "a shipped config's name (psp-rl list) or a YAML file"
SET_HELP = (
    "KEY=VALUE settings over the config's, keys as in the config file (agent.learning_rate=1e-3 "
    "sequence.steps=50000 eval.every=5000); values are YAML scalars; recorded in the run's config.yaml, "
    "and a resume must repeat them"
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from psp_rl import __version__

    parts = []
    for package in ("torch", "stable-baselines3", "gymnasium", "ale-py"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} missing")
    return f"psp-rl {__version__} ({', '.join(parts)})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="psp-rl",
        description="Continual reinforcement learning with Parameter Superposition (PSP): one network stores "
        "one model per task, switching context at each environment change.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train an agent on a task sequence from a YAML config")
    train.add_argument("config", help=CONFIG_HELP)
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=SET_HELP)
    train.add_argument("--run-dir", type=Path, help="where results go (default: runs/<config name>)")
    group = train.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in the run dir (it must exist)")
    group.add_argument(
        "--resume-or-start", action="store_true", help="continue the run in the run dir, or start one if there is none"
    )
    group.add_argument("--overwrite", action="store_true", help="delete an existing run in the run dir first")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="evaluate a run's latest checkpoint on every task")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    evaluate.add_argument("--seed", type=int, default=12345, help="seed of the evaluation envs")
    evaluate.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks, by name (default: all)")
    evaluate.add_argument(
        "--video", type=Path, metavar="DIR", help="also write DIR/<task>.mp4: one episode of each task (needs moviepy)"
    )

    report = sub.add_parser("report", help="write report.md and PNG plots for one or several runs")
    report.add_argument("run_dirs", type=Path, nargs="+", help="one run, or several to compare on one plot")
    report.add_argument("--out", type=Path, help="output directory (default: the first run dir)")

    sweep = sub.add_parser(
        "sweep",
        help="every (method, seed) of a config as a Ray trial, resumable; then the retention table",
        description="Each trial trains into OUT/runs/<method>-s<seed>/ (finished ones are reused, unfinished ones "
        "resume); a failed trial is retried once, then reported with its log (OUT/logs/). Running the same "
        "command again completes a stopped sweep.",
    )
    sweep.add_argument("config", help=f"the base config: {CONFIG_HELP}")
    sweep.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=SET_HELP)
    sweep.add_argument("--methods", nargs="+", help="default: every built-in method and every variant")
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: 0 1 2")
    sweep.add_argument("--variants", type=Path, help="YAML: method name -> agent settings over the config's")
    sweep.add_argument("--out", type=Path, help="default: runs/sweep-<config name>")
    sweep.add_argument("--address", help="a running Ray cluster (HOST:PORT or ray://HOST:PORT); default: local")
    sweep.add_argument("--max-parallel", type=int, help="trials at once (default: cores / the config's threads)")
    sweep.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray reserves per trial (default 1)")
    sweep.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs Ray reserves per trial (default 0)")
    sweep.add_argument(
        "--backend",
        choices=("auto", "ray", "processes"),
        default="auto",
        help="where trials run: Ray, or local processes without Ray (default auto: Ray where it is installed)",
    )
    sweep.add_argument("--finished-only", action="store_true", help="tabulate finished trials only, train none")

    sub.add_parser("list", help="list shipped configs, built-in sequences, agents and context kinds")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from psp_rl.config import ContinualTrainer, load_config
    from psp_rl.config.loading import find_config
    from psp_rl.errors import RunInterrupted

    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed {args.seed}: expected a non-negative int")
    overrides = {"seed": args.seed} if args.seed is not None else None
    config = load_config(find_config(args.config), overrides, args.set)
    trainer = ContinualTrainer(
        config,
        args.run_dir,
        resume="or_start" if args.resume_or_start else args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    settings = f" --set {' '.join(args.set)}" if args.set else ""
    resume = f"psp-rl train {args.config}{settings} --run-dir {trainer.run_dir} --resume"
    try:
        metrics = trainer.run()
    except RunInterrupted as exc:
        raise RunInterrupted(f"{exc}; resume with: {resume}", exc.signal_name) from None
    except KeyboardInterrupt:  # a second Ctrl-C
        message = f"aborted; the last checkpoint is where it resumes: {resume}"
        raise RunInterrupted(message, "SIGINT") from None
    print(f"final average return {metrics['final_average_return']:.1f}; per task:")
    for task, value in metrics["final_returns"].items():
        forgot = metrics["forgetting"][task]
        print(f"  {task:<16} {value:8.1f}   forgetting {'-' if forgot is None else f'{forgot:.1f}'}")
    print(f"results: {trainer.run_dir}/eval.csv, metrics.json; plots: psp-rl report {trainer.run_dir}")
    print(f"tensorboard --logdir {trainer.run_dir}/tb")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from psp_rl.config import ContinualTrainer, load_config
    from psp_rl.continual import RunDir, evaluate_tasks
    from psp_rl.continual.checkpoints import MODEL
    from psp_rl.continual.files import atomic_write_csv
    from psp_rl.continual.video import check_video_support, record_videos
    from psp_rl.errors import CheckpointError
    from psp_rl.threads import set_threads

    if args.episodes <= 0:
        raise UserError(f"--episodes {args.episodes}: expected a positive int")
    if args.video is not None:
        check_video_support()  # before a model loads
    paths = RunDir(args.run_dir)
    config = load_config(paths.config)
    trainer = ContinualTrainer(config, args.run_dir, resume=True)
    if not trainer.checkpoints():
        raise UserError(f"run dir {str(args.run_dir)!r}: no checkpoint to evaluate")
    tasks = _task_ids(trainer.sequence, args.tasks)

    def unreadable(path: Path, _: Exception) -> None:
        print(f"psp-rl: checkpoint {path.name} is unreadable; trying the previous one", file=sys.stderr)

    try:  # newest first; a truncated one falls back, as a resume does
        path, model = trainer.store.load_newest(lambda path: trainer.agent_factory.load(path / MODEL, None), unreadable)
    except CheckpointError as exc:
        raise UserError(f"run dir {str(args.run_dir)!r}: {exc}") from None
    print(f"{path.name}: {config.eval.act} return over {args.episodes} episodes (eval.act)")
    set_threads(config.threads)
    cap = config.eval.max_episode_steps
    trainer.store.load_callbacks(path, trainer.callbacks)  # hidden task ids: the inference's contexts
    acting = dict(
        seed=lambda task: args.seed + task,
        max_episode_steps=cap,
        deterministic=config.eval.act == "greedy",
        wrap=lambda env, task: trainer.wrap_env(env, task, training=False),  # as the run evaluates
    )
    results = evaluate_tasks(model, trainer.sequence, episodes=args.episodes, tasks=tasks, **acting)
    for result in results:
        note = f"   ({result.capped} episodes cut at {cap} steps: eval.max_episode_steps)" if result.capped else ""
        print(f"  {result.task:<16} {result.mean:8.1f} +- {result.std:.1f}{note}")
    rows = [[r.task, r.mean, r.std, len(r.returns)] for r in results]
    atomic_write_csv(paths.evaluate_csv, ["eval_task", "mean", "std", "episodes"], rows)
    print(f"written: {paths.evaluate_csv}")
    if args.video is not None:
        for video in record_videos(model, trainer.sequence, tasks, args.video, **acting):
            print(f"written: {video.path} ({video.steps} steps, return {video.episode_return:.1f})")
    return 0


def _task_ids(sequence: TaskSequence, names: list[str] | None) -> list[int]:
    """The ids of the tasks ``--tasks`` names (all by default); one line naming an unknown one."""
    if names is None:
        return list(range(len(sequence)))
    unknown = [name for name in names if name not in sequence.names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sequence.names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"--tasks {unknown[0]!r}: not a task of this run; {hint}its tasks: {', '.join(sequence.names)}")
    return [sequence.names.index(name) for name in dict.fromkeys(names)]


def _cmd_report(args: argparse.Namespace) -> int:
    from psp_rl.reporting.report import write_report

    try:
        path = write_report(args.run_dirs, args.out)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    print(f"report written: {path}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import yaml

    from psp_rl.config.loading import find_config, load_config, read_config
    from psp_rl.continual.files import atomic_write_text
    from psp_rl.reporting.retention_table import write_tables
    from psp_rl.sweep.runner import METHODS, finished_trials, method_table, run_sweep

    path = find_config(args.config)
    load_config(path, settings=args.set)  # the base config itself must be valid (one-line error if not)
    base = read_config(path, args.set)
    overlays = {}
    if args.variants is not None:
        if not args.variants.is_file():
            raise UserError(f"--variants {str(args.variants)!r}: not found")
        overlays = yaml.safe_load(args.variants.read_text()) or {}
        if not isinstance(overlays, dict) or not all(isinstance(v, dict) for v in overlays.values()):
            raise UserError(f"--variants {str(args.variants)!r}: expected a mapping: method name -> agent settings")
    methods = args.methods or [*METHODS, *overlays]
    out = args.out or Path("runs") / f"sweep-{base['name']}"
    if args.finished_only:
        method_table(methods, overlays)
        outcome = finished_trials(out, methods, args.seeds)
    else:
        outcome = run_sweep(
            base,
            methods,
            args.seeds,
            out,
            overlays=overlays,
            address=args.address,
            max_parallel=args.max_parallel,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            backend=args.backend,
        )
    for trial, (error, log) in outcome.failures.items():
        print(f"psp-rl: trial {trial.name} failed twice: {error} (log: {log})", file=sys.stderr)
    if not outcome.results:
        raise UserError(f"sweep {str(out)!r}: no finished trial to tabulate")
    print("\n".join(write_tables(outcome.results, outcome.run_dirs, out)))
    atomic_write_text(out / "command.txt", "psp-rl " + " ".join(args.argv) + "\n")
    print(f"written: {out}/table.csv, per_task.csv, table.md, aggregates.md, report.md, command.txt")
    return 1 if outcome.failures else 0


def _cmd_list(_: argparse.Namespace) -> int:
    from psp_rl.agents import AGENTS
    from psp_rl.config.agent import METHODS
    from psp_rl.config.loading import shipped_configs
    from psp_rl.contexts import CONTEXT_KINDS
    from psp_rl.envs import get_sequence, list_sequences

    print("shipped configs (psp-rl train NAME):")
    for name, path in sorted(shipped_configs().items()):
        print(f"  {name:<24} {_first_comment(path)}")
    print("sequences (sequence.name), their tasks (sequence.tasks) and action spaces:")
    for name, description in list_sequences().items():
        print(f"  {name:<20} {description}")
        try:
            sequence = get_sequence(name)
            detail = f"tasks: {', '.join(sequence.names)}; actions {sequence.spaces[1]}"
        except ImportError as exc:  # an optional dependency (MinAtar) that is not installed
            detail = str(exc)
        print(f"  {'':<20} {detail}")
    print("agents (agent.algo):  " + ", ".join(f"{k} ({v.__name__})" for k, v in AGENTS.items()))
    print("methods (agent.method):")
    for name, meaning in METHODS.items():
        print(f"  {name:<20} {meaning}")
    print("context kinds (agent.network.context):  " + ", ".join(CONTEXT_KINDS))
    return 0


def _first_comment(path: Path) -> str:
    """A config file's first comment line: what it runs."""
    line = next((line for line in path.read_text().splitlines() if line.startswith("#")), "# -")
    text = line.lstrip("# ").strip()
    return text if len(text) <= 90 else text[:87] + "..."


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "report": _cmd_report,
    "sweep": _cmd_sweep,
    "list": _cmd_list,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with a usage line on bad arguments
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING, format="psp-rl: %(message)s")
    logging.getLogger("psp_rl").setLevel(logging.INFO)  # the run's own news: start, resume, evaluations
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from psp_rl.errors import CheckpointError, ConfigError, NumericalError, RunDirBusy, RunInterrupted

    try:
        return COMMANDS[args.command](args)
    except (UserError, ConfigError, CheckpointError, RunDirBusy, ImportError) as exc:
        print(f"psp-rl: error: {exc}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(f"psp-rl: {exc}", file=sys.stderr)
        return 143 if exc.signal_name == "SIGTERM" else 130
    except KeyboardInterrupt:  # a command without its own stop handling (evaluate, report, list)
        print("psp-rl: interrupted", file=sys.stderr)
        return 130
    except NumericalError as exc:
        print(f"psp-rl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
