"""Dynamics evidence: per-context models of ``s' - s`` name the task a few transitions come from."""

import numpy as np
import pytest
from gymnasium import spaces

from experiments.probe_dynamics import play_episodes, windows
from psp_rl.envs import get_sequence
from psp_rl.plugins.inference.dynamics import ChangeScale, DynamicsEvidence, SuperposedDynamics


@pytest.fixture(scope="module")
def cartpoles():
    return get_sequence("cartpole-shift", tasks=["default", "reversed", "high-gravity"])


def _stack(episodes):
    return tuple(np.concatenate(col) for col in zip(*episodes, strict=True))


def test_ridge_names_the_task_of_a_short_window_without_keeping_transitions(cartpoles):
    evidence = DynamicsEvidence(cartpoles.spaces[0]["obs"], cartpoles.spaces[1], 3, warmup=500)
    for task in range(3):
        evidence.observe(*_stack(play_episodes(cartpoles, task, 1000, seed=task)), context=task)
    assert evidence.scale.fixed and evidence.model.count.tolist() == [1000, 1000, 1000]
    rng = np.random.default_rng(0)
    for task in range(3):  # held-out episodes: 5 consecutive transitions name their task
        cases = windows(play_episodes(cartpoles, task, 500, seed=100 + task), 5, 50, rng)
        right = sum(int(np.argmin(evidence.errors(*case, contexts=[0, 1, 2])) == task) for case in cases)
        assert right >= 45, (task, right)  # 50 of 50 measured; default vs high gravity is the close pair


def test_neural_model_trains_under_the_acting_context_only(cartpoles):
    evidence = DynamicsEvidence(
        cartpoles.spaces[0]["obs"], cartpoles.spaces[1], 3, model="neural", warmup=300, context="separate", seed=0
    )
    obs, actions, next_obs = _stack(play_episodes(cartpoles, 0, 300, seed=0))
    assert evidence.update(5) is None  # nothing before the scale is fixed
    evidence.observe(obs, actions, next_obs, context=0)
    before = evidence.errors(obs, actions, next_obs, contexts=[0, 1])
    first = evidence.update(1)
    last = evidence.update(300)
    after = evidence.errors(obs, actions, next_obs, contexts=[0, 1])
    assert last < first and after[0] < 0.5 * before[0]
    assert after[1] == pytest.approx(before[1])  # another context's separate model is untouched


def test_frames_are_embedded_and_name_the_minatar_game_of_a_short_window():
    pytest.importorskip("minatar")
    games = get_sequence("minatar")
    evidence = DynamicsEvidence(games.spaces[0]["obs"], games.spaces[1], 5, warmup=500)
    for game in range(5):
        evidence.observe(*_stack(play_episodes(games, game, 2000, seed=game)), context=game)
    assert evidence.model.xtx.shape == (5, 256 + games.spaces[1].n + 1, 256 + games.spaces[1].n + 1)
    rng = np.random.default_rng(0)
    for game in range(5):
        cases = windows(play_episodes(games, game, 1000, seed=100 + game), 5, 50, rng)
        right = sum(int(np.argmin(evidence.errors(*case, contexts=range(5))) == game) for case in cases)
        assert right >= 40, (game, right)  # 46-50 of 50 measured


def test_a_median_window_error_barely_moves_for_a_few_odd_transitions(cartpoles):
    obs, actions, next_obs = _stack(play_episodes(cartpoles, 0, 1000, seed=0))
    errors = {}
    for reduce in ("mean", "median"):
        evidence = DynamicsEvidence(cartpoles.spaces[0]["obs"], cartpoles.spaces[1], 1, warmup=500, window_error=reduce)
        evidence.observe(obs, actions, next_obs, context=0)
        window = [part[:20].copy() for part in (obs, actions, next_obs)]
        clean = evidence.errors(*window, contexts=[0])[0]
        window[2][:2] += 1.0  # two of 20 transitions the model cannot predict
        errors[reduce] = evidence.errors(*window, contexts=[0])[0] / clean
    assert errors["mean"] > 100 and errors["median"] < 2


def test_a_forgotten_context_learns_afresh_and_the_others_keep_their_models(cartpoles):
    evidence = DynamicsEvidence(cartpoles.spaces[0]["obs"], cartpoles.spaces[1], 2, warmup=500)
    data = [_stack(play_episodes(cartpoles, task, 1000, seed=task)) for task in (0, 1)]
    for task in (0, 1):
        evidence.observe(*data[task], context=task)
    kept = evidence.errors(*data[1], contexts=[1])
    evidence.forget(0)
    assert evidence.model.count.tolist() == [0, 1000] and evidence.errors(*data[1], contexts=[1]) == kept
    evidence.observe(*data[1], context=0)  # context 0 now learns task 1 alone: its model is context 1's
    np.testing.assert_allclose(evidence.errors(*data[1], contexts=[0]), kept)


def test_change_scale_is_fixed_after_its_warmup():
    scale = ChangeScale(2, warmup=3)
    scale.update(np.array([[0.0, 1.0], [2.0, 1.0]]))
    assert not scale.fixed
    scale.update(np.array([[4.0, 1.0], [100.0, 100.0]]))  # the 4th row comes after the warmup
    assert scale.fixed and scale.count == 3
    np.testing.assert_allclose(scale.mean, [2.0, 1.0])
    np.testing.assert_allclose(scale.std, [2.0, 1e-6])


def test_bad_settings_are_refused_in_one_line(cartpoles):
    obs, act = cartpoles.spaces[0]["obs"], cartpoles.spaces[1]
    frames = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    cases = [
        (lambda: DynamicsEvidence(spaces.Discrete(3), act, 3), "expected a Box"),
        (lambda: DynamicsEvidence(frames, act, 3, embed=0), "embed=0"),
        (lambda: DynamicsEvidence(obs, spaces.Box(-1, 1, (1,)), 3), "expected Discrete"),
        (lambda: DynamicsEvidence(obs, act, 3, model="gp"), "model='gp'"),
        (lambda: DynamicsEvidence(obs, act, 3, hidden=[64]), "options of model 'neural'"),
        (lambda: DynamicsEvidence(obs, act, 3, ridge=0.0), "ridge=0.0"),
        (lambda: DynamicsEvidence(obs, act, 3, window_error="max"), "window_error='max'"),
        (lambda: SuperposedDynamics(4, 2, 3, input_layer="wide"), "input_layer='wide'"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            make()
        assert "\n" not in str(info.value)
