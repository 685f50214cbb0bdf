import numpy as np
import pytest

from psp_rl.continual import metrics as M
from psp_rl.continual.metrics import compute_metrics

# Three tasks trained in order; rows = after stage i, columns = eval on task j.
R = np.array(
    [
        [100.0, 10.0, 20.0],
        [60.0, 200.0, 25.0],
        [40.0, 150.0, 300.0],
    ]
)
SCHEDULE = [0, 1, 2]


def test_final_average_return():
    assert M.final_average_return(R) == pytest.approx((40 + 150 + 300) / 3)


def test_forgetting_is_best_earlier_minus_final():
    assert M.forgetting(R, SCHEDULE) == [60.0, 50.0, None]  # 100-40, 200-150, last task: nothing yet


def test_forgetting_can_be_negative_when_a_task_improves_later():
    improved = np.array([[10.0, 0.0], [30.0, 50.0]])
    assert M.forgetting(improved, [0, 1]) == [-20.0, None]


def test_backward_transfer():
    assert M.backward_transfer(R, SCHEDULE) == pytest.approx(((40 - 100) + (150 - 200)) / 2)
    assert M.backward_transfer(R[:1], [0]) is None


def test_forward_transfer_against_scratch_references():
    assert M.forward_transfer(R, SCHEDULE, None) is None
    ft = M.forward_transfer(R, SCHEDULE, {0: 90.0, 1: 220.0, 2: 280.0})
    assert ft == pytest.approx(((100 - 90) + (200 - 220) + (300 - 280)) / 3)


def test_cycled_schedule_uses_the_last_visit_for_backward_transfer():
    cycled = np.array([[100.0, 0.0], [50.0, 80.0], [120.0, 30.0], [90.0, 85.0]])
    schedule = [0, 1, 0, 1]
    assert M.backward_transfer(cycled, schedule) == pytest.approx(90 - 120)
    assert M.forgetting(cycled, schedule) == [30.0, -5.0]  # 120 - 90; max(80, 30) - 85


def test_normalized_return():
    out = M.normalized(np.array([250.0, 5.0, 7.0]), np.array([10.0, 5.0, 1.0]), np.array([490.0, np.nan, 1.0]))
    assert out[0] == pytest.approx(0.5)
    assert np.isnan(out[1]) and np.isnan(out[2])  # no reference; reference == random


def test_continual_eval_curve_averages_tasks_per_step():
    rows = [
        {"step": 10, "mean": 1.0},
        {"step": 10, "mean": 3.0},
        {"step": 20, "mean": 5.0},
        {"step": 20, "mean": 7.0},
    ]
    assert M.continual_eval_curve(rows) == [(10, 2.0), (20, 6.0)]


def test_compute_metrics_bundle():
    out = compute_metrics(R, SCHEDULE, ["a", "b", "c"], [10.0, 10.0, 10.0], [110.0, None, 310.0])
    assert out["final_returns"] == {"a": 40.0, "b": 150.0, "c": 300.0}
    assert out["normalized_final_returns"]["a"] == pytest.approx(0.3)
    assert out["normalized_final_returns"]["b"] is None
    assert out["normalized_final_average_return"] is None  # one task lacks a reference
    assert out["forgetting"] == {"a": 60.0, "b": 50.0, "c": None}
    assert out["stages"] == ["a", "b", "c"]
