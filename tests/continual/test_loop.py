"""The loop handed its parts by hand (no config): evaluation, checkpoints, resume, callbacks."""

import logging

import pytest
import torch
from stable_baselines3 import PPO

from psp_rl.agents import ContinualPPO
from psp_rl.continual import AgentFactory, CheckpointConfig, ContinualCallback, ContinualLoop, EvalConfig, RunDir
from psp_rl.envs import get_sequence
from psp_rl.errors import CheckpointError, ConfigError
from psp_rl.policies import PSPActorCriticPolicy

PPO_ARGS = dict(policy_kwargs=dict(context="binary", net_arch=[16, 16]), n_steps=64, batch_size=32, n_epochs=1)
EVAL = EvalConfig(every=128, episodes=2)
CHECKPOINT = CheckpointConfig(every=128, keep=1)


def _loop(run_dir, agent=None, **kwargs) -> ContinualLoop:
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"], steps=256)
    agent = agent or AgentFactory(ContinualPPO, **PPO_ARGS)
    return ContinualLoop(agent, sequence, run_dir, eval=EVAL, checkpoint=CHECKPOINT, **kwargs)


class StepCounter(ContinualCallback):
    """Counts env steps through ``on_step``; its count is saved in checkpoints under its name."""

    def __init__(self, name: str = "steps") -> None:
        self._name, self.steps, self.tasks_started = name, 0, []

    @property
    def name(self) -> str:
        return self._name

    def before_task(self, loop, stage, task):
        self.tasks_started.append(task)

    def on_step(self, loop, step):
        assert {"new_obs", "rewards", "dones", "infos"} <= set(step)
        self.steps += len(step["dones"])

    def state_dict(self):
        return {"steps": torch.tensor(self.steps)}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])


def test_hand_made_loop_evaluates_checkpoints_and_resumes(tmp_path):
    counter = StepCounter()
    metrics = _loop(tmp_path / "run", callbacks=[counter]).run()
    paths = RunDir(tmp_path / "run")
    rows = paths.eval_csv.read_text().splitlines()
    assert rows[0] == "step,trained_task,eval_task,mean,std,episodes" and len(rows) == 1 + 4 * 2
    assert set(metrics["final_returns"]) == {"default", "reversed"} and paths.metrics.exists()
    assert counter.steps == 512 and counter.tasks_started == [0, 1]
    assert "ContinualPPO" in paths.config.read_text()  # the default identity names the agent
    (checkpoint,) = paths.checkpoints.glob("ckpt-*")
    saved = torch.load(checkpoint / "callbacks.pt", weights_only=True)
    assert list(saved) == ["steps"] and int(saved["steps"]["steps"]) == 512

    again = StepCounter()
    _loop(tmp_path / "run", callbacks=[again], resume=True).run()  # finished: restores, trains nothing
    assert again.steps == 512 and again.tasks_started == []


def test_hand_made_loop_refuses_a_resume_with_other_agent_settings(tmp_path):
    _loop(tmp_path / "run").run()
    other = AgentFactory(ContinualPPO, **{**PPO_ARGS, "n_steps": 128})
    with pytest.raises(CheckpointError, match=r"agent\.n_steps was 64, now 128"):
        _loop(tmp_path / "run", agent=other, resume=True).run()


def test_a_plain_sb3_agent_runs_in_the_loop(tmp_path):
    """The context follows the task id in the observation: stock PPO with the PSP policy needs no hooks."""
    metrics = _loop(tmp_path / "run", agent=AgentFactory(PPO, policy=PSPActorCriticPolicy, **PPO_ARGS)).run()
    assert len(metrics["eval_matrix"]) == 2


def test_callback_states_are_matched_by_name(tmp_path, caplog):
    _loop(tmp_path / "run", callbacks=[StepCounter("a"), StepCounter("b")]).run()
    renamed = StepCounter("c")
    with caplog.at_level(logging.WARNING):
        _loop(tmp_path / "run", callbacks=[renamed, StepCounter("a")], resume=True).run()
    assert renamed.steps == 0  # no state saved under its name
    assert "holds the state of callback 'b'" in caplog.text


def test_two_callbacks_with_one_name_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"two callbacks named \['steps'\]"):
        _loop(tmp_path / "run", callbacks=[StepCounter(), StepCounter()])


def test_sampled_evaluation_is_seeded_per_task_and_leaves_training_randomness_alone():
    from psp_rl.continual import evaluate_tasks

    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"], steps=256)
    policy = PPO(PSPActorCriticPolicy, sequence.make_vec_env(0, 1, seed=0), policy_kwargs=PPO_ARGS["policy_kwargs"])

    def returns(deterministic: bool, seed: int = 7) -> list[list[float]]:
        results = evaluate_tasks(policy, sequence, episodes=3, seed=lambda t: seed + t, deterministic=deterministic)
        return [r.returns for r in results]

    torch.manual_seed(123)
    before = torch.get_rng_state()
    sampled = returns(deterministic=False)
    assert torch.equal(torch.get_rng_state(), before)  # training's stream goes on as if no evaluation ran
    assert returns(deterministic=False) == sampled  # seeded: a resumed run evaluates alike
    assert returns(deterministic=False, seed=8) != sampled
    assert returns(deterministic=True) != sampled  # an untrained policy: the argmax plays otherwise
