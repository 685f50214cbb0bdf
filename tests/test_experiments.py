"""Every script in experiments/ runs end to end on a tiny budget (in this process, argv patched),
and README's Python example runs as written (on a smaller budget)."""

import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[1]


def _main(monkeypatch, module: str, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    importlib.import_module(module).main()


@pytest.mark.parametrize(
    ("module", "argv", "printed"),
    [
        pytest.param("experiments.bench_envs", ["--steps", "20"], "cartpole-shift", id="bench_envs"),
        pytest.param("experiments.bench_layers", ["--repeats", "1", "--batch", "4"], "binary", id="bench_layers"),
        pytest.param(
            "experiments.bench_input_layer",
            ["--steps", "300", "--seeds", "0", "--widths", "32"],
            "per_task",
            id="bench_input_layer",
        ),
        pytest.param(
            "experiments.learn_cartpole",
            ["--algo", "ppo", "--seeds", "0", "--steps", "256"],
            "ppo context=binary",
            id="learn_cartpole",
        ),
        pytest.param(
            "experiments.bench_throughput",
            ["--rows", "cartpole-dqn", "--agents", "vanilla", "binary", "--n-envs", "1", "--steps", "300"]
            + ["--repeats", "1", "--replay-transitions", "0"],
            "vanilla",
            id="bench_throughput",
        ),
        pytest.param(
            "experiments.paper_replica.__main__",
            ["--demo", "--epochs", "1"],
            "task-0 accuracy after 10 tasks",
            id="paper_replica",
        ),
    ],
)
def test_experiment_script_runs(monkeypatch, capsys, module, argv, printed):
    _main(monkeypatch, module, *argv)
    assert printed in capsys.readouterr().out


def test_bench_retention_tabulates_through_the_sweep(monkeypatch, tmp_path):
    """The script is a front of `psp-rl sweep` (whose trials tests/test_sweep.py runs on Ray):
    here it tabulates a finished trial without starting Ray."""
    from psp_rl.continual import ContinualTrainer, parse_config
    from psp_rl.continual.sweep import METHODS, Trial, trial_config

    config = {**TINY_CONFIG, "sequence": {**TINY_CONFIG["sequence"], "steps": 300}, "eval": {"every": 300}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    trial = Trial("finetune", 0)
    out = tmp_path / "out"
    ContinualTrainer(parse_config(trial_config(config, trial, METHODS)), out / "runs" / trial.name).run()
    monkeypatch.setattr(sys, "argv", ["bench_retention.py", str(path), "--methods", "finetune", "--seeds", "0",
                                      "--out", str(out), "--finished-only"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module("experiments.bench_retention").main()
    assert exit_.value.code == 0
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].startswith("method,") and [row.split(",")[0] for row in table[1:]] == ["finetune"]


def test_readme_python_example_runs(monkeypatch, tmp_path):
    readme = (ROOT / "README.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "ContinualLoop" in block)
    assert "steps=20_000" in example
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(example.replace("steps=20_000", "steps=512"), namespace)  # README's own code
    metrics = namespace["metrics"]
    assert set(metrics["final_returns"]) == {"default", "reversed"}
    assert (tmp_path / "runs" / "my-ppo" / "eval.csv").exists()
    exec(example.replace("steps=20_000", "steps=512"), namespace)  # again: resumes, trains nothing
    assert namespace["metrics"]["final_returns"] == metrics["final_returns"]
