"""``--set KEY=VALUE``: settings over a config's, typed and validated as the file's, recorded in
``config.yaml`` and held to on resume; shipped configs found by name."""

import pytest
import yaml

from psp_rl.cli import main
from psp_rl.config import load_config
from psp_rl.config.loading import apply_settings, find_config, shipped_configs
from psp_rl.errors import ConfigError
from tests.conftest import run_cli, train_here, write_config


def test_settings_are_typed_like_the_file_and_nest():
    data = {"name": "x", "sequence": {"name": "cartpole-shift"}}
    out = apply_settings(data, ["agent.learning_rate=1e-3", "sequence.steps=50000", "agent.net_arch=[64, 64]"])
    assert out["agent"] == {"learning_rate": "1e-3", "network": {"net_arch": [64, 64]}}  # a flat name nests
    assert out["sequence"]["steps"] == 50000
    assert data == {"name": "x", "sequence": {"name": "cartpole-shift"}}  # the caller's mapping is left alone
    config = load_config(find_config("quickstart"), settings=["agent.learning_rate=1e-3", "eval.every=5000"])
    assert config.agent.learning_rate == 1e-3 and config.eval.every == 5000  # YAML's '1e-3' read as a float


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("agent.learning_rate", "--set 'agent.learning_rate': expected KEY=VALUE"),
        ("=3", "--set '=3': expected KEY=VALUE"),
        ("agent.learnin_rate=1", "unknown key 'agent.learnin_rate'; did you mean 'agent.learning_rate'?"),
        ("agnt.context=none", "unknown key 'agnt'; did you mean 'agent'?"),
        ("seed.x=1", "'seed' is a setting, not a section"),
        ("agent.learning_rate=fast", "with --set agent.learning_rate=fast: agent.learning_rate: expected float"),
        ("agent.context=complx", "agent.context"),
    ],
)
def test_bad_settings_are_one_line_errors(setting, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")) as info:
        load_config(find_config("quickstart"), settings=[setting])
    assert "\n" not in str(info.value)


def test_shipped_configs_are_found_by_name_and_a_path_still_works(tmp_path):
    shipped = shipped_configs()
    assert {"quickstart", "quickstart-dqn", "minatar-ppo"} <= set(shipped)
    assert find_config("quickstart") == find_config("quickstart.yaml") == shipped["quickstart"]
    own = write_config(tmp_path, {"name": "own"}, "quickstart.yaml")
    assert find_config(own) == own  # a file wins over a shipped name


TINY = ["sequence.steps=512", "eval.every=512", "eval.episodes=2", "checkpoint.every=512"]


def test_train_by_name_with_settings_records_them_and_a_resume_must_repeat_them(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train_here("quickstart", run_dir, "--set", *TINY)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["sequence"]["steps"] == 512 and saved["eval"]["every"] == 512 and saved["name"] == "quickstart"
    capsys.readouterr()
    assert main(["train", "quickstart", "--run-dir", str(run_dir), "--resume", "--set", *TINY, "seed=3"]) == 2
    assert "seed was 0, now 3" in capsys.readouterr().err
    train_here("quickstart", run_dir, "--resume", "--set", *TINY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "quickstart", "--set", "steps"], "expected KEY=VALUE"),
        (["train", "quickstart", "--set", "agent.bogus=1"], "unknown key 'agent.bogus'"),
        (["train", "quickstart", "--set", "sequence.steps=many"], "sequence.steps: expected int, got 'many'"),
        (["train", "nonesuch"], "neither a file nor a shipped config; shipped: "),
        (["sweep", "quickstart", "--set", "agent.bogus=1", "--seeds", "0"], "unknown key 'agent.bogus'"),
    ],
)
def test_bad_settings_on_the_command_line_exit_2_before_any_run_dir(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)  # in this process: a fresh one costs seconds of imports per case
    assert main([*args, "--run-dir" if args[0] == "train" else "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_train_help_lists_set():
    result = run_cli("train", "--help")
    assert "--set KEY=VALUE" in result.stdout and "agent.learning_rate=1e-3" in result.stdout
