"""Online EWC: the Fisher estimate, the penalty's pull, resume, and its config."""

import signal

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.config.build import build_agent, build_sequence
from psp_rl.continual import ContinualCallback
from psp_rl.errors import ConfigError
from psp_rl.plugins.ewc import OnlineEWC, fisher_diagonal
from tests.conftest import run_train, tiny, train_here

PPO_AGENT = {"algo": "ppo", "method": "ewc", "context": "none", "net_arch": [32, 32], "n_steps": 64, "batch_size": 64}


def _ewc_config(algo: str, strength: float, seed: int = 0) -> dict:
    config = tiny()
    config["seed"] = seed
    if algo == "ppo":
        config["agent"] = dict(PPO_AGENT)
    config["agent"].update(method="ewc", context="none", ewc_lambda=strength)
    return config


class _Snapshot(ContinualCallback):
    """Weights and Fisher at the end of task 0 (runs after EWC's own hook)."""

    def after_task(self, trainer, stage, task):
        if stage == 0:
            self.fisher = {n: f.clone() for n, f in trainer.callbacks[0].fisher.items()}
            self.weights = {n: p.detach().clone() for n, p in trainer.agent.policy.named_parameters()}


@pytest.mark.learning
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_penalty_holds_the_weights_that_matter_to_task_zero(tmp_path, algo, learning_seed, record_property):
    """Held over free Fisher-weighted distance, seeds 0-4 on the native, AVX2 and baseline float
    paths (experiments/learning_margins.py): DQN 8e-6 to 6e-5, PPO 4e-9 to 2e-8 (bound 0.1)."""
    moved = {}
    for strength in (0.0, 1e5):
        snapshot = _Snapshot()
        trainer = ContinualTrainer(parse_config(_ewc_config(algo, strength, learning_seed)), tmp_path / str(strength),
                                   callbacks=[snapshot])  # fmt: skip
        trainer.run()
        if strength > 0:  # the penalty during task 1 reaches TensorBoard
            events = EventAccumulator(str(tmp_path / str(strength) / "tb")).Reload()
            assert max(e.value for e in events.Scalars("ewc/penalty")) > 0
        params = dict(trainer.agent.policy.named_parameters())
        moved[strength] = sum(
            float((f * (params[n].detach() - snapshot.weights[n]) ** 2).sum()) for n, f in snapshot.fisher.items()
        )
    record_property("held_over_free", float(moved[1e5] / moved[0.0]))
    assert moved[0.0] > 0
    assert moved[1e5] < 0.1 * moved[0.0]  # the Fisher-weighted distance from task 0's weights shrinks


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_fisher_is_a_nonnegative_per_parameter_estimate(tmp_path, algo):
    config = parse_config(_ewc_config(algo, 1.0))
    seq = build_sequence(config.sequence)
    agent = build_agent(config.agent, seq.make_vec_env(0, seed=0), seed=0)
    agent.learn(300)
    obs = agent.task_states(0, 64, seed=0)
    assert len(obs["task"]) == 64 and set(obs["task"].ravel().tolist()) == {0}
    fisher = fisher_diagonal(agent, obs, seed=0)
    names = {n for n, _ in agent.policy.named_parameters() if not n.startswith("q_net_target")}
    assert set(fisher) == names
    assert all((f >= 0).all() for f in fisher.values()) and sum(float(f.sum()) for f in fisher.values()) > 0
    torch.testing.assert_close(fisher, fisher_diagonal(agent, obs, seed=0), atol=0, rtol=0)  # reproducible
    if algo == "ppo":  # the critic does not shape the action distribution
        assert all(float(fisher[n].abs().sum()) == 0 for n in names if n.startswith(("vf_torso", "value_head")))
    with pytest.raises(RuntimeError, match="no observations of task 1"):
        agent.task_states(1, 64, seed=0)


def test_killed_ewc_run_resumes_with_its_fisher(tmp_path):
    config_path = tmp_path / "ewc.yaml"
    config_path.write_text(yaml.safe_dump(_ewc_config("dqn", 1e4)))
    train_here(config_path, tmp_path / "whole")
    killed = run_train(config_path, tmp_path / "killed", env={"PSP_RL_KILL_AT": "learn:2100"})  # mid task 1
    assert killed.returncode == -signal.SIGKILL
    train_here(config_path, tmp_path / "killed", "--resume")
    assert (tmp_path / "killed" / "eval.csv").read_bytes() == (tmp_path / "whole" / "eval.csv").read_bytes()
    saved = torch.load(sorted((tmp_path / "whole" / "checkpoints").glob("ckpt-*"))[-1] / "callbacks.pt")
    assert set(saved["OnlineEWC"]) == {"fisher", "anchor"}  # keyed by callback name


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (
            {"method": "psp", "context": "binary", "ewc_lambda": 10.0},
            r"agent\.ewc\.strength: only used by method='ewc'",
        ),
        ({"ewc_lambda": -1.0}, r"agent\.ewc\.strength: input should be greater than or equal to 0, got -1\.0"),
        ({"ewc_decay": 1.5}, r"agent\.ewc\.decay: input should be less than or equal to 1, got 1\.5"),
        ({"context": "binary"}, r"agent\.network\.context: method='ewc' is a plain-network baseline"),
    ],
)
def test_ewc_config_errors_name_the_field(patch, match):
    config = _ewc_config("dqn", 1.0)
    config["agent"].update(patch)
    with pytest.raises(ConfigError, match=match):
        parse_config(config)


def test_bad_ewc_arguments():
    with pytest.raises(ValueError, match=r"strength=-1: expected a number >= 0"):
        OnlineEWC(-1)
    with pytest.raises(ValueError, match=r"decay=0: expected 0 < decay <= 1"):
        OnlineEWC(1.0, decay=0)
    with pytest.raises(ValueError, match=r"samples=2\.5: expected a positive int"):
        OnlineEWC(1.0, samples=2.5)


@pytest.mark.parametrize("method", ["psp", "ewc"])
def test_the_saved_config_of_every_method_parses_back(method):
    """config.yaml is re-read on --resume: unset ewc_* settings must not count as set."""
    from psp_rl.config.schema import dump_config

    config = _ewc_config("dqn", 5.0) if method == "ewc" else tiny()
    parsed = parse_config(config)
    assert parse_config(yaml.safe_load(dump_config(parsed))) == parsed
