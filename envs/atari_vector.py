"""One Atari task's training envs on ale-py's C++ vector env (``ale_py.vector_env.AtariVectorEnv``),
as a Stable-Baselines3 ``VecEnv`` with the ``{"obs", "task"}`` observation.

ale-py steps the envs and preprocesses their frames in C++ threads, where the gymnasium wrapper
chain (:func:`psp_rl.envs.factories.make_atari_env` in a ``DummyVecEnv``) does both in Python, one
env after the other. Every setting of our protocol is set explicitly, because the vector env's
defaults differ from it: sticky actions 0.25 and the full 18 actions (Machado et al. 2018), no FIRE
at reset (the chain has none), no life-loss terminal, reward clipping when training only (evaluation
sees true scores), the last frame of a finished episode in ``info["final_obs"]`` (autoreset in the
same step). Equal in both: 30 no-ops at most, frame skip 4 with max-pooling, 84x84 grey, 4 stacked
frames, the 108k-frame cap.

One difference stays: at a reset the vector env fills the frame stack with zeros where the chain
repeats the reset frame, so the first three observations of an episode differ (from the fourth the
stacks are equal; ``tests/envs/test_atari_vector.py`` checks both with sticky actions and no-ops off).
Training uses the vector env's stacks; evaluation envs are the chain's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from psp_rl.checks import check_int, is_int
from psp_rl.envs.factories import rom_name

ALE_MAX_FRAMES = 108_000  # ALE v5's cap: 30 minutes of play at 60 frames/s
FRAME_SKIP = 4
ALE_SEEDS = 2**31


class AtariTaskVecEnv(VecEnv):
    """``n_envs`` envs of one Atari game as one task of a sequence.

    :param game: the ROM's name as ale-py knows it (``"pong"``, ``"breakout"``; case-insensitive).
    :param n_envs: envs stepped together.
    :param task: the id every observation's ``task`` entry carries.
    :param max_tasks: the capacity of the ``task`` space (the sequence's).
    :param training: clip rewards to their sign (training); False gives true scores.
    :param sticky_actions: ALE's ``repeat_action_probability``.
    :param frame_stack: frames per observation.
    :param noop_max: at most this many no-ops at a reset.
    :param max_episode_steps: cut an episode after this many agent steps (4 frames each; at most ALE's cap).
    :param num_threads: C++ threads stepping the envs (0: one per core).
    """

    def __init__(
        self,
        game: str,
        n_envs: int,
        task: int,
        max_tasks: int,
        *,
        training: bool = True,
        sticky_actions: float = 0.25,
        frame_stack: int = 4,
        noop_max: int = 30,
        max_episode_steps: int | None = None,
        num_threads: int = 1,
    ) -> None:
        import ale_py
        from ale_py.vector_env import AtariVectorEnv

        check_int("n_envs", n_envs)
        check_int("num_threads", num_threads, low=0)
        if not is_int(task) or not 0 <= task < max_tasks:
            raise ValueError(f"task={task!r}: expected an int in [0, {max_tasks})")
        if not 0.0 <= sticky_actions <= 1.0:
            raise ValueError(f"sticky_actions={sticky_actions!r}: expected a probability in [0, 1]")
        frames = ALE_MAX_FRAMES
        if max_episode_steps is not None:
            frames = min(ALE_MAX_FRAMES, FRAME_SKIP * check_int("max_episode_steps", max_episode_steps))
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner per game
        self.ale = AtariVectorEnv(
            rom_name(game),
            n_envs,
            num_threads=num_threads,
            repeat_action_probability=sticky_actions,
            full_action_space=True,
            use_fire_reset=False,
            episodic_life=False,
            reward_clipping=training,
            autoreset_mode="SameStep",
            noop_max=noop_max,
            frameskip=FRAME_SKIP,
            maxpool=True,
            img_height=84,
            img_width=84,
            grayscale=True,
            stack_num=frame_stack,
            max_num_frames_per_episode=frames,
        )
        self.task, self.stack_size = int(task), frame_stack
        self.render_mode = None  # (SB3 asks every env for one)
        observation_space = spaces.Dict({"obs": self.ale.single_observation_space, "task": spaces.Discrete(max_tasks)})
        super().__init__(n_envs, observation_space, self.ale.single_action_space)
        self._seeds: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def _observation(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        return {"obs": frames, "task": np.full(self.num_envs, self.task, dtype=np.int64)}

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Seed env ``i`` with ``seed + i`` at the next reset (SB3's convention), modulo 2**31: ALE
        takes 32-bit signed seeds, and a run's seeds span 32 unsigned bits."""
        seeds = None if seed is None else [(seed + i) % ALE_SEEDS for i in range(self.num_envs)]
        self._seeds = None if seeds is None else np.array(seeds, dtype=np.int64)
        return seeds or [None] * self.num_envs

    def reset(self) -> VecEnvObs:
        frames, _ = self.ale.reset(seed=self._seeds)
        self._seeds = None  # later resets draw from the seeded generators
        return self._observation(frames)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        frames, rewards, terminated, truncated, info = self.ale.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = {"obs": info["final_obs"][i], "task": self.task}
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return self._observation(frames), rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.ale.close()

    # SB3's VecEnv asks these of every env; the vector env has one configuration for all of them.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if not hasattr(self, attr_name):
            raise AttributeError(f"AtariTaskVecEnv has no attribute {attr_name!r}")
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"AtariTaskVecEnv: {attr_name!r} is one setting of all its envs and cannot be set")

    def env_method(self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list[Any]:
        raise AttributeError(f"AtariTaskVecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
