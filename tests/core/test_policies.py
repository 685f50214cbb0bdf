import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.evaluation import evaluate_policy

from experiments.bench_input_layer import visited_states
from psp_rl.agents import ContinualDQN, ContinualPPO
from psp_rl.envs import get_sequence
from psp_rl.policies import PSPActorCriticPolicy, PSPDQNPolicy
from psp_rl.settings import PSPSettings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cartpoles():
    return get_sequence("cartpole-shift", tasks=["default", "reversed", "long-pole"], steps=1000)


def _make(algo, seq, context="binary", **kwargs):
    env = seq.make_vec_env(0, 2, seed=0)
    if algo == "dqn":
        return ContinualDQN("PSPPolicy", env, learning_starts=50, buffer_size=2000, seed=0,
                            policy_kwargs=dict(context=context, net_arch=[32, 32]), **kwargs)  # fmt: skip
    return ContinualPPO("PSPPolicy", env, n_steps=32, batch_size=32, seed=0,
                        policy_kwargs=dict(context=context, net_arch=[32, 32]), **kwargs)  # fmt: skip


def _task_obs(seq, task, n=16, seed=0):
    env = seq.make_env(task, seed=seed)
    obs = [env.reset(seed=seed + i)[0] for i in range(n)]
    return {"obs": np.stack([o["obs"] for o in obs]), "task": np.array([o["task"] for o in obs])}


def test_wrapped_env_passes_sb3_check_env(cartpoles):
    check_env(cartpoles.make_env(1), warn=False)
    check_env(get_sequence("minatar").make_env(2), warn=False)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
@pytest.mark.parametrize("context", ["binary", "complex", "rotation", "none"])
def test_predict_single_and_batched(cartpoles, algo, context):
    model = _make(algo, cartpoles, context)
    model.learn(100)
    single = cartpoles.make_env(1).reset(seed=0)[0]
    action, _ = model.predict(single, deterministic=True)
    assert np.shape(action) == () and action in (0, 1)
    batch = _task_obs(cartpoles, 2)
    actions, _ = model.predict(batch, deterministic=True)
    assert actions.shape == (16,)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
@pytest.mark.parametrize("context", ["binary", "complex", "none"])
def test_save_load_same_actions_for_every_task(cartpoles, tmp_path, algo, context):
    model = _make(algo, cartpoles, context)
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = type(model).load(tmp_path / "model.zip")
    for task in range(3):
        obs = _task_obs(cartpoles, task)
        np.testing.assert_array_equal(
            model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
        )
        obs_t, _ = model.policy.obs_to_tensor(obs)
        if algo == "dqn":
            torch.testing.assert_close(model.q_net(obs_t), loaded.q_net(obs_t), atol=0, rtol=0)
        else:
            torch.testing.assert_close(model.policy.predict_values(obs_t), loaded.policy.predict_values(obs_t))


def test_gaussian_actor_critic_on_continuous_actions(tmp_path):
    seq = get_sequence("pendulum-shift", tasks=["default", "reversed"], steps=100)
    model = ContinualPPO("PSPPolicy", seq.make_vec_env(1, 2, seed=0), n_steps=32, batch_size=32, seed=0)
    model.learn(64)
    assert model.policy.log_std.shape == (2, 1)  # one log-std per task
    obs = _task_obs(seq, 1, n=4)
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (4, 1)
    model.save(tmp_path / "p.zip")
    np.testing.assert_array_equal(ContinualPPO.load(tmp_path / "p.zip").predict(obs, deterministic=True)[0], actions)


def test_centred_actor_critic_moves_only_the_trained_tasks_means_and_saves_them(cartpoles, tmp_path):
    model = ContinualPPO("PSPPolicy", cartpoles.make_vec_env(1, 2, seed=0), n_steps=32, batch_size=32, seed=0,
                         policy_kwargs=dict(net_arch=[32, 32], center=True))  # fmt: skip
    centred = {name: m for name, m in model.policy.named_modules() if getattr(m, "center", False) is True}
    # the per-task first layer has nothing to centre; the second layers and both heads do
    assert set(centred) == {"pi_torso.layers.2", "vf_torso.layers.2", "action_head", "value_head"}
    model.learn(64)  # two rollouts of task 1, each followed by PPO's updates (training mode)
    for name, layer in centred.items():
        means = layer.running_input_mean
        assert means[1].abs().sum() > 0 and means[[0, 2]].abs().sum() == 0, name
    model.save(tmp_path / "c.zip")
    loaded = ContinualPPO.load(tmp_path / "c.zip")
    obs_t, _ = model.policy.obs_to_tensor(_task_obs(cartpoles, 1))
    torch.testing.assert_close(model.policy.predict_values(obs_t), loaded.policy.predict_values(obs_t))


def test_evaluate_policy_and_subproc_vec_env(cartpoles):
    model = _make("dqn", cartpoles)
    model.set_env(cartpoles.make_vec_env(1, 2, seed=3, vec_env="subproc"))
    model.learn(100)
    assert model.num_timesteps == 100  # 50 steps of 2 worker envs
    in_process = evaluate_policy(model, cartpoles.make_vec_env(2, 2, seed=1), n_eval_episodes=4)
    workers = evaluate_policy(model, cartpoles.make_vec_env(2, 2, seed=1, vec_env="subproc"), n_eval_episodes=4)
    assert workers == in_process  # a deterministic policy on the same seeded episodes
    model.env.close()


def test_target_network_shares_contexts_and_weights(cartpoles):
    model = _make("dqn", cartpoles, "complex")
    obs_t, _ = model.policy.obs_to_tensor(_task_obs(cartpoles, 1))
    torch.testing.assert_close(model.q_net(obs_t), model.q_net_target(obs_t), atol=0, rtol=0)


def test_mixed_task_batch_matches_per_task_rows(cartpoles):
    model = _make("dqn", cartpoles, "binary")
    a, b = _task_obs(cartpoles, 0, n=4), _task_obs(cartpoles, 2, n=4)
    mixed = {k: np.concatenate([a[k], b[k]]) for k in a}
    q = lambda o: model.q_net(model.policy.obs_to_tensor(o)[0])  # noqa: E731
    torch.testing.assert_close(q(mixed), torch.cat([q(a), q(b)]), atol=1e-6, rtol=0)


def _switch(context: str, seed: int, steps: int = 30_000) -> tuple[float, float, float]:
    """PPO on task 0 then on the reversed task: (greedy actions kept on task-0 states, task-0 return before, after)."""
    from psp_rl.hyperparams import PPO_CARTPOLE

    seq = get_sequence("cartpole-shift", tasks=["default", "reversed"])
    model = ContinualPPO("PSPPolicy", seq.make_vec_env(0, 8, seed=seed), seed=seed,
                         policy_kwargs=dict(context=context), **PPO_CARTPOLE)  # fmt: skip
    model.on_task_start(0, steps)
    model.learn(steps)
    states = visited_states(model, seq, 500, seed)
    actions_before = model.predict(states, deterministic=True)[0]
    before = evaluate_policy(model, seq.make_vec_env(0, 5, seed=100), n_eval_episodes=10)[0]
    model.set_env(seq.make_vec_env(1, 8, seed=seed + 1))
    model.on_task_start(1, steps)
    model.learn(steps, reset_num_timesteps=False)
    kept = float((model.predict(states, deterministic=True)[0] == actions_before).mean())
    after = evaluate_policy(model, seq.make_vec_env(0, 5, seed=100), n_eval_episodes=10)[0]
    return kept, before, after


@pytest.mark.slow
@pytest.mark.learning
def test_switching_task_keeps_task_zero_for_binary_not_for_none(learning_seed, record_property):
    """Seeds 0-1 on the native, AVX2 and baseline float paths (experiments/learning_margins.py):
    binary learned task 0 to 500 and kept 500 every time; the plain network learned it to 194-500
    (bound 100: it must have something to lose) and fell to 9.1-9.6; greedy actions kept, binary
    0.70-0.90 against none 0.23-0.50, a lead of 0.25-0.57 (bound 0.15)."""
    binary, none = _switch("binary", seed=learning_seed), _switch("none", seed=learning_seed)
    for name, (kept, before, after) in (("binary", binary), ("none", none)):
        record_property(f"{name}_kept", float(kept))
        record_property(f"{name}_before", float(before))
        record_property(f"{name}_after", float(after))
    print(f"binary: kept {binary[0]:.3f}, return {binary[1]:.0f}->{binary[2]:.0f}; "
          f"none: kept {none[0]:.3f}, return {none[1]:.0f}->{none[2]:.0f}")  # fmt: skip
    assert binary[1] >= 400 and none[1] >= 100  # both learned task 0
    assert binary[2] >= 0.9 * binary[1]  # superposition keeps task 0 ...
    assert none[2] <= 0.5 * none[1]  # ... the plain network loses it to the reversed controls
    assert binary[0] >= none[0] + 0.15  # more greedy actions kept


def test_policy_rejects_a_non_dict_observation_space():
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"expected Dict\(\{'obs': Box, 'task': Discrete\(max_tasks\)\}\)"):
        DQN(PSPDQNPolicy, env)
    with pytest.raises(ValueError, match="expected Dict"):
        PPO(PSPActorCriticPolicy, env)


def test_task_id_beyond_capacity_is_refused(cartpoles):
    model = _make("dqn", cartpoles)
    obs = _task_obs(cartpoles, 0, n=2)
    obs["task"] = np.array([0, 3])
    with pytest.raises(ValueError, match=r"task id 3 out of range \[0, 3\)"):
        model.predict(obs, deterministic=True)


def test_env_with_other_spaces_is_refused_at_switch(cartpoles):
    model = _make("ppo", cartpoles)
    other = get_sequence("acrobot-shift").make_vec_env(0, 2)
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        model.set_env(other)


def test_bad_agent_settings():
    seq = get_sequence("cartpole-shift", tasks=["default"])
    with pytest.raises(ValueError, match="replay_on_switch='forget'"):
        ContinualDQN("PSPPolicy", seq.make_vec_env(0), replay_on_switch="forget")
    with pytest.raises(ValueError, match="context='gauss'"):
        ContinualDQN("PSPPolicy", seq.make_vec_env(0), policy_kwargs=dict(context="gauss"))
    with pytest.raises(ValueError, match="use_sde=True"):
        ContinualPPO("PSPPolicy", get_sequence("pendulum-shift").make_vec_env(0), use_sde=True)


@pytest.mark.parametrize("replay", ["clear", "keep"])
def test_task_switch_restarts_exploration_and_applies_the_replay_policy(cartpoles, replay):
    model = _make("dqn", cartpoles, replay_on_switch=replay, exploration_fraction=0.5)
    model.on_task_start(0, 400)
    model.learn(400)
    assert model.exploration_rate < 0.2  # the schedule ran down over task 0's 400 steps
    filled = model.replay_buffer.size()
    model.set_env(cartpoles.make_vec_env(1, 2, seed=1))
    model.on_task_start(1, 400)
    assert model.exploration_rate == pytest.approx(1.0)  # exploration restarts for the new task
    assert model.replay_buffer.size() == (0 if replay == "clear" else filled)
    model.learn(200, reset_num_timesteps=False)
    tasks = set(model.replay_buffer.observations["task"][: model.replay_buffer.size()].ravel().tolist())
    assert tasks == ({1} if replay == "clear" else {0, 1})  # kept transitions carry their own task id


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_a_finished_tasks_own_parameters_do_not_move(cartpoles, algo):
    """Separate networks: task 0's slice gets zero gradients on task 1, and no stale Adam momentum either."""
    env = cartpoles.make_vec_env(0, 2, seed=0)
    kwargs = dict(learning_starts=50, buffer_size=2000) if algo == "dqn" else dict(n_steps=32, batch_size=32)
    model = (ContinualDQN if algo == "dqn" else ContinualPPO)(
        "PSPPolicy", env, seed=0, policy_kwargs=dict(context="none", net_arch=[32, 32], separate=True), **kwargs
    )
    model.on_task_start(0, 300)
    model.learn(300)
    before = {n: p.detach()[0].clone() for n, p in model.policy.named_parameters() if p.shape[0] == 3}
    model.set_env(cartpoles.make_vec_env(1, 2, seed=1))
    model.on_task_start(1, 300)
    model.learn(300, reset_num_timesteps=False)
    after = {n: p.detach()[0] for n, p in model.policy.named_parameters() if p.shape[0] == 3}
    assert before and all(torch.equal(before[n], after[n]) for n in before)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_obs_to_tensor_matches_sb3_without_touching_the_callers_arrays(cartpoles, algo):
    from stable_baselines3.common.policies import BasePolicy

    policy = _make(algo, cartpoles).policy
    for obs in (_task_obs(cartpoles, 1, n=3), {"obs": np.zeros(4, np.float32), "task": np.int64(2)}):
        ours, vectorized = policy.obs_to_tensor(obs)
        theirs, sb3_vectorized = BasePolicy.obs_to_tensor(policy, obs)
        assert vectorized == sb3_vectorized
        for key in ("obs", "task"):
            assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key])
        ours["obs"] += 1  # the tensors are copies
        assert not np.shares_memory(ours["obs"].numpy(), obs["obs"])


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_device_follows_the_policy_to_another_device(cartpoles, algo):
    from stable_baselines3.common.policies import BaseModel

    policy = _make(algo, cartpoles).policy
    assert policy.device == BaseModel.device.fget(policy) == torch.device("cpu")  # SB3's walk
    policy.to("meta")  # (a device every machine has) the kept parameter moves with the policy
    assert policy.device == BaseModel.device.fget(policy) == torch.device("meta")


@pytest.mark.parametrize("init", ["torch", "orthogonal"])
def test_ppo_policy_init_option_and_its_saved_kwargs(init):
    from stable_baselines3.common.utils import get_schedule_fn

    from psp_rl.layers import SuperposedLinear

    space = gym.spaces.Dict({"obs": gym.spaces.Box(-1, 1, (8,)), "task": gym.spaces.Discrete(2)})
    policy = PSPActorCriticPolicy(space, gym.spaces.Discrete(3), get_schedule_fn(1e-3), psp=PSPSettings(init=init))
    head = policy.action_head
    assert isinstance(head, SuperposedLinear)
    if init == "orthogonal":  # the actor's output rows are orthogonal with gain 0.01, biases 0
        gram = head.task_weight(1) @ head.task_weight(1).T
        torch.testing.assert_close(gram, 1e-4 * torch.eye(3), atol=1e-8, rtol=0)
        assert torch.count_nonzero(policy.value_head.bias) == 0
    else:
        assert torch.count_nonzero(head.bias) > 0
    saved = policy._get_constructor_parameters()["psp"].as_kwargs()
    assert ("init" in saved) == (init == "orthogonal")  # policies saved before the option load as saved


def test_orthogonal_init_is_the_same_for_the_same_seed_with_separate_actor_and_critic_torsos():
    from stable_baselines3.common.utils import get_schedule_fn

    space = gym.spaces.Dict({"obs": gym.spaces.Box(-1, 1, (8,)), "task": gym.spaces.Discrete(2)})
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        policy = PSPActorCriticPolicy(
            space, gym.spaces.Discrete(3), get_schedule_fn(1e-3), psp=PSPSettings(init="orthogonal")
        )
        assert policy.pi_torso is not policy.vf_torso
        weights.append(torch.cat([p.detach().flatten() for p in policy.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_dqn_adam_is_fused_and_an_unfused_saved_optimizer_stays_unfused(cartpoles, tmp_path):
    model = _make("dqn", cartpoles)
    assert model.policy.optimizer.param_groups[0]["fused"] is True
    model.learn(100)
    # A run saved before the fused default: its optimizer state names fused=None, and loading it
    # keeps that setting, so a resumed run steps exactly as it did.
    model.policy.optimizer.param_groups[0]["fused"] = None
    model.save(tmp_path / "old")
    loaded = ContinualDQN.load(tmp_path / "old", env=cartpoles.make_vec_env(0, 2, seed=0))
    assert loaded.policy.optimizer.param_groups[0]["fused"] is None
    loaded.learn(100)  # and it still updates
