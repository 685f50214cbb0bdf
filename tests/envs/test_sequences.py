import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from psp_rl.envs import (
    TaskObservation,
    TaskSequence,
    TaskSpec,
    get_sequence,
    list_sequences,
    make_gym_env,
    make_minatar_env,
    sequence_from_spec,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _random_steps(env: gym.Env, steps: int, seed: int) -> None:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward)
        if terminated or truncated:
            env.reset()


@pytest.mark.parametrize("name", sorted(list_sequences()))
def test_every_builtin_sequence_runs_every_task(name):
    seq = get_sequence(name)
    steps = 100 if name.startswith("atari") else 1000
    for tid, task in enumerate(seq):
        env = seq.make_env(tid)
        assert env.observation_space == seq.observation_space, task.name
        assert env.action_space == seq.action_space, task.name
        _random_steps(env, steps, seed=tid)
        env.close()


@pytest.mark.parametrize("name", ["cartpole-shift", "minatar", "atari-small", "pendulum-shift"])
def test_same_seed_same_first_observation(name):
    seq = get_sequence(name)
    for tid in range(len(seq)):
        first = seq.make_env(tid).reset(seed=123)[0]["obs"]
        again = seq.make_env(tid).reset(seed=123)[0]["obs"]
        np.testing.assert_array_equal(first, again)


def test_task_observation_carries_the_task_and_passes_check_env():
    seq = get_sequence("cartpole-shift")
    env = seq.make_env("reversed")
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["task"] == 4 and env.observation_space["task"] == gym.spaces.Discrete(5)
    env.set_task(2)
    assert env.step(0)[0]["task"] == 2
    with pytest.raises(ValueError, match=r"task=5: expected an int in \[0, 5\)"):
        env.set_task(5)


def _rollout(env: gym.Env, actions: list, seed: int = 0) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    states = [obs["obs"] if isinstance(obs, dict) else obs]
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        states.append(obs["obs"] if isinstance(obs, dict) else obs)
        if terminated or truncated:
            break
    return np.array(states)


def test_cartpole_shift_changes_the_dynamics():
    seq = get_sequence("cartpole-shift")
    pushes = [1] * 8  # push right, same start state for every task
    runs = {t.name: _rollout(seq.make_env(t.name), pushes) for t in seq}
    # The default pole falls at a measurably different rate from every shifted one.
    for name in ("long-pole", "heavy-pole", "high-gravity"):
        assert np.abs(runs[name][:, 2] - runs["default"][:, 2]).max() > 0.01, name
    # Reversed force: pushing "right" moves the cart left.
    assert runs["default"][-1, 1] > 0.5 and runs["reversed"][-1, 1] < -0.5


def test_pendulum_and_acrobot_reversed_controls_act_the_other_way():
    # Reversed task + action a behaves exactly like the default task + the opposite action.
    pend = get_sequence("pendulum-shift")
    plus, minus = [np.array([2.0], dtype=np.float32)] * 5, [np.array([-2.0], dtype=np.float32)] * 5
    reversed_ = _rollout(pend.make_env("reversed"), plus)
    np.testing.assert_allclose(reversed_, _rollout(pend.make_env("default"), minus), atol=1e-6)
    assert np.abs(reversed_ - _rollout(pend.make_env("default"), plus)).max() > 0.1
    acro = get_sequence("acrobot-shift")
    reversed_ = _rollout(acro.make_env("reversed"), [2] * 10)
    np.testing.assert_allclose(reversed_, _rollout(acro.make_env("default"), [0] * 10), atol=1e-6)
    assert np.abs(reversed_ - _rollout(acro.make_env("default"), [2] * 10)).max() > 0.1


def test_permuted_tasks_permute_the_same_state():
    seq = get_sequence("cartpole-permuted")
    identity = seq.make_env("identity").reset(seed=3)[0]["obs"]
    permuted = seq.make_env("perm-1").reset(seed=3)[0]["obs"]
    perm = seq.make_env("perm-1").env.permutation
    assert not np.array_equal(perm, np.arange(4))
    np.testing.assert_array_equal(permuted, identity[perm])


def test_drift_sweeps_the_parameter_and_reports_it():
    env = make_gym_env("CartPole-v1", drift={"name": "gravity", "low": 9.8, "high": 20.0, "period": 10})
    env.reset(seed=0)
    seen = []
    for _ in range(10):
        _, _, terminated, truncated, info = env.step(0)
        seen.append(info["drift"]["gravity"])
        assert env.unwrapped.gravity == seen[-1]
        if terminated or truncated:
            env.reset()
    assert max(seen) == pytest.approx(20.0) and seen[0] == pytest.approx(9.8 + 10.2 * 0.2)
    assert seen[-1] == pytest.approx(9.8)  # a full period comes back to the start


def test_cycles_repeat_the_same_task_ids():
    seq = get_sequence("cartpole-shift", tasks=["default", "reversed"], cycles=3, steps=100)
    assert seq.schedule == [0, 1, 0, 1, 0, 1]
    assert [t.steps for t in seq] == [100, 100]


def test_vec_env_is_seeded_and_carries_the_task():
    seq = get_sequence("cartpole-shift", tasks=["default", "heavy-pole"])
    a, b = seq.make_vec_env(1, n_envs=2, seed=5), seq.make_vec_env(1, n_envs=2, seed=5)
    obs_a, obs_b = a.reset(), b.reset()
    np.testing.assert_array_equal(obs_a["obs"], obs_b["obs"])
    assert not np.array_equal(obs_a["obs"][0], obs_a["obs"][1])  # env i is seeded seed + i
    np.testing.assert_array_equal(obs_a["task"], [1, 1])


def test_user_defined_sequence_from_spec():
    seq = sequence_from_spec(
        {
            "name": "mine",
            "steps": 500,
            "tasks": [
                {"name": "plain", "env_id": "CartPole-v1"},
                {"name": "heavy", "env_id": "CartPole-v1", "params": {"masspole": 0.9}, "steps": 800},
            ],
        }
    )
    assert seq.names == ["plain", "heavy"] and [t.steps for t in seq] == [500, 800]
    assert seq.make_env("heavy").unwrapped.polemass_length == pytest.approx(0.9 * 0.5)
    _random_steps(seq.make_env(1), 200, seed=0)


@pytest.mark.parametrize(
    ("tasks", "match"),
    [
        ([{"name": "a", "env_id": "CartPoel-v1"}], r"task 'a': env_id 'CartPoel-v1': not a registered"),
        ([{"name": "a", "env_id": "CartPole-v1", "params": {"gravty": 3.0}}], r"task 'a': parameter 'gravty'"),
        ([{"name": "a", "env_id": "CartPole-v1", "params": {"gravity": "strong"}}], r"parameter 'gravity'.*'strong'"),
        (
            [{"name": "a", "env_id": "CartPole-v1"}, {"name": "b", "env_id": "Acrobot-v1"}],
            r"task 'b': observation_space .* differs from task 'a'",
        ),
        (
            [{"name": "a", "env_id": "CartPole-v1"}, {"name": "b", "env_id": "MountainCar-v0"}],
            r"task 'b': observation_space",
        ),
        ([{"name": "a", "env_id": "CartPole-v1", "steps": -5}], r"task 'a': steps=-5"),
        ([{"name": "a", "env_id": "CartPole-v1", "speed": 2}], r"tasks\[0\]: unknown key\(s\) \['speed'\]"),
        ([{"name": "a", "env_id": "CartPole-v1", "atari": "Pong"}], r"tasks\[0\]: expected exactly one of"),
        ([{"name": "a", "env_id": "CartPole-v1", "params": [1, 2]}], r"tasks\[0\]\.params: expected a mapping"),
        ([], r"tasks=\[\], expected a non-empty list"),
        ([{"name": "a", "env_id": "CartPole-v1"}, {"name": "a", "env_id": "CartPole-v1"}], r"unique.*\['a'\]"),
    ],
)
def test_bad_specs_name_the_task_and_field(tasks, match):
    with pytest.raises(ValueError, match=match):
        sequence_from_spec({"steps": 100, "tasks": tasks})


def test_bad_builtin_arguments():
    with pytest.raises(ValueError, match="sequence 'cartpole-shfit': not a built-in"):
        get_sequence("cartpole-shfit")
    with pytest.raises(ValueError, match=r"tasks \['upside-down'\]: not in sequence 'cartpole-shift'"):
        get_sequence("cartpole-shift", tasks=["upside-down"])
    with pytest.raises(ValueError, match="max_tasks=2, expected an int >= 5"):
        get_sequence("cartpole-shift", max_tasks=2)
    with pytest.raises(ValueError, match=r"action_sign=-1 needs a Box action space"):
        make_gym_env("CartPole-v1", action_sign=-1)
    with pytest.raises(ValueError, match="TaskSpec|steps"):
        TaskSequence([TaskSpec("x", make_gym_env, {"env_id": "CartPole-v1"}, steps=0)])


def test_missing_minatar_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    with pytest.raises(ImportError, match=r'pip install "psp-rl\[minatar\]"'):
        make_minatar_env("Breakout")


def test_minatar_frames_are_padded_channel_first_floats():
    env = make_minatar_env("Breakout")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10, 10, 10) and obs.dtype == np.float32
    assert obs[4:].sum() == 0 and obs[:4].sum() > 0  # Breakout has 4 channels, the rest is padding
    assert env.action_space == gym.spaces.Discrete(6)


def test_minatar_episodes_end_at_the_time_limit():
    env = make_minatar_env("Freeway")  # a Freeway episode is 2,500 frames: cut shorter to see the limit act
    limited = env.env
    assert isinstance(limited, gym.wrappers.TimeLimit) and limited._max_episode_steps == 10_000
    limited._max_episode_steps = 50
    env.reset(seed=0)
    truncated = [env.step(0)[3] for _ in range(50)]
    assert truncated == [False] * 49 + [True]


def test_task_observation_rejects_bad_capacity():
    with pytest.raises(ValueError, match="max_tasks=0"):
        TaskObservation(gym.make("CartPole-v1"), 0, 0)


def test_envs_import_and_build_without_torch():
    """psp_rl.envs depends on gymnasium only: env-only tools and worker processes start without torch."""
    import subprocess
    import sys

    code = (
        "import sys; from psp_rl.envs import get_sequence; "
        "get_sequence('cartpole-shift').make_env(1).reset(seed=0); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_atari_game_starts_without_ale_banner(capfd):
    """ALE prints its banner to stderr at every game's start; the CLI's own lines come without it."""
    env = get_sequence("atari-small").make_env(0)
    env.reset(seed=0)
    env.close()
    captured = capfd.readouterr()
    assert "A.L.E" not in captured.err + captured.out
