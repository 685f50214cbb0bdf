"""Runs saved before options existed, or by earlier releases, resume exactly as they ran."""

import shutil
from pathlib import Path

import pytest
import yaml

from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.errors import ConfigError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run-v0.1"


def test_a_run_keeps_the_defaults_of_the_day_it_started(tmp_path):
    """PSP-DQN's default acting changed (auto -> distilled): a run that recorded the old default
    resumes under the config that started it, which leaves it out; a config that sets another
    value is refused, naming it."""
    from psp_rl.config.build import config_for_run_dir
    from psp_rl.errors import CheckpointError

    base = {"name": "r", "sequence": {"name": "cartpole-shift", "steps": 600}, "agent": {"algo": "dqn"}}
    started = parse_config(base).resolved()
    started = started.model_copy(update={"agent": started.agent.with_flat(acting="auto")})
    (tmp_path / "config.yaml").write_text(started.to_yaml())
    resumed = config_for_run_dir(parse_config(base), tmp_path, resume=True)
    assert resumed.agent.dqn.acting == "auto"
    assert config_for_run_dir(parse_config(base), tmp_path, resume=False).agent.dqn.acting == "distilled"  # a new run
    other = parse_config({**base, "agent": {"algo": "dqn", "acting": "distilled"}})
    with pytest.raises(CheckpointError, match="agent.dqn.acting was 'auto', now 'distilled'"):
        config_for_run_dir(other, tmp_path, resume=True)
    finetune = parse_config({**base, "agent": {"algo": "dqn", "method": "finetune", "context": "none"}})
    with pytest.raises(CheckpointError, match="written by a different config: agent.dqn.acting was 'auto', now 'q'"):
        config_for_run_dir(finetune, tmp_path, resume=True)


def test_a_run_that_recorded_margin_5_resumes_at_margin_5(tmp_path):
    """PSP-DQN's default margin on vectors changed (5 -> 20): a run that recorded 5 resumes with it
    under the config that started it, which leaves it out; a new run records 20."""
    from psp_rl.config.build import config_for_run_dir

    base = {"name": "r", "sequence": {"name": "cartpole-shift", "steps": 600}, "agent": {"algo": "dqn"}}
    started = parse_config(base).resolved()
    started = started.model_copy(update={"agent": started.agent.with_flat(distil_margin=5.0)})
    (tmp_path / "config.yaml").write_text(started.to_yaml())
    for resume, margin in ((True, 5.0), (False, 20.0)):
        assert config_for_run_dir(parse_config(base), tmp_path, resume, "vector").agent.distil.margin == margin


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


def test_flat_agent_options_load_into_their_sections_with_the_same_fingerprint(tiny_config):
    """Earlier releases' flat ``agent`` keys and the nested sections are one config: same model,
    same fingerprint (what a saved run's resume compares), and ``--set`` takes either name."""
    from psp_rl.config.loading import apply_settings

    nested = {
        "algo": "dqn",
        "network": {"context": "binary", "net_arch": [32, 32], "center": False},
        "dqn": {"learning_starts": 200, "train_freq": 64, "gradient_steps": 32, "buffer_size": 5000},
        "distil": {"steps": 300},
    }
    flat = parse_config({**tiny_config, "agent": {**tiny_config["agent"], "center": False}})
    assert parse_config({**tiny_config, "agent": nested}) == flat
    assert parse_config({**tiny_config, "agent": nested}).resolved().fingerprint() == flat.resolved().fingerprint()
    assert flat.agent.flat()["distil_steps"] == 300 and flat.agent.distil.steps == 300
    for key in ("agent.center=true", "agent.network.center=true"):
        assert parse_config(apply_settings({**tiny_config, "agent": nested}, [key])).agent.network.center is True
    with pytest.raises(ConfigError, match=r"agent\.center and agent\.network\.center: two values \(True, False\)"):
        parse_config({**tiny_config, "agent": {**nested, "center": True}})
    with pytest.raises(ConfigError, match=r"agent\.ppo\.n_steps: not a setting of algo='dqn'"):
        parse_config({**tiny_config, "agent": {**nested, "n_steps": 64}})


def test_saved_configs_write_the_sections_and_a_run_resumes_from_them(tmp_path, tiny_config):
    """config.yaml holds the nested sections; an earlier release's flat config.yaml (the fixtures)
    and a new one read back to the config that wrote them."""
    from psp_rl.config.schema import dump_config

    parsed = parse_config(tiny_config).resolved()
    saved = yaml.safe_load(dump_config(parsed))
    assert set(saved["agent"]) >= {"network", "dqn", "distil"} and "center" not in saved["agent"]
    assert saved["agent"]["network"]["center"] is True and saved["agent"]["ppo"] is None
    assert parse_config(saved) == parsed
    old = yaml.safe_load((FIXTURE / "config.yaml").read_text())
    assert "context" in old["agent"]  # flat, as v0.1 wrote it
    assert parse_config(old).agent.network.context == old["agent"]["context"]
