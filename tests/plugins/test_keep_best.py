"""keep_best: a stage ends on the weights of its best evaluation, evaluated again; resumes stay exact."""

import json
import signal
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from psp_rl.config import ContinualTrainer, parse_config
from psp_rl.continual import ContinualCallback
from psp_rl.errors import ConfigError
from psp_rl.plugins.keep_best import KeepStageBest
from tests.conftest import finished_run, run_train, tiny, train_here


class _Writer:
    def add_scalar(self, *args, **kwargs) -> None:
        pass


def _loop(policy: nn.Module) -> SimpleNamespace:
    agent = SimpleNamespace(policy=policy, num_timesteps=0)
    return SimpleNamespace(
        agent=agent, sequence=[SimpleNamespace(name="a"), SimpleNamespace(name="b")], writer=_Writer()
    )


def _evaluate(callback: KeepStageBest, loop: SimpleNamespace, step: int, weight: float, mean: float) -> list[dict]:
    loop.agent.num_timesteps = step
    nn.init.constant_(loop.agent.policy.weight, weight)
    rows = [dict(eval_task="a", mean=mean), dict(eval_task="b", mean=0.0)]
    callback.after_eval(loop, rows)
    return rows


def test_the_best_evaluations_weights_come_back_when_they_beat_the_final_ones():
    loop, callback = _loop(nn.Linear(2, 2)), KeepStageBest()
    callback.before_task(loop, 0, 0)
    for step, weight, mean in ((10, 1.0, 50.0), (20, 2.0, 80.0), (30, 3.0, 60.0)):
        rows = _evaluate(callback, loop, step, weight, mean)
    assert callback.at_stage_end(loop, 0, 0, rows) is True
    assert torch.all(loop.agent.policy.weight == 2.0)  # the weights of step 20, not the final ones
    rows = _evaluate(callback, loop, 30, 2.0, 79.0)  # the loop's evaluation again: ignored
    assert callback.metrics(loop) == {
        "stages": [
            dict(stage=0, task="a", final_step=30, final_return=60.0, restored=True, best_step=20, best_return=80.0)
        ],
        "restored": 1,
    }


@pytest.mark.parametrize("final", [80.0, 90.0])
def test_a_final_evaluation_as_good_as_the_best_keeps_the_final_weights(final):
    loop, callback = _loop(nn.Linear(2, 2)), KeepStageBest()
    callback.before_task(loop, 1, 1)
    _evaluate(callback, loop, 10, 1.0, 0.0)  # task b's row is 0.0 here
    callback.before_task(loop, 0, 0)  # a new stage forgets the old one's best
    _evaluate(callback, loop, 20, 2.0, 80.0)
    rows = _evaluate(callback, loop, 30, 3.0, final)
    assert callback.at_stage_end(loop, 0, 0, rows) is False
    assert torch.all(loop.agent.policy.weight == 3.0)


def test_a_run_keeps_one_stage_end_evaluation_per_task_and_says_what_it_restored(tmp_path):
    config = tiny({"keep_best": True, "eval.every": 300})
    metrics = ContinualTrainer(parse_config(config), tmp_path / "run").run()
    stages = metrics["KeepStageBest"]["stages"]
    assert [s["task"] for s in stages] == ["default", "reversed"]
    rows = [line.split(",") for line in (tmp_path / "run" / "eval.csv").read_text().splitlines()[1:]]
    keys = [(row[0], row[2]) for row in rows]
    assert len(keys) == len(set(keys))  # a restored stage's first evaluation was replaced, not added to
    for stage in stages:
        assert stage["best_return"] >= stage["final_return"]
        assert stage["restored"] == (stage["best_return"] > stage["final_return"])
        end = [float(row[3]) for row in rows if int(row[0]) == stage["final_step"] and row[2] == stage["task"]]
        if not stage["restored"]:
            assert end == [stage["final_return"]]
    assert metrics["eval_matrix"] == json.loads((tmp_path / "run" / "metrics.json").read_text())["eval_matrix"]


class _ZeroAtStageEnd(ContinualCallback):
    """Zeroes the Q-network at every stage's end and asks for the evaluation again."""

    def __init__(self) -> None:
        self.evaluated_at: list[int] = []

    def after_eval(self, loop, rows) -> None:
        self.evaluated_at.append(int(loop.agent.num_timesteps))

    def at_stage_end(self, loop, stage, task, rows) -> bool:
        for parameter in loop.agent.policy.q_net.parameters():
            nn.init.zeros_(parameter)
        return True


def test_a_callback_that_changes_the_weights_at_a_stage_end_replaces_that_evaluation(tmp_path):
    callback = _ZeroAtStageEnd()
    ContinualTrainer(parse_config(tiny({"eval.every": 500})), tmp_path / "run", callbacks=[callback]).run()
    rows = [line.split(",") for line in (tmp_path / "run" / "eval.csv").read_text().splitlines()[1:]]
    ends = [step for step in set(callback.evaluated_at) if callback.evaluated_at.count(step) == 2]
    assert len(ends) == 2 and sorted(set(callback.evaluated_at)) == sorted({int(row[0]) for row in rows})
    for end in ends:  # one row per task, from the zeroed network: every action ties, argmax plays action 0
        at_end = [row for row in rows if int(row[0]) == end]
        assert len(at_end) == 2 and all(float(row[3]) < 15 for row in at_end), at_end


def test_keep_best_changes_the_fingerprint_only_when_set_and_refuses_hidden_ids():
    plain = parse_config(tiny())
    assert parse_config(tiny({"keep_best": False})).fingerprint() == plain.fingerprint()
    assert parse_config(tiny({"keep_best": True})).fingerprint() != plain.fingerprint()
    with pytest.raises(ConfigError, match=r"keep_best: true with sequence.task_ids 'hidden'.*expected keep_best false"):
        parse_config(tiny({"keep_best": True, "sequence.task_ids": "hidden", "agent.method": "psp"}))


def test_a_killed_keep_best_run_resumes_to_the_uninterrupted_runs_results(tmp_path):
    config = tiny({"keep_best": True, "eval.every": 300, "checkpoint.every": 500})
    config_path, whole = finished_run(tmp_path, config)
    run_dir = tmp_path / "run"
    killed = run_train(config_path, run_dir, env={"PSP_RL_KILL_AT": "learn:2100"})  # inside stage 2, after a checkpoint
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    train_here(config_path, run_dir, "--resume")
    assert (run_dir / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, run_dir))
    assert a["KeepStageBest"] == b["KeepStageBest"]
