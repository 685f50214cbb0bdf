"""The retention probes: what they measure, probes.csv, that they only observe, and their resume."""

import csv

import numpy as np
import pytest
import yaml

from psp_rl.agents import ContinualDQN
from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.config.agent import AGENT_DEFAULTS, PSP_DEFAULTS
from psp_rl.envs import get_sequence
from psp_rl.errors import ConfigError
from psp_rl.plugins.probes import RetentionProbes, acting_outputs, split_change
from psp_rl.reporting.report import write_report
from psp_rl.reporting.retention_table import probe_summary
from tests.conftest import filled, run_train, small_dqn


def test_config_rejects_bad_probe_samples(tiny_config):
    with pytest.raises(ConfigError, match=r"probes\.samples: input should be greater than 0, got 0"):
        parse_config({**tiny_config, "probes": {"enabled": True, "samples": 0}})


# ----------------------------------------------------------------------------- probes
def test_probe_of_a_frozen_network_reads_zero():
    env = get_sequence("cartpole-shift", tasks=["default"]).make_vec_env(0, 1, seed=0)
    agent = filled(small_dqn(env, train_freq=1000), steps=200)
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
    saved = parse_config(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())).agent.flat()
    # the tiny config's distillation steps; the margin of its vector observations
    expected = {**AGENT_DEFAULTS["dqn"], **PSP_DEFAULTS["dqn"], "distil_steps": 300, "distil_margin": 20.0}
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


@pytest.mark.slow  # the default suite checks probes.csv and that probes only observe
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
