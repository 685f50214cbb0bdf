import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.continual import ContinualCallback
from psp_rl.errors import ConfigError
from psp_rl.reporting.report import write_report


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

    assert yaml.safe_load((run_dir / "config.yaml").read_text())["agent"]["network"]["context"] == "binary"
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
    assert {"torch", "stable-baselines3", "gymnasium"} <= set(saved["versions"]) and "ale-py" not in saved["versions"]

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


def test_existing_run_dir_needs_resume_or_overwrite(tmp_path, tiny_config):
    tiny_config["sequence"]["steps"] = 300
    tiny_config["eval"]["every"] = 300
    _run(tiny_config, tmp_path / "r")
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        _run(tiny_config, tmp_path / "r")
    _run(tiny_config, tmp_path / "r", overwrite=True)


def test_ppo_on_a_continuous_sequence_runs(tmp_path, tiny_config):
    tiny_config["sequence"] = {"name": "pendulum-shift", "tasks": ["default", "reversed"], "steps": 256}
    tiny_config["agent"] = {"algo": "ppo", "context": "complex", "n_steps": 128, "batch_size": 64, "n_epochs": 2}
    tiny_config["eval"] = {"every": 256, "episodes": 1}
    metrics = _run(tiny_config, tmp_path / "ppo")
    assert len(metrics["eval_matrix"]) == 2 and metrics["reference_returns"]["default"] is None


@pytest.mark.parametrize("path", sorted(Path("experiments/configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_validates_and_builds_its_sequence(path):
    from psp_rl.config import load_config
    from psp_rl.config.build import build_sequence, check_agent_fits

    config = load_config(path)
    sequence = build_sequence(config.sequence)
    check_agent_fits(config.agent, sequence)  # e.g. DQN on continuous actions is refused
    if config.sequence.tasks is not None:
        assert sequence.names == config.sequence.tasks
    assert len(sequence.schedule) == len(sequence) * config.sequence.cycles


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
    from psp_rl.config.build import build_agent, build_sequence

    tiny_config["agent"].update(method=method, context=context)
    config = parse_config(tiny_config)
    agent = build_agent(config.agent, build_sequence(config.sequence).make_vec_env(0), seed=0)
    assert type(agent.q_net.q_head).__name__ == head
    assert agent.q_net.psp.context == context
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
