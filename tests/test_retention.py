"""The DQN-retention options (centring, dueling, advantage learning, task-local learning rate),
the retention probes, and runs saved before the options existed."""

import copy
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import DQN
from stable_baselines3.common.logger import configure

from psp_rl.agents import ContinualDQN, ContinualPPO, task_states
from psp_rl.continual import ConfigError, ContinualTrainer, parse_config
from psp_rl.continual.config import AGENT_DEFAULTS, PSP_DEFAULTS
from psp_rl.continual.probes import RetentionProbes, acting_outputs, margins, split_change
from psp_rl.continual.report import write_report
from psp_rl.continual.retention_table import probe_summary
from psp_rl.envs import get_sequence
from psp_rl.layers import SuperposedLinear
from psp_rl.networks import DuelingHead
from tests.conftest import run_train

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0.1"


# ----------------------------------------------------------------------------- centring
def test_centring_update_keeps_the_function_and_tracks_the_mean():
    torch.manual_seed(0)
    layer = SuperposedLinear(16, 4, num_tasks=2, context="binary", center=True, center_momentum=0.1)
    x = torch.rand(64, 16) * 3 + 2  # a large positive mean, as ReLU features have
    layer.eval()
    before = layer(x, 0)
    layer.train()
    for _ in range(50):
        during = layer(x, 0)
        assert torch.allclose(during, before, atol=1e-5)  # each update folds into the bias exactly
    assert torch.allclose(layer.running_input_mean[0], x.mean(0), atol=1e-4)
    assert torch.all(layer.running_input_mean[1] == 0)  # task 1 never ran
    layer.eval()
    assert torch.allclose(layer(x, 0), before, atol=1e-5)


def test_centring_mixed_batch_updates_each_task_present():
    layer = SuperposedLinear(8, 3, num_tasks=3, context="complex", center=True)
    x, task = torch.rand(12, 8) + 1, torch.tensor([0, 2] * 6)
    layer.eval()
    before = layer(x, task)
    layer.train()
    assert torch.allclose(layer(x, task), before, atol=1e-5)
    assert layer.running_batches.tolist() == [1.0, 0.0, 1.0]
    assert torch.allclose(layer.running_input_mean[2], x[task == 2].mean(0), atol=1e-6)


def _common_mode_after_other_task(center: bool, seed: int) -> tuple[float, float]:
    """Train task 1 of a width-256 layer on positive features; return task 0's (common, spread) change."""
    torch.manual_seed(seed)
    layer = SuperposedLinear(256, 2, num_tasks=2, context="binary", center=center)
    features = [torch.relu(torch.randn(512, 256) + 1.0) for _ in range(2)]  # non-negative, mean ~1.1
    targets = torch.randn(512, 2) * 5 + torch.tensor([20.0, -10.0])  # Q-like: a large mean per action
    if center:  # task 0's mean is set while task 0 trains; here a few forward passes in train mode
        layer.train()
        for _ in range(10):
            layer(features[0], 0)
    layer.eval()
    before = layer(features[0], 0).detach()
    optimizer = torch.optim.SGD(layer.parameters(), lr=1e-3)
    layer.train()
    for _ in range(200):
        loss = (layer(features[1], 1) - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    layer.eval()
    _, common, spread = split_change(layer(features[0], 0).detach(), before)
    return common, spread


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1])
def test_centring_removes_the_common_mode_crosstalk(seed, learning_seed, record_property):
    """Measured over learning seeds 0-4 (torch seeds 0-9) on the native, AVX2 and baseline float
    paths (experiments/learning_margins.py): the uncentred change's common share 0.14-0.83 (it
    scales with the two random contexts' overlap, so it is small on some draws; bound 0.1), the
    centred common part 1e-8 to 4e-7 of the uncentred one (bound 0.01), the spread kept 0.46-0.55
    (bound 0.2). The float path moves these in the 7th digit; the seed is what varies."""
    seed += 2 * learning_seed
    plain_common, plain_spread = _common_mode_after_other_task(center=False, seed=seed)
    centred_common, centred_spread = _common_mode_after_other_task(center=True, seed=seed)
    record_property("plain_common_share", float(plain_common / np.hypot(plain_common, plain_spread)))
    record_property("centred_over_plain_common", float(centred_common / plain_common))
    record_property("centred_over_plain_spread", float(centred_spread / plain_spread))
    assert plain_common > 0.1 * np.hypot(plain_common, plain_spread)  # uncentred: a shared shift
    # centred on task 0's own mean, the shift every state shares is gone; the spread stays
    assert centred_common < 0.01 * plain_common
    assert centred_spread > 0.2 * plain_spread


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"center": True, "context": "none"}, "center=True needs per-task biases"),
        ({"center": True, "bias": False}, "center=True needs per-task biases"),
        ({"center": True, "center_momentum": 0.0}, "center_momentum=0.0: expected 0 < center_momentum <= 1"),
    ],
)
def test_centring_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SuperposedLinear(8, 2, 2, **kwargs)


# ----------------------------------------------------------------------------- dueling
def test_dueling_value_stream_cannot_flip_a_greedy_action():
    torch.manual_seed(0)
    value, advantage = SuperposedLinear(32, 1, 2), SuperposedLinear(32, 3, 2)
    head = DuelingHead(value, advantage)
    x = torch.randn(100, 32)
    q = head(x, 0).detach()
    assert torch.allclose(q.mean(1, keepdim=True), value(x, 0).detach(), atol=1e-5)  # mean(A) is removed
    with torch.no_grad():
        value.weight.add_(torch.randn_like(value.weight) * 10)  # a large crosstalk on the value stream
    moved = head(x, 0).detach()
    assert torch.equal(moved.argmax(1), q.argmax(1))
    assert torch.allclose(moved - moved.mean(1, keepdim=True), q - q.mean(1, keepdim=True), atol=1e-4)


# ------------------------------------------------------------------- the agent's options
def _dqn(env, seed=0, **kwargs):
    return ContinualDQN(
        "PSPPolicy", env, learning_starts=0, batch_size=16, seed=seed, policy_kwargs=dict(net_arch=[16]), **kwargs
    )


def _filled(agent, steps=300):
    agent.learn(steps)
    return agent


def test_train_matches_sb3_dqn_without_advantage_learning():
    agent = _filled(_dqn(get_sequence("cartpole-shift", tasks=["default"]).make_vec_env(0, 1, seed=0), train_freq=1000))
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
        agent = _filled(_dqn(env, learning_seed, train_freq=1000, advantage_learning=alpha, learning_rate=1e-3))
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
def test_task_linear_learning_rate_falls_to_zero_at_each_task_end(agent_class):
    env = get_sequence("cartpole-shift", tasks=["default"]).make_vec_env(0, 1, seed=0)
    agent = agent_class("PSPPolicy", env, learning_rate=1e-3, task_lr_schedule="task_linear", seed=0)
    agent.set_logger(configure(None, []))
    agent.on_task_start(0, 1000)
    rates = []
    for done in (0, 500, 1000):
        agent.num_timesteps = done
        agent._update_learning_rate(agent.policy.optimizer)
        rates.append(agent.policy.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3, 5e-4, 0.0])


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


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"advantage_learning": 1.0}, r"agent\.advantage_learning: input should be less than 1, got 1\.0"),
        ({"activation": "gelu"}, r"agent\.activation: input should be 'relu' or 'tanh', got 'gelu'"),
        ({"center": "sometimes"}, r"agent\.center: expected bool, got 'sometimes'"),
        ({"task_lr_schedule": "cosine"}, r"agent\.task_lr_schedule: input should be 'constant' or 'task_linear'"),
        ({"acting": "greedy"}, r"agent\.acting: input should be 'q', 'distilled' or 'auto', got 'greedy'"),
        ({"distil_loss": "kl"}, r"agent\.distil_loss: input should be 'margin' or 'cross_entropy', got 'kl'"),
        ({"distil_margin": -1}, r"agent\.distil_margin: input should be greater than 0, got -1"),
        ({"distil_visits": 1.5}, r"agent\.distil_visits: expected int, got 1\.5"),
        ({"rehearsal_states": -1}, r"agent\.rehearsal_states: input should be greater than or equal to 0, got -1"),
        (
            {
                "algo": "ppo",
                "dueling": True,
                **dict.fromkeys(["learning_starts", "train_freq", "gradient_steps", "buffer_size"]),
            },
            r"agent\.dueling: not a setting of algo='ppo'",
        ),  # fmt: skip
    ],
)
def test_config_rejects_bad_retention_options(tiny_config, patch, match):
    tiny_config["agent"] = {k: v for k, v in {**tiny_config["agent"], **patch}.items() if v is not None}
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny_config)


def test_psp_ppo_centres_only_when_asked(tiny_config):
    from psp_rl.continual.build import policy_kwargs

    ppo = {"algo": "ppo", "n_steps": 64, "batch_size": 64, "learning_rate": 3e-4}
    for agent, centred in (({**ppo, "center": True}, True), (ppo, False)):
        tiny_config["agent"] = {"method": "psp", "context": "binary", **agent}
        kwargs = policy_kwargs(parse_config(tiny_config).agent, seed=0)
        # uncentred PSP-PPO's saved policy_kwargs never named the option: older agents load as saved
        assert kwargs.get("center", False) is centred and ("center" in kwargs) is centred


def test_config_rejects_bad_probe_samples(tiny_config):
    with pytest.raises(ConfigError, match=r"probes\.samples: input should be greater than 0, got 0"):
        parse_config({**tiny_config, "probes": {"enabled": True, "samples": 0}})


# ----------------------------------------------------------------------------- probes
def test_probe_of_a_frozen_network_reads_zero():
    env = get_sequence("cartpole-shift", tasks=["default"]).make_vec_env(0, 1, seed=0)
    agent = _filled(_dqn(env, train_freq=1000), steps=200)
    obs = agent.replay_buffer.sample(100).observations
    obs = {key: value.cpu().numpy() for key, value in obs.items()}
    first, layers = acting_outputs(agent, obs)
    again, layers_again = acting_outputs(agent, obs)
    assert split_change(again, first) == (0.0, 0.0, 0.0)
    assert set(layers) == set(layers_again) == {"torso.layers.0", "q_head"}  # per-task input layer, head
    assert all(split_change(layers_again[name], layers[name])[0] == 0.0 for name in layers)


def _crosstalk_after_other_task(context: str, seed: int) -> dict[str, float]:
    """Task 0's relative output change per layer after 200 updates on task 1's transitions."""
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"])
    agent = ContinualDQN(
        "PSPPolicy",
        sequence.make_vec_env(1, 1, seed=seed),
        learning_starts=0,
        batch_size=32,
        train_freq=10_000,
        learning_rate=1e-3,
        seed=seed,
        policy_kwargs=dict(net_arch=[256, 256], context=context, input_layer="per_task", center=False),
    )
    agent.learn(500)  # task 1's transitions; no update yet
    states = agent.replay_buffer.sample(200).observations
    obs = {"obs": states["obs"].numpy(), "task": np.zeros_like(states["task"].numpy())}  # read as task 0
    before, layers_before = acting_outputs(agent, obs)
    agent.set_random_seed(seed + 1)
    agent.train(gradient_steps=200, batch_size=32)
    after, layers_after = acting_outputs(agent, obs)
    out = {name: split_change(layers_after[name], layers_before[name])[0] for name in layers_before}
    return {**out, "output": split_change(after, before)[0]}


@pytest.mark.learning
def test_probes_show_none_moves_more_than_binary_on_the_same_updates(learning_seed, record_property):
    """Binary over plain crosstalk, measured over seeds 0-4 on three float paths: hidden layer
    0.16-0.27 (bound 0.5); Q head and output 0.08-0.47 (bound 0.75): uncentred ReLU features give
    binary contexts a common-mode part that grows with the two contexts' overlap, a seed's draw."""
    plain = _crosstalk_after_other_task("none", learning_seed)
    binary = _crosstalk_after_other_task("binary", learning_seed)
    # task 0's own input layer (per task in both networks) is untouched by task 1's updates
    assert binary["torso.layers.0"] == plain["torso.layers.0"] == 0.0
    for layer in ("torso.layers.2", "q_head", "output"):
        record_property(f"binary_over_plain[{layer}]", float(binary[layer] / plain[layer]))
    assert binary["torso.layers.2"] < 0.5 * plain["torso.layers.2"]
    for layer in ("q_head", "output"):
        assert binary[layer] < 0.75 * plain[layer], layer


def test_probes_csv_of_a_run(tmp_path, tiny_config):
    tiny_config["probes"] = {"enabled": True, "samples": 100}
    tiny_config["sequence"]["tasks"] = ["default", "reversed", "long-pole"]
    ContinualTrainer(parse_config(tiny_config), tmp_path / "run").run()
    with (tmp_path / "run" / "probes.csv").open() as f:
        rows = list(csv.DictReader(f))
    probes = {(r["probe_task"], r["layer"], r["trained_task"], r["quantity"]): float(r["value"]) for r in rows}
    assert {r["trained_task"] for r in rows} == {"default", "reversed", "long-pole"}  # weight movement of each task
    total = probes[("default", "output", "reversed", "crosstalk")]
    common, spread = (
        probes[("default", "output", "reversed", "crosstalk_common")],
        probes[("default", "output", "reversed", "crosstalk_spread")],
    )
    assert np.hypot(common, spread) == pytest.approx(total, rel=1e-5)
    assert total > 0 and 0 <= probes[("default", "output", "reversed", "greedy_agreement")] <= 1
    assert probes[("default", "torso.layers.0", "reversed", "crosstalk")] == 0.0  # per-task input layer
    assert probes[("reversed", "torso.layers.2", "reversed", "weight_movement")] > 0
    assert not any(key[0] == "long-pole" and key[3] == "crosstalk" for key in probes)  # no later task
    # The default PSP-DQN acts from a distilled policy on finished tasks: default is distilled at
    # the start of reversed and nothing else trains that policy then, so its logits at the end of
    # reversed are the reference (fidelity to Q's greedy actions, no crosstalk row yet) ...
    assert 0.5 <= probes[("default", "distilled", "reversed", "distil_agreement")] <= 1
    assert ("default", "distilled", "reversed", "crosstalk") not in probes
    # ... and reversed's distillation (start of long pole) is the crosstalk measured at long pole's end.
    assert probes[("default", "distilled", "long-pole", "crosstalk")] > 0
    assert 0 <= probes[("default", "distilled", "long-pole", "greedy_agreement")] <= 1
    assert probes[("default", "policy_torso.layers.2", "long-pole", "crosstalk")] > 0
    assert ("default", "policy_torso.layers.2", "reversed", "crosstalk") not in probes
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["agent"]
    expected = {**AGENT_DEFAULTS["dqn"], **PSP_DEFAULTS["dqn"], "distil_steps": 300}  # the tiny config's
    assert {name: saved[name] for name in expected} == expected  # config.yaml: what ran, resolved
    report = (write_report([tmp_path / "run"])).read_text()
    assert "Retention probes" in report and (tmp_path / "run" / "probes-run.png").is_file()
    assert probe_summary(tmp_path / "run")["distil_agreement"] == pytest.approx(
        np.mean([value for key, value in probes.items() if key[1:] == ("distilled", key[2], "distil_agreement")])
    )  # the retention table reads what a finished task acts from: the distilled logits


def test_probes_only_observe_a_run(tmp_path, tiny_config):
    """Probes draw no random numbers and change no weights: a probed run trains and evaluates as
    the same run unprobed (so an ablation may mix probed and unprobed seeds of one method)."""
    ContinualTrainer(parse_config(tiny_config), tmp_path / "plain").run()
    tiny_config["probes"] = {"enabled": True, "samples": 100}
    ContinualTrainer(parse_config(tiny_config), tmp_path / "probed").run()
    assert (tmp_path / "probed" / "probes.csv").is_file()
    assert (tmp_path / "probed" / "eval.csv").read_bytes() == (tmp_path / "plain" / "eval.csv").read_bytes()


def test_probed_run_resumes_to_the_same_probes(tmp_path, tiny_config):
    """Killed after task 0's end was saved: the resume distils task 0 again, acting in the same
    envs (distil_visits), and probes it the same way."""
    tiny_config["probes"] = {"enabled": True, "samples": 50}
    tiny_config["agent"]["distil_visits"] = 100
    path = tmp_path / "probes.yaml"
    path.write_text(yaml.safe_dump(tiny_config))

    def train(run_dir, *extra, env=None):
        return run_train(path, run_dir, *extra, env=env)

    assert train(tmp_path / "whole").returncode == 0
    assert train(tmp_path / "killed", env={"PSP_RL_KILL_AT": "learn:2100"}).returncode == -9
    resumed = train(tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("eval.csv", "probes.csv"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())["agent"]["distil_visits"] == 100


def test_probe_samples_must_be_positive():
    with pytest.raises(ValueError, match="probe samples=0: expected a positive int"):
        RetentionProbes(samples=0)


# ------------------------------------------------------------- runs saved before the options
def test_a_run_keeps_the_defaults_of_the_day_it_started(tmp_path):
    """PSP-DQN's default acting changed (auto -> distilled): a run that recorded the old default
    resumes under the config that started it, which leaves it out; a config that sets another
    value is refused, naming it."""
    from psp_rl.continual import CheckpointError
    from psp_rl.continual.build import config_for_run_dir

    base = {"name": "r", "sequence": {"name": "cartpole-shift", "steps": 600}, "agent": {"algo": "dqn"}}
    started = parse_config(base).resolved()
    started = started.model_copy(update={"agent": started.agent.model_copy(update={"acting": "auto"})})
    (tmp_path / "config.yaml").write_text(started.to_yaml())
    resumed = config_for_run_dir(parse_config(base), tmp_path, resume=True)
    assert resumed.agent.acting == "auto"
    assert config_for_run_dir(parse_config(base), tmp_path, resume=False).agent.acting == "distilled"  # a new run
    other = parse_config({**base, "agent": {"algo": "dqn", "acting": "distilled"}})
    with pytest.raises(CheckpointError, match="agent.acting was 'auto', now 'distilled'"):
        config_for_run_dir(other, tmp_path, resume=True)
    finetune = parse_config({**base, "agent": {"algo": "dqn", "method": "finetune", "context": "none"}})
    with pytest.raises(CheckpointError, match="written by a different config: agent.acting was 'auto', now 'q'"):
        config_for_run_dir(finetune, tmp_path, resume=True)


@pytest.mark.parametrize("release", ["run-v0.1", "run-v0.2", "run-v0.3-ewc", "run-v0.3-complex"])
def test_runs_saved_by_earlier_releases_resume_exactly(tmp_path, release):
    """A run killed mid-task by an earlier release resumes to the eval.csv that release wrote
    uninterrupted. run-v0.1: before the retention options (old configs hash as before, old models
    keep their build); run-v0.2: PSP-DQN's defaults (centring, distilled acting) before the
    fingerprint left default-valued settings out, and before vec_env, replay_buffer and threads;
    run-v0.3-*: before context objects and callback states keyed by name (EWC's Fisher saved as a
    list), with PPO on complex contexts."""
    fixture = FIXTURE.parent / release
    run_dir = tmp_path / "run"
    shutil.copytree(fixture / "killed", run_dir)
    config = parse_config(yaml.safe_load((fixture / "config.yaml").read_text()))
    ContinualTrainer(config, run_dir, resume=True).run()
    assert (run_dir / "eval.csv").read_bytes() == (fixture / "uninterrupted-eval.csv").read_bytes()


# ------------------------------------------------------------------ acting from a distilled policy
def _trained_on_task_0(seed: int = 0, **kwargs) -> tuple:
    """(sequence, a small PSP-DQN trained 1,500 steps on task 0 of default -> reversed)."""
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"])
    agent = ContinualDQN(
        "PSPPolicy",
        sequence.make_vec_env(0, 1, seed=seed),
        learning_starts=100,
        train_freq=64,
        gradient_steps=32,
        seed=seed,
        **kwargs,
    )
    agent.set_logger(configure(None, []))
    agent.on_task_start(0, 1500)
    agent.learn(1500, reset_num_timesteps=False)
    return sequence, agent


@pytest.mark.learning
@pytest.mark.parametrize("distil_loss", ["margin", "cross_entropy"])
def test_distilled_policy_acts_for_a_finished_task(tmp_path, distil_loss, learning_seed, record_property):
    """Distilled actions equal to Q's greedy ones on task 0's replayed states, seeds 0-4 on three
    float paths: 0.992-0.999 (bound 0.95)."""
    sequence, agent = _trained_on_task_0(
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
    sequence, agent = _trained_on_task_0(
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
    from psp_rl.continual.build import replay_buffer_kwargs
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
    with pytest.raises(ValueError, match=r"distilled_arch=\[32\]: the distilled policy of image observations"):
        ContinualDQN("PSPPolicy", env, policy_kwargs=dict(acting="distilled", distilled_arch=[32]))
    # what runs saved before image distillation existed built: "auto" acts from Q on frames
    assert ContinualDQN("PSPPolicy", env, policy_kwargs=dict(acting="auto")).policy.q_net.policy_torso is None


def task_states_tensor(agent, task):
    obs, _ = agent.policy.obs_to_tensor(task_states(agent, task))
    return obs


def test_distilled_acting_bad_input():
    sequence = get_sequence("cartpole-shift", tasks=["default"])
    with pytest.raises(ValueError, match=r"acting='greedy': expected one of \['q', 'distilled', 'auto'\]"):
        ContinualDQN("PSPPolicy", sequence.make_vec_env(0, 1, seed=0), policy_kwargs=dict(acting="greedy"))
    agent = ContinualDQN("PSPPolicy", sequence.make_vec_env(0, 1, seed=0))
    with pytest.raises(ValueError, match="acting='q'; use acting='distilled'"):
        agent.distil(0)


def test_every_ablation_variant_parses_over_its_config():
    base = yaml.safe_load(Path("experiments/configs/dqn-retention.yaml").read_text())
    variants = yaml.safe_load(Path("experiments/variants/dqn-retention.yaml").read_text())
    resolved = {}
    for name, settings in variants.items():
        resolved[name] = parse_config({**base, "agent": {**base["agent"], **settings}}).resolved().agent
    # the row named for the default is what `method: psp` means today (acting "distilled" builds
    # "auto"'s network on flat observations; the row ran before frames could distil)
    default = resolved["psp-default"].model_copy(update={"acting": "distilled"})
    assert default == parse_config(base).resolved().agent


# ------------------------------------------------------------------ rehearsal memory (a baseline)
def _q_drift_of_task_0(rehearsal_states: int, seed: int) -> tuple[float, ContinualDQN]:
    """Relative change of task 0's Q-values on its kept states while task 1 trains."""
    sequence, agent = _trained_on_task_0(seed, rehearsal_states=200, policy_kwargs=dict(net_arch=[64, 64]))
    agent.rehearsal_states = rehearsal_states or 200  # the memory to measure on, kept either way ...
    agent.set_env(sequence.make_vec_env(1, 1, seed=1))
    agent.on_task_start(1, 1500)
    memory = copy.deepcopy(agent.rehearsal_memory)
    if not rehearsal_states:
        agent.rehearsal_memory = None  # ... and rehearsed only when asked
    agent.learn(1500, reset_num_timesteps=False)
    with torch.no_grad():
        now = agent.q_net(agent.policy.obs_to_tensor(memory["obs"])[0]).numpy()
    return float(np.linalg.norm(now - memory["q"]) / np.linalg.norm(memory["q"])), agent


@pytest.mark.learning
def test_rehearsal_keeps_a_finished_tasks_q_values_and_resumes(tmp_path, learning_seed, record_property):
    """Task 0's Q drift rehearsed over not, seeds 0-4 on the native, AVX2 and baseline float paths
    (experiments/learning_margins.py): 0.0044-0.0091 (bound 0.5)."""
    rehearsed, agent = _q_drift_of_task_0(200, learning_seed)
    plain, _ = _q_drift_of_task_0(0, learning_seed)
    record_property("rehearsed_over_plain", float(rehearsed / plain))
    assert rehearsed < 0.5 * plain, (rehearsed, plain)
    memory = agent.rehearsal_memory
    assert len(memory["q"]) == 200 and set(memory["obs"]["task"].ravel().tolist()) == {0}
    agent.save(tmp_path / "agent.zip")  # the memory is part of the agent: a resume rehearses the same
    loaded = ContinualDQN.load(tmp_path / "agent.zip")
    assert np.array_equal(loaded.rehearsal_memory["q"], memory["q"]) and loaded.rehearsal_states == 200
