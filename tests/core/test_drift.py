"""Drifting tasks: the drift follows the run's steps, reaches the network as ``theta``, and the
context follows it (smooth powers of one context, or a context per bin)."""

import numpy as np
import pytest
import torch

from psp_rl.agents import ContinualPPO
from psp_rl.config import parse_config
from psp_rl.config.build import check_agent_fits
from psp_rl.contexts import drift_context, make_contexts
from psp_rl.envs import get_sequence
from psp_rl.errors import ConfigError
from psp_rl.policies import drift_grid, drift_slot


def test_drift_follows_the_runs_steps_whatever_the_number_of_envs():
    seq = get_sequence("cartpole-drift", steps=4000)
    env = seq.make_vec_env(0, 4, seed=0)
    env.env_method("set_drift_step", 12_500, 4)  # a quarter of the 50k-step sweep: halfway up
    assert np.allclose(env.get_attr("value"), 9.8 + (20.0 - 9.8) * 0.5)
    env.reset()
    for _ in range(100):  # 100 vector steps of 4 envs: 400 env steps of the run
        env.step(np.zeros(4, dtype=np.int64))
    expected = 9.8 + (20.0 - 9.8) * (12_900 / 25_000)
    assert np.allclose(env.get_attr("value"), expected)
    env.close()


def test_evaluation_envs_hold_the_drift_where_it_is_put():
    seq = get_sequence("cartpole-drift", steps=4000)
    env = seq.make_vec_env(0, 1, seed=0, training=False)
    env.env_method("set_drift_step", 25_000)  # the top of the sweep
    env.reset()
    for _ in range(50):
        env.step(np.zeros(1, dtype=np.int64))
    assert np.allclose(env.get_attr("value"), 20.0)
    env.close()


def test_a_drifting_task_adds_theta_to_the_observation_and_others_do_not():
    drifting = get_sequence("cartpole-drift", steps=4000).make_env(0, seed=0)
    assert set(drifting.observation_space.spaces) == {"obs", "task", "theta"}
    obs, _ = drifting.reset(seed=0)
    assert obs["theta"].shape == (1,) and obs["theta"][0] == pytest.approx(0.0)
    plain = get_sequence("cartpole-shift").make_env(0, seed=0)
    assert set(plain.observation_space.spaces) == {"obs", "task"}


def test_drift_slots_round_to_the_grid_or_fall_in_bins():
    theta = torch.tensor([0.0, 0.1, 0.49, 0.5, 0.99, 1.0])
    assert drift_slot(theta, 5, "smooth").tolist() == [0, 0, 2, 2, 4, 4]
    assert drift_slot(theta, 5, "binned").tolist() == [0, 0, 2, 2, 4, 4]
    assert drift_slot(theta, 5, "mixture").tolist() == drift_slot(theta, 5, "smooth").tolist()
    assert drift_slot(torch.tensor([0.19, 0.21]), 5, "binned").tolist() == [0, 1]
    assert drift_slot(theta, 5, "smooth_bins").tolist() == drift_slot(theta, 5, "binned").tolist()


def test_smooth_bins_give_every_slot_an_equal_share_of_a_sweep():
    """The grid's end slots collect half a bin's worth of a uniform sweep; equal bins do not."""
    sweep = torch.linspace(0, 1, 100_001)
    grid = torch.bincount(drift_slot(sweep, 8, "smooth"), minlength=8) / len(sweep)
    bins = torch.bincount(drift_slot(sweep, 8, "smooth_bins"), minlength=8) / len(sweep)
    assert grid[0] == pytest.approx(grid[3] / 2, rel=1e-3) and grid[7] == pytest.approx(grid[3] / 2, rel=1e-3)
    torch.testing.assert_close(bins, torch.full((8,), 1 / 8), atol=1e-4, rtol=0)
    assert drift_grid(8, "smooth_bins") == pytest.approx([(k + 0.5) / 8 for k in range(8)])


def _agent(drift: str, context: str = "complex", seed: int = 0) -> ContinualPPO:
    seq = get_sequence("cartpole-drift", steps=4000, max_tasks=8)
    kwargs = dict(context=context, drift=drift, input_layer="superposed", net_arch=[16, 16])
    return ContinualPPO("PSPPolicy", seq.make_vec_env(0, 1, seed=0), policy_kwargs=kwargs, seed=seed)


@pytest.mark.parametrize(("drift", "grid_theta"), [("smooth", 3 / 7), ("smooth_bins", 3.5 / 8)])
def test_smooth_drift_contexts_are_powers_of_one_context_and_theta_picks_them(drift, grid_theta):
    agent = _agent(drift)
    layers = [m for m in agent.policy.modules() if hasattr(m, "contexts") and m.context == "complex"]
    assert len(layers) == 6  # actor and critic torsos (input layer superposed), two heads
    for module in layers:
        where = dict(seed=module.seed, layer=module.layer_id)
        expected = drift_context("complex", module.contexts.size, grid_theta, **where)
        torch.testing.assert_close(module.contexts.cos[3], expected.real)
        # nearby grid points have nearby contexts; far ones are further apart
        near = (module.contexts.cos[3] - module.contexts.cos[4]).abs().mean()
        far = (module.contexts.cos[3] - module.contexts.cos[7]).abs().mean()
        assert near < far
    obs = {"obs": torch.zeros(2, 4), "task": torch.zeros(2, 1), "theta": torch.tensor([[0.0], [1.0]])}
    logits = agent.policy.get_distribution(obs).distribution.logits
    assert not torch.allclose(logits[0], logits[1])  # theta reaches the network


@pytest.mark.parametrize("context", ["binary", "complex"])
def test_mixture_drift_contexts_move_between_independent_anchors(context):
    agent = _agent("mixture", context=context)  # 8 slots: theta = 0, 1/7, ..., 1
    layers = [m for m in agent.policy.modules() if hasattr(m, "contexts") and m.context == context]
    assert len(layers) == 6
    for module in layers:
        anchors = make_contexts(context, module.contexts.size, 4, seed=module.seed, layer=module.layer_id)
        contexts = module.contexts
        table = contexts.table if context == "binary" else torch.complex(contexts.cos, contexts.sin)
        torch.testing.assert_close(table[0], anchors[0])  # theta 0 and 1: anchors 0 and 3 themselves
        torch.testing.assert_close(table[7], anchors[3])
        # slot 3 (theta 3/7, anchor position 9/7) mixes anchors 1 and 2 as 5/7 and 2/7
        torch.testing.assert_close(table[3], anchors[1] * (5 / 7) + anchors[2] * (2 / 7))
    obs = {"obs": torch.zeros(2, 4), "task": torch.zeros(2, 1), "theta": torch.tensor([[0.0], [1.0]])}
    logits = agent.policy.get_distribution(obs).distribution.logits
    assert not torch.allclose(logits[0], logits[1])


def test_without_drift_contexts_theta_changes_nothing():
    agent = _agent("none")
    obs = {"obs": torch.ones(2, 4), "task": torch.zeros(2, 1), "theta": torch.tensor([[0.0], [1.0]])}
    logits = agent.policy.get_distribution(obs).distribution.logits
    torch.testing.assert_close(logits[0], logits[1])


@pytest.mark.parametrize(("drift", "context"), [("smooth", "rotation"), ("mixture", "binary")])
def test_a_saved_drift_agent_loads_with_the_same_contexts(tmp_path, drift, context):
    agent = _agent(drift, context=context)
    agent.save(tmp_path / "model.zip")
    loaded = ContinualPPO.load(tmp_path / "model.zip")
    obs = {"obs": torch.randn(3, 4), "task": torch.zeros(3, 1), "theta": torch.tensor([[0.1], [0.5], [0.9]])}
    torch.testing.assert_close(
        agent.policy.get_distribution(obs).distribution.logits, loaded.policy.get_distribution(obs).distribution.logits
    )


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"context": "binary", "drift": "smooth"}, "agent.network.drift: 'smooth' with context='binary'"),
        ({"method": "finetune", "context": "none", "drift": "binned"}, "needs method='psp'"),
        ({"drift": "wavy"}, "agent.network.drift: input should be"),
    ],
)
def test_bad_drift_settings_are_one_line_errors(agent, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"name": "x", "sequence": {"name": "cartpole-drift"}, "agent": {"algo": "ppo", **agent}})


def test_drift_contexts_on_a_task_that_does_not_drift_are_refused():
    config = parse_config(
        {"name": "x", "sequence": {"name": "cartpole-shift"}, "agent": {"algo": "ppo", "drift": "binned"}}
    )
    with pytest.raises(ConfigError, match="needs a drifting task"):
        check_agent_fits(config.agent, get_sequence("cartpole-shift"))
