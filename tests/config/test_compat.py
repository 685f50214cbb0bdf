"""Runs saved before options existed, or by earlier releases, resume exactly as they ran."""

import shutil
from pathlib import Path

import pytest
import yaml

from psp_rl.config import ContinualTrainer, parse_config

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run-v0.1"


def test_a_run_keeps_the_defaults_of_the_day_it_started(tmp_path):
    """PSP-DQN's default acting changed (auto -> distilled): a run that recorded the old default
    resumes under the config that started it, which leaves it out; a config that sets another
    value is refused, naming it."""
    from psp_rl.config.build import config_for_run_dir
    from psp_rl.errors import CheckpointError

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
