"""`psp-rl sweep`: trials on local Ray or in local processes, reuse of finished trials, resume after a kill,
failures."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from psp_rl.cli import main
from tests.conftest import run_cli, tiny, write_config

TINY = tiny({"sequence.steps": 300, "eval": {"every": 300, "episodes": 2}})
BROKEN = {"broken": {"method": "psp", "context": "binary", "net_arch": [-1]}}  # valid config, fails at build


def _mtimes(out, names):
    return {name: (out / "runs" / name / "metrics.json").stat().st_mtime_ns for name in names}


@pytest.mark.parametrize("backend", ["ray", "processes"])
def test_sweep_tabulates_reuses_finished_trials_and_reports_a_failing_one(tmp_path, capsys, backend):
    config, variants = write_config(tmp_path, TINY), write_config(tmp_path, BROKEN, "variants.yaml")
    out = tmp_path / "sweep"
    argv = ["sweep", str(config), "--methods", "psp-binary", "finetune", "broken", "--variants", str(variants)]
    argv += ["--seeds", "0", "--out", str(out)]  # one seed: a second only repeats the trials (a third of the time)
    argv += ["--backend", backend]
    assert main(argv) == 1  # a trial failed: reported, the rest tabulated
    captured = capsys.readouterr()
    assert "trial broken-s0 failed twice: ValueError: net_arch=[-1]" in captured.err
    assert str(out / "logs" / "broken-s0.log") in captured.err
    assert (out / "logs" / "broken-s0.log").read_text().count("broken-s0 failed") == 2  # retried once
    rows = (out / "table.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["psp-binary", "finetune"]
    assert "sweep: 2 done, 0 running, 1 failed, 0 waiting" in captured.err  # the last progress line
    for name in ("report.md", "table.md", "command.txt"):
        assert (out / name).exists()

    finished = ["psp-binary-s0", "finetune-s0"]
    before = _mtimes(out, finished)
    assert main(argv[:5] + argv[8:]) == 0  # the same sweep without the broken variant
    assert "sweep: 2 done (finished before, reused)" in capsys.readouterr().err  # read here: no Ray started
    assert _mtimes(out, finished) == before  # reused untouched
    assert (out / "table.csv").read_text().splitlines() == rows


@pytest.mark.slow  # the default suite's sweep test covers reuse and failures; this one a kill of the whole sweep
@pytest.mark.parametrize("backend", ["ray", "processes"])
def test_a_killed_sweep_run_again_completes_and_keeps_finished_trials(tmp_path, backend):
    config = write_config(tmp_path, TINY)
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        str(config),
        "--methods",
        "finetune",
        "--seeds",
        "0",
        "1",
        "--out",
        str(out),
        "--max-parallel",
        "1",
        "--backend",
        backend,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "psp_rl.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the sweep and its trials' processes (Ray's or its own): one group to kill
    )
    first = out / "runs" / "finetune-s0" / "metrics.json"
    deadline = time.time() + 180
    while not first.exists():
        assert time.time() < deadline and proc.poll() is None, "the first trial never finished"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "table.csv").exists()
    finished = first.stat().st_mtime_ns
    result = run_cli(*argv)
    assert result.returncode == 0, result.stderr
    assert first.stat().st_mtime_ns == finished
    assert [row.split(",")[0] for row in (out / "table.csv").read_text().splitlines()[1:]] == ["finetune"]
    assert (out / "runs" / "finetune-s1" / "metrics.json").exists()


def _closed_port() -> int:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "psp-binary", "sgd"], "--methods: unknown method(s) ['sgd']"),
        (["--seeds"], "--seeds: expected at least one argument"),
        (["--address", "127.0.0.1:{port}"], "--address '127.0.0.1:{port}': no Ray cluster reachable there"),
        (["--max-parallel", "0"], "--max-parallel 0: expected a positive int"),
        (["--backend", "processes", "--address", "127.0.0.1:{port}"], "a cluster needs the ray backend"),
        (["--backend", "processes", "--gpus-per-trial", "1"], "--gpus-per-trial 1.0: GPU reservations need the ray"),
        (["--backend", "dask"], "argument --backend: invalid choice: 'dask'"),
        (["--variants", "nowhere.yaml"], "--variants 'nowhere.yaml': not found"),
    ],
)
def test_bad_sweep_arguments_give_one_line_and_exit_2(tmp_path, capsys, extra, message):
    port = _closed_port()
    config = write_config(tmp_path, TINY)
    try:
        code = main(["sweep", str(config), "--out", str(tmp_path / "out"), *[arg.format(port=port) for arg in extra]])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and message.format(port=port) in errors[0], err
    assert "Traceback" not in err and not (tmp_path / "out" / "runs").exists()  # refused before any trial


def _separate_run(final: list[float], random: list[float]) -> dict:
    tasks = ["a", "b", "c", "d", "e"][: len(final)]
    return {
        "tasks": tasks,
        "eval_matrix": [final],
        "random_returns": dict(zip(tasks, random, strict=True)),
        "normalized_final_average_return": None,
    }


def test_separate_learns_a_task_at_five_times_random_play_over_the_seeds_mean():
    from experiments.bench_retention import learned_tasks, targets

    # a: 5x random exactly (rounded returns); b: 4.9x; c: random 0 needs 5; d: random < 0 needs 5; e: seeds' mean
    seeds = [
        _separate_run([0.5, 4.9, 5.0, 4.0, 9.0], [0.1, 1.0, 0.0, -1.0, 1.0]),
        _separate_run([0.5, 4.9, 5.0, 6.0, 0.0], [0.1, 1.0, 0.0, -1.0, 1.0]),
    ]
    assert learned_tasks(seeds) == ["a", "c", "d"]
    assert targets({"separate": seeds}, {}) == [
        "- separate learns >= 3 of 5 tasks (final >= 5x random play): 3 of 5 (a, c, d) -> met"
    ]
    seeds[0]["eval_matrix"] = [[0.4, 0.0, 0.0, 0.0, 0.0]]
    assert targets({"separate": seeds}, {})[0].endswith("-> MISSED")
    seeds[0]["normalized_final_average_return"] = 0.5  # tasks with a reference return: no such target
    assert targets({"separate": seeds}, {}) == []


def test_paired_line_compares_rows_seed_by_seed():
    from experiments.bench_retention import paired_line

    def runs(finals: dict[int, float]) -> list[dict]:
        return [{"seed": seed, "final_average_return": final} for seed, final in finals.items()]

    default = runs({0: 400.0, 1: 300.0, 2: 450.0, 3: 350.0})
    better = runs({0: 420.0, 1: 330.0, 2: 460.0, 3: 365.0, 9: 0.0})  # seed 9 has no pair: left out
    (line,) = paired_line({"psp-a": default, "psp-b": better}, "psp-b", "psp-a")
    assert line.startswith("- psp-b minus psp-a, final average paired by seed (4 seeds): 18.8, 95% bootstrap")
    assert line.endswith("(excludes 0)")
    mixed = runs({0: 500.0, 1: 200.0, 2: 450.0, 3: 350.0})
    assert paired_line({"psp-a": default, "psp-c": mixed}, "psp-c", "psp-a")[0].endswith("(includes 0)")
    assert paired_line({"psp-a": default[:1], "psp-b": better}, "psp-b", "psp-a") == []  # one pair: no interval
