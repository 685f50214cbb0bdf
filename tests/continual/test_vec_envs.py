"""Runs with several envs, in-process or in worker processes; threads; the evaluation cap."""

import os
import signal
import subprocess
import time

import pytest
import torch
import yaml

from psp_rl.agents import ContinualDQN
from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.continual import ContinualCallback
from psp_rl.envs import get_sequence
from psp_rl.errors import ConfigError
from psp_rl.threads import set_threads
from tests.conftest import run_train, train_command


@pytest.mark.parametrize(("n_envs", "train_freq", "gradient_steps"), [(8, 64, 32), (8, 4, 1), (3, 10, 3), (1, 64, 32)])
def test_dqn_keeps_the_one_env_replay_ratio(n_envs, train_freq, gradient_steps):
    env = get_sequence("cartpole-shift").make_vec_env(0, n_envs, seed=0)
    agent = ContinualDQN(
        "PSPPolicy",
        env,
        learning_starts=0,
        train_freq=train_freq,
        gradient_steps=gradient_steps,
        policy_kwargs=dict(net_arch=[16]),
        seed=0,
    )
    agent.learn(1200)
    # gradient_steps updates per train_freq transitions, give or take one rollout's worth
    expected = agent.num_timesteps * gradient_steps / train_freq
    assert abs(agent._n_updates - expected) <= gradient_steps * max(1, n_envs / train_freq) + 1
    # ... and as often as one env would (SB3 alone would update n_envs times less often)
    assert agent.train_freq.frequency == -(-train_freq // n_envs)


@pytest.mark.slow  # subprocess workers under a signal; the default suite resumes in-process runs
def test_subproc_workers_ignore_sigint_and_the_resumed_run_matches_dummy(tmp_path, tiny_config):
    """A Ctrl-C to the whole process group (what a terminal sends) stops the training process
    alone: it saves, exits 130 without a traceback, and its resume ends with the same eval.csv
    as an uninterrupted run of in-process envs (worker processes change nothing)."""
    tiny_config["agent"].update(n_envs=4, vec_env="subproc")
    tiny_config["sequence"]["steps"] = 512
    tiny_config["eval"]["every"] = 256
    tiny_config["checkpoint"]["every"] = 256
    subproc_path, dummy_path = tmp_path / "subproc.yaml", tmp_path / "dummy.yaml"
    subproc_path.write_text(yaml.safe_dump(tiny_config))
    dummy = {**tiny_config, "agent": {**tiny_config["agent"], "vec_env": "dummy"}}
    dummy_path.write_text(yaml.safe_dump(dummy))
    assert run_train(dummy_path, tmp_path / "dummy", "--no-progress").returncode == 0

    run_dir = tmp_path / "stopped"
    proc = subprocess.Popen(
        train_command(subproc_path, run_dir, "--no-progress"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    deadline = time.time() + 120
    while not list((run_dir / "checkpoints").glob("ckpt-*")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    result = run_train(subproc_path, run_dir, "--resume", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert (run_dir / "eval.csv").read_bytes() == (tmp_path / "dummy" / "eval.csv").read_bytes()


def test_train_envs_are_built_once_per_task(tmp_path, tiny_config, monkeypatch):
    from psp_rl.envs import TaskSequence

    built = []
    original = TaskSequence.make_vec_env

    def counting(self, task, n_envs=1, seed=None, **kwargs):
        if kwargs.get("training", True):
            built.append(task)
        return original(self, task, n_envs, seed, **kwargs)

    monkeypatch.setattr(TaskSequence, "make_vec_env", counting)
    ContinualTrainer(parse_config(tiny_config), tmp_path / "run").run()
    assert built == [0, 1]  # 3 chunks per task, one env each


class _ThreadsSeen(ContinualCallback):
    def __init__(self):
        self.threads = []

    def before_task(self, trainer, stage, task):
        self.threads.append(torch.get_num_threads())


@pytest.mark.parametrize("threads", [1, 2, "auto"])
def test_a_run_sets_torch_threads_and_restores_them(tmp_path, tiny_config, threads):
    tiny_config.update(threads=threads)
    tiny_config["sequence"]["steps"] = 300
    tiny_config["agent"]["acting"] = "q"  # no distillation: this test times nothing but a setting
    before = torch.get_num_threads()
    seen = _ThreadsSeen()
    set_threads(3)
    try:
        ContinualTrainer(parse_config(tiny_config), tmp_path / "run", callbacks=[seen]).run()
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    from psp_rl import threads as threads_module

    expected = threads_module._TORCH_DEFAULT if threads == "auto" else threads
    assert seen.threads == [expected, expected]


@pytest.mark.parametrize("bad", [0, -1, "two", True])
def test_bad_threads_named(tiny_config, bad):
    tiny_config["threads"] = bad
    with pytest.raises(ConfigError, match="threads"):
        parse_config(tiny_config)


def test_threads_and_vec_env_do_not_change_the_fingerprint(tiny_config):
    base = parse_config(tiny_config).fingerprint()
    tiny_config["threads"] = 2
    tiny_config["agent"]["vec_env"] = "subproc"
    assert parse_config(tiny_config).fingerprint() == base


def test_evaluation_cap_cuts_episodes_and_reports_them(tmp_path, tiny_config):
    tiny_config["sequence"]["steps"] = 300
    tiny_config["eval"].update(every=300, max_episode_steps=20)
    metrics = ContinualTrainer(parse_config(tiny_config), tmp_path / "run").run()
    assert metrics["eval_max_episode_steps"] == 20
    capped = metrics["eval_capped_episodes"]
    lines = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    assert lines[0] == "step,trained_task,eval_task,mean,std,episodes"  # no new column
    means = [float(line.split(",")[3]) for line in lines[1:]]
    assert max(means) <= 20  # CartPole pays 1 a step: no episode ran past the cap
    assert sum(capped.values()) >= 1 and set(capped) <= {"default", "reversed"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    assert any(tag.endswith("/capped_episodes") for tag in acc.Tags()["scalars"])
