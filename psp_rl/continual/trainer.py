"""The continual loop: train each task of a sequence in turn, evaluate every task as it goes.

Read top to bottom in :meth:`ContinualTrainer.run`. The loop trains in *chunks* that end at
evaluation, checkpoint and task boundaries. Every chunk starts from fresh, seeded envs and
re-seeded RNGs derived from ``(seed, stage, steps done)``, so a run resumed from a checkpoint
replays exactly what the uninterrupted run would have done: same ``eval.csv`` on the same CPU.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter

from psp_rl.continual import metrics as M
from psp_rl.continual.build import AGENT_CLASSES, build_agent, build_callbacks, build_sequence, check_agent_fits
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.config import (
    ConfigError,
    RunConfig,
    canonical_shaping,
    dump_config,
    parse_config,
    with_defaults,
)
from psp_rl.continual.io import RunLock, atomic_write_csv, atomic_write_text
from psp_rl.continual.plots import matrix_figure
from psp_rl.threads import set_threads

log = logging.getLogger(__name__)

EVAL_HEADER = ("step", "trained_task", "eval_task", "mean", "std", "episodes")


class RunInterrupted(RuntimeError):
    """The run was stopped by a signal after writing a checkpoint.

    :param signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
    """

    def __init__(self, message: str, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.signal_name = signal_name


class NumericalError(RuntimeError):
    """Training produced non-finite weights; the last good checkpoint is kept."""


class CheckpointError(ValueError):
    """No checkpoint of the run directory could be loaded, or one belongs to another config."""


@dataclass
class TrainerState:
    """Everything besides the agent that a checkpoint must hold to resume exactly."""

    fingerprint: str
    shaping_config: dict[str, Any]
    stage: int = 0
    stage_steps: int = 0
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    stage_end_steps: list[int] = field(default_factory=list)
    random_returns: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    train_steps_time: float = 0.0
    eval_capped: dict[str, int] = field(default_factory=dict)


_FAULT_COUNTS: dict[str, int] = {}


def fault_point(point: str) -> None:
    """Fault injection for the kill-and-resume tests.

    With ``PSP_RL_KILL_AT=<point>:<n>`` in the environment, the process SIGKILLs itself the
    ``n``-th time it reaches ``point`` (``learn``: an env step, ``eval``: a task evaluated,
    ``checkpoint``: inside a checkpoint write, ``task_end``: a stage finished, ``metrics``:
    before metrics.json); ``<point>:<n>:SIGINT`` sends that signal instead (the graceful-stop
    tests). Unset, this is one dictionary lookup.
    """
    target = os.environ.get("PSP_RL_KILL_AT")
    if not target or not target.startswith(point + ":"):
        return
    _FAULT_COUNTS[point] = _FAULT_COUNTS.get(point, 0) + 1
    _, count, *name = target.split(":")
    if _FAULT_COUNTS[point] == int(count):
        os.kill(os.getpid(), getattr(signal, name[0]) if name else signal.SIGKILL)


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _RandomPolicy:
    """Uniform random actions, for the 0 of normalized return."""

    def __init__(self, action_space: Any, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, obs: dict, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        return np.stack([self.action_space.sample() for _ in range(len(obs["task"]))]), None


class _LearnHook(BaseCallback):
    """Inside SB3's learn: training returns to TensorBoard, progress, stop requests, NaN watch."""

    def __init__(self, trainer: ContinualTrainer, task_name: str) -> None:
        super().__init__()
        self.trainer, self.task_name = trainer, task_name

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.trainer.writer.add_scalar(
                    f"train/{self.task_name}/return", info["episode"]["r"], self.num_timesteps
                )
        self.trainer.advance_progress()
        fault_point("learn")
        return self.trainer.keep_training()

    def _on_rollout_end(self) -> None:
        self.trainer.check_finite(self.task_name)


class ContinualTrainer:
    """Trains one agent on a task sequence; writes ``runs/<name>/`` (README lists its files).

    :param config: the validated run config.
    :param run_dir: the run directory (default ``runs/<config.name>``).
    :param resume: ``True``: continue the run in ``run_dir`` from its newest loadable checkpoint
        (a missing or empty run dir is an error: a mistyped path would silently start over);
        ``"or_start"``: continue it if there is one, else start one.
    :param overwrite: delete an existing run directory first.
    :param callbacks: :class:`ContinualCallback` hooks, run after those the config's method
        brings (``method: ewc`` brings :class:`~psp_rl.continual.ewc.OnlineEWC`).
    :param progress: show a progress bar over the whole sequence.
    :param stop_within_s: on SIGINT/SIGTERM, finish the current chunk (and save there) if its end
        is this close, else abandon it (see :meth:`keep_training`); either way ``resume`` gives the
        uninterrupted run's ``eval.csv`` and weights. A second signal stops at once.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path | None = None,
        *,
        resume: bool | Literal["or_start"] = False,
        overwrite: bool = False,
        callbacks: Sequence[ContinualCallback] = (),
        progress: bool = False,
        stop_within_s: float = 5.0,
    ) -> None:
        if resume not in (False, True, "or_start"):
            raise ConfigError(f"resume={resume!r}: expected True, False or 'or_start'")
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite: choose one")
        # Options left out take their defaults now, so config.yaml and the checkpoints record
        # what ran, whatever later releases change the defaults to.
        self.config = config = config.resolved()
        self.run_dir = Path(run_dir) if run_dir is not None else Path("runs") / config.name
        self.resume, self.overwrite, self.show_progress = resume, overwrite, progress
        self.callbacks = [*build_callbacks(config), *callbacks]
        self.sequence = build_sequence(config.sequence)
        check_agent_fits(config.agent, self.sequence)
        unknown = sorted(set(config.eval.reference_returns or {}) - set(self.sequence.names))
        if unknown:  # checked now, not after hours of training
            raise ConfigError(f"eval.reference_returns: unknown task(s) {unknown}; tasks are {self.sequence.names}")
        self.stop_requested: str | None = None
        self.stop_within_s = stop_within_s
        # (steps at its start, steps at its end, clock at its start) of the chunk being trained, and
        # whether a stop abandons it (None: no stop seen yet).
        self._chunk: tuple[int, int, float] = (0, 0, 0.0)
        self._abandon_chunk: bool | None = None
        # (task, env) of the chunks being trained: one vec env per task, so subprocess workers
        # start once per task, not once per chunk.
        self._train_env: tuple[int, VecEnv] | None = None
        self._progress: Progress | None = None
        self._last_draw = 0.0

    # ----------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Train the whole sequence; return the final metrics (also in ``metrics.json``)."""
        self._prepare_run_dir()
        lock = RunLock(self.run_dir)
        lock.acquire()
        previous_handlers = self._install_signal_handlers()
        previous_threads = set_threads(self.config.threads)
        try:
            log.info("training %r on %r; results in %s/", self.config.name, self.sequence, self.run_dir)
            log.info("watch it: tensorboard --logdir %s", self.run_dir / "tb")
            try:
                self.agent = self._resume_or_start()
                for cb in self.callbacks:
                    cb.before_training(self)
            except BaseException:
                if self._created_dir:  # failed before its first step: leave no half-made run dir
                    lock.release()
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                raise
            # Written once the checkpoint (if any) proved to match: a refused resume changes nothing.
            atomic_write_text(self.run_dir / "config.yaml", dump_config(self.config))
            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.agent.num_timesteps or None)
            self.agent.set_logger(configure(str(self.run_dir / "tb" / "sb3"), ["tensorboard"]))
            self.writer.add_text("config", f"```yaml\n{dump_config(self.config)}\n```", 0)
            with self._progress_bar():
                self._train_all_stages()
                self.advance_progress(force=True)
            return self._finish()
        finally:
            set_threads(previous_threads)
            self._restore_signal_handlers(previous_handlers)
            if self._train_env is not None:
                self._train_env[1].close()
                self._train_env = None
            if hasattr(self, "writer"):
                self.writer.close()
            lock.release()

    def _train_all_stages(self) -> None:
        schedule, cfg = self.sequence.schedule, self.config
        while self.state.stage < len(schedule):
            stage, task = self.state.stage, schedule[self.state.stage]
            spec = self.sequence[task]
            if self.state.stage_steps == 0:
                for cb in self.callbacks:
                    cb.before_task(self, stage, task)
                # The moment the context switches: the agent learns the new task id and restarts
                # its per-task schedules (exploration, replay).
                if stage > 0:  # the previous task up to this step, so the plot steps instead of ramping
                    self.writer.add_scalar(
                        "train/current_task", self.sequence.schedule[stage - 1], self.agent.num_timesteps
                    )
                self.agent.on_task_switch(task, spec.steps)
                self.writer.add_scalar("train/current_task", task, self.agent.num_timesteps)
            while self.state.stage_steps < spec.steps:
                done_before = self.state.stage_steps
                target = min(
                    (done_before // cfg.eval.every + 1) * cfg.eval.every,
                    (done_before // cfg.checkpoint.every + 1) * cfg.checkpoint.every,
                    spec.steps,
                )
                self._train_chunk(stage, task, target - done_before)
                finished = self.state.stage_steps >= spec.steps
                if finished or self.state.stage_steps // cfg.eval.every > done_before // cfg.eval.every:
                    self._evaluate(task)
                if finished:
                    self.state.stage_end_steps.append(self.agent.num_timesteps)
                    self.writer.add_figure("eval/matrix", self._matrix_figure(), self.agent.num_timesteps)
                    self.state.stage, self.state.stage_steps = stage + 1, 0
                    fault_point("task_end")
                    for cb in self.callbacks:
                        cb.after_task(self, stage, task)
                due = self.state.stage_steps // cfg.checkpoint.every > done_before // cfg.checkpoint.every
                # A stop saves at this chunk boundary (after its evaluation): where every resume starts.
                if finished or due or self.stop_requested:
                    self._checkpoint()
                if self.stop_requested:
                    raise RunInterrupted(self._interrupt_message(), self.stop_requested)
                if finished:
                    break

    def _train_chunk(self, stage: int, task: int, steps: int) -> None:
        chunk_seed = _derive_seed(self.config.seed, stage, self.state.stage_steps)
        env = self._env_for(task)
        self.agent.set_env(env)  # force_reset: every chunk starts from freshly seeded episodes ...
        self.agent.set_random_seed(chunk_seed)  # ... seeded here (SB3 seeds the env's next reset)
        if env.has_attr("set_drift_step"):  # a drifting parameter goes on from the task's steps so far
            env.env_method("set_drift_step", self.state.stage_steps // env.num_envs)
        start_steps, start = self.agent.num_timesteps, time.perf_counter()
        self._chunk = (start_steps, start_steps + steps, start)
        self.agent.learn(
            steps,
            reset_num_timesteps=False,
            callback=_LearnHook(self, self.sequence[task].name),
            progress_bar=False,
        )
        if self._abandon_chunk:  # nothing of this chunk is kept: the resume redoes it from the last checkpoint
            raise RunInterrupted(self._abandon_message(), self.stop_requested or "SIGINT")
        self._chunk = (0, 0, 0.0)  # between chunks
        self.state.train_steps_time += time.perf_counter() - start
        self.state.stage_steps += self.agent.num_timesteps - start_steps
        self.check_finite(self.sequence[task].name)

    def _env_for(self, task: int) -> VecEnv:
        """The training env of ``task``, kept across its chunks (re-seeded by each chunk)."""
        if self._train_env is not None and self._train_env[0] == task:
            return self._train_env[1]
        if self._train_env is not None:
            self._train_env[1].close()
        agent = self.config.agent
        env = self.sequence.make_vec_env(task, agent.n_envs, seed=self.config.seed, vec_env=agent.vec_env)
        self._train_env = (task, env)
        return env

    # ------------------------------------------------------------- evaluation
    def _evaluate(self, trained_task: int) -> list[dict[str, Any]]:
        """Deterministic returns on every task, from separate unclipped eval envs."""
        step, rows, cap = self.agent.num_timesteps, [], self.config.eval.max_episode_steps
        for task, spec in enumerate(self.sequence):
            env = self.sequence.make_vec_env(
                task,
                min(self.config.eval.episodes, 4),
                seed=_derive_seed(self.config.seed, 1, step, task),
                training=False,
                max_episode_steps=cap,
            )
            returns, lengths = evaluate_policy(
                self.agent,
                env,
                n_eval_episodes=self.config.eval.episodes,
                deterministic=True,
                return_episode_rewards=True,
            )
            env.close()
            capped = sum(length >= cap for length in lengths)
            if capped:  # cut short: the mean return is a floor, and the cap's time went into it
                self.state.eval_capped[spec.name] = self.state.eval_capped.get(spec.name, 0) + capped
                self.writer.add_scalar(f"eval/{spec.name}/capped_episodes", capped, step)
                log.warning("evaluation of %r: %d of %d episodes cut at %d steps", spec.name, capped, len(lengths), cap)
            row = dict(
                step=step,
                trained_task=self.sequence[trained_task].name,
                eval_task=spec.name,
                mean=float(np.mean(returns)),
                std=float(np.std(returns)),
                episodes=len(returns),
            )
            rows.append(row)
            self.writer.add_scalar(f"eval/{spec.name}/return", row["mean"], step)
            fault_point("eval")
        self.state.eval_rows.extend(rows)
        self._write_eval_csv()
        last = ", ".join(f"{r['eval_task']} {r['mean']:.0f}" for r in rows)
        if self._progress is not None:
            self._progress.update(self._task_id, last_eval=last)
        else:  # logs of long runs (a redirect, nohup, a batch job) show life
            rate = self.agent.num_timesteps / max(self.state.train_steps_time, 1e-9)
            log.info("step %d (%.0f env-steps/s) %s: %s", step, rate, self._current_task_name(), last)
        for cb in self.callbacks:
            cb.after_eval(self, rows)
        return rows

    def _random_returns(self) -> list[float]:
        out = []
        for task in range(len(self.sequence)):
            env = self.sequence.make_vec_env(
                task,
                1,
                seed=_derive_seed(self.config.seed, 2, task),
                training=False,
                max_episode_steps=self.config.eval.max_episode_steps,
            )
            policy = _RandomPolicy(env.action_space, _derive_seed(self.config.seed, 3, task))
            returns, _ = evaluate_policy(
                policy, env, n_eval_episodes=self.config.eval.episodes, return_episode_rewards=True
            )
            out.append(float(np.mean(returns)))
            env.close()
        return out

    def _write_eval_csv(self) -> None:
        rows = [[row[k] for k in EVAL_HEADER] for row in self.state.eval_rows]
        atomic_write_csv(self.run_dir / "eval.csv", EVAL_HEADER, rows)

    def eval_matrix(self) -> np.ndarray:
        """``R[stage, task]``: the evaluation at the end of each finished stage."""
        names = self.sequence.names
        matrix = np.full((len(self.state.stage_end_steps), len(names)), np.nan)
        for i, step in enumerate(self.state.stage_end_steps):
            for row in self.state.eval_rows:
                if row["step"] == step:
                    matrix[i, names.index(row["eval_task"])] = row["mean"]
        return matrix

    def _matrix_figure(self):
        schedule = self.sequence.schedule[: len(self.state.stage_end_steps)]
        stage_names = [self.sequence[t].name for t in schedule]
        return matrix_figure(self.eval_matrix(), stage_names, self.sequence.names)

    # ---------------------------------------------------------------- metrics
    def _finish(self) -> dict[str, Any]:
        self.state.wall_time += time.perf_counter() - self._clock
        self._clock = time.perf_counter()
        result = compute_metrics(
            self.eval_matrix(),
            self.sequence.schedule,
            self.sequence.names,
            self.state.random_returns,
            self._reference_returns(),
        )
        n_params = sum(p.numel() for p in self.agent.policy.parameters())
        if hasattr(self.agent, "q_net_target"):  # the target copy is not part of the model's capacity
            n_params -= sum(p.numel() for p in self.agent.q_net_target.parameters())
        result.update(
            parameters=n_params,
            wall_time_s=self.state.wall_time,
            env_steps=int(self.agent.num_timesteps),
            env_steps_per_s=self.agent.num_timesteps / max(self.state.train_steps_time, 1e-9),
            stage_end_steps=self.state.stage_end_steps,
            continual_eval_curve=M.continual_eval_curve(self.state.eval_rows),
            eval_max_episode_steps=self.config.eval.max_episode_steps,
            eval_capped_episodes=self.state.eval_capped,
        )
        fault_point("metrics")
        atomic_write_text(self.run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
        self.writer.add_hparams(
            {"context": self.config.agent.context, "method": self.config.agent.method, "seed": self.config.seed},
            {"metrics/final_average_return": result["final_average_return"]},
            run_name="hparams",
        )
        return result

    def _reference_returns(self) -> list[float | None]:
        given = self.config.eval.reference_returns or {}
        out = []
        for task, name in enumerate(self.sequence.names):
            if name in given:
                out.append(given[name])
                continue
            env = self.sequence.make_env(task)
            threshold = env.spec.reward_threshold if env.spec is not None else None
            env.close()
            out.append(threshold)
        return out

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _checkpoint(self) -> Path:
        """Save agent, replay buffer and trainer state into a temp dir, then rename it into place."""
        self.check_finite(self._current_task_name())  # never save NaNs
        self.state.wall_time += time.perf_counter() - self._clock
        self._clock = time.perf_counter()
        name = f"ckpt-{self.agent.num_timesteps:012d}-{self.state.stage:04d}"
        final = self.checkpoint_dir / name
        tmp = self.checkpoint_dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.agent.save(tmp / "model.zip")
        if self.config.checkpoint.replay_buffer and getattr(self.agent, "replay_buffer", None) is not None:
            self.agent.save_replay_buffer(tmp / "replay_buffer.pkl")
        callback_states = [cb.state_dict() for cb in self.callbacks]
        if any(callback_states):
            torch.save(callback_states, tmp / "callbacks.pt")
        fault_point("checkpoint")
        # state.json last: a checkpoint dir without it was never completed.
        atomic_write_text(tmp / "state.json", json.dumps(asdict(self.state)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self.checkpoints()[self.config.checkpoint.keep :]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def checkpoints(self) -> list[Path]:
        """Completed checkpoints, newest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        return sorted((p for p in self.checkpoint_dir.glob("ckpt-*") if p.is_dir()), reverse=True)

    def _resume_or_start(self) -> BaseAlgorithm:
        """The agent to train, fresh or from the newest loadable checkpoint; sets ``self.state``."""
        self._clock = time.perf_counter()
        for stale in self.checkpoint_dir.glob(".tmp-*") if self.checkpoint_dir.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)  # a checkpoint write that a kill interrupted
        checkpoints = self.checkpoints() if self.resume else []
        env = self._env_for(0)
        if not checkpoints:
            if self.resume and not self._created_dir:
                log.info("no checkpoint in %s yet: starting from step 0", self.checkpoint_dir)
            self.state = TrainerState(fingerprint=self.config.fingerprint(), shaping_config=self.config.shaping())
            self.state.random_returns = self._random_returns()
            self._write_eval_csv()
            return build_agent(self.config.agent, env, self.config.seed, self.config.device)
        errors = []
        for path in checkpoints:
            try:
                agent, state = self._load_checkpoint(path, env)
            except CheckpointError:
                raise
            except Exception as exc:  # a truncated or foreign file: fall back to the previous one
                errors.append(f"{path.name}: {type(exc).__name__}: {exc}")
                log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, exc)
                continue
            self.state = state
            self._write_eval_csv()  # drop rows a killed run wrote after this checkpoint
            stages = len(self.sequence.schedule)
            if state.stage >= stages:
                log.info("the run in %s had finished (%d steps): nothing to train", self.run_dir, agent.num_timesteps)
            else:
                log.info(
                    "resuming from checkpoint %s: step %d, task %d/%d (%s)",
                    path, agent.num_timesteps, state.stage + 1, stages, self._current_task_name(),
                )  # fmt: skip
            return agent
        raise CheckpointError(f"no loadable checkpoint in {str(self.checkpoint_dir)!r}: " + "; ".join(errors))

    def _load_checkpoint(self, path: Path, env: Any) -> tuple[BaseAlgorithm, TrainerState]:
        state_file = path / "state.json"
        try:
            raw = json.loads(state_file.read_text())
            state = TrainerState(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{state_file}: not a psp-rl trainer state ({exc})") from exc
        if not self.config.matches(state.shaping_config):
            saved = with_defaults(canonical_shaping(state.shaping_config))
            difference = _first_difference(
                saved, with_defaults(self.config.as_saved_by(state.shaping_config).shaping())
            )
            raise CheckpointError(f"checkpoint {str(path)!r} {difference}")
        agent = AGENT_CLASSES[self.config.agent.algo].load(path / "model.zip", env=env, device=self.config.device)
        buffer = path / "replay_buffer.pkl"
        if buffer.exists():
            agent.load_replay_buffer(buffer)
        callback_file = path / "callbacks.pt"
        if callback_file.exists():
            for cb, cb_state in zip(self.callbacks, torch.load(callback_file, weights_only=True), strict=True):
                cb.load_state_dict(cb_state)
        return agent, state

    # ------------------------------------------------------ run dir, signals
    def _prepare_run_dir(self) -> None:
        path = self.run_dir
        if path.exists() and not path.is_dir():
            raise ConfigError(f"run dir {str(path)!r}: exists and is not a directory")
        has_run = path.is_dir() and any(p.name != ".lock" for p in path.iterdir())
        if self.resume is True and not has_run:
            raise ConfigError(
                f"run dir {str(path)!r}: no run to resume (missing or empty); check the path, or pass "
                "--resume-or-start to start a run there"
            )
        # No run here before this one (missing, empty, or overwritten): one that fails before its
        # first step removes the directory again.
        self._created_dir = not has_run or self.overwrite
        if has_run and not (self.resume or self.overwrite):
            raise ConfigError(f"run dir {str(path)!r} already holds a run; pass --resume to continue it or --overwrite")
        if has_run and self.overwrite:
            RunLock(path).acquire()  # refuse to delete a run that is still going
            shutil.rmtree(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-probe"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"run dir {str(path)!r}: not writable ({exc.strerror})") from None
        saved = path / "config.yaml"
        if self.resume and saved.exists():
            before = parse_config(yaml.safe_load(saved.read_text()), source=str(saved))
            if not self.config.matches(before.shaping()):
                now = self.config.as_saved_by(before.shaping()).shaping()
                difference = _first_difference(with_defaults(before.shaping()), with_defaults(now))
                raise CheckpointError(f"run dir {str(path)!r} {difference}")
            # A run saved before an option existed resumes as it ran: the option stays unset.
            self.config = self.config.as_saved_by(before.shaping())

    def keep_training(self) -> bool:
        """Asked at every env step: False once a stop is requested and the chunk's end is further
        than ``stop_within_s`` away. A nearer end is reached first, so the stop saves at a chunk
        boundary, where a resume continues exactly; a further one abandons the chunk, and the
        resume redoes it from the last checkpoint (also exact, as after a kill)."""
        if not self.stop_requested:
            return True
        if self._abandon_chunk is None:  # decided once, when the request is first seen
            start_steps, end_steps, start = self._chunk
            done, elapsed = self.agent.num_timesteps - start_steps, time.perf_counter() - start
            if done >= 100:
                rate = done / max(elapsed, 1e-9)
            else:  # too early in the chunk to tell: the run's rate so far
                rate = self.agent.num_timesteps / self.state.train_steps_time if self.state.train_steps_time else 0.0
            remaining_s = (end_steps - self.agent.num_timesteps) / rate if rate > 0 else float("inf")
            self._abandon_chunk = remaining_s > self.stop_within_s
        return not self._abandon_chunk

    def _install_signal_handlers(self) -> dict[int, Any]:
        def request_stop(signum: int, _frame: Any) -> None:
            if self.stop_requested:  # a second Ctrl-C: stop now; the last checkpoint stays the resume point
                raise KeyboardInterrupt
            self.stop_requested = signal.Signals(signum).name

        previous = {}
        if threading.current_thread() is threading.main_thread():  # signals can only be set there
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, request_stop)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _interrupt_message(self) -> str:
        return (
            f"stopped by {self.stop_requested} at step {self.agent.num_timesteps}; checkpoint written to "
            f"{str(self.checkpoint_dir)!r}{self._approximate_note()}"
        )

    def _abandon_message(self) -> str:
        kept = self.checkpoints()
        where = f"checkpoint {kept[0].name}" if kept else "the start (no checkpoint yet)"
        return (
            f"stopped by {self.stop_requested} at step {self.agent.num_timesteps}, mid-way through a chunk; the "
            f"run resumes from {where}{self._approximate_note()}"
        )

    def _approximate_note(self) -> str:
        if self.config.checkpoint.replay_buffer or not hasattr(self.agent, "replay_buffer"):
            return ""
        return " (checkpoint.replay_buffer is false: the resume refills replay, so it is approximate)"

    def _current_task_name(self) -> str:
        """The task of the stage being trained (the last one once the sequence is done)."""
        schedule = self.sequence.schedule
        return self.sequence[schedule[min(self.state.stage, len(schedule) - 1)]].name

    def check_finite(self, task_name: str) -> None:
        """Stop on non-finite weights (a NaN/inf loss ends up there after one update)."""
        for name, param in self.agent.policy.named_parameters():
            if not torch.isfinite(param).all():
                kept = self.checkpoints()
                where = f"{str(kept[0])!r}" if kept else "none yet"
                raise NumericalError(
                    f"non-finite values in {name} while training task {task_name!r} at step "
                    f"{self.agent.num_timesteps}; last good checkpoint kept: {where}"
                )

    # --------------------------------------------------------------- progress
    def _progress_bar(self):
        if not self.show_progress:
            return nullcontext()
        rows = self.state.eval_rows[-len(self.sequence) :]  # a resumed run shows its last evaluation
        last = ", ".join(f"{r['eval_task']} {r['mean']:.0f}" for r in rows) or "-"
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("last eval: {task.fields[last_eval]}"),
            auto_refresh=False,  # redrawn from advance_progress: a refresh thread would contend for the GIL
        )
        total = sum(self.sequence[t].steps for t in self.sequence.schedule)
        self._task_id = self._progress.add_task(self.config.name, total=total, completed=0, last_eval=last)
        self.advance_progress(force=True)
        return self._progress

    def advance_progress(self, force: bool = False) -> None:
        """Redraw the progress bar at most a few times a second (it is called every env step).

        The position is read from the run's state, so it ends at the total, after a resume too.
        """
        if self._progress is None:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.25 and not force:
            return
        schedule = self.sequence.schedule
        done = sum(self.sequence[t].steps for t in schedule[: self.state.stage]) + self.state.stage_steps
        if hasattr(self, "agent") and self.state.stage < len(schedule):  # inside a chunk: its steps so far
            done += max(0, self.agent.num_timesteps - self._chunk[0]) if self._chunk[1] else 0
        stage, stages = min(self.state.stage + 1, len(schedule)), len(schedule)
        task = self._progress.tasks[0]
        self._progress.update(
            self._task_id,
            completed=min(done, task.total or done),
            description=f"task {stage}/{stages} {self._current_task_name()}",
        )
        self._progress.refresh()
        self._last_draw = now


def compute_metrics(
    matrix: np.ndarray,
    schedule: Sequence[int],
    names: Sequence[str],
    random_returns: Sequence[float],
    reference_returns: Sequence[float | None],
    scratch_returns: dict[int, float] | None = None,
) -> dict[str, Any]:
    """metrics.json's continual-learning part, from the evaluation matrix."""
    stages = matrix.shape[0]
    schedule = list(schedule)[:stages]
    random = np.asarray(random_returns, dtype=float)
    reference = np.asarray([np.nan if r is None else r for r in reference_returns], dtype=float)
    final = matrix[-1]
    norm = M.normalized(final, random, reference)
    forgetting = M.forgetting(matrix, schedule)
    return dict(
        tasks=list(names),
        stages=[names[t] for t in schedule],
        eval_matrix=matrix.tolist(),
        final_returns=dict(zip(names, final.tolist(), strict=True)),
        final_average_return=M.final_average_return(matrix),
        normalized_final_returns=dict(zip(names, [None if np.isnan(v) else float(v) for v in norm], strict=True)),
        normalized_final_average_return=None if np.isnan(norm).any() else float(np.mean(norm)),
        random_returns=dict(zip(names, random.tolist(), strict=True)),
        reference_returns=dict(zip(names, list(reference_returns), strict=True)),
        forgetting=dict(zip(names, forgetting, strict=True)),
        backward_transfer=M.backward_transfer(matrix, schedule),
        forward_transfer=M.forward_transfer(matrix, schedule, scratch_returns),
    )


def _first_difference(saved: Any, current: Any, path: str = "") -> str:
    """Which setting differs between a saved config and the current one, as a sentence."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            if saved.get(key) != current.get(key):
                return _first_difference(saved.get(key), current.get(key), f"{path}.{key}" if path else key)
    return f"was written by a different config: {path or 'config'} was {saved!r}, now {current!r}"
