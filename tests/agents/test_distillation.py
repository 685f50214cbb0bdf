"""PSP-DQN's distilled policy for finished tasks: it acts, DAgger visits, a CNN for frames, bad input."""

import copy

import pytest
import torch
from stable_baselines3.common.logger import configure

from psp_rl.agents import ContinualDQN
from psp_rl.envs import get_sequence
from psp_rl.plugins.probes import margins
from tests.conftest import trained_on_task_0


@pytest.mark.learning
@pytest.mark.parametrize("distil_loss", ["margin", "cross_entropy"])
def test_distilled_policy_acts_for_a_finished_task(tmp_path, distil_loss, learning_seed, record_property):
    """Distilled actions equal to Q's greedy ones on task 0's replayed states, seeds 0-4 on three
    float paths: 0.992-0.999 (bound 0.95)."""
    sequence, agent = trained_on_task_0(
        learning_seed, distil_loss=distil_loss, policy_kwargs=dict(net_arch=[64, 64], acting="distilled")
    )
    q_net = agent.policy.q_net
    obs = task_states_tensor(agent, 0)
    with torch.no_grad():
        q_actions = q_net(obs).argmax(1)
    assert not bool(q_net.distilled.any())
    if distil_loss == "margin":  # a larger margin asked, larger margins got (a floor: the median overshoots it)
        start, medians = copy.deepcopy(q_net.state_dict()), {}
        for margin in (2.0, 20.0):
            q_net.load_state_dict(start)
            agent.distil_margin = margin
            agent.distil(0)
            with torch.no_grad():
                logits = q_net.policy_logits(obs)
            medians[margin] = float(margins(logits, logits.argmax(1)).median())
            record_property(f"median_margin[{margin}]", float(medians[margin]))
        # seeds 0-4, three float paths: margin 2 gave medians 4.4-18.6, margin 20 gave 2.5-5.6x that
        assert medians[20.0] >= 1.5 * medians[2.0] and medians[2.0] >= 2, medians
        q_net.load_state_dict(start)
        agent.distil_margin = 5.0
    agent.set_env(sequence.make_vec_env(1, 1, seed=1))
    agent.on_task_start(1, 1500)  # distils task 0 before its transitions are cleared
    assert q_net.distilled.tolist() == [True, False]
    with torch.no_grad():
        acted = q_net._predict(obs)
        record_property("agreement", float((acted == q_actions).float().mean()))
        assert float((acted == q_actions).float().mean()) >= 0.95
        for param in [*q_net.torso.parameters(), *q_net.q_head.parameters()]:
            param.add_(torch.randn_like(param))  # Q changes a lot; task 0's actions do not
        assert torch.equal(q_net._predict(obs), acted)
        task1 = {**obs, "task": torch.ones_like(obs["task"])}
        assert torch.equal(q_net._predict(task1), q_net(task1).argmax(1))  # task 1 still acts from Q
    agent.save(tmp_path / "agent.zip")
    loaded = ContinualDQN.load(tmp_path / "agent.zip")
    assert loaded.policy.q_net.distilled.tolist() == [True, False]

    with torch.no_grad():
        assert torch.equal(loaded.policy.q_net._predict(obs), acted)


@pytest.mark.learning
def test_distil_visits_acts_in_the_finished_task_first_from_q_then_from_its_distillation(
    learning_seed, record_property
):
    """DAgger: half the visits act greedily on Q, half from the first distillation; the states
    they reach, labelled by Q, are distilled with the replayed ones. Agreement with Q where the
    distilled policy goes, seeds 0-4 on three float paths: 0.98-1.0 (bound 0.9)."""
    sequence, agent = trained_on_task_0(
        learning_seed, distil_visits=300, policy_kwargs=dict(net_arch=[64, 64], acting="distilled")
    )
    q_net, built = agent.policy.q_net, []

    def task_env(task):
        built.append((task, bool(q_net.distilled[task])))  # who will act in it
        return sequence.make_vec_env(task, 1, seed=7, training=False)

    agent.set_env(sequence.make_vec_env(1, 1, seed=1))
    agent.on_task_start(1, 1500, task_env=task_env)
    assert built == [(0, False), (0, True)]
    assert q_net.distilled.tolist() == [True, False]
    visited = agent._visit(task_env(0), 500)  # where task 0's distilled policy now goes
    assert len(visited["task"]) == 500 and set(visited["task"].ravel().tolist()) == {0}
    obs, _ = agent.policy.obs_to_tensor(visited)
    with torch.no_grad():
        agreement = float((q_net.policy_logits(obs).argmax(1) == q_net(obs).argmax(1)).float().mean())
    record_property("agreement", float(agreement))
    assert agreement >= 0.9, agreement  # the distilled policy does what Q would where it goes


@pytest.mark.learning
def test_distilled_policy_of_frames_is_a_cnn_read_from_the_buffer_in_batches(learning_seed, record_property):
    """MinAtar frames: the distilled policy is a second CNN of Q's kind, the states come from the
    compact replay buffer a batch at a time, and the finished task acts from its logits. Agreement
    with Q, seeds 0-4 on three float paths: 0.975-0.995 (bound 0.9)."""
    pytest.importorskip("minatar")
    from psp_rl.config.build import replay_buffer_kwargs
    from psp_rl.layers import SuperposedConv2d

    sequence = get_sequence("minatar", tasks=["breakout", "spaceinvaders"])
    env = sequence.make_vec_env(0, 1, seed=learning_seed)
    agent = ContinualDQN(
        "PSPPolicy",
        env,
        learning_starts=50,
        train_freq=8,
        gradient_steps=2,
        buffer_size=2000,
        seed=learning_seed,
        distil_steps=300,
        policy_kwargs=dict(acting="distilled", center=True),
        **replay_buffer_kwargs(None, env),
    )
    assert agent.distil_margin == 5.0  # left out: the frames' default (20 is the vectors')
    agent.set_logger(configure(None, []))
    agent.on_task_start(0, 600)
    agent.learn(600, reset_num_timesteps=False)
    q_net = agent.policy.q_net
    assert any(isinstance(m, SuperposedConv2d) for m in q_net.policy_torso.modules())
    obs = task_states_tensor(agent, 0)
    agent.set_env(sequence.make_vec_env(1, 1, seed=1))
    agent.on_task_start(1, 600)
    assert q_net.distilled.tolist() == [True, False]
    with torch.no_grad():
        q_actions, acted = q_net(obs).argmax(1), q_net._predict(obs)
        assert torch.equal(acted, q_net.policy_logits(obs).argmax(1))
    record_property("agreement", float((acted == q_actions).float().mean()))
    assert float((acted == q_actions).float().mean()) >= 0.9
    with pytest.raises(ValueError, match=r"distil_arch=\[32\]: the distilled policy of image observations"):
        ContinualDQN("PSPPolicy", env, policy_kwargs=dict(acting="distilled", distil_arch=[32]))
    # what runs saved before image distillation existed built: "auto" acts from Q on frames
    assert ContinualDQN("PSPPolicy", env, policy_kwargs=dict(acting="auto")).policy.q_net.policy_torso is None


def task_states_tensor(agent, task):
    obs, _ = agent.policy.obs_to_tensor(agent.task_states(task))
    return obs


def test_distilled_acting_bad_input():
    sequence = get_sequence("cartpole-shift", tasks=["default"])
    with pytest.raises(ValueError, match=r"acting='greedy': expected one of \['q', 'distilled', 'auto'\]"):
        ContinualDQN("PSPPolicy", sequence.make_vec_env(0, 1, seed=0), policy_kwargs=dict(acting="greedy"))
    agent = ContinualDQN("PSPPolicy", sequence.make_vec_env(0, 1, seed=0))
    with pytest.raises(ValueError, match="acting='q'; use acting='distilled'"):
        agent.distil(0)


def test_rows_that_change_only_the_distillation_train_the_same_q(tmp_path):
    """bench_retention pairs PSP-DQN rows by seed as the same Q acting another way
    (experiments/variants/dqn-budget.yaml): a row that changes only the distillation (its margin, its
    DAgger visits) changes the distilled policy and leaves the Q-network's trajectory alone, with
    keep_best and the probes on as those rows run (keep_best's choices read Q's own task only)."""
    from psp_rl.config import ContinualTrainer, parse_config
    from tests.conftest import tiny

    base = {"keep_best": True, "probes.enabled": True, "sequence.steps": 600, "eval.every": 300}
    base["agent.learning_starts"] = 100
    final = {}
    rows = (("m20", {}), ("m5", {"agent.distil_margin": 5.0}), ("visits", {"agent.distil_visits": 400}))
    for name, change in rows:  # m20: the default margin on vectors
        trainer = ContinualTrainer(parse_config(tiny({**base, **change})), tmp_path / name)
        trainer.run()
        final[name] = trainer.agent.policy.q_net.state_dict()
    assert trainer.config.agent.distil.margin == 20.0  # the visits row, margin left out: recorded as it ran
    q_part = [key for key in final["m20"] if key.startswith(("torso.", "q_head."))]
    policy_part = [key for key in final["m20"] if key.startswith(("policy_torso.", "policy_head."))]
    assert q_part and policy_part
    for name in ("m5", "visits"):
        assert all(torch.equal(final[name][key], final["m20"][key]) for key in q_part), name
        assert not all(torch.equal(final[name][key], final["m20"][key]) for key in policy_part), name
