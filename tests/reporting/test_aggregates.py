"""rliable aggregates: IQM and mean with stratified bootstrap intervals, probability of
improvement, performance profiles; seeded, so a table regenerates to the same bytes."""

import builtins

import numpy as np
import pytest

from psp_rl.reporting import aggregates
from psp_rl.reporting.aggregates import (
    aggregate_scores,
    improvement_probabilities,
    mean_interval,
    plot_performance_profiles,
)

SCORES = {
    "psp": np.array([[0.9, 1.0, 0.8], [1.0, 0.95, 0.7], [0.85, 1.0, 0.9], [0.2, 1.0, 0.95]]),
    "finetune": np.array([[0.1, 0.05, 1.0], [0.0, 0.2, 0.9], [0.3, 0.1, 1.0], [0.05, 0.0, 0.95]]),
}


def test_iqm_and_mean_with_intervals_that_hold_them_and_repeat_exactly():
    first, again = aggregate_scores(SCORES, reps=500), aggregate_scores(SCORES, reps=500)
    assert first == again  # seeded: the same bytes every time
    state = np.random.get_state()
    aggregate_scores(SCORES, reps=50)
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's global generator is put back
    for method, matrix in SCORES.items():
        iqm, mean = first[method]["iqm"], first[method]["mean"]
        assert mean.value == pytest.approx(matrix.mean())
        assert iqm.value == pytest.approx(np.mean(np.sort(matrix.ravel())[3:9]))  # the middle half of 12 scores
        for estimate in (iqm, mean):
            assert estimate.low <= estimate.value <= estimate.high


def test_probability_of_improvement_is_one_half_against_itself_and_high_against_a_worse_method():
    probabilities = improvement_probabilities(SCORES, "psp", reps=500)
    assert set(probabilities) == {"finetune"}
    # per task, the share of (psp run, finetune run) pairs psp wins, ties half: 15/16, 16/16, 2/16
    assert probabilities["finetune"].value == pytest.approx((15 + 16 + 2) / 48)
    assert 0.5 < probabilities["finetune"].low < probabilities["finetune"].high <= 1
    same = improvement_probabilities({"a": SCORES["psp"], "b": SCORES["psp"].copy()}, "a", reps=200)
    assert same["b"].value == pytest.approx(0.5)


def test_mean_interval_of_one_run_has_no_bounds():
    single = mean_interval([3.0])
    assert single.value == 3.0 and np.isnan(single.low) and np.isnan(single.high)
    several = mean_interval([1.0, 2.0, 3.0, 4.0], reps=500)
    assert several.low < several.value == 2.5 < several.high


def test_performance_profile_is_a_png(tmp_path):
    path = plot_performance_profiles(SCORES, tmp_path / "profile.png", reps=100)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_rliable_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def without_rliable(name, *args, **kwargs):
        if name.startswith("rliable"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_rliable)
    with pytest.raises(ImportError, match=r'pip install "psp-rl\[report\]"'):
        aggregates.aggregate_scores(SCORES)


def test_performance_profile_of_an_ablation_with_more_methods_than_colours(tmp_path):
    rng = np.random.default_rng(0)
    many = {f"psp-{i}": rng.random((2, 3)) for i in range(23)}
    assert plot_performance_profiles(many, tmp_path / "profile.png", reps=20).is_file()
