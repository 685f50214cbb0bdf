"""Tasks that change mid-episode (``sequence.switch: mid_episode``): the running episode goes on
under the next task's physics, across chunks too, and a killed run resumes inside it exactly."""

import copy
import json

import numpy as np
import pytest
import yaml

from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.continual import ContinualCallback
from psp_rl.envs import get_sequence, sequence_from_spec
from psp_rl.envs.episodes import carry_episodes
from psp_rl.errors import ConfigError
from tests.conftest import finished_run, run_train, train_here
from tests.plugins.test_inference import HIDDEN_KILL, HIDDEN_RUN


def _stepped(sequence, task: int, steps: int, seed: int = 3):
    env = sequence.make_vec_env(task, 1, seed=seed)
    env.reset()
    for _ in range(steps):
        env.step(np.array([1]))
    return env


def test_carried_episode_keeps_its_state_and_takes_the_new_physics():
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"])
    old = _stepped(sequence, 0, 5)
    new = sequence.make_vec_env(1, 1, seed=4)
    carry_episodes(old.envs, new.envs)
    carried, source = new.envs[0], old.envs[0]
    assert np.array_equal(carried.unwrapped.state, source.unwrapped.state)
    assert carried.rewards == [1.0] * 5 and not carried.needs_reset  # Monitor: the episode's return so far
    assert carried.unwrapped.force_mag == -10.0  # ... under the new task's physics
    velocity = carried.unwrapped.state[1]
    obs, _, _, _ = new.step(np.array([1]))  # 'push right' now pushes left
    assert obs["obs"][0, 1] < velocity and obs["task"][0] == 1
    obs, _, _, _ = old.step(np.array([1]))
    assert obs["obs"][0, 1] > velocity


def test_carrying_needs_a_physics_state():
    spec = {"tasks": [{"env_id": "FrozenLake-v1"}, {"env_id": "FrozenLake-v1"}], "steps": 100, "switch": "mid_episode"}
    with pytest.raises(ValueError, match=r"FrozenLakeEnv has none; expected a classic-control env"):
        sequence_from_spec(spec)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"sequence": {"switch": "sometimes"}}, r"sequence\.switch: input should be 'reset' or 'mid_episode'"),
        (
            {"sequence": {"switch": "mid_episode"}, "agent": {"vec_env": "subproc"}},
            r"sequence\.switch: 'mid_episode' .* agent\.vec_env='subproc' .*; expected vec_env: dummy",
        ),
    ],
)
def test_config_rejects_bad_switch_settings(tiny_config, patch, match):
    for section, values in patch.items():
        tiny_config[section].update(values)
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny_config)


class EpisodeEnds(ContinualCallback):
    """(step, length) of every training episode that ends."""

    def __init__(self):
        self.ends = []

    def on_step(self, loop, step):
        for info in step["infos"]:
            if "episode" in info:
                self.ends.append((loop.agent.num_timesteps, info["episode"]["l"]))


def _first_episode_after(tmp_path, tiny_config, switch: str) -> tuple[int, int]:
    tiny_config["sequence"]["switch"] = switch
    ends = EpisodeEnds()
    trainer = ContinualTrainer(parse_config(tiny_config), tmp_path / switch, callbacks=[ends])
    trainer.run()
    if switch == "mid_episode":  # the carried episode's transitions were stored under the new task's id
        buffer = trainer.agent.replay_buffer
        assert set(buffer.observations["task"][: buffer.pos].ravel().tolist()) == {1}
    boundary = trainer.state.stage_end_steps[0]  # chunks end on whole rollouts: not exactly at `steps`
    return next((step - boundary, length) for step, length in ends.ends if step > boundary)


def test_episode_goes_on_across_the_switch(tmp_path, tiny_config):
    since_switch, length = _first_episode_after(tmp_path, tiny_config, "mid_episode")
    assert length > since_switch  # it began before the switch
    since_switch, length = _first_episode_after(tmp_path, tiny_config, "reset")
    assert length <= since_switch  # the control: a switch starts fresh episodes


def test_mid_episode_run_killed_resumes_exactly(tmp_path, tiny_config):
    """Killed in task 1, the run resumes from the checkpoint at the switch, inside the episodes it
    carried over: the same eval.csv as the run never killed."""
    tiny_config["sequence"]["switch"] = "mid_episode"
    path = tmp_path / "mid.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    train_here(path, tmp_path / "whole")
    assert run_train(path, tmp_path / "killed", env={"PSP_RL_KILL_AT": "learn:2100"}).returncode == -9
    train_here(path, tmp_path / "killed", "--resume")
    assert (tmp_path / "killed" / "eval.csv").read_bytes() == (tmp_path / "whole" / "eval.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.learning
def test_hidden_ids_mid_episode_ppo_run_detects_and_resumes_exactly(tmp_path, learning_seed, record_property):
    """Hidden ids with tasks that change mid-episode (PSP-PPO): the switch is still detected, and
    a run killed after it resumes to the same eval.csv and inference metrics. Seeds 0-1 on three
    float paths: detected 304-544 env steps after the switch (bound 2,000)."""
    config = copy.deepcopy(HIDDEN_RUN)
    config["sequence"]["switch"] = "mid_episode"
    config["seed"] = learning_seed
    config_path, whole = finished_run(tmp_path, config)
    inference = json.loads((whole / "metrics.json").read_text())["TaskInference"]
    (switch,) = inference["switches"]
    record_property("delay", float(switch["delay"] if switch["delay"] is not None else float("inf")))
    assert switch["delay"] is not None and switch["delay"] <= 2000
    killed = run_train(config_path, tmp_path / "killed", env={"PSP_RL_KILL_AT": HIDDEN_KILL})
    assert killed.returncode != 0
    train_here(config_path, tmp_path / "killed", "--resume")
    assert (tmp_path / "killed" / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["TaskInference"] == inference
