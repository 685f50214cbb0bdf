import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from psp_rl.continual import ConfigError, ContinualCallback, ContinualTrainer, parse_config
from psp_rl.continual.report import write_report


def _run(config: dict, run_dir: Path, **kwargs) -> dict:
    return ContinualTrainer(parse_config(config), run_dir, **kwargs).run()


def test_end_to_end_tiny_run_leaves_every_artifact(tmp_path, tiny_config):
    class Recorder(ContinualCallback):
        def __init__(self):
            self.events = []

        def before_task(self, trainer, stage, task):
            self.events.append(("before", stage, task))

        def after_task(self, trainer, stage, task):
            self.events.append(("after", stage, task))

        def after_eval(self, trainer, rows):
            self.events.append(("eval", len(rows)))

    recorder = Recorder()
    run_dir = tmp_path / "run"
    metrics = ContinualTrainer(parse_config(tiny_config), run_dir, callbacks=[recorder]).run()

    assert yaml.safe_load((run_dir / "config.yaml").read_text())["agent"]["context"] == "binary"
    lines = (run_dir / "eval.csv").read_text().splitlines()
    assert lines[0] == "step,trained_task,eval_task,mean,std,episodes"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 2 * 3 * 2  # 2 tasks x 3 evaluations x 2 eval tasks
    assert {r[2] for r in rows} == {"default", "reversed"} and {r[1] for r in rows} == {"default", "reversed"}
    assert all(int(r[5]) == 2 for r in rows)

    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "final_average_return", "normalized_final_average_return", "forgetting", "backward_transfer",
        "forward_transfer", "parameters", "wall_time_s", "env_steps_per_s", "continual_eval_curve", "eval_matrix",
    ):  # fmt: skip
        assert key in saved, key
    assert saved == json.loads(json.dumps(metrics))
    assert np.array(saved["eval_matrix"]).shape == (2, 2)
    assert saved["reference_returns"]["default"] == 475.0  # CartPole-v1's reward threshold
    assert saved["env_steps"] >= 3000 and saved["parameters"] > 0

    assert [e for e in recorder.events if e[0] != "eval"] == [
        ("before", 0, 0), ("after", 0, 0), ("before", 1, 1), ("after", 1, 1)
    ]  # fmt: skip
    assert ("eval", 2) in recorder.events
    assert len(list((run_dir / "checkpoints").glob("ckpt-*"))) == 2  # keep: 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for task in ("default", "reversed"):
        assert f"eval/{task}/return" in tags["scalars"]
        assert len(acc.Scalars(f"eval/{task}/return")) == 6
    assert "train/current_task" in tags["scalars"]
    assert any(t.startswith("train/") and t.endswith("/return") for t in tags["scalars"])
    assert "eval/matrix" in tags["images"] and len(acc.Images("eval/matrix")) == 2
    assert "config/text_summary" in tags["tensors"]

    report = write_report([run_dir])
    assert report.exists() and "final avg return" in report.read_text()
    for png in ("returns.png", "forgetting.png", "matrix-run.png"):
        assert (run_dir / png).stat().st_size > 1000


def test_same_config_and_seed_gives_identical_eval_csv(tmp_path, tiny_config):
    tiny_config["sequence"]["steps"] = 700
    _run(tiny_config, tmp_path / "a")
    _run(tiny_config, tmp_path / "b")
    assert (tmp_path / "a" / "eval.csv").read_bytes() == (tmp_path / "b" / "eval.csv").read_bytes()


def _train_cmd(config_path: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "psp_rl.cli", "train", str(config_path), "--run-dir", str(run_dir), *extra]


def test_sigkill_mid_task_then_resume_gives_the_uninterrupted_rows(tmp_path, tiny_config):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_train_cmd(config_path, whole), check=True, capture_output=True)

    proc = subprocess.Popen(_train_cmd(config_path, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((killed / "checkpoints").glob("ckpt-*")) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # first checkpoint is mid-task 0 (step 1000 of 1500)
    proc.wait()
    assert not (killed / "metrics.json").exists()

    result = subprocess.run(_train_cmd(config_path, killed, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (killed / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    assert a["eval_matrix"] == b["eval_matrix"] and a["forgetting"] == b["forgetting"]


def test_existing_run_dir_needs_resume_or_overwrite(tmp_path, tiny_config):
    tiny_config["sequence"]["steps"] = 300
    tiny_config["eval"]["every"] = 300
    _run(tiny_config, tmp_path / "r")
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        _run(tiny_config, tmp_path / "r")
    _run(tiny_config, tmp_path / "r", overwrite=True)


def test_resume_with_a_different_config_is_refused(tmp_path, tiny_config):
    from psp_rl.continual import CheckpointError

    tiny_config["sequence"]["steps"] = 300
    tiny_config["eval"]["every"] = 300
    _run(tiny_config, tmp_path / "r")
    tiny_config["agent"]["context"] = "complex"
    with pytest.raises(CheckpointError, match=r"agent\.context was 'binary', now 'complex'"):
        _run(tiny_config, tmp_path / "r", resume=True)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"agent": {"learning_rate": "fast"}}, r"agent\.learning_rate: expected float, got 'fast'"),
        ({"agent": {"algo": "sac"}}, r"agent\.algo: input should be 'dqn' or 'ppo', got 'sac'"),
        ({"agent": {"lr": 0.1}}, r"agent\.lr: unknown key"),
        ({"agent": {"n_steps": 128}}, r"agent\.n_steps: not a setting of algo='dqn'"),
        ({"agent": {"context": "none"}}, r"agent\.context: method='psp' needs a superposing context"),
        ({"eval": {"every": -5}}, r"eval\.every: input should be greater than 0, got -5"),
        ({"sequence": {"steps": 0}}, r"sequence\.steps: input should be greater than 0"),
        ({"sequence": {"name": None}}, r"give exactly one of sequence\.name"),
        ({"seed": "zero"}, r"seed: expected int, got 'zero'"),
        ({"name": None}, r"name: expected string, got None"),
    ],
)
def test_config_errors_name_the_key_path(tiny_config, patch, match):
    for section, value in patch.items():
        if isinstance(value, dict):
            tiny_config[section].update(value)
        else:
            tiny_config[section] = value
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny_config)


def test_missing_sequence_is_reported(tiny_config):
    del tiny_config["sequence"]
    with pytest.raises(ConfigError, match=r"sequence: missing \(required\)"):
        parse_config(tiny_config)


def test_unknown_sequence_task_is_a_config_error(tmp_path, tiny_config):
    tiny_config["sequence"]["tasks"] = ["default", "upside-down"]
    with pytest.raises(ConfigError, match=r"sequence: tasks \['upside-down'\]: not in sequence"):
        ContinualTrainer(parse_config(tiny_config), tmp_path / "x")


def test_ppo_on_a_continuous_sequence_runs(tmp_path, tiny_config):
    tiny_config["sequence"] = {"name": "pendulum-shift", "tasks": ["default", "reversed"], "steps": 256}
    tiny_config["agent"] = {"algo": "ppo", "context": "complex", "n_steps": 128, "batch_size": 64, "n_epochs": 2}
    tiny_config["eval"] = {"every": 256, "episodes": 1}
    metrics = _run(tiny_config, tmp_path / "ppo")
    assert len(metrics["eval_matrix"]) == 2 and metrics["reference_returns"]["default"] is None


@pytest.mark.parametrize("path", sorted(Path("experiments/configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_validates_and_builds_its_sequence(path):
    from psp_rl.continual import load_config
    from psp_rl.continual.build import build_sequence

    config = load_config(path)
    assert len(build_sequence(config.sequence)) >= 1


@pytest.mark.parametrize(
    ("method", "context", "head"),
    [
        ("multihead", "none", "PerTaskLinear"),
        ("separate", "none", "PerTaskLinear"),
        ("finetune", "none", "SuperposedLinear"),
        ("psp", "binary", "SuperposedLinear"),
    ],
)
def test_baselines_are_configs_of_the_same_agent(tiny_config, method, context, head):
    from psp_rl.continual.build import build_agent, build_sequence

    tiny_config["agent"].update(method=method, context=context)
    config = parse_config(tiny_config)
    agent = build_agent(config.agent, build_sequence(config.sequence).make_vec_env(0), seed=0)
    assert type(agent.q_net.q_head).__name__ == head
    assert agent.q_net.context == context
    n_params = sum(p.numel() for p in agent.q_net.parameters())
    plain = parse_config({**tiny_config, "agent": {**tiny_config["agent"], "method": "finetune", "context": "none"}})
    plain_params = sum(p.numel() for p in build_agent(plain.agent, agent.env, seed=0).q_net.parameters())
    if method == "separate":
        assert n_params == 2 * plain_params  # K = 2 independent networks
    if method == "finetune":
        assert n_params == plain_params


def test_fingerprint_leaves_out_settings_at_their_defaults(tiny_config):
    """An option added with a default must not change the fingerprint of runs saved without it."""
    base = parse_config(tiny_config)
    tiny_config["agent"].update(torso="auto", heads="shared", n_envs=1)  # spelled out at their defaults
    tiny_config["sequence"]["cycles"] = 1
    assert parse_config(tiny_config).fingerprint() == base.fingerprint()
    # Earlier releases saved every setting; those at today's defaults drop out of the comparison.
    saved_by_older = {**base.shaping(), "agent": {**base.shaping()["agent"], "torso": "auto", "replay_buffer": None}}
    assert base.matches(saved_by_older)
    assert not base.matches({**saved_by_older, "agent": {**saved_by_older["agent"], "torso": "mlp"}})
    tiny_config["agent"]["context"] = "complex"
    assert not parse_config(tiny_config).matches(base.shaping())
