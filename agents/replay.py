"""A replay buffer for ``{"obs", "task"}`` image observations that stores each frame once.

SB3's ``DictReplayBuffer`` keeps ``obs`` and ``next_obs`` in the observation's dtype: an Atari
transition (4 stacked 84x84 uint8 frames) costs 2 x 28 KB, ~56 GB for the standard 1M buffer, and
a MinAtar one (10x10x10 float32 0/1) 8 KB. :class:`CompactDictReplayBuffer` keeps, per transition,
only the newest frame of ``next_obs`` (uint8, or bit-packed for 0/1 frames) and the task id as a
small integer; ``obs`` and ``next_obs`` are rebuilt at sampling from the frames before them, as
Dopamine's buffer does. Episode starts (and anything that is not the previous ``next_obs``: a
reset, an env re-seeded between chunks) store their whole stack once. Batches are equal to
``DictReplayBuffer``'s for the same stream and the same numpy seed (tested), so switching buffers
changes memory, not results.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, DictReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from psp_rl.checks import is_int


def compact_encoding(space: spaces.Space) -> str | None:
    """How :class:`CompactDictReplayBuffer` would store frames of ``space``: ``"uint8"``,
    ``"bits"`` (0/1 frames, 8 to a byte), or ``None`` when it cannot store them exactly."""
    if not isinstance(space, spaces.Box):
        return None
    if space.dtype == np.uint8:
        return "uint8"
    if np.all(space.low == 0) and np.all(space.high == 1):
        return "bits"
    return None


class CompactDictReplayBuffer(DictReplayBuffer):
    """``DictReplayBuffer`` for ``{"obs": Box, "task": Discrete}`` that stores each frame once.

    :param buffer_size: transitions kept (over all envs), as SB3's buffers.
    :param observation_space: a Dict with ``obs`` (uint8, or 0/1 values) and ``task``.
    :param action_space: the action space.
    :param device: where sampled tensors go.
    :param n_envs: parallel envs adding transitions.
    :param optimize_memory_usage: must be False (this buffer is the memory optimisation).
    :param handle_timeout_termination: as SB3's (time-limit truncations bootstrap).
    :param frame_stack: ``k`` when ``obs`` is ``k`` frames stacked on its first axis, a new one
        each step (Atari's ``FrameStackObservation``); 1 stores each whole ``obs`` as the frame.

    ``observations["task"]`` is an array as in SB3's buffer; the frames are not, so read states
    with :meth:`observations_at`.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        frame_stack: int = 1,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or set(observation_space.spaces) != {"obs", "task"}:
            raise ValueError(f"observation_space={observation_space}: expected a Dict of 'obs' and 'task'")
        encoding = compact_encoding(observation_space["obs"])
        if encoding is None:
            raise ValueError(
                f"observation_space['obs']={observation_space['obs']}: the compact replay buffer stores uint8 "
                "or 0/1 observations; use replay_buffer: dict"
            )
        shape = observation_space["obs"].shape
        if not is_int(frame_stack) or not frame_stack >= 1:
            raise ValueError(f"frame_stack={frame_stack!r}: expected a positive int")
        if frame_stack > 1 and (len(shape) < 2 or shape[0] != frame_stack):
            raise ValueError(f"frame_stack={frame_stack}: expected obs of shape ({frame_stack}, ...), got {shape}")
        if optimize_memory_usage:
            raise ValueError("optimize_memory_usage: the compact buffer already stores each frame once")
        # BaseBuffer, not DictReplayBuffer: its obs and next_obs arrays are what this replaces.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.encoding, self.frame_stack = encoding, frame_stack
        self.obs_dtype = observation_space["obs"].dtype
        self.frame_shape = shape[1:] if frame_stack > 1 else shape
        self.frame_size = int(np.prod(self.frame_shape))
        frame_bytes = self.frame_size if encoding == "uint8" else -(-self.frame_size // 8)
        # Frames outlive their transition by frame_stack slots: the oldest transition's stack
        # is built from the frames before it.
        self.frame_capacity = self.buffer_size + frame_stack
        self.frames = np.zeros((self.frame_capacity, n_envs, frame_bytes), dtype=np.uint8)
        self.depth = np.zeros((self.buffer_size, n_envs), dtype=np.uint8)  # continuous steps before, capped
        self.add_index = np.zeros(self.buffer_size, dtype=np.int64)  # the add that wrote each slot
        max_tasks = int(observation_space["task"].n)
        task_dtype = np.int16 if max_tasks <= np.iinfo(np.int16).max else np.int64
        self.observations = {"task": np.zeros((self.buffer_size, n_envs, 1), dtype=task_dtype)}
        self.actions = np.zeros(
            (self.buffer_size, n_envs, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype)
        )
        self.rewards = np.zeros((self.buffer_size, n_envs), dtype=np.float32)
        self.dones = np.zeros((self.buffer_size, n_envs), dtype=np.float32)
        self.timeouts = np.zeros((self.buffer_size, n_envs), dtype=np.float32)
        self.adds = 0
        self._clear_side_stores()

    def _clear_side_stores(self) -> None:
        # (add, env) -> a whole encoded obs stack: episode starts and other discontinuities.
        self.starts: dict[tuple[int, int], np.ndarray] = {}
        # (add, env) -> a whole encoded next_obs that is not obs shifted by one frame.
        self.odd_next: dict[tuple[int, int], np.ndarray] = {}
        self._side_keys: deque[tuple[int, int]] = deque()
        self._last_next: list[np.ndarray | None] = [None] * self.n_envs
        self._last_depth = np.zeros(self.n_envs, dtype=np.int64)

    def reset(self) -> None:
        super().reset()
        self._clear_side_stores()

    # ----------------------------------------------------------------- encoding
    def _encode(self, frames: np.ndarray) -> np.ndarray:
        """``(..., *frame_shape)`` -> ``(..., frame_bytes)`` uint8."""
        flat = frames.reshape(*frames.shape[: frames.ndim - len(self.frame_shape)], self.frame_size)
        if self.encoding == "uint8":
            return flat.astype(np.uint8, copy=False)
        if not np.all((flat == 0) | (flat == 1)):
            raise ValueError("compact replay buffer: 'bits' observations must be 0 or 1")
        return np.packbits(flat.astype(bool), axis=-1)

    def _decode(self, data: np.ndarray) -> np.ndarray:
        """``(..., frame_bytes)`` -> ``(..., *frame_shape)`` in the observation's dtype."""
        flat = data if self.encoding == "uint8" else np.unpackbits(data, axis=-1, count=self.frame_size)
        return flat.reshape(*data.shape[:-1], *self.frame_shape).astype(self.obs_dtype, copy=False)

    def _as_frames(self, obs: np.ndarray) -> np.ndarray:
        """An observation as a stack of frames ``(frame_stack, *frame_shape)``."""
        return obs.reshape(self.frame_stack, *self.frame_shape)

    # ---------------------------------------------------------------------- add
    def add(  # type: ignore[override]
        self,
        obs: dict[str, np.ndarray],
        next_obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        n, k = self.adds, self.frame_stack
        for env in range(self.n_envs):
            o, nxt = np.asarray(obs["obs"][env]), np.asarray(next_obs["obs"][env])
            last = self._last_next[env]
            # Continuous: this obs is exactly the previous transition's next_obs, so it can be
            # rebuilt from the frames before it. Anything else (an episode's start, a reset by a
            # new chunk) stores its whole stack.
            if last is not None and np.array_equal(o, last):
                depth = min(int(self._last_depth[env]) + 1, k)
            else:
                depth = 0
                self._remember(self.starts, (n, env), self._encode(self._as_frames(o)))
            stack = self._as_frames(nxt)
            if k > 1 and not np.array_equal(stack[:-1], self._as_frames(o)[1:]):
                self._remember(self.odd_next, (n, env), self._encode(stack))
                # the next obs cannot be built from this one's frames: let it store its stack
                last_next = None
            else:
                last_next = nxt.copy()
            self.frames[n % self.frame_capacity, env] = self._encode(stack[-1])
            self.depth[self.pos, env] = depth
            self._last_next[env], self._last_depth[env] = last_next, depth
        self.observations["task"][self.pos] = np.asarray(obs["task"]).reshape(self.n_envs, 1)
        self.add_index[self.pos] = n
        self.actions[self.pos] = np.array(action).reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = np.array(reward)
        self.dones[self.pos] = np.array(done)
        if self.handle_timeout_termination:
            self.timeouts[self.pos] = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        self.adds += 1
        self._forget_old_side_entries()
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full, self.pos = True, 0

    def _remember(self, store: dict[tuple[int, int], np.ndarray], key: tuple[int, int], value: np.ndarray) -> None:
        store[key] = value
        self._side_keys.append(key)

    def _forget_old_side_entries(self) -> None:
        # A live transition (one of the last buffer_size adds) reads a start at most
        # frame_stack adds before it; older entries can go.
        oldest_needed = self.adds - self.buffer_size - self.frame_stack
        while self._side_keys and self._side_keys[0][0] < oldest_needed:
            key = self._side_keys.popleft()
            self.starts.pop(key, None)
            self.odd_next.pop(key, None)

    # ------------------------------------------------------------------- reading
    def observations_at(self, positions: np.ndarray, env_indices: np.ndarray) -> dict[str, np.ndarray]:
        """The ``obs`` and ``task`` stored at buffer ``positions`` of envs ``env_indices`` (both ``(batch,)``)."""
        return {
            "obs": self._stacks_at(positions, env_indices),
            "task": self.observations["task"][positions, env_indices],
        }

    def next_observations_at(self, positions: np.ndarray, env_indices: np.ndarray) -> dict[str, np.ndarray]:
        """The ``next_obs`` and ``task`` of the transitions at ``positions`` of ``env_indices``."""
        adds = self.add_index[positions]
        newest = self._decode(self.frames[adds % self.frame_capacity, env_indices])
        if self.frame_stack == 1:
            stacks = newest
        else:
            stacks = self._stacks_at(positions, env_indices).reshape(
                len(positions), self.frame_stack, *self.frame_shape
            )
            stacks = np.concatenate([stacks[:, 1:], newest[:, None]], axis=1)
        for i, (add, env) in enumerate(zip(adds.tolist(), env_indices.tolist(), strict=True)):
            if (add, env) in self.odd_next:
                stacks[i] = self._decode(self.odd_next[(add, env)])
        return {
            "obs": stacks.reshape(len(positions), *self.obs_shape["obs"]),
            "task": self.observations["task"][positions, env_indices],
        }

    def _stacks_at(self, positions: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        k = self.frame_stack
        adds, depths = self.add_index[positions], self.depth[positions, env_indices]
        # The common case: k continuous steps before, so the stack is the next-frames of the k
        # transitions before this one.
        before = (adds[:, None] - k + np.arange(k)) % self.frame_capacity
        stacks = self._decode(self.frames[before, env_indices[:, None]])
        for i in np.flatnonzero(depths < k).tolist():
            add, env, depth = int(adds[i]), int(env_indices[i]), int(depths[i])
            start = self._decode(self.starts[(add - depth, env)])  # the episode's first stack ...
            recent = self._decode(self.frames[(add - depth + np.arange(depth)) % self.frame_capacity, env])
            stacks[i] = np.concatenate([start[depth:], recent])  # ... shifted by the frames since
        return stacks.reshape(len(positions), *self.obs_shape["obs"])

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> DictReplayBufferSamples:
        # The same random draws as DictReplayBuffer: equal batches for an equal stream.
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        task_dtype = self.observation_space["task"].dtype
        observations, next_observations = (
            {key: self.to_torch(value.astype(task_dtype) if key == "task" else value) for key, value in part.items()}
            for part in (
                self.observations_at(batch_inds, env_indices),
                self.next_observations_at(batch_inds, env_indices),
            )
        )
        not_truncated_dones = self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
        return DictReplayBufferSamples(
            observations=observations,
            actions=self.to_torch(self.actions[batch_inds, env_indices]),
            next_observations=next_observations,
            # Only dones that are not time-limit truncations (those bootstrap), as in SB3.
            dones=self.to_torch(not_truncated_dones.reshape(-1, 1)),
            rewards=self.to_torch(self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env)),
        )

    def nbytes(self) -> int:
        """Bytes held: arrays, stored stacks and the last next_obs per env."""
        arrays = [self.frames, self.depth, self.add_index, self.observations["task"], self.actions]
        arrays += [self.rewards, self.dones, self.timeouts]
        side = [*self.starts.values(), *self.odd_next.values(), *(a for a in self._last_next if a is not None)]
        return sum(a.nbytes for a in arrays) + sum(a.nbytes for a in side)


def keep_task(buffer: DictReplayBuffer, task: int) -> int:
    """Empty ``buffer`` (a ``DictReplayBuffer`` or :class:`CompactDictReplayBuffer` of ``{"obs",
    "task"}`` transitions) but for the transitions gathered under ``task``, added back oldest
    first; returns how many vector steps it keeps. A confirmed inferred switch drops the previous
    context's data this way (``ContinualDQN.confirm_switch``); one context acts in every env at a
    time, so env 0's task id names a step's."""
    size = buffer.buffer_size if buffer.full else buffer.pos
    oldest_first = np.roll(np.arange(size), -buffer.pos) if buffer.full else np.arange(size)
    positions = oldest_first[buffer.observations["task"][oldest_first, 0].reshape(-1) == task]
    envs = np.arange(buffer.n_envs)
    kept = []
    for position in positions.tolist():
        at = np.full(buffer.n_envs, position)
        if isinstance(buffer, CompactDictReplayBuffer):
            obs, next_obs = buffer.observations_at(at, envs), buffer.next_observations_at(at, envs)
        else:
            obs = {key: value[position].copy() for key, value in buffer.observations.items()}
            next_obs = {key: value[position].copy() for key, value in buffer.next_observations.items()}
        infos = [{"TimeLimit.truncated": bool(t)} for t in buffer.timeouts[position]]
        kept.append((obs, next_obs, buffer.actions[position].copy(), buffer.rewards[position].copy(),
                     buffer.dones[position].copy(), infos))  # fmt: skip
    buffer.reset()
    for transition in kept:
        buffer.add(*transition)
    return len(kept)
