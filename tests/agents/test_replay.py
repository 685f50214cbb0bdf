"""The compact replay buffer: the same batches as SB3's DictReplayBuffer, a fraction of the bytes."""

import pickle

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer

from psp_rl.agents import CompactDictReplayBuffer, ContinualDQN
from psp_rl.agents.replay import keep_task
from psp_rl.config.build import replay_buffer_kwargs
from psp_rl.envs import get_sequence


def _stream(kind: str, n_envs: int, steps: int, seed: int):
    """Transitions as an SB3 vec env hands them to a buffer: stacked frames that shift by one
    each step, episodes that end (terminated or truncated) and reset, a reset without a done
    (a new chunk), an odd next_obs that is not the obs shifted, and tasks that change."""
    rng = np.random.default_rng(seed)
    k, frame = (4, (6, 6)) if kind == "stacked" else (1, (3, 5, 5))

    def new_frame():
        if kind == "stacked":
            return rng.integers(0, 256, size=frame, dtype=np.uint8)
        return (rng.random(frame) < 0.3).astype(np.float32)

    def fresh():
        first = new_frame()
        return np.stack([first] * k) if kind == "stacked" else first

    obs = [fresh() for _ in range(n_envs)]
    task = 0
    for t in range(steps):
        if t % 37 == 0:
            task = int(rng.integers(3))
        if t % 53 == 52:  # a chunk boundary: envs reset without a done
            obs = [fresh() for _ in range(n_envs)]
        nxt, done, infos = [], np.zeros(n_envs, dtype=bool), []
        for e in range(n_envs):
            if kind == "stacked":
                n = np.concatenate([obs[e][1:], new_frame()[None]])
                if rng.random() < 0.02:  # a wrapper that changed the whole stack
                    n = np.stack([new_frame() for _ in range(k)])
            else:
                n = new_frame()
            end = rng.random()
            done[e] = end < 0.08
            infos.append({"TimeLimit.truncated": bool(end < 0.03)})
            nxt.append(n)
        yield (
            {"obs": np.stack(obs), "task": np.full(n_envs, task)},
            {"obs": np.stack(nxt), "task": np.full(n_envs, task)},
            rng.integers(6, size=(n_envs, 1)),
            rng.normal(size=n_envs).astype(np.float32),
            done,
            infos,
        )
        obs = [fresh() if done[e] else nxt[e] for e in range(n_envs)]


def _space(kind: str) -> spaces.Dict:
    obs = spaces.Box(0, 255, (4, 6, 6), np.uint8) if kind == "stacked" else spaces.Box(0.0, 1.0, (3, 5, 5), np.float32)
    return spaces.Dict({"obs": obs, "task": spaces.Discrete(3)})


def _assert_same(a, b):
    for key in ("obs", "task"):
        torch.testing.assert_close(a.observations[key], b.observations[key], rtol=0, atol=0)
        torch.testing.assert_close(a.next_observations[key], b.next_observations[key], rtol=0, atol=0)
    for name in ("actions", "rewards", "dones"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["stacked", "bits"])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_batches_equal_to_dict_replay_buffer(kind, n_envs):
    space, actions = _space(kind), spaces.Discrete(6)
    k = 4 if kind == "stacked" else 1
    plain = DictReplayBuffer(60, space, actions, device="cpu", n_envs=n_envs)
    compact = CompactDictReplayBuffer(60, space, actions, device="cpu", n_envs=n_envs, frame_stack=k)
    for t, transition in enumerate(_stream(kind, n_envs, 400, seed=n_envs)):
        plain.add(*transition)
        compact.add(*transition)
        if t % 7 == 0:  # the oldest slots too, once the ring wrapped (60 // n_envs slots)
            np.random.seed(t)
            expected = plain.sample(32)
            np.random.seed(t)
            _assert_same(compact.sample(32), expected)
        if t == 200:  # a reset, as at a task switch with replay_on_switch: clear
            plain.reset()
            compact.reset()
    assert compact.full
    restored = pickle.loads(pickle.dumps(compact))  # what a checkpoint saves
    np.random.seed(1)
    expected = plain.sample(64)
    np.random.seed(1)
    _assert_same(restored.sample(64), expected)


def test_bytes_per_transition():
    space, actions = _space("stacked"), spaces.Discrete(6)
    compact = CompactDictReplayBuffer(400, space, actions, device="cpu", frame_stack=4)
    for transition in _stream("stacked", 1, 400, seed=0):
        compact.add(*transition)
    frame = 6 * 6
    # one frame, the action, reward, done, timeout, task and bookkeeping; plus the episodes' first stacks
    assert compact.nbytes() / 400 < 2 * frame + 64
    plain_bytes = 2 * 4 * frame + 8 + 4 * 3 + 8
    assert compact.nbytes() / 400 < plain_bytes / 3


def test_bad_input_named():
    box = spaces.Box(-1.0, 1.0, (3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"observation_space\['obs'\].*uint8 or 0/1"):
        CompactDictReplayBuffer(10, spaces.Dict({"obs": box, "task": spaces.Discrete(2)}), spaces.Discrete(2))
    with pytest.raises(ValueError, match=r"frame_stack=3: expected obs of shape \(3, ...\)"):
        CompactDictReplayBuffer(10, _space("stacked"), spaces.Discrete(2), frame_stack=3)
    compact = CompactDictReplayBuffer(10, _space("bits"), spaces.Discrete(2))
    bad = {"obs": np.full((1, 3, 5, 5), 0.5, np.float32), "task": np.zeros(1)}
    with pytest.raises(ValueError, match="must be 0 or 1"):
        compact.add(bad, bad, np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])


def test_dqn_on_minatar_uses_it_and_reads_task_states():
    pytest.importorskip("minatar")
    seq = get_sequence("minatar", tasks=["breakout", "spaceinvaders"])
    env = seq.make_vec_env(1, 2, seed=0)
    kwargs = replay_buffer_kwargs(None, env)
    assert kwargs["replay_buffer_class"] is CompactDictReplayBuffer
    agent = ContinualDQN(
        "PSPPolicy", env, learning_starts=50, train_freq=8, gradient_steps=2, buffer_size=400, seed=0, **kwargs
    )
    agent.learn(300)
    assert agent._n_updates > 0
    states = agent.task_states(1, samples=20)
    assert states["obs"].shape == (20, *seq.spaces[0]["obs"].shape) and states["obs"].dtype == np.float32
    assert set(np.unique(states["obs"])) <= {0.0, 1.0} and (states["task"] == 1).all()
    assert replay_buffer_kwargs("dict", env) == {}


@pytest.mark.parametrize("kind", ["stacked", "bits"])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_keep_task_leaves_the_buffer_one_built_from_that_tasks_transitions(kind, n_envs):
    space, actions = _space(kind), spaces.Discrete(6)
    k = 4 if kind == "stacked" else 1
    buffers = [
        DictReplayBuffer(60, space, actions, device="cpu", n_envs=n_envs),
        CompactDictReplayBuffer(60, space, actions, device="cpu", n_envs=n_envs, frame_stack=k),
    ]
    expected = [DictReplayBuffer(200, space, actions, device="cpu", n_envs=n_envs) for _ in buffers]
    for seed in range(20):  # the first stream whose live part (the ring wrapped) holds two tasks
        stream = list(_stream(kind, n_envs, 150, seed=seed))
        live = stream[-(60 // n_envs) :]
        tasks = [int(transition[0]["task"][0]) for transition in live]
        if len(set(tasks)) > 1:
            break
    for transition in stream:
        for buffer in buffers:
            buffer.add(*transition)
    task = min(set(tasks), key=tasks.count)  # a task with few live transitions: most are dropped
    for transition in live:
        if np.ravel(transition[0]["task"])[0] == task:
            for reference in expected:
                reference.add(*transition)
    for buffer, reference in zip(buffers, expected, strict=True):
        kept = keep_task(buffer, task)
        assert 0 < kept == reference.pos == buffer.pos < 60 // n_envs and not buffer.full
        np.random.seed(3)
        batch = reference.sample(16)
        np.random.seed(3)
        _assert_same(buffer.sample(16), batch)
