import json
import logging
import os
import re
import signal
import subprocess
import sys

import pytest
import yaml

from psp_rl.cli import main
from tests.conftest import DELETE, run_cli, tiny, train_command, train_here, write_config


def test_help_explains_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ("train", "evaluate", "report", "list", "tensorboard --logdir", "--resume"):
        assert word in result.stdout


def test_list_shows_sequences_agents_and_contexts(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("cartpole-shift", "minatar", "atari-cora", "ContinualDQN", "ContinualPPO", "binary", "rotation"):
        assert word in out
    for word in ("shipped configs", "quickstart ", "The main job: PSP-PPO"):
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
        (["train", "missing.yaml"], "config 'missing.yaml': neither a file nor a shipped config"),
        (["train", "quickstrat"], "did you mean 'quickstart'? shipped: acrobot-shift, "),
        (["evaluate", "nowhere"], "config file 'nowhere/config.yaml': not found"),
        (["report", "nowhere"], "'nowhere/eval.csv': missing"),
        (["evaluate", "."], "config file 'config.yaml': not found"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.chdir(tmp_path)  # in this process: a fresh one costs seconds of imports per case
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], lines


def test_a_user_error_in_a_fresh_process_is_one_line_without_a_traceback(tmp_path):
    """What a user's shell sees, import-time warnings included."""
    result = run_cli("train", "missing.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "config 'missing.yaml': neither a file nor a shipped config" in lines[0], lines


def test_bad_arguments_exit_2():
    assert run_cli("train").returncode == 2  # missing CONFIG: argparse's usage error
    assert run_cli("frobnicate").returncode == 2


def test_second_run_on_the_same_dir_is_refused_while_the_first_holds_the_lock(tmp_path, tiny_config):
    from psp_rl.continual.files import RunLock

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = RunLock(run_dir)
    lock.acquire()  # stands in for a first run that is still going
    try:
        result = run_cli("train", str(config), "--run-dir", str(run_dir))
    finally:
        lock.release()
    assert result.returncode == 2
    assert f"in use by another psp-rl process (pid {os.getpid()})" in result.stderr


def test_resume_of_a_missing_run_dir_is_refused_and_resume_or_start_starts(tmp_path, tiny_config, capsys, caplog):
    """In this process (a fresh one costs seconds of imports per call): the run's news goes to the log, which a
    user's process prints on stderr."""
    tiny_config["sequence"]["steps"] = 300
    tiny_config["eval"]["every"] = 300
    config = write_config(tmp_path, tiny_config)
    assert main(["train", str(config), "--run-dir", str(tmp_path / "typo"), "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no run to resume (missing or empty)" in lines[0] and "--resume-or-start" in lines[0]
    assert not (tmp_path / "typo").exists() and "training" not in caplog.text
    caplog.set_level(logging.INFO, logger="psp_rl")
    train_here(config, tmp_path / "run", "--resume-or-start")
    assert "training 'tiny'" in caplog.text and "resuming" not in caplog.text
    # Not a terminal: one line per evaluation shows the run is alive.
    assert "step 320 (" in caplog.text and "env-steps/s) default: default" in caplog.text
    caplog.clear()
    train_here(config, tmp_path / "run", "--resume")
    assert "had finished" in caplog.text


def test_resume_says_where_it_resumed_from(tmp_path, tiny_config, caplog):
    config = write_config(tmp_path, tiny_config)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PSP_RL_KILL_AT": "task_end:1"}
    killed = subprocess.run(
        train_command(config, run_dir),
        env=env,
        capture_output=True,
    )
    assert killed.returncode != 0
    caplog.set_level(logging.INFO, logger="psp_rl")
    train_here(config, run_dir, "--resume")  # in this process
    pattern = r"resuming from checkpoint \S+ckpt-0+(\d+)-0000: step \1, task 1/2 \(default\)"
    assert re.search(pattern, caplog.text), caplog.text


def test_an_algorithm_that_cannot_act_is_refused_before_any_run_dir(tmp_path, tiny_config, capsys):
    tiny_config["sequence"] = {"name": "pendulum-shift", "steps": 300}
    config = write_config(tmp_path, tiny_config)
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "agent.algo: 'dqn' needs a discrete action space" in err and "Box" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (  # the frames' channel counts of CartPole's 4 numbers
            {"inference.evidence": "dynamics", "inference.count_fit": 10},
            "inference.count_fit=10.0: observation space Box(",
        ),
        (  # a model of the dynamics from (s, a) for continuous actions
            {
                "sequence": {"name": "pendulum-shift", "steps": 300},
                "agent.algo": "ppo",
                **{
                    f"agent.{dqn}": DELETE for dqn in ("learning_starts", "train_freq", "gradient_steps", "buffer_size")
                },
                "agent.distil_steps": DELETE,
                "inference.evidence": "dynamics",
            },
            "inference.evidence='dynamics': dynamics evidence: action space Box(",
        ),
    ],
)
def test_inference_evidence_the_tasks_cannot_give_is_refused_before_any_run_dir(tmp_path, capsys, changes, match):
    config = tiny(changes)
    config["sequence"]["task_ids"] = "hidden"
    assert main(["train", str(write_config(tmp_path, config)), "--run-dir", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_before_its_first_step_leaves_no_run_dir(tmp_path, tiny_config, monkeypatch):
    from psp_rl.config import ContinualTrainer, build, parse_config

    def broken(*args, **kwargs):
        raise RuntimeError("agent construction failed")

    monkeypatch.setattr(build, "build_agent", broken)
    with pytest.raises(RuntimeError, match="agent construction failed"):
        ContinualTrainer(parse_config(tiny_config), tmp_path / "run").run()
    assert not (tmp_path / "run").exists()
    monkeypatch.undo()
    ContinualTrainer(parse_config({**tiny_config, "sequence": {**tiny_config["sequence"], "steps": 300}}),
                     tmp_path / "run").run()  # fmt: skip  # the next try is not refused


def test_evaluate_falls_back_from_a_truncated_checkpoint(tmp_path, tiny_config, capsys):
    tiny_config["sequence"]["steps"] = 500
    tiny_config["checkpoint"]["keep"] = 3
    run_dir = tmp_path / "run"
    train_here(write_config(tmp_path, tiny_config), run_dir)
    newest = sorted((run_dir / "checkpoints").glob("ckpt-*"))[-1] / "model.zip"
    newest.write_bytes(newest.read_bytes()[:100])
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "1"]) == 0
    captured = capsys.readouterr()
    assert "unreadable; trying the previous one" in captured.err
    assert f"written: {run_dir / 'evaluate.csv'}" in captured.out
    for ckpt in (run_dir / "checkpoints").glob("ckpt-*"):
        (ckpt / "model.zip").write_bytes(b"junk")
    result = run_cli("evaluate", str(run_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "no loadable checkpoint" in result.stderr


def test_list_shows_task_keys_and_action_spaces(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    from psp_rl.envs import get_sequence

    assert f"tasks: {', '.join(get_sequence('cartpole-shift').names)}; actions Discrete(2)" in out
    assert "actions Box(" in out  # pendulum-shift


def test_unknown_key_suggests_the_close_one(tmp_path, tiny_config, capsys):
    tiny_config["agent"]["learning_rat"] = 0.1
    assert main(["train", str(write_config(tmp_path, tiny_config))]) == 2
    assert "agent.learning_rat: unknown key; did you mean 'learning_rate'?" in capsys.readouterr().err


def test_report_over_runs_with_other_boundaries_same_names_and_one_unfinished(tmp_path, tiny_config, monkeypatch):
    from psp_rl.config import ContinualTrainer, parse_config
    from psp_rl.reporting import plots
    from psp_rl.reporting.report import write_report

    tiny_config["eval"]["every"] = 250
    for parent, steps in (("a", 500), ("b", 750)):
        tiny_config["sequence"]["steps"] = steps
        ContinualTrainer(parse_config(tiny_config), tmp_path / parent / "run").run()
    partial = tmp_path / "c" / "run"
    tiny_config["sequence"]["steps"] = 500
    ContinualTrainer(parse_config(tiny_config), partial).run()
    (partial / "metrics.json").unlink()  # as a run still going looks
    partial_rows = (partial / "eval.csv").read_text().splitlines()

    drawn = {}
    original = plots.returns_figure

    def spy(runs, tasks, boundaries, inference):
        drawn.update(boundaries)
        assert inference == {}  # announced ids: nothing to mark
        return original(runs, tasks, boundaries, inference)

    monkeypatch.setattr("psp_rl.reporting.report.returns_figure", spy)
    report = write_report([tmp_path / "a" / "run", tmp_path / "b" / "run", partial], tmp_path / "out").read_text()
    last = partial_rows[-1].split(",")[0]
    assert list(drawn) == ["a/run", "b/run", f"run (partial, step {last})"]
    for parent in ("a", "b"):  # each run's own boundaries
        assert (
            drawn[f"{parent}/run"]
            == json.loads((tmp_path / parent / "run" / "metrics.json").read_text())["stage_end_steps"]
        )
    assert drawn["a/run"] != drawn["b/run"]
    assert drawn[f"run (partial, step {last})"] == drawn["a/run"][:1]  # same config: its stage 0 ended alike
    assert f"| run (partial, step {last}) | - |" in report
    assert (tmp_path / "out" / "matrix-a-run.png").exists() and (tmp_path / "out" / "matrix-b-run.png").exists()


def test_progress_bar_ends_at_the_total_and_a_resume_shows_the_last_evaluation(tmp_path, tiny_config):
    from psp_rl.config import ContinualTrainer, parse_config

    tiny_config["sequence"]["steps"] = 300
    trainer = ContinualTrainer(parse_config(tiny_config), tmp_path / "run", progress=True)
    trainer.run()
    bar = trainer._progress.tasks[0]
    assert bar.completed == bar.total == 600
    again = ContinualTrainer(parse_config(tiny_config), tmp_path / "run", resume=True, progress=True)
    again.run()
    assert again._progress.tasks[0].fields["last_eval"].startswith("default ")


def test_current_task_steps_at_each_switch(tmp_path, tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from psp_rl.config import ContinualTrainer, parse_config

    tiny_config["sequence"]["steps"] = 300
    metrics = ContinualTrainer(parse_config(tiny_config), tmp_path / "run").run()
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    points = [(e.step, e.value) for e in acc.Scalars("train/current_task")]
    switch = metrics["stage_end_steps"][0]
    assert points == [(0, 0.0), (switch, 0.0), (switch, 1.0)]  # a step, not a ramp from 0 to 1


def test_ctrl_c_in_evaluate_exits_130_without_a_traceback(tmp_path, tiny_config):
    tiny_config["sequence"]["steps"] = 300
    run_dir = tmp_path / "run"
    train_here(write_config(tmp_path, tiny_config), run_dir)
    cmd = [sys.executable, "-m", "psp_rl.cli", "evaluate", str(run_dir), "--episodes", "100000"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As from a terminal: a test worker (pytest-xdist) may ignore SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert "greedy return" in proc.stdout.readline()  # evaluating now
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a failed assertion must not leave 100,000 episodes running
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err


def test_evaluate_past_tasks_and_watch_them(tmp_path, tiny_config, capsys, monkeypatch):
    """``--tasks`` evaluates the tasks it names; ``--video`` writes one MP4 per task, a frame per
    agent step of the episode it reports; bad input is one line, exit 2, nothing written. A run
    with ``eval.video_every`` puts them in TensorBoard as it trains."""
    import imageio
    import imageio.v3 as iio
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tiny_config["sequence"]["steps"] = 300
    tiny_config["eval"] = {"every": 300, "episodes": 1, "video_every": 600}
    run_dir, videos = tmp_path / "run", tmp_path / "videos"
    train_here(write_config(tmp_path, tiny_config), run_dir)
    # eval.video_every: each task's episode in TensorBoard, at the first evaluation past 600 steps
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0}).Reload()
    tb_videos = {tag: events.Images(tag) for tag in events.Tags()["images"] if tag.startswith("video/")}
    assert {tag: [e.step for e in images] for tag, images in tb_videos.items()} == {
        "video/default": [640],
        "video/reversed": [640],
    }
    gif = iio.imread(tb_videos["video/default"][0].encoded_image_string, extension=".gif", index=None)
    assert gif.ndim == 4 and len(gif) > 1  # an animated GIF, a frame per step
    capsys.readouterr()
    args = ["evaluate", str(run_dir), "--episodes", "2", "--tasks", "reversed", "--video", str(videos)]
    assert main(args) == 0
    out = capsys.readouterr().out
    steps = int(re.search(r"reversed\.mp4 \((\d+) steps", out).group(1))
    assert [row.split(",")[0] for row in (run_dir / "evaluate.csv").read_text().splitlines()] == [
        "eval_task",
        "reversed",
    ]
    assert [path.name for path in videos.iterdir()] == ["reversed.mp4"]  # no scratch left behind
    reader = imageio.get_reader(videos / "reversed.mp4")
    frames, meta = reader.count_frames(), reader.get_meta_data()
    assert steps > 0 and abs(frames - steps) <= 1  # the reset's frame, then one per step (the last may merge)
    assert meta["duration"] == pytest.approx(frames / meta["fps"], abs=2 / meta["fps"])
    assert main(["evaluate", str(run_dir), "--tasks", "revresed"]) == 2
    assert "--tasks 'revresed': not a task of this run; did you mean 'reversed'?" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "moviepy", None)  # as if not installed: refused before any work
    assert main(["evaluate", str(run_dir), "--video", str(tmp_path / "none")]) == 2
    assert 'writing videos needs moviepy: pip install "psp-rl[video]"' in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
