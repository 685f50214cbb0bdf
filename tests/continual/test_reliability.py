"""Faults, bad input and untrusted files: a run must survive, refuse clearly, and never lose finished work."""

import copy
import json
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from psp_rl.agents import ContinualDQN
from psp_rl.cli import main
from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.continual import ContinualCallback
from psp_rl.continual.checkpoints import CheckpointStore
from psp_rl.errors import CheckpointError, NumericalError
from tests.conftest import DELETE, finished_run, run_train, tiny, train_command, train_here


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the tiny config: its config file and run dir."""
    return finished_run(tmp_path_factory.mktemp("reference"), tiny())


@pytest.mark.parametrize(
    "kill_at",
    # Three points by default (mid-chunk, mid-evaluation, mid-checkpoint-write); the rest with -m slow.
    ["learn:700", "eval:5", "checkpoint:1"]
    + [
        pytest.param(point, marks=pytest.mark.slow)
        for point in ("learn:2100", "checkpoint:2", "task_end:1", "metrics:1")
    ],
)
def test_sigkill_anywhere_then_resume_matches_the_uninterrupted_run(tmp_path, reference, kill_at):
    config_path, whole = reference
    run_dir = tmp_path / "run"
    killed = run_train(config_path, run_dir, env={"PSP_RL_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (run_dir / "metrics.json").exists()
    train_here(config_path, run_dir, "--resume")  # the graceful-stop tests resume in a fresh process
    assert (run_dir / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, run_dir))
    assert a["eval_matrix"] == b["eval_matrix"] and a["forgetting"] == b["forgetting"]
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))  # no half-written checkpoint left
    newest = sorted((run_dir / "checkpoints").glob("ckpt-*"))[-1]
    model = ContinualDQN.load(newest / "model.zip")
    reference_model = ContinualDQN.load(sorted((whole / "checkpoints").glob("ckpt-*"))[-1] / "model.zip")
    for a, b in zip(model.policy.parameters(), reference_model.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)  # same final weights, bit for bit


def _same_weights(run_dir: Path, whole: Path) -> None:
    newest = sorted((run_dir / "checkpoints").glob("ckpt-*"))[-1]
    model = ContinualDQN.load(newest / "model.zip")
    reference_model = ContinualDQN.load(sorted((whole / "checkpoints").glob("ckpt-*"))[-1] / "model.zip")
    for a, b in zip(model.policy.parameters(), reference_model.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("stop_at", "exit_code"),
    [
        ("learn:700:SIGINT", 130),
        ("learn:2100:SIGTERM", 143),
        # A stop during an evaluation: slow (the kill test covers that point by default; each case is a
        # ~28 s pair of runs, and the default suite took 12:55 on a slower 2-core EPYC).
        pytest.param("eval:3:SIGINT", 130, marks=pytest.mark.slow),
    ],
)
def test_graceful_stop_then_resume_matches_the_uninterrupted_run(tmp_path, reference, stop_at, exit_code):
    """Mid-chunk (the chunk is finished first, then saved), by SIGTERM (exit 128 + 15), during an evaluation."""
    config_path, whole = reference
    run_dir = tmp_path / "run"
    stopped = run_train(config_path, run_dir, env={"PSP_RL_KILL_AT": stop_at})
    assert stopped.returncode == exit_code, stopped.stderr
    assert "Traceback" not in stopped.stderr and "checkpoint written" in stopped.stderr
    assert f"resume with: psp-rl train {config_path} --run-dir {run_dir} --resume" in stopped.stderr
    assert not (run_dir / "metrics.json").exists()
    resumed = run_train(config_path, run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()
    _same_weights(run_dir, whole)


def test_a_stop_far_from_the_chunk_end_abandons_the_chunk_and_resumes_exactly(tmp_path, reference, monkeypatch):
    from psp_rl.continual import faults
    from psp_rl.errors import RunInterrupted

    config_path, whole = reference
    run_dir = tmp_path / "run"
    monkeypatch.setenv("PSP_RL_KILL_AT", "learn:1300:SIGINT")  # chunk 1000..1500 of task 0
    monkeypatch.setattr(faults, "_COUNTS", {})
    trainer = ContinualTrainer(parse_config(tiny()), run_dir, stop_within_s=0.0)
    with pytest.raises(
        RunInterrupted, match=r"mid-way through a chunk; the run resumes from checkpoint ckpt-0+10\d\d-0000"
    ):
        trainer.run()
    monkeypatch.delenv("PSP_RL_KILL_AT")
    ContinualTrainer(parse_config(tiny()), run_dir, resume=True).run()
    assert (run_dir / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()
    _same_weights(run_dir, whole)


def test_a_second_ctrl_c_aborts_at_once_and_the_last_checkpoint_resumes(tmp_path, reference):
    config_path, whole = reference
    run_dir = tmp_path / "run"
    cmd = train_command(config_path, run_dir)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((run_dir / "checkpoints").glob("ckpt-*")):
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert run_train(config_path, run_dir, "--resume").returncode == 0
    assert (run_dir / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()


def _finished_run(tmp_path: Path, steps: int = 1000) -> tuple[dict, Path]:
    config = tiny()
    config["sequence"]["steps"] = steps
    config["checkpoint"]["keep"] = 3
    run_dir = tmp_path / "run"
    ContinualTrainer(parse_config(config), run_dir).run()
    return config, run_dir


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("ckpt-*"), reverse=True)


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    config, run_dir = _finished_run(tmp_path)
    newest, previous = _checkpoints(run_dir)[:2]
    model = newest / "model.zip"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    trainer = ContinualTrainer(parse_config(config), run_dir, resume=True)
    metrics = trainer.run()
    assert "unreadable" in caplog.text and newest.name in caplog.text
    assert metrics["env_steps"] >= 2000  # resumed from the previous checkpoint and finished again


def test_foreign_zip_and_garbage_state_fall_back_and_finally_fail_clearly(tmp_path):
    config, run_dir = _finished_run(tmp_path)
    for ckpt in _checkpoints(run_dir):
        with zipfile.ZipFile(ckpt / "model.zip", "w") as zf:
            zf.writestr("hello.txt", "not a model")
    (_checkpoints(run_dir)[-1] / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"no loadable checkpoint in .*ckpt-.*state\.json.*not a psp-rl"):
        ContinualTrainer(parse_config(config), run_dir, resume=True).run()


class _Saved(ContinualCallback):
    """A callback whose state a checkpoint carries (its loaded state is kept to look at)."""

    name = "Saved"

    def __init__(self, state=None):
        self.state = state

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


def test_callback_states_with_numpy_floats_load_and_other_objects_are_refused(tmp_path):
    import numpy as np

    # task inference wrote its dynamics errors as numpy float64 before 2026-12-02: those runs resume
    CheckpointStore.save_callbacks(tmp_path, [_Saved({"usual_error": [[0, np.float64(0.25)]]})])
    loaded = _Saved()
    CheckpointStore.load_callbacks(tmp_path, [loaded])
    assert loaded.state == {"usual_error": [[0, 0.25]]}
    CheckpointStore.save_callbacks(tmp_path, [_Saved({"path": Path("elsewhere")})])  # not plain data
    with pytest.raises(Exception, match="Weights only load failed"):
        CheckpointStore.load_callbacks(tmp_path, [loaded])


def test_checkpoint_from_another_config_names_the_mismatch(tmp_path):
    config, run_dir = _finished_run(tmp_path)
    (run_dir / "config.yaml").unlink()  # only the checkpoint's own record is left to compare
    for key, value, match in [
        ("net_arch", [64, 64], r"agent\.network\.net_arch was \[32, 32\], now \[64, 64\]"),
        ("context", "complex", r"agent\.network\.context was 'binary', now 'complex'"),
    ]:
        other = copy.deepcopy(config)
        other["agent"][key] = value
        with pytest.raises(CheckpointError, match=match):
            ContinualTrainer(parse_config(other), run_dir, resume=True).run()
    other = copy.deepcopy(config)
    other["sequence"]["name"] = "cartpole-permuted"
    other["sequence"]["tasks"] = ["identity", "perm-1"]
    with pytest.raises(CheckpointError, match=r"sequence\.name was 'cartpole-shift', now 'cartpole-permuted'"):
        ContinualTrainer(parse_config(other), run_dir, resume=True).run()


def test_weights_with_other_contexts_refuse_to_load(tmp_path):
    config, run_dir = _finished_run(tmp_path)
    model = ContinualDQN.load(_checkpoints(run_dir)[0] / "model.zip")
    state = model.policy.state_dict()
    other = copy.deepcopy(config)
    other["agent"]["context_seed"] = 7
    from psp_rl.config.build import build_agent, build_sequence

    seq = build_sequence(parse_config(other).sequence)
    fresh = build_agent(parse_config(other).agent, seq.make_vec_env(0), seed=0)
    with pytest.raises(ValueError, match="context_key was saved by a layer with seed=0.*has seed=7"):
        fresh.policy.load_state_dict(state)


def test_non_finite_weights_stop_training_and_keep_the_last_good_checkpoint(tmp_path):
    class Poison(ContinualCallback):
        def after_eval(self, trainer, rows):
            if trainer.agent.num_timesteps > 2000:  # after the task-0 checkpoint
                with torch.no_grad():
                    next(trainer.agent.policy.q_net.parameters()).fill_(float("nan"))

    config = tiny()
    run_dir = tmp_path / "run"
    with pytest.raises(
        NumericalError, match=r"while training task 'reversed' at step \d+; last good checkpoint kept: .*ckpt-"
    ):
        ContinualTrainer(parse_config(config), run_dir, callbacks=[Poison()]).run()
    good = _checkpoints(run_dir)
    assert good
    model = ContinualDQN.load(good[0] / "model.zip")
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


# ---------------------------------------------------------------------------------------- bad input sweep
BAD_CONFIGS = [
    ("agent.learning_rate", "fast", "agent.learning_rate: expected float, got 'fast'"),
    ("agent.learning_rate", -1.0, "agent.learning_rate: input should be greater than 0"),
    ("agent.batch_size", 3.5, "agent.batch_size: expected int"),
    ("agent.algo", "sac", "agent.algo: input should be 'dqn' or 'ppo'"),
    ("agent.context", "gaussian", "agent.network.context: input should be"),
    ("agent.net_arch", "big", "agent.network.net_arch: expected a list"),
    ("agent.net_arch", [64, "x"], "agent.network.net_arch.1: expected int"),
    ("agent.gamma", 1.5, "agent.gamma: input should be less than or equal to 1"),
    ("agent.n_envs", 0, "agent.n_envs: input should be greater than 0"),
    ("agent.buffer_size", -10, "agent.dqn.buffer_size: input should be greater than 0"),
    ("agent.n_steps", 64, "agent.ppo.n_steps: not a setting of algo='dqn'"),
    ("agent.replay_on_switch", "forget", "agent.dqn.replay_on_switch: input should be 'clear' or 'keep'"),
    ("agent.learning_rat", 0.1, "agent.learning_rat: unknown key"),
    ("agent.method", "finetune", "agent.network.context: method='finetune' is a plain-network baseline"),
    ("agent.context", "none", "agent.network.context: method='psp' needs a superposing context"),
    ("agent.torso", "resnet", "agent.network.torso: input should be"),
    ("agent.exploration_final_eps", 2.0, "agent.dqn.exploration_final_eps: input should be less than or equal to 1"),
    ("sequence.steps", -100, "sequence.steps: input should be greater than 0"),
    ("sequence.steps", "many", "sequence.steps: expected int, got 'many'"),
    ("sequence.cycles", 0, "sequence.cycles: input should be greater than 0"),
    ("sequence.name", "cartpole-shfit", "sequence: sequence 'cartpole-shfit': not a built-in sequence"),
    ("sequence.tasks", ["default", "upside-down"], "sequence: tasks ['upside-down']: not in sequence"),
    ("sequence.tasks", "default", "sequence.tasks: expected a list"),
    ("sequence.spec", {"tasks": []}, "give exactly one of sequence.name (built-in) or sequence.spec (custom)"),
    ("sequence.colour", "red", "sequence.colour: unknown key"),
    ("sequence", DELETE, "sequence: missing (required)"),
    ("eval.every", 0, "eval.every: input should be greater than 0"),
    ("eval.episodes", "five", "eval.episodes: expected int, got 'five'"),
    ("eval.reference_returns", {"upside-down": 10.0}, "eval.reference_returns: unknown task(s) ['upside-down']"),
    ("checkpoint.every", -1, "checkpoint.every: input should be greater than 0"),
    ("checkpoint.keep", 0, "checkpoint.keep: input should be greater than 0"),
    ("sequence.name", None, "give exactly one of sequence.name"),
    ("seed", -3, "seed: input should be greater than or equal to 0"),
    ("seed", "zero", "seed: expected int, got 'zero'"),
    ("name", "", "name: string should have at least 1 character"),
    ("name", None, "name: expected string, got None"),
    ("sequence.max_tasks", 1, "sequence: sequence 'cartpole-shift': max_tasks=1, expected an int >= 2"),
]
BAD_SPECS = [
    ({"tasks": []}, "tasks=[], expected a non-empty list of tasks"),
    ({"tasks": [{"name": "a", "env_id": "NoSuchEnv-v9"}]}, "task 'a': env_id 'NoSuchEnv-v9': not a registered"),
    ({"tasks": [{"name": "a", "env_id": "CartPole-v1", "params": {"gravty": 1.0}}]}, "task 'a': parameter 'gravty'"),
    ({"tasks": [{"name": "a", "env_id": "CartPole-v1", "params": {"gravity": "x"}}]}, "parameter 'gravity'"),
    (
        {"tasks": [{"name": "a", "env_id": "CartPole-v1"}, {"name": "b", "env_id": "Pendulum-v1"}]},
        "task 'b': observation_space",
    ),
]


def _cli_error(tmp_path: Path, config: dict, capsys, *extra: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["train", str(path), "--run-dir", str(tmp_path / "run"), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("psp-rl: error:"), err
    return err[0]


@pytest.mark.parametrize(("key", "value", "message"), BAD_CONFIGS, ids=[f"{k}={v!r}" for k, v, _ in BAD_CONFIGS])
def test_bad_config_gives_one_line_naming_the_field(tmp_path, capsys, key, value, message):
    assert message in _cli_error(tmp_path, tiny({key: value}), capsys)


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_custom_sequence_names_the_task_and_field(tmp_path, capsys, spec, message):
    config = tiny({"sequence": {"spec": {"steps": 100, **spec}}})
    assert message in _cli_error(tmp_path, config, capsys)


def test_not_a_mapping_and_not_yaml(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    assert main(["train", str(path)]) == 2
    assert "expected a mapping of settings, got list" in capsys.readouterr().err
    path.write_text("agent: {algo: dqn\n")
    assert main(["train", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    assert "--seed -2: expected a non-negative int" in _cli_error(tmp_path, tiny(), capsys, "--seed", "-2")
    with pytest.raises(SystemExit) as exc:
        main(["train", "c.yaml", "--resume", "--overwrite"])
    assert exc.value.code == 2
    assert main(["evaluate", str(tmp_path), "--episodes", "0"]) == 2


def test_unwritable_run_dir_and_existing_run(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tiny({"sequence.steps": 200})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--run-dir", str(blocker / "run")]) == 2
    assert "not writable" in capsys.readouterr().err
    assert main(["train", str(path), "--run-dir", str(blocker)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["train", str(path), "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
