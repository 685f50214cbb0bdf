"""Atari tasks on ale-py's vector env (``vec_env: ale``): spaces, clipping, episode ends, the task
id, frames equal to the wrapper chain's, and a run that trains, stops and resumes on it."""

import numpy as np
import pytest
import yaml

from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.envs import get_sequence, sequence_from_spec
from psp_rl.envs.atari_vector import AtariTaskVecEnv
from psp_rl.envs.factories import make_atari_env
from psp_rl.errors import ConfigError
from tests.conftest import run_train, train_here


def _play(game: str, steps: int, seed: int = 0, **options):
    """(vector env, chain env) of ``game`` with sticky actions and no-ops off, stepped by the same
    random actions until the first episode ends or ``steps``: the two frame stacks at every step."""
    vector = AtariTaskVecEnv(game, 1, task=0, max_tasks=1, sticky_actions=0.0, noop_max=0, **options)
    chain = make_atari_env(game, sticky_actions=0.0, noop_max=0, training=options.get("training", True))
    vector.seed(seed)
    frames, (chain_frames, _) = vector.reset()["obs"][0], chain.reset(seed=seed)
    pairs, rng = [(frames, chain_frames)], np.random.default_rng(seed)
    for _ in range(steps):
        action = int(rng.integers(18))
        obs, reward, done, infos = vector.step(np.array([action]))
        chain_frames, chain_reward, terminated, truncated, _ = chain.step(action)
        frames = infos[0]["terminal_observation"]["obs"] if done[0] else obs["obs"][0]
        pairs.append((frames, chain_frames))
        assert reward[0] == chain_reward
        assert bool(done[0]) == (terminated or truncated)
        if done[0]:
            break
    vector.close()
    chain.close()
    return pairs


@pytest.mark.parametrize("game", ["Breakout", "Pong"])
def test_frames_equal_the_wrapper_chains_newest_at_every_step_whole_stack_from_the_fourth(game):
    pairs = _play(game, 1200, training=False)
    assert len(pairs) > 150  # an episode's worth: Breakout ends near 200 steps, Pong's is cut at 1,200
    for step, (frames, chain_frames) in enumerate(pairs):
        np.testing.assert_array_equal(frames[-1], chain_frames[-1])
        if step >= 3:
            np.testing.assert_array_equal(frames, chain_frames)
    # at a reset the vector env's stack starts from zeros where the chain repeats the first frame
    assert not pairs[0][0][:3].any() and pairs[0][1][:3].any()


def test_spaces_task_id_and_full_actions():
    env = AtariTaskVecEnv("SpaceInvaders", 3, task=2, max_tasks=5)
    obs = env.reset()
    assert env.observation_space["obs"].shape == (4, 84, 84) and env.observation_space["obs"].dtype == np.uint8
    assert env.observation_space["task"].n == 5 and env.action_space.n == 18
    assert obs["obs"].shape == (3, 4, 84, 84) and obs["obs"].dtype == np.uint8
    assert obs["task"].tolist() == [2, 2, 2]
    obs, reward, done, infos = env.step(np.zeros(3, dtype=np.int64))
    assert reward.dtype == np.float32 and done.dtype == bool and len(infos) == 3
    assert env.get_attr("stack_size") == [4, 4, 4] and not env.has_attr("set_drift_step")
    env.close()


def _returns(training: bool) -> np.ndarray:
    env = AtariTaskVecEnv("SpaceInvaders", 2, task=0, max_tasks=1, training=training)
    env.seed(1)
    env.reset()
    rewards = [env.step(np.random.default_rng(t).integers(18, size=2))[1] for t in range(400)]
    env.close()
    return np.concatenate(rewards)


def test_rewards_are_clipped_for_training_only():
    true, clipped = _returns(training=False), _returns(training=True)
    assert true.max() > 1  # Space Invaders scores 5-30 a hit
    assert set(np.unique(clipped)) <= {-1.0, 0.0, 1.0} and clipped.max() == 1.0


def test_an_episode_cut_at_max_episode_steps_is_truncated_with_its_last_frames():
    env = AtariTaskVecEnv("Pong", 2, task=0, max_tasks=1, max_episode_steps=50)
    first = env.reset()
    for step in range(1, 51):
        obs, _, done, infos = env.step(np.zeros(2, dtype=np.int64))
        assert done.all() == (step == 50)
    assert all(info["TimeLimit.truncated"] for info in infos)
    last = infos[0]["terminal_observation"]
    assert last["task"] == 0 and last["obs"].shape == (4, 84, 84) and last["obs"][:3].any()
    assert not obs["obs"][0][:3].any()  # the next episode's first stack (zeros but its newest frame)
    assert first["obs"].shape == obs["obs"].shape
    env.close()


def test_seeded_resets_repeat_and_differ_by_seed():
    def first_steps(seed: int) -> np.ndarray:
        env = AtariTaskVecEnv("Breakout", 2, task=0, max_tasks=1)  # sticky actions and no-ops on
        env.seed(seed)
        env.reset()
        frames = [env.step(np.full(2, 3, dtype=np.int64))[0]["obs"] for _ in range(40)]
        env.close()
        return np.stack(frames)

    assert np.array_equal(first_steps(7), first_steps(7))
    assert not np.array_equal(first_steps(7), first_steps(8))


def test_the_env_threads_change_no_step_and_no_fingerprint():
    sequence = get_sequence("atari-small", tasks=["breakout"])

    def frames(threads: int) -> np.ndarray:
        env = sequence.make_vec_env(0, 4, seed=3, vec_env="ale", env_threads=threads)
        env.reset()
        rng = np.random.default_rng(0)
        out = [env.step(rng.integers(0, 18, size=4))[0]["obs"] for _ in range(60)]
        env.close()
        return np.stack(out)

    assert np.array_equal(frames(1), frames(2)) and np.array_equal(frames(1), frames(0))  # 0: one per core
    threads = parse_config({**ATARI, "agent": {**ATARI["agent"], "env_threads": 0}})
    assert threads.agent.env_threads == 0 and threads.fingerprint() == parse_config(ATARI).fingerprint()


def test_bad_input_named():
    with pytest.raises(ValueError, match=r"game 'SpaceInvader': not an Atari game; did you mean SpaceInvaders"):
        make_atari_env("SpaceInvader")
    with pytest.raises(ValueError, match=r"game 'Pongg': not an Atari ROM ale-py ships; close: \['pong'"):
        AtariTaskVecEnv("Pongg", 1, task=0, max_tasks=1)
    with pytest.raises(ValueError, match="task=3: expected an int in"):
        AtariTaskVecEnv("Pong", 1, task=3, max_tasks=2)
    with pytest.raises(ValueError, match="n_envs=0: expected a positive int"):
        AtariTaskVecEnv("Pong", 0, task=0, max_tasks=1)
    with pytest.raises(ConfigError, match=r"agent\.env_threads: input should be greater than or equal to 0, got -1"):
        parse_config({**ATARI, "agent": {**ATARI["agent"], "env_threads": -1}})
    cartpole = get_sequence("cartpole-shift", tasks=["default"])
    with pytest.raises(ValueError, match=r"vec_env='ale' steps Atari games only; task\(s\) \['default'\]"):
        cartpole.make_vec_env(0, 2, vec_env="ale")
    life_loss = sequence_from_spec(
        {"tasks": [{"atari": "Pong", "params": {"terminal_on_life_loss": True}}], "steps": 8}
    )
    with pytest.raises(ValueError, match="has no life-loss terminal"):
        life_loss.make_vec_env(0, 1, vec_env="ale")


ATARI = {
    "name": "atari-ale",
    "sequence": {"spec": {"tasks": [{"atari": "Pong"}, {"atari": "Breakout"}], "steps": 128}},
    "agent": {"algo": "ppo", "n_envs": 2, "n_steps": 16, "batch_size": 32, "n_epochs": 1, "vec_env": "ale"},
    "eval": {"every": 64, "episodes": 1, "max_episode_steps": 40},
    "checkpoint": {"every": 64},
}


def test_the_vec_env_is_part_of_the_fingerprint_and_cartpole_refuses_it(tiny_config):
    ale, chain = parse_config(ATARI), parse_config({**ATARI, "agent": {**ATARI["agent"], "vec_env": "dummy"}})
    subproc = parse_config({**ATARI, "agent": {**ATARI["agent"], "vec_env": "subproc"}})
    assert ale.fingerprint() != chain.fingerprint() == subproc.fingerprint()
    tiny_config["agent"]["vec_env"] = "ale"
    with pytest.raises(ConfigError, match=r"agent\.vec_env: vec_env='ale' steps Atari games only"):
        ContinualTrainer(parse_config(tiny_config), "unused")


def test_a_run_on_the_vector_env_is_killed_and_resumes_exactly(tmp_path):
    config = tmp_path / "atari.yaml"
    config.write_text(yaml.safe_dump(ATARI))
    train_here(config, tmp_path / "whole")
    killed = run_train(config, tmp_path / "killed", env={"PSP_RL_KILL_AT": "learn:90"})
    assert killed.returncode != 0
    train_here(config, tmp_path / "killed", "--resume")
    assert (tmp_path / "killed" / "eval.csv").read_text() == (tmp_path / "whole" / "eval.csv").read_text()
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())["agent"]["vec_env"] == "ale"


def test_an_atari_run_records_ale_py_and_each_games_rom():
    from psp_rl.envs.factories import software_versions

    versions = software_versions(get_sequence("atari-small", tasks=["pong", "spaceinvaders"]).tasks)
    assert versions["ale-py"] >= "0.12.1"
    assert set(versions["roms_md5"]) == {"Pong", "SpaceInvaders"}
    assert all(len(md5) == 32 for md5 in versions["roms_md5"].values())
