"""The retention table's human-normalized view of Atari runs (issue 34: forgetting and ratios on HNS)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from psp_rl.reporting.retention_table import human_normalized, relative_forgetting


def atari_metrics(final_pong: float) -> dict:
    """Two games, breakout then pong; pong's raw scores are negative, as an untrained agent's are."""
    matrix = [[11.0, -21.0], [5.0, final_pong]]
    return {
        "tasks": ["breakout", "pong"],
        "stages": ["breakout", "pong"],
        "eval_matrix": matrix,
        "final_average_return": float(np.mean(matrix[-1])),
        "forgetting": {"breakout": 6.0, "pong": None},
        "random_returns": {"breakout": 1.0, "pong": -21.0},
        "reference_returns": {"breakout": 31.0, "pong": 9.0},
        "versions": {"ale-py": "0.12.1", "roms_md5": {"Breakout": "x", "Pong": "y"}},
    }


def test_atari_runs_with_human_references_are_read_in_hns():
    hns = human_normalized(atari_metrics(-6.0))
    # breakout (11 - 1) / 30 = 1/3 after its stage, (5 - 1) / 30 after pong's; pong (-6 + 21) / 30 = 0.5
    np.testing.assert_allclose(hns["eval_matrix"], [[1 / 3, 0.0], [2 / 15, 0.5]])
    assert hns["final_average_return"] == pytest.approx((2 / 15 + 0.5) / 2)
    assert hns["forgetting"] == {"breakout": pytest.approx(1 / 5), "pong": None}
    # relative forgetting: breakout lost 1/5 of its 1/3 (60%), the same as on its raw scores here
    assert relative_forgetting(hns) == pytest.approx(0.6)


def test_runs_without_roms_or_a_reference_stay_raw():
    no_roms = {**atari_metrics(-6.0), "versions": {"torch": "2"}}
    no_reference = {**atari_metrics(-6.0), "reference_returns": {"breakout": 31.0, "pong": None}}
    assert human_normalized(no_roms) is None and human_normalized(no_reference) is None


def test_the_table_adds_hns_columns_for_atari(tmp_path, monkeypatch):
    from psp_rl.reporting import aggregates, retention_table

    monkeypatch.setattr(retention_table, "write_report", lambda *a, **k: None)  # (plots of runs not on disk)
    monkeypatch.setattr(retention_table, "plot_performance_profiles", lambda *a, **k: None)
    monkeypatch.setattr(retention_table, "aggregates_text", lambda *a, **k: "")
    # (20 bootstrap resamples instead of 2,000: the intervals are not what this test checks)
    monkeypatch.setattr(retention_table, "aggregate_scores", lambda s: aggregates.aggregate_scores(s, reps=20))
    monkeypatch.setattr(retention_table, "mean_interval", lambda v: aggregates.mean_interval(v, reps=20))
    results = {"psp-binary": [atari_metrics(-6.0), atari_metrics(0.0)], "finetune": [atari_metrics(-21.0)] * 2}
    for runs in results.values():
        for m in runs:
            m.update(parameters=10, env_steps_per_s=100.0, wall_time_s=1.0, probes={}, seed=0)
            m["normalized_final_returns"] = dict(zip(m["tasks"], human_normalized(m)["eval_matrix"][-1], strict=True))
    dirs = {method: [tmp_path / f"{method}-s{i}" for i in range(2)] for method in results}
    retention_table.write_tables(results, dirs, tmp_path)
    rows = {row["method"]: row for row in csv.DictReader((tmp_path / "table.csv").open())}
    assert float(rows["psp-binary"]["hns_final_avg"]) == pytest.approx(
        np.mean([(2 / 15 + 0.5) / 2, (2 / 15 + 0.7) / 2]), abs=1e-3
    )
    assert float(rows["finetune"]["hns_final_avg"]) == pytest.approx(1 / 15, abs=1e-3)
    assert float(rows["psp-binary"]["hns_relative_forgetting"]) == pytest.approx(0.6, abs=1e-3)
