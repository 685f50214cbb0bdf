"""Saving, resuming and stopping a :class:`~psp_rl.continual.loop.ContinualLoop` at chunk boundaries.

A checkpoint holds the agent, its replay buffer, the loop's state and the callbacks' states; a
resume loads the newest one that matches the run's identity, so the resumed run replays exactly
what the uninterrupted one would have done. A stop request finishes or abandons the chunk being
trained (:class:`~psp_rl.continual.stopping.GracefulStop`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from psp_rl.continual.checkpoints import MODEL, TrainerState
from psp_rl.continual.evaluation import random_returns
from psp_rl.continual.faults import fault_point
from psp_rl.envs.episodes import vec_episode_states
from psp_rl.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from psp_rl.continual.checkpoints import CheckpointStore
    from psp_rl.continual.stopping import GracefulStop

log = logging.getLogger(__name__)


def check_resume(resume: object) -> None:
    """``ConfigError`` unless ``resume`` is ``True``, ``False`` or ``"or_start"``."""
    if resume not in (False, True, "or_start"):
        raise ConfigError(f"resume={resume!r}: expected True, False or 'or_start'")


class ResumableRun:
    """The checkpoint, resume and stop methods of the loop (its attributes are the loop's)."""

    store: CheckpointStore
    stop: GracefulStop
    agent: Any
    state: TrainerState

    @property
    def checkpoint_dir(self) -> Path:
        return self.paths.checkpoints

    def checkpoints(self) -> list[Path]:
        """Completed checkpoints, newest first."""
        return self.store.list()

    def _checkpoint(self) -> Path:
        """Save agent, replay buffer, loop state and callback states (atomically)."""
        self.check_finite(self._current_task_name())  # never save NaNs
        self.state.wall_time += time.perf_counter() - self._clock
        self._clock = time.perf_counter()
        episodes = vec_episode_states(self._train_env[1]) if self.carry_episodes and self._train_env else None
        return self.store.save(
            self.agent, self.state, self.callbacks, fault=lambda: fault_point("checkpoint"), episodes=episodes
        )

    def _resume_or_start(self) -> BaseAlgorithm:
        """The agent to train, fresh or from the newest loadable checkpoint; sets ``self.state``."""
        self._clock = time.perf_counter()
        self.store.remove_unfinished()
        checkpoints = self.checkpoints() if self.resume else []
        env = self._env_for(0)
        if not checkpoints:
            if self.resume and not self._created_dir:
                log.info("no checkpoint in %s yet: starting from step 0", self.checkpoint_dir)
            self.state = TrainerState(fingerprint=self.identity.fingerprint(), shaping_config=self.identity.shaping())
            self.state.random_returns = random_returns(
                self.sequence, self.eval.episodes, self.seed, self.eval.max_episode_steps, self.seed_scheme
            )
            self._write_eval_csv()
            return self.agent_factory.build(env, self.seed)
        path, (agent, self.state) = self.store.load_newest(lambda path: self._load_checkpoint(path, env))
        self._write_eval_csv()  # drop rows a killed run wrote after this checkpoint
        stages = len(self.sequence.schedule)
        if self.state.stage >= stages:
            log.info("the run in %s had finished (%d steps): nothing to train", self.run_dir, agent.num_timesteps)
        else:
            log.info(
                "resuming from checkpoint %s: step %d, task %d/%d (%s)",
                path, agent.num_timesteps, self.state.stage + 1, stages, self._current_task_name(),
            )  # fmt: skip
        return agent

    def _load_checkpoint(self, path: Path, env: VecEnv) -> tuple[BaseAlgorithm, TrainerState]:
        state = self.store.read_state(path)
        if not self.identity.matches(state.shaping_config):
            raise CheckpointError(f"checkpoint {str(path)!r} {self.identity.difference(state.shaping_config)}")
        agent = self.agent_factory.load(path / MODEL, env)
        self.store.load_agent_extras(path, agent, self.callbacks)
        if self.carry_episodes:
            self._saved_episodes = self.store.read_episodes(path)
        return agent, state

    def keep_training(self) -> bool:
        """Asked at every env step: False once a stop request abandons the chunk (:class:`GracefulStop`)."""
        if not self.stop.requested:
            return True
        rate = self.agent.num_timesteps / self.state.train_steps_time if self.state.train_steps_time else 0.0
        return self.stop.keep_training(self._chunk, self.agent.num_timesteps, rate)

    def _interrupt_message(self) -> str:
        return (
            f"stopped by {self.stop.requested} at step {self.agent.num_timesteps}; checkpoint written to "
            f"{str(self.checkpoint_dir)!r}{self._approximate_note()}"
        )

    def _abandon_message(self) -> str:
        kept = self.checkpoints()
        where = f"checkpoint {kept[0].name}" if kept else "the start (no checkpoint yet)"
        return (
            f"stopped by {self.stop.requested} at step {self.agent.num_timesteps}, mid-way through a chunk; the "
            f"run resumes from {where}{self._approximate_note()}"
        )

    def _approximate_note(self) -> str:
        if self.store.replay_buffer or not hasattr(self.agent, "replay_buffer"):
            return ""
        return " (checkpoint.replay_buffer is false: the resume refills replay, so it is approximate)"
