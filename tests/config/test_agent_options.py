"""The config's PSP-DQN options: bad values named, PSP-PPO centring only when asked, the ablation variants."""

from pathlib import Path

import pytest
import yaml

from psp_rl.config import parse_config
from psp_rl.config.compat import merge_agent_options
from psp_rl.errors import ConfigError


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"advantage_learning": 1.0}, r"agent\.dqn\.advantage_learning: input should be less than 1, got 1\.0"),
        ({"activation": "gelu"}, r"agent\.network\.activation: input should be 'relu' or 'tanh', got 'gelu'"),
        ({"center": "sometimes"}, r"agent\.network\.center: expected bool, got 'sometimes'"),
        (
            {"task_lr_schedule": "cosine"},
            r"agent\.task_lr_schedule: input should be 'constant', 'task_linear' or 'task_hold_linear'",
        ),
        ({"acting": "greedy"}, r"agent\.dqn\.acting: input should be 'q', 'distilled' or 'auto', got 'greedy'"),
        ({"distil_loss": "kl"}, r"agent\.distil\.loss: input should be 'margin' or 'cross_entropy', got 'kl'"),
        ({"distil_margin": -1}, r"agent\.distil\.margin: input should be greater than 0, got -1"),
        ({"distil_visits": 1.5}, r"agent\.distil\.visits: expected int, got 1\.5"),
        ({"distil_arch": [32, 0]}, r"agent\.distil\.arch\.1: input should be greater than 0, got 0"),
        ({"distil_arch": []}, r"agent\.distil\.arch: list should have at least 1 item after validation"),
        ({"rehearsal_states": -1}, r"agent\.dqn\.rehearsal_states: input should be greater than or equal to 0, got -1"),
        (
            {
                "algo": "ppo",
                "dueling": True,
                **dict.fromkeys(["learning_starts", "train_freq", "gradient_steps", "buffer_size"]),
            },
            r"agent\.dqn\.dueling: not a setting of algo='ppo'",
        ),  # fmt: skip
    ],
)
def test_config_rejects_bad_retention_options(tiny_config, patch, match):
    """Flat names (earlier releases' configs) are read into their sections; errors name those."""
    tiny_config["agent"] = {k: v for k, v in {**tiny_config["agent"], **patch}.items() if v is not None}
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny_config)


def test_psp_ppo_centres_only_when_asked(tiny_config):
    from psp_rl.config.build import policy_kwargs

    ppo = {"algo": "ppo", "n_steps": 64, "batch_size": 64, "learning_rate": 3e-4}
    for agent, centred in (({**ppo, "center": True}, True), (ppo, False)):
        tiny_config["agent"] = {"method": "psp", "context": "binary", **agent}
        kwargs = policy_kwargs(parse_config(tiny_config).agent.resolved(), seed=0)
        # uncentred PSP-PPO's saved policy_kwargs never named the option: older agents load as saved
        assert kwargs.get("center", False) is centred and ("center" in kwargs) is centred


def test_every_ablation_variant_parses_over_its_config():
    base = yaml.safe_load(Path("experiments/configs/dqn-retention.yaml").read_text())
    variants = yaml.safe_load(Path("experiments/variants/dqn-retention.yaml").read_text())
    resolved = {}
    for name, settings in variants.items():
        resolved[name] = parse_config({**base, "agent": merge_agent_options(base["agent"], settings)}).resolved().agent
    # the row named for the default is what `method: psp` meant when it ran (acting "distilled" builds
    # "auto"'s network on flat observations; the row ran before frames could distil), at margin 5;
    # on vectors today's default asks margin 20 (issue 31), the m20 row's
    default = parse_config(base).resolved("vector").agent
    assert resolved["psp-default"].with_flat(acting="distilled", distil_margin=20.0) == default
    assert resolved["psp-center-distilled-m20"].with_flat(acting="distilled") == default


def test_the_dqn_budget_rows_parse_and_hold_m20_is_the_default_at_that_budget():
    base = yaml.safe_load(Path("experiments/configs/cartpole-shift.yaml").read_text())
    variants = yaml.safe_load(Path("experiments/variants/dqn-budget.yaml").read_text())
    resolved = {
        name: parse_config({**base, "agent": merge_agent_options(base["agent"], settings)}).resolved("vector").agent
        for name, settings in variants.items()
    }
    default = parse_config({**base, "agent": {**base["agent"], "task_lr_schedule": "task_hold_linear"}})
    assert resolved["psp-hold-m20"] == default.resolved("vector").agent
    assert resolved["psp-hold-visits-small"].distil.arch == [16]


def test_the_distillation_margin_defaults_by_observation_kind(tiny_config):
    """Left out, PSP-DQN's margin is 20 for vectors and 5 for frames (issue 31: 10 paired seeds on
    cartpole-shift; MinAtar kept less at 20): the config records the value for its sequence, and an
    agent built without a config picks it from its env."""
    from psp_rl.agents import ContinualDQN
    from psp_rl.config.build import build_agent, build_sequence

    config = parse_config(tiny_config)
    assert config.agent.resolved().flat()["distil_margin"] is None  # not known until the observations are
    assert config.agent.resolved("vector").distil.margin == 20.0
    assert config.agent.resolved("frames").distil.margin == 5.0
    set_to = parse_config({**tiny_config, "agent": {**tiny_config["agent"], "distil_margin": 7.5}}).agent
    assert set_to.resolved("vector").distil.margin == set_to.resolved("frames").distil.margin == 7.5
    env = build_sequence(config.sequence).make_vec_env(0, 1, seed=0)
    assert build_agent(config.agent, env, seed=0, device="cpu").distil_margin == 20.0
    assert ContinualDQN("PSPPolicy", env).distil_margin == 20.0
    assert ContinualDQN("PSPPolicy", env, distil_margin=3).distil_margin == 3.0


@pytest.mark.parametrize("method", ["finetune", "multihead", "separate", "ewc"])
def test_a_baseline_implies_context_none(tiny_config, method):
    del tiny_config["agent"]["context"]
    tiny_config["agent"]["method"] = method
    assert parse_config(tiny_config).agent.network.context == "none"
    tiny_config["agent"]["context"] = "binary"
    with pytest.raises(ConfigError, match=f"method='{method}' is a plain-network baseline, which implies context none"):
        parse_config(tiny_config)


def test_distil_arch_shapes_the_distilled_policy_and_leaves_other_runs_fingerprints(tiny_config):
    from psp_rl.config.build import build_agent, build_sequence
    from psp_rl.policies import trained_parameters

    plain = parse_config(tiny_config)
    tiny_config["agent"] = {**tiny_config["agent"], "distil": {"arch": [16]}}
    small = parse_config(tiny_config)
    assert small.fingerprint() != plain.fingerprint()
    assert plain.fingerprint() == parse_config({**tiny_config, "agent": plain.agent.model_dump()}).fingerprint()
    env = build_sequence(small.sequence).make_vec_env(0, 1, seed=0)
    sizes = {}
    for name, config in (("default", plain), ("small", small)):
        q_net = build_agent(config.agent, env, seed=0, device="cpu").policy.q_net
        widths = [m.out_features for m in q_net.policy_torso.modules() if hasattr(m, "out_features")]
        sizes[name] = (widths, sum(p.numel() for n, p in trained_parameters(q_net).items() if n.startswith("policy_")))
    assert sizes["default"][0] == [64, 64] and sizes["small"][0] == [16]
    assert sizes["small"][1] < sizes["default"][1] / 5


def test_distil_arch_on_frames_is_one_line_naming_the_field(tmp_path, capsys):
    from psp_rl.cli import main

    code = main(
        ["train", "minatar", "--run-dir", str(tmp_path / "run"), "--no-progress", "--set", "agent.distil.arch=[16]"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("psp-rl: error: agent.distil.arch: [16] sets the widths of an MLP distilled policy"), err
    assert not (tmp_path / "run").exists()
