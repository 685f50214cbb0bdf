"""Every script in experiments/ runs end to end on a tiny budget (in this process, argv patched),
and README's Python example runs as written (on a smaller budget)."""

import importlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import tiny

ROOT = Path(__file__).resolve().parents[1]


def _main(monkeypatch, module: str, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    importlib.import_module(module).main()


@pytest.mark.parametrize(
    ("module", "argv", "printed"),
    [
        pytest.param("experiments.bench_envs", ["--steps", "20"], "cartpole-shift", id="bench_envs"),
        pytest.param(
            "experiments.bench_envs",
            ["--atari-vec", "--steps", "20", "--n-envs", "2"],
            "ale-py vector env, 2 threads",
            id="bench_envs_atari_vec",
        ),
        pytest.param("experiments.code_shape", [], "import circles: 0", id="code_shape"),
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
            "experiments.profile_dqn_step",
            ["--rows", "minatar-dqn", "--agents", "vanilla", "binary", "--calls", "16", "--repeats", "1"]
            + ["--warmup", "200"],
            "| minatar-dqn | binary |",
            id="profile_dqn_step",
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
    """The script is a front of `psp-rl sweep` (whose trials tests/sweep/test_sweep.py runs on Ray):
    here it tabulates a finished trial without starting Ray."""
    from psp_rl.config import ContinualTrainer, parse_config
    from psp_rl.sweep.runner import METHODS, Trial, trial_config

    config = tiny({"sequence.steps": 300, "eval": {"every": 300}})
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
    assert "Targets (means over seeds: finetune 1" in (out / "targets.md").read_text()  # the script's own lines


TINY_PPO = {"algo": "ppo", "net_arch": [16, 16], "n_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 2}


def _finished_trial(config: dict, method: str, out: Path, methods: dict) -> None:
    from psp_rl.config import ContinualTrainer, parse_config
    from psp_rl.sweep.runner import Trial, trial_config

    trial = Trial(method, 0)
    ContinualTrainer(parse_config(trial_config(config, trial, methods)), out / "runs" / trial.name).run()


def test_bench_hidden_ids_scores_finished_runs(tmp_path, capsys):
    from experiments.bench_hidden_ids import main
    from psp_rl.sweep.runner import METHODS

    sequence = {"name": "cartpole-shift", "tasks": ["default", "reversed"], "steps": 512, "cycles": 2}
    config = {"name": "tiny-hidden", "sequence": sequence, "agent": TINY_PPO, "eval": {"every": 512, "episodes": 2}}
    out = tmp_path / "out"
    for mode in ("hidden", "announced"):
        mode_config = {**config, "sequence": {**sequence, "task_ids": mode}}
        _finished_trial(mode_config, "psp-binary", out / mode, METHODS)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main([str(path), "--seeds", "0", "--out", str(out), "--finished-only"]) == 0
    printed = capsys.readouterr().out
    assert "false alarms <= 0.5 per 100k env steps" in printed and "fresh contexts opened while a task" in printed
    assert (out / "table.csv").read_text().startswith("seed,final_avg_hidden,final_avg_announced")
    with pytest.raises(SystemExit) as info:  # a variant's setting is checked before any run
        main([str(path), "--out", str(tmp_path / "variant"), "--set", "inference.return_alarms=maybe"])
    assert info.value.code == 2 and "inference.return_alarms" in capsys.readouterr().err
    assert not (tmp_path / "variant").exists()


def test_fresh_contexts_for_known_tasks_count_the_stages_whose_task_came_before():
    from experiments.bench_hidden_ids import fresh_for_known_tasks

    choices = [[100, 1, "fresh"], [1500, 2, "stored"], [2500, 2, "fresh"], [2600, 0, "stored"]]
    assert fresh_for_known_tasks(choices, [1000, 2000, 3000], [0, 1, 0]) == 1  # the fresh one in stage 2


def tiny_drift_config() -> dict:
    """A drifting CartPole run of 512 steps with 4 complex context slots (the drift benches' tests)."""
    agent = {**TINY_PPO, "context": "complex", "input_layer": "superposed"}
    return {"name": "tiny-drift", "sequence": {"name": "cartpole-drift", "steps": 512, "max_tasks": 4},
            "agent": agent, "eval": {"every": 512, "episodes": 2}}  # fmt: skip


def test_bench_drift_evaluates_finished_runs_across_the_range(tmp_path):
    from experiments.bench_drift import VARIANTS, main

    config = tiny_drift_config()
    out = tmp_path / "out"
    for variant in ("drift-fixed", "drift-smooth"):
        _finished_trial(config, variant, out, VARIANTS)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    oracles = []
    for seed, last in ((0, [300.0, 50.0]), (1, [100.0, 30.0])):  # playable at gravity 9.8 only (mean 200)
        oracles.append(tmp_path / f"oracle-{seed}")
        oracles[-1].mkdir()
        (oracles[-1] / "metrics.json").write_text(json.dumps({"eval_matrix": [[0.0, 0.0], last]}))
    args = [str(path), "--seeds", "0", "--out", str(out), "--points", "2", "--episodes", "2", "--finished-only"]
    assert main([*args, "--oracle", *map(str, oracles)]) == 0
    rows = (out / "table.csv").read_text().splitlines()
    assert rows[0] == "variant,seed,gravity=9.80,gravity=20.00,range_mean" and len(rows) == 3
    table = (out / "table.md").read_text()
    assert "seed 0: smooth" in table and "playable (oracle >= 100): gravity=9.80" in table
    fixed = float(rows[1].split(",")[2])
    assert f"| drift-fixed | {fixed / 200:.2f} |" in table  # one seed: no interval
    for variant in ("drift-fixed", "drift-smooth"):  # committed results keep no checkpoint: rows read back
        shutil.rmtree(out / "runs" / f"{variant}-s0" / "checkpoints")
    assert main([*args, "--oracle", *map(str, oracles)]) == 0
    assert (out / "table.csv").read_text().splitlines() == rows and (out / "table.md").read_text() == table
    (out / "table.csv").unlink()
    with pytest.raises(SystemExit, match="finished, but no checkpoint to play and no row in table.csv"):
        main(args)


def test_drift_ratio_cells_carry_the_seeds_interval():
    from experiments.bench_drift import ratio_cell

    assert ratio_cell(np.array([300.0]), 200.0) == "1.50"
    value, interval = ratio_cell(np.array([180.0, 200.0, 220.0, 240.0]), 200.0).split(" ", 1)
    low, high = (float(v) for v in interval.strip("[]").split(", "))
    assert value == "1.05" and 0.9 <= low < 1.05 < high <= 1.2  # the bootstrap over the four seeds' mean


def test_bench_drift_set_reaches_the_sweep_and_a_bad_key_exits_2(tmp_path, capsys, monkeypatch):
    import experiments.bench_drift as bench

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_drift_config()))
    args = [str(path), "--seeds", "0", "--out", str(tmp_path / "out"), "--variants", "drift-smooth"]
    with pytest.raises(SystemExit) as exit_:
        bench.main([*args, "--set", "agent.nope=1"])
    assert exit_.value.code == 2 and "unknown key 'agent.nope'" in capsys.readouterr().err
    swept = []
    monkeypatch.setattr(bench, "run_sweep", lambda base, *a, **k: swept.append(base))
    assert bench.main([*args, "--set", "agent.task_lr_schedule=task_linear", "sequence.steps=256"]) == 0
    (base,) = swept  # the trials' config carries the settings
    assert base["agent"]["task_lr_schedule"] == "task_linear" and base["sequence"]["steps"] == 256


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


@pytest.mark.slow  # a harness of the learning tests, itself running pytest twice
def test_learning_margins_tabulates_a_learning_test_per_path_and_resumes(tmp_path):
    from experiments.learning_margins import main as margins
    from experiments.learning_margins import read_rows

    test = "tests/core/test_centring.py::test_centring_removes_the_common_mode_crosstalk"
    margins([test, "--seeds", "0", "--paths", "native", "avx2", "--workers", "1", "--out", str(tmp_path)])
    rows = read_rows(tmp_path / "margins.csv")
    assert {(r["path"], r["seed"]) for r in rows} == {("native", "0"), ("avx2", "0")}
    assert {r["outcome"] for r in rows} == {"passed"} and len({r["test"] for r in rows}) == 2  # its two params
    assert {r["key"] for r in rows} >= {"plain_common_share", "centred_over_plain_common"}
    assert "2/2 passed" in (tmp_path / "summary.md").read_text()  # per test: the two float paths
    before = (tmp_path / "margins.csv").read_bytes()
    margins([test, "--seeds", "0", "--paths", "native", "--workers", "1", "--out", str(tmp_path)])
    assert (tmp_path / "margins.csv").read_bytes() == before  # a (path, seed) already there is not rerun


@pytest.mark.slow  # two Atari PPO chunks, then a resume (~1 min)
def test_atari_stock_ppo_evaluates_each_chunk_and_resumes_exactly(tmp_path):
    from experiments.atari_stock_ppo import main as stock

    config = str(ROOT / "experiments/configs/atari-single.yaml")
    run = tmp_path / "stock"
    settings = ["--set", "sequence.steps=2048", "eval.every=1024", "eval.episodes=2", "eval.max_episode_steps=100"]
    stock([config, "--run-dir", str(run), *settings])
    rows = (run / "eval.csv").read_text().splitlines()
    assert rows[0] == "step,trained_task,eval_task,mean,std,episodes"
    assert [r.split(",")[:3] for r in rows[1:]] == [["1024", "breakout", "breakout"], ["2048", "breakout", "breakout"]]
    with pytest.raises(SystemExit, match="has checkpoints"):  # a finished run is not overwritten by mistake
        stock([config, "--run-dir", str(run), *settings])
    (run / "checkpoints/stock-000000002048.zip").unlink()  # killed before its last checkpoint
    stock([config, "--run-dir", str(run), "--resume", *settings])
    assert (run / "eval.csv").read_text().splitlines() == rows  # the last chunk redone, the same numbers


def test_probe_drift_slots_plays_every_slot_at_a_held_value(tmp_path, capsys):
    from experiments.bench_drift import VARIANTS
    from experiments.probe_drift_slots import main

    config = tiny_drift_config()
    _finished_trial(config, "drift-smooth-bins", tmp_path, VARIANTS)
    (run,) = (tmp_path / "runs").iterdir()
    assert main([str(run), "--value", "9.8", "--episodes", "2"]) == 0
    printed = capsys.readouterr().out.split(": ")[1].split()
    assert len(printed) == 4 and all(float(r) > 0 for r in printed)  # one return per slot


def test_probe_drift_recency_plays_every_kept_checkpoint(tmp_path, capsys):
    from experiments.bench_drift import VARIANTS, evaluate_range
    from experiments.probe_drift_recency import main

    config = {**tiny_drift_config(), "checkpoint": {"every": 256}}
    _finished_trial(config, "drift-smooth", tmp_path, VARIANTS)
    (run,) = (tmp_path / "runs").iterdir()
    assert main([str(run), "--episodes", "2", "--points", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line]
    assert [int(row[1]) for row in rows] == [256, 512]  # the kept checkpoints, oldest first
    assert [float(row[2]) for row in rows] == [9.9, 10.0]  # gravity 256 and 512 steps into its 50k-step wave
    saved = yaml.safe_load((run / "config.yaml").read_text())
    final = evaluate_range(run, saved, list(np.linspace(9.8, 20.0, 3)), 2, saved["seed"])
    assert [float(r) for r in rows[-1][3:]] == [round(r, 1) for r in final]  # the newest is bench_drift's model


def test_atari_single_curves_compares_finished_groups_with_the_reference(tmp_path, capsys):
    from experiments.atari_single_curves import main

    for name, means in {"stock-s0": [2, 8, 10], "stock-s1": [2, 6, 6], "psp-s0": [1, 5, 8], "psp-s1": [1, 3]}.items():
        (tmp_path / "runs" / name).mkdir(parents=True)
        rows = ["step,trained_task,eval_task,mean,std,episodes"]
        rows += [f"{(i + 1) * 100},breakout,breakout,{m},1.0,8" for i, m in enumerate(means)]
        (tmp_path / "runs" / name / "eval.csv").write_text("\n".join(rows) + "\n")
    assert main([str(tmp_path), "--steps", "300", "--random", "2", "--human", "12"]) == 0
    table = (tmp_path / "curves.md").read_text()
    assert "| psp-s0 | 300 | 8.0 | 4.67 | 0.6 | 0.267 |" in table  # HNS (8 - 2) / 10; last three 14/3
    assert "| psp | 1 | 8.00 | 1.00x |" in table  # psp-s1 has not reached 300 steps: left out
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_probe_alarm_sources_reads_dynamics_alarms_back_from_the_window_errors(tmp_path):
    from experiments.probe_alarm_sources import sources, surprise_alarms

    ratios = {100: 5.0, 150: 5.0, 200: 5.0, 250: 1.0, 300: 5.0, 350: 5.0, 400: 1.0}
    assert surprise_alarms(ratios, error_fit=4.0, surprises=3) == [200]  # 300-350: two in a row only
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"inference": {"max_delay": 500}}))
    inference = {"switches": [{"step": 1000}], "detections": [[1100, 0, 1, "dynamics"], [5000, 1, 1, "returns"]]}
    (run / "metrics.json").write_text(json.dumps({"TaskInference": inference}))
    assert sources(run) == [(1100, False, "dynamics"), (5000, True, "returns")]  # recorded: taken as they are


def test_bench_hidden_ids_pools_the_false_alarms_by_source_and_every_switch(tmp_path):
    from experiments.bench_hidden_ids import summarize

    inference = {
        "switches": [{"step": 100, "from_task": 0, "to_task": 1}],
        "stage_contexts": [[100, 0], [0, 100]],
        "choices": [[120, 1, "fresh"]],
        "noticeable_switches": 1,
        "detected_within_max_delay": 1,
        "mean_delay": 20,
        "false_alarms": 3,
        "false_alarms_by_source": {"returns": 2, "dynamics": 1},
        "eval_contexts": {},
    }
    metrics = {
        "TaskInference": inference,
        "final_average_return": 50.0,
        "env_steps": 200,
        "stage_end_steps": [100, 200],
    }
    for seed, delay in ((0, 20), (1, None)):  # seed 1's switch was not seen within max_delay
        run = tmp_path / "hidden" / "runs" / f"psp-binary-s{seed}"
        run.mkdir(parents=True)
        inference["switches"][0]["delay"] = delay
        (run / "metrics.json").write_text(json.dumps(metrics))
    rows, targets = summarize(tmp_path, [0, 1], tmp_path / "announced")
    assert rows[0]["false_alarm_sources"] == "returns:2 dynamics:1"
    assert [(row["switches"], row["detected_any"]) for row in rows] == [(1, 1), (1, 0)]
    assert "6 in 400 steps = 1500.00 -> MISSED (raised by dynamics: 2, returns: 4)" in "\n".join(targets)
    assert "every switch, noticeable or not: 1/2 detected" in "\n".join(targets)


def test_probe_choice_window_replays_a_run_to_its_choice_and_scores_that_window(tmp_path):
    from experiments.probe_choice_window import main
    from psp_rl.config import ContinualTrainer, parse_config

    sequence = {"name": "cartpole-shift", "tasks": ["default", "reversed"], "steps": 2048, "cycles": 2}
    inference = {"evidence": "dynamics", "window": 20, "max_delay": 500, "dynamics_warmup": 512, "warmup_episodes": 5}
    config = {
        "name": "tiny-choice", "sequence": {**sequence, "task_ids": "hidden"}, "agent": TINY_PPO,
        "inference": inference, "eval": {"every": 8192, "episodes": 2}, "checkpoint": {"every": 1024, "keep": 20},
    }  # fmt: skip
    run = tmp_path / "run"
    ContinualTrainer(parse_config(config), run).run()
    choices = json.loads((run / "metrics.json").read_text())["TaskInference"]["choices"]
    step, context, _ = next(c for c in choices if 4096 <= c[0] < 6144)  # stage 2: back on default
    main([str(run), "--stage", "2", "--windows", "2", "--out", str(tmp_path / "probe.md")])
    text = (tmp_path / "probe.md").read_text()
    assert "| c1 (acting) |" in text  # reversed's context played the window before the alarm
    assert f"(step {step}, replayed from ckpt-000000004096-0002" in text  # the replay met the run's own choice
    # the run chose by the window's mean error: the replayed window's lowest mean names the same model, and
    # that model predicts most of its transitions best (all of them unless an env still played reversed)
    ((best, votes),) = re.findall(r"\| c(\d) \| [^|]* \(best\) \| [^|]* \| (\d+) \|", text)
    assert int(best) == context and int(votes) > 10


def test_seed_spread_counts_the_ordered_pairs_below_the_ratio():
    from experiments.bench_hidden_ids import seed_spread

    assert seed_spread([500.0, 500.0, 400.0]) == 2 / 6  # 400 is below 0.9x of each 500; nothing else is
    assert seed_spread([460.0, 500.0]) == 0.0  # 0.92x: within 10%
    assert np.isnan(seed_spread([500.0]))


def test_probe_distilled_retention_splits_the_final_agreement_by_kept_and_lost(tmp_path):
    from experiments.probe_distilled_retention import summary

    def run(name, matrix, agreement):
        run_dir = tmp_path / "runs" / name
        run_dir.mkdir(parents=True)
        metrics = {"tasks": ["a", "b", "c"], "stages": ["a", "b", "c"], "eval_matrix": matrix}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        rows = ["step,trained_task,probe_task,layer,quantity,value"]
        rows += ["10,b,a,distilled,distil_agreement,0.9", "20,c,b,distilled,distil_agreement,0.8"]
        rows += [f"20,c,a,distilled,greedy_agreement,{agreement}", "20,c,a,output,greedy_agreement,0.1"]
        (run_dir / "probes.csv").write_text("\n".join(rows) + "\n")

    run("psp-x-s0", [[500, 9, 9], [500, 500, 9], [300, 480, 500]], 0.7)  # a lost (0.6x), b kept (0.96x)
    run("psp-x-s1", [[500, 9, 9], [500, 500, 9], [460, 500, 500]], 0.95)  # both kept
    (tmp_path / "runs" / "separate-s0").mkdir()  # not a PSP run: skipped
    (line,) = summary(tmp_path)
    assert line.startswith("psp-x: kept 3 of 4 earlier task-seeds; fidelity 0.850 (n=4)")
    assert "final agreement kept 0.950 (n=1), lost 0.700 (n=1)" in line  # b was distilled at the last switch
    assert line.endswith("lost per task {'a': 1, 'b': 0}")


def test_probe_frame_switches_scores_every_game_pair_under_each_statistic():
    pytest.importorskip("minatar")
    from experiments.probe_frame_switches import STATISTICS, probe

    matrices = probe(seed=0, transitions=2100, window=50, trials=10, before=400)
    assert set(matrices) == set(STATISTICS) and all(m.shape == (5, 5) for m in matrices.values())
    ratio = matrices["ratio"]
    assert np.all(np.abs(np.log(np.diag(ratio))) < np.log(3))  # a game's own play: near its usual error (a median)
    assert ratio[0, 1] > 10  # Breakout's model on SpaceInvaders' frames: a switch it sees
    counts = matrices["counts"]  # Freeway -> Asterix, which Freeway's dynamics model reads as usual or below
    assert counts[2, 3] > 3 * counts[2, 2]
