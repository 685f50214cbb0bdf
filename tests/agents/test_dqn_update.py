"""ContinualDQN's update: SB3's when its options are off, advantage learning, the task-local learning
rate, bad options."""

import copy

import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.logger import configure

from psp_rl.agents import ContinualDQN, ContinualPPO
from psp_rl.envs import get_sequence
from psp_rl.plugins.probes import margins
from tests.conftest import filled, small_dqn


def test_train_matches_sb3_dqn_without_advantage_learning():
    agent = filled(
        small_dqn(get_sequence("cartpole-shift", tasks=["default"]).make_vec_env(0, 1, seed=0), train_freq=1000)
    )
    start = copy.deepcopy(agent.policy.state_dict())
    after = []
    for train in (ContinualDQN.train, DQN.train):  # the same agent, batches and seed; only train() differs
        agent.policy.load_state_dict(start)
        agent.policy.optimizer.state.clear()
        agent.set_random_seed(7)
        train(agent, gradient_steps=20, batch_size=16)
        after.append(copy.deepcopy(agent.policy.state_dict()))
    assert not torch.equal(after[0]["q_net.q_head.weight"], start["q_net.q_head.weight"])
    for name, value in after[0].items():
        assert torch.equal(value, after[1][name]), name


@pytest.mark.learning
def test_advantage_learning_widens_the_action_gap(learning_seed, record_property):
    """Median gap with alpha 0.9 over without, seeds 0-4 on the native, AVX2 and baseline float
    paths (experiments/learning_margins.py): 1.71-1.98 (bound 1.5)."""
    sequence = get_sequence("cartpole-shift", tasks=["default"])
    gaps = {}
    for alpha in (0.0, 0.9):
        env = sequence.make_vec_env(0, 1, seed=learning_seed)
        agent = filled(small_dqn(env, learning_seed, train_freq=1000, advantage_learning=alpha, learning_rate=1e-3))
        agent.set_random_seed(3 + learning_seed)
        for _ in range(40):  # fitted Q-iteration on the same data: 40 target syncs of 25 steps
            agent.train(gradient_steps=25, batch_size=16)
            agent.q_net_target.load_state_dict(agent.q_net.state_dict())
        obs = agent.replay_buffer.sample(256).observations
        with torch.no_grad():
            q = agent.q_net(obs)
        gaps[alpha] = float(margins(q, q.argmax(1)).median())
    record_property("gap_ratio", float(gaps[0.9] / gaps[0.0]))
    assert gaps[0.9] > 1.5 * gaps[0.0]


@pytest.mark.parametrize("agent_class", [ContinualDQN, ContinualPPO])
@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("task_linear", [1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0]), ("task_hold_linear", [1e-3, 1e-3, 1e-3, 5e-4, 0.0])],
)
def test_task_schedules_fall_to_zero_at_each_task_end(agent_class, schedule, expected):
    env = get_sequence("cartpole-shift", tasks=["default"]).make_vec_env(0, 1, seed=0)
    agent = agent_class("PSPPolicy", env, learning_rate=1e-3, task_lr_schedule=schedule, seed=0)
    agent.set_logger(configure(None, []))
    rates = []
    for start in (0, 3000):  # a second task restarts the schedule
        agent.num_timesteps = start
        agent.on_task_start(0, 1000)
        for done in (0, 250, 500, 750, 1000):
            agent.num_timesteps = start + done
            agent._update_learning_rate(agent.policy.optimizer)
            rates.append(agent.policy.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx(expected * 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"advantage_learning": 1.0}, r"advantage_learning=1\.0: expected 0 <= alpha < 1"),
        ({"task_lr_schedule": "cosine"}, r"task_lr_schedule='cosine': expected one of"),
        ({"distil_loss": "kl"}, r"distil_loss='kl': expected one of \['margin', 'cross_entropy'\]"),
        ({"distil_margin": 0}, r"distil_margin=0: expected a number > 0"),
        ({"distil_visits": -1}, r"distil_visits=-1: expected an int >= 0"),
        ({"rehearsal_states": -1}, r"rehearsal_states=-1: expected an int >= 0"),
    ],
)
def test_agent_options_bad_values(kwargs, match):
    env = get_sequence("cartpole-shift", tasks=["default"]).make_vec_env(0, 1, seed=0)
    with pytest.raises(ValueError, match=match):
        ContinualDQN("PSPPolicy", env, **kwargs)
