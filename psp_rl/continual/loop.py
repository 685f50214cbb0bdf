"""The continual loop: train each task of a sequence in turn, evaluate every task as it goes.

Read top to bottom in :meth:`ContinualLoop.run`. The loop is handed its parts (an agent factory,
the task sequence, the run directory, callbacks, evaluation and checkpoint settings) and trains in
*chunks* that end at evaluation, checkpoint and task boundaries. Every chunk starts from freshly
seeded envs and re-seeded RNGs derived from ``(seed, stage, steps done)``, so a run resumed from a
checkpoint replays exactly what the uninterrupted run would have done: same ``eval.csv`` on the
same CPU.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter

import psp_rl.continual.metrics as M
from psp_rl.agents.task_switch import TaskSwitchMixin, relabel_last_observation
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.checkpoints import CheckpointStore, callback_names
from psp_rl.continual.evaluation import evaluate_tasks, reference_returns
from psp_rl.continual.faults import fault_point
from psp_rl.continual.files import atomic_write_csv, atomic_write_text
from psp_rl.continual.learn_hook import LearnHook
from psp_rl.continual.parts import AgentFactory, RunIdentity, SettingsIdentity
from psp_rl.continual.progress import SequenceProgress
from psp_rl.continual.resume import ResumableRun, check_resume
from psp_rl.continual.run_dir import RunDir
from psp_rl.continual.seeds import SCHEMES, SEED_SCHEME, Stream, stream_seed
from psp_rl.continual.settings import CheckpointConfig, EvalConfig
from psp_rl.continual.stopping import GracefulStop
from psp_rl.envs import TaskSequence
from psp_rl.envs.episodes import carry_episodes, check_vec_env_carries, restore_vec_episodes
from psp_rl.envs.factories import software_versions
from psp_rl.errors import ConfigError, NumericalError, RunInterrupted
from psp_rl.policies import trained_parameters
from psp_rl.threads import set_threads

log = logging.getLogger(__name__)

EVAL_HEADER = ("step", "trained_task", "eval_task", "mean", "std", "episodes")


class ContinualLoop(ResumableRun):
    """Trains one agent on a task sequence; writes the run directory (see :mod:`~psp_rl.continual.run_dir`).

    :param agent: builds the agent, or loads it from a checkpoint on resume.
    :param sequence: the tasks, in the order they are trained.
    :param run_dir: where results and checkpoints go.
    :param identity: what a checkpoint must match to be resumed, written to ``config.yaml``
        (default: :class:`~psp_rl.continual.parts.SettingsIdentity` of the seed, the sequence and
        ``agent.settings()``).
    :param callbacks: :class:`ContinualCallback` hooks, called in order; their state is saved in
        every checkpoint under each one's ``name``.
    :param eval: evaluation cadence, episodes, cap and reference returns.
    :param checkpoint: checkpoint cadence, how many to keep, whether to save the replay buffer.
    :param seed: the run's seed (envs, agent, evaluation and callbacks derive theirs from it).
    :param seed_scheme: how seeds derive from ``seed`` (:mod:`~psp_rl.continual.seeds`; 1 for runs
        saved before schemes were recorded); part of the default identity when not 1.
    :param n_envs: training envs stepped together.
    :param vec_env: ``"dummy"`` (in this process), ``"subproc"`` (a worker process per env) or ``"ale"``
        (Atari tasks: ale-py's C++ vector env).
    :param env_threads: ``"ale"``: C++ threads stepping the training envs (0: one per core).
    :param threads: torch threads while running (``"auto"``: torch's default).
    :param resume: ``True``: continue the run in ``run_dir`` from its newest loadable checkpoint
        (a missing or empty run dir is an error: a mistyped path would silently start over);
        ``"or_start"``: continue it if there is one, else start one.
    :param overwrite: delete an existing run directory first.
    :param progress: show a progress bar over the whole sequence.
    :param stop_within_s: on SIGINT/SIGTERM, finish the current chunk (and save there) if its end
        is this close, else abandon it (see :meth:`keep_training`); either way ``resume`` gives the
        uninterrupted run's ``eval.csv`` and weights. A second signal stops at once.
    """

    def __init__(
        self,
        agent: AgentFactory,
        sequence: TaskSequence,
        run_dir: str | Path,
        *,
        identity: RunIdentity | None = None,
        callbacks: Sequence[ContinualCallback] = (),
        eval: EvalConfig | None = None,  # named as the config section (shadows the builtin here only)
        checkpoint: CheckpointConfig | None = None,
        seed: int = 0,
        seed_scheme: int = SEED_SCHEME,
        n_envs: int = 1,
        vec_env: str = "dummy",
        env_threads: int = 1,
        threads: int | Literal["auto"] = 1,
        resume: bool | Literal["or_start"] = False,
        overwrite: bool = False,
        progress: bool = False,
        stop_within_s: float = 5.0,
    ) -> None:
        check_resume(resume)
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite: choose one")
        self.agent_factory, self.sequence, self.seed = agent, sequence, seed
        self.run_dir, self.paths = Path(run_dir), RunDir(run_dir)
        # Tasks that change mid-episode: episodes go on across switches and chunks (envs/episodes.py).
        self.carry_episodes = sequence.switch == "mid_episode"
        try:
            check_vec_env_carries(sequence.switch, vec_env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        stream = {"name": sequence.name, "tasks": sequence.names, "schedule": list(sequence.schedule)}
        if self.carry_episodes:
            stream["switch"] = sequence.switch
        if seed_scheme not in SCHEMES:
            raise ConfigError(f"seed_scheme={seed_scheme!r}: expected one of {list(SCHEMES)}")
        self.seed_scheme = seed_scheme
        settings = {"seed": seed, "sequence": stream, "agent": agent.settings()}
        if seed_scheme != 1:  # runs saved before the scheme was recorded drew scheme 1's seeds
            settings["seed_scheme"] = seed_scheme
        self.identity = identity or SettingsIdentity(settings)
        self.callbacks = list(callbacks)
        try:
            callback_names(self.callbacks)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.eval = eval or EvalConfig()
        checkpoint = checkpoint or CheckpointConfig()
        self.checkpoint_every = checkpoint.every
        self.store = CheckpointStore(
            self.paths.checkpoints, keep=checkpoint.keep, replay_buffer=checkpoint.replay_buffer
        )
        self.n_envs, self.vec_env, self.env_threads, self.threads = n_envs, vec_env, env_threads, threads
        unknown = sorted(set(self.eval.reference_returns or {}) - set(sequence.names))
        if unknown:  # checked now, not after hours of training
            raise ConfigError(f"eval.reference_returns: unknown task(s) {unknown}; tasks are {sequence.names}")
        self.resume, self.overwrite, self.show_progress = resume, overwrite, progress
        self.stop = GracefulStop(stop_within_s)
        # (steps at its start, steps at its end, clock at its start) of the chunk being trained.
        self._chunk: tuple[int, int, float] = (0, 0, 0.0)
        # (task, env) of the chunks being trained: one vec env per task, so subprocess workers
        # start once per task, not once per chunk.
        self._train_env: tuple[int, VecEnv] | None = None
        # Episodes a resumed run was in (switch='mid_episode'), put into the first env it trains.
        self._saved_episodes: list[dict[str, Any]] | None = None
        self._progress: SequenceProgress | None = None
        # Set by run(): the agent (fresh or resumed), the loop's state and the TensorBoard writer.
        self.agent: BaseAlgorithm | None = None
        self.writer: SummaryWriter | None = None

    # ----------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Train the whole sequence; return the final metrics (also in ``metrics.json``)."""
        self._created_dir = self.paths.prepare(self.resume, self.overwrite)
        lock = self.paths.lock()
        lock.acquire()
        self.stop.install()
        previous_threads = set_threads(self.threads)
        try:
            log.info("training %r on %r; results in %s/", self.name, self.sequence, self.run_dir)
            log.info("watch it: tensorboard --logdir %s", self.paths.tensorboard)
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
            atomic_write_text(self.paths.config, self.identity.to_yaml())
            self.writer = SummaryWriter(str(self.paths.tensorboard), purge_step=self.agent.num_timesteps or None)
            self.agent.set_logger(configure(str(self.paths.tensorboard / "sb3"), ["tensorboard"]))
            self.writer.add_text("config", f"```yaml\n{self.identity.to_yaml()}\n```", 0)
            with self._progress_bar():
                self._train_all_stages()
                self.advance_progress(force=True)
            return self._finish()
        finally:
            set_threads(previous_threads)
            self.stop.restore()
            if self._train_env is not None:
                self._train_env[1].close()
                self._train_env = None
            if self.writer is not None:
                self.writer.close()
            lock.release()

    @property
    def name(self) -> str:
        """The run's name: its directory's."""
        return self.run_dir.name

    def _train_all_stages(self) -> None:
        schedule, every_eval, every_ckpt = self.sequence.schedule, self.eval.every, self.checkpoint_every
        while self.state.stage < len(schedule):
            stage, task = self.state.stage, schedule[self.state.stage]
            spec = self.sequence[task]
            if self.state.stage_steps == 0:
                self._start_task(stage, task, spec.steps)
            while self.state.stage_steps < spec.steps:
                done_before = self.state.stage_steps
                target = min(
                    (done_before // every_eval + 1) * every_eval,
                    (done_before // every_ckpt + 1) * every_ckpt,
                    spec.steps,
                )
                self._train_chunk(stage, task, target - done_before)
                finished = self.state.stage_steps >= spec.steps
                if finished or self.state.stage_steps // every_eval > done_before // every_eval:
                    rows = self._evaluate(task)
                if finished:
                    # Every callback is asked (a list, not any()'s short cut); a changed agent is evaluated again.
                    if any([cb.at_stage_end(self, stage, task, rows) for cb in self.callbacks]):
                        self._evaluate_again(task)
                    self.state.stage_end_steps.append(self.agent.num_timesteps)
                    self.writer.add_figure("eval/matrix", self._matrix_figure(), self.agent.num_timesteps)
                    self.state.stage, self.state.stage_steps = stage + 1, 0
                    fault_point("task_end")
                    for cb in self.callbacks:
                        cb.after_task(self, stage, task)
                due = self.state.stage_steps // every_ckpt > done_before // every_ckpt
                # A stop saves at this chunk boundary (after its evaluation): where every resume starts.
                if finished or due or self.stop.requested:
                    self._checkpoint()
                if self.stop.requested:
                    raise RunInterrupted(self._interrupt_message(), self.stop.requested)
                if finished:
                    break

    def stream_seed(self, stream: Stream, *parts: int) -> int:
        """The seed of ``stream`` at ``parts`` under the run's seed and seed scheme."""
        return stream_seed(self.seed, stream, *parts, scheme=self.seed_scheme)

    def _start_task(self, stage: int, task: int, steps: int) -> None:
        for cb in self.callbacks:
            cb.before_task(self, stage, task)
        if stage > 0:  # the previous task up to this step, so the plot steps instead of ramping
            self.writer.add_scalar("train/current_task", self.sequence.schedule[stage - 1], self.agent.num_timesteps)
        # A continual agent restarts its per-task schedules (exploration, replay); the context
        # itself follows the task id that every observation carries, so a plain SB3 agent works too.
        # Hidden task ids: no boundary reaches the agent (task inference calls the hook instead).
        if isinstance(self.agent, TaskSwitchMixin) and not self.sequence.hidden:
            self.agent.on_task_start(task, steps, task_env=self.task_env)
        elif hasattr(self.agent, "on_task_start") and not self.sequence.hidden:
            self.agent.on_task_start(task, steps)
        self.writer.add_scalar("train/current_task", task, self.agent.num_timesteps)

    def _train_chunk(self, stage: int, task: int, steps: int) -> None:
        chunk_seed = self.stream_seed(Stream.CHUNK, stage, self.state.stage_steps)
        env = self._env_for(task)
        if self._saved_episodes is not None:
            restore_vec_episodes(env, self._saved_episodes)
            self._saved_episodes = None
        if self.carry_episodes and not self.sequence.hidden:
            relabel_last_observation(self.agent, task)  # a carried episode's next action sees its new task
        # Every chunk starts from freshly seeded episodes (force_reset), seeded below (SB3 seeds
        # the env's next reset), unless episodes go on across chunks (switch='mid_episode').
        self.agent.set_env(env, force_reset=not self.carry_episodes)
        self.agent.set_random_seed(chunk_seed)
        if env.has_attr("set_drift_step"):  # a drifting parameter goes on from the task's steps so far
            env.env_method("set_drift_step", self.state.stage_steps, env.num_envs)
        start_steps, start = self.agent.num_timesteps, time.perf_counter()
        self._chunk = (start_steps, start_steps + steps, start)
        self.agent.learn(
            steps, reset_num_timesteps=False, callback=LearnHook(self, self.sequence[task].name), progress_bar=False
        )
        if self.stop.abandon_chunk:  # nothing of this chunk is kept: the resume redoes it from the last checkpoint
            raise RunInterrupted(self._abandon_message(), self.stop.requested or "SIGINT")
        self._chunk = (0, 0, 0.0)  # between chunks
        self.state.train_steps_time += time.perf_counter() - start
        self.state.stage_steps += self.agent.num_timesteps - start_steps
        self.check_finite(self.sequence[task].name)

    def _env_for(self, task: int) -> VecEnv:
        """The training env of ``task``, kept across its chunks (re-seeded by each chunk)."""
        if self._train_env is not None and self._train_env[0] == task:
            return self._train_env[1]
        options = dict(seed=self.seed, vec_env=self.vec_env, env_threads=self.env_threads)
        env = self.wrap_env(self.sequence.make_vec_env(task, self.n_envs, **options), task)
        if self._train_env is not None:
            if self.carry_episodes and self._saved_episodes is None:  # (a resume restores its own)
                carry_episodes(self._train_env[1].unwrapped.envs, env.unwrapped.envs)
            self._train_env[1].close()
        self._train_env = (task, env)
        return env

    def task_env(self, task: int) -> VecEnv:
        """A fresh one-env vec env of ``task``, as evaluation builds it, for an agent that acts in a
        finished task at the switch (PSP-DQN's ``distil_visits``); seeded by the run's seed and
        step, so a resume acts in it the same way."""
        seed = self.stream_seed(Stream.TASK_ENV, self.agent.num_timesteps, task)
        env = self.sequence.make_vec_env(
            task, 1, seed=seed, training=False, max_episode_steps=self.eval.max_episode_steps
        )
        return self._wrap_eval_env(env, task)

    # ------------------------------------------------------------- evaluation
    def _evaluate(self, trained_task: int) -> list[dict[str, Any]]:
        """Returns on every task (greedy or sampled: ``eval.act``), from separate unclipped eval envs."""
        step, cap = self.agent.num_timesteps, self.eval.max_episode_steps
        results = evaluate_tasks(
            self.agent,
            self.sequence,
            episodes=self.eval.episodes,
            # Hidden ids: one env, so a deployment's trial of a wrong context costs one episode,
            # not one per env (parallel episodes would all start under it).
            n_envs=1 if self.sequence.hidden else min(self.eval.episodes, 4),
            seed=lambda task: self.stream_seed(Stream.EVAL, step, task),
            max_episode_steps=cap,
            deterministic=self.eval.act == "greedy",
            wrap=self._wrap_eval_env,
        )
        trained = self.sequence[trained_task].name
        rows = [dict(step=step, trained_task=trained, **result.row()) for result in results]
        for result in results:
            if result.capped:  # cut short: the mean return is a floor, and the cap's time went into it
                self.state.eval_capped[result.task] = self.state.eval_capped.get(result.task, 0) + result.capped
                self.writer.add_scalar(f"eval/{result.task}/capped_episodes", result.capped, step)
                log.warning(
                    "evaluation of %r: %d of %d episodes cut at %d steps",
                    result.task, result.capped, len(result.returns), cap,
                )  # fmt: skip
            self.writer.add_scalar(f"eval/{result.task}/return", result.mean, step)
            fault_point("eval")
        self.state.eval_rows.extend(rows)
        self._write_eval_csv()
        last = ", ".join(f"{r['eval_task']} {r['mean']:.0f}" for r in rows)
        if self._progress is not None:
            self._progress.show_eval(last)
        else:  # logs of long runs (a redirect, nohup, a batch job) show life
            rate = self.agent.num_timesteps / max(self.state.train_steps_time, 1e-9)
            log.info("step %d (%.0f env-steps/s) %s: %s", step, rate, self._current_task_name(), last)
        for cb in self.callbacks:
            cb.after_eval(self, rows)
        return rows

    def _evaluate_again(self, trained_task: int) -> None:
        """Replace the evaluation just made at this step by a new one (the same episodes' seeds)."""
        step = self.agent.num_timesteps
        self.state.eval_rows = [row for row in self.state.eval_rows if row["step"] != step]
        self._evaluate(trained_task)

    def wrap_env(self, env: VecEnv, task: int, *, training: bool = True) -> VecEnv:
        """``env`` of task ``task`` wrapped by every callback's ``wrap_env``, in order (task inference
        writes its context into the observations there); ``psp-rl evaluate`` uses it too."""
        for cb in self.callbacks:
            env = cb.wrap_env(self, env, task, training=training)
        return env

    def _wrap_eval_env(self, env: VecEnv, task: int) -> VecEnv:
        if env.has_attr("set_drift_step"):  # evaluated where training has taken the drift (frozen there)
            env.env_method("set_drift_step", self.state.stage_steps if task == self._current_task() else 0)
        return self.wrap_env(env, task, training=False)

    def _write_eval_csv(self) -> None:
        rows = [[row[k] for k in EVAL_HEADER] for row in self.state.eval_rows]
        atomic_write_csv(self.paths.eval_csv, EVAL_HEADER, rows)

    def eval_matrix(self) -> np.ndarray:
        """``R[stage, task]``: the evaluation at the end of each finished stage."""
        return M.eval_matrix(self.state.eval_rows, self.state.stage_end_steps, self.sequence.names)

    def _matrix_figure(self):
        # Imported here: matplotlib costs ~1 s at start-up, and only a finished stage draws.
        from psp_rl.reporting.plots import matrix_figure

        schedule = self.sequence.schedule[: len(self.state.stage_end_steps)]
        stage_names = [self.sequence[t].name for t in schedule]
        return matrix_figure(self.eval_matrix(), stage_names, self.sequence.names)

    # ---------------------------------------------------------------- metrics
    def _finish(self) -> dict[str, Any]:
        self.state.wall_time += time.perf_counter() - self._clock
        self._clock = time.perf_counter()
        result = M.compute_metrics(
            self.eval_matrix(),
            self.sequence.schedule,
            self.sequence.names,
            self.state.random_returns,
            reference_returns(self.sequence, self.eval.reference_returns),
        )
        # Target networks (SB3 names them *_target) are lagged copies, not part of the model's capacity.
        n_params = sum(p.numel() for p in trained_parameters(self.agent.policy).values())
        result.update(
            parameters=n_params,
            wall_time_s=self.state.wall_time,
            env_steps=int(self.agent.num_timesteps),
            env_steps_per_s=self.agent.num_timesteps / max(self.state.train_steps_time, 1e-9),
            stage_end_steps=self.state.stage_end_steps,
            continual_eval_curve=M.continual_eval_curve(self.state.eval_rows),
            eval_max_episode_steps=self.eval.max_episode_steps,
            eval_capped_episodes=self.state.eval_capped,
            versions=software_versions(self.sequence.tasks),
        )
        for cb in self.callbacks:
            extra = cb.metrics(self)
            if extra:
                result[cb.name] = extra
        fault_point("metrics")
        atomic_write_text(self.paths.metrics, json.dumps(result, indent=2) + "\n")
        self.writer.add_hparams(
            self.identity.hparams(),
            {"metrics/final_average_return": result["final_average_return"]},
            run_name="hparams",
        )
        return result

    def _current_task(self) -> int:
        """The task of the stage being trained (the last one once the sequence is done)."""
        schedule = self.sequence.schedule
        return schedule[min(self.state.stage, len(schedule) - 1)]

    def _current_task_name(self) -> str:
        return self.sequence[self._current_task()].name

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
        total = sum(self.sequence[t].steps for t in self.sequence.schedule)
        self._progress = SequenceProgress(self.name, total, last)
        self.advance_progress(force=True)
        return self._progress

    def advance_progress(self, force: bool = False) -> None:
        """Redraw the progress bar, at most a few times a second unless ``force`` (it is called
        every env step). The position is read from the run's state, so it ends at the total, after
        a resume too."""
        if self._progress is None or not (force or self._progress.due()):
            return
        schedule = self.sequence.schedule
        done = sum(self.sequence[t].steps for t in schedule[: self.state.stage]) + self.state.stage_steps
        if self.agent is not None and self.state.stage < len(schedule) and self._chunk[1]:  # inside a chunk
            done += max(0, self.agent.num_timesteps - self._chunk[0])
        stage = min(self.state.stage + 1, len(schedule))
        self._progress.update(done, f"task {stage}/{len(schedule)} {self._current_task_name()}")
