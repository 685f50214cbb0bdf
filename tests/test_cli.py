import os
import subprocess
import sys

import pytest
import yaml

from psp_rl.cli import main


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psp_rl.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_explains_the_commands():
    result = _cli("--help")
    assert result.returncode == 0
    for word in ("train", "evaluate", "report", "list", "tensorboard --logdir", "--resume"):
        assert word in result.stdout


def test_list_shows_sequences_agents_and_contexts(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("cartpole-shift", "minatar", "atari-cora", "ContinualDQN", "ContinualPPO", "binary", "rotation"):
        assert word in out


def test_train_evaluate_report_smoke(tmp_path, tiny_config, capsys):
    tiny_config["sequence"]["steps"] = 500
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run_dir), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {run_dir}/tb" in out and "final average return" in out
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 3
    assert main(["evaluate", str(run_dir), "--episodes", "2"]) == 0
    assert "default" in capsys.readouterr().out and (run_dir / "evaluate.csv").exists()
    assert main(["report", str(run_dir), str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").exists() and (tmp_path / "rep" / "returns.png").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["train", "missing.yaml"], "config file 'missing.yaml': not found"),
        (["evaluate", "nowhere"], "config file 'nowhere/config.yaml': not found"),
        (["report", "nowhere"], "'nowhere/eval.csv': missing"),
        (["evaluate", "."], "config file 'config.yaml': not found"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, match):
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], lines


def test_bad_arguments_exit_2():
    assert _cli("train").returncode == 2  # missing CONFIG: argparse's usage error
    assert _cli("frobnicate").returncode == 2


def test_second_run_on_the_same_dir_is_refused_while_the_first_holds_the_lock(tmp_path, tiny_config):
    from psp_rl.continual.io import RunLock

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = RunLock(run_dir)
    lock.acquire()  # stands in for a first run that is still going
    try:
        result = _cli("train", str(config), "--run-dir", str(run_dir))
    finally:
        lock.release()
    assert result.returncode == 2
    assert f"in use by another psp-rl process (pid {os.getpid()})" in result.stderr
