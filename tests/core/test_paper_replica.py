import numpy as np
import pytest

from experiments.paper_replica.data import permutations, rotate
from experiments.paper_replica.permuting import train_permuted


def test_permutations_start_with_the_identity_and_rotation_is_continuous():
    import torch

    perms = permutations(5)
    assert torch.equal(perms[0], torch.arange(64)) and not torch.equal(perms[1], torch.arange(64))
    x = torch.rand(3, 64)
    torch.testing.assert_close(rotate(x, 0.0), x, atol=1e-5, rtol=0)
    assert (rotate(x, 0.01) - rotate(x, 0.0)).abs().max() < 0.1 < (rotate(x, 1.5) - x).abs().max()


@pytest.mark.slow
@pytest.mark.learning
def test_k10_binary_keeps_task_zero_and_none_forgets_it(learning_seed, record_property):
    """Seeds 0-3 (two a learning seed) on three float paths: binary 0.82-0.89 (bound 0.75), none
    0.09-0.14 (bound 0.30)."""
    seeds = (2 * learning_seed, 2 * learning_seed + 1)
    binary = np.mean([train_permuted("binary", 10, seed=s)[-1, 0] for s in seeds])
    none = np.mean([train_permuted("none", 10, seed=s)[-1, 0] for s in seeds])
    record_property("binary", float(binary))
    record_property("none", float(none))
    print(f"K=10 task-0 accuracy after all tasks: binary {binary:.3f}, none {none:.3f}")
    assert binary >= 0.75
    assert none < 0.30


def test_permuting_writes_each_seeds_row_and_the_mean_with_its_interval(monkeypatch, tmp_path):
    import csv
    import functools

    import experiments.paper_replica.__main__ as replica

    monkeypatch.setattr(replica, "OUT", tmp_path)
    monkeypatch.setattr(replica, "mean_interval", functools.partial(replica.mean_interval, reps=200))  # 2,000: 2 s each
    replica.permuting([0, 1], ks=[3], ewc_lambdas=[1e3], epochs=1)
    with (tmp_path / "permuting-seeds.csv").open() as f:
        seed_rows = list(csv.DictReader(f))
    assert [(r["kind"], r["seed"]) for r in seed_rows[:2]] == [("none", "0"), ("none", "1")]
    assert len(seed_rows) == 5 * 2 and {r["kind"] for r in seed_rows} == {*replica.KINDS, "ewc"}
    with (tmp_path / "permuting.csv").open() as f:
        rows = {r["kind"]: r for r in csv.DictReader(f)}
    per_seed = [float(r["task0_acc_final"]) for r in seed_rows if r["kind"] == "binary"]
    binary = rows["binary"]
    assert float(binary["task0_acc_final"]) == pytest.approx(np.mean(per_seed), abs=1e-3)
    assert float(binary["task0_ci95_low"]) <= float(binary["task0_acc_final"]) <= float(binary["task0_ci95_high"])
    assert rows["ewc"]["ewc_lambda"] == "1000.0" and (tmp_path / "accuracy-matrix-k3-binary.csv").exists()


def test_a_part_run_alone_records_its_command_and_keeps_the_other_parts(monkeypatch, tmp_path):
    import sys

    import experiments.paper_replica.__main__ as replica

    monkeypatch.setattr(replica, "OUT", tmp_path)
    ran = []
    monkeypatch.setattr(replica, "permuting", lambda *args: ran.append(args))
    width = "width: python -m experiments.paper_replica --seeds 0 --parts width  # 300 s"
    (tmp_path / "command.txt").write_text(f"{width}\n")  # an earlier run of another part
    monkeypatch.setattr(sys, "argv", ["paper_replica", "--parts", "permuting", "--seeds", "0", "1", "--epochs", "2"])
    replica.main()
    assert ran == [([0, 1], [10, 50], [1e3, 1e5], 2)]
    commands = (tmp_path / "command.txt").read_text().splitlines()
    assert commands[1] == width
    assert commands[0].startswith(
        "permuting: python -m experiments.paper_replica --seeds 0 1 --parts permuting --epochs 2"
    )
