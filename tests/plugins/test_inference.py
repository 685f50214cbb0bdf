"""Hidden task ids: the change detector, the context trials, the observation rewrite, the whole run."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from gymnasium import spaces

from psp_rl.cli import main
from psp_rl.config import parse_config
from psp_rl.continual.checkpoints import CheckpointStore
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.envs import get_sequence
from psp_rl.errors import ConfigError
from psp_rl.plugins.inference.context_trials import ContextTrials, Deployment, FixedContext, InferredTaskEnv
from psp_rl.plugins.inference.detection import ReturnDrop
from psp_rl.plugins.inference.scoring import score_inference
from psp_rl.plugins.inference.task_inference import TaskInference
from tests.conftest import finished_run, run_train, train_here


# ----------------------------------------------------------------- detection
def _first_alarm(detector: ReturnDrop, returns) -> int | None:
    return next((i for i, r in enumerate(returns) if detector.update(0, r)), None)


@pytest.mark.parametrize("seed", range(5))
def test_cusum_finds_a_known_change_point_quickly_and_raises_no_false_alarm(seed):
    rng = np.random.default_rng(seed)
    before = rng.normal(400, 40, size=3000)  # returns whose spread is 10% of the mean
    after = rng.normal(150, 40, size=100)  # the change: the acting context now gets 150
    detector = ReturnDrop(threshold=10, slack=0.5, warmup=50)
    alarm = _first_alarm(detector, np.concatenate([before, after]))
    assert alarm is not None and alarm >= len(before), "false alarm before the change"
    # each episode adds (400 - 150) / 100 - 0.5 = 2: about 6 episodes to pass 10
    assert alarm - len(before) <= 8


def test_cusum_ignores_a_rising_learning_curve_and_occasional_bad_episodes():
    rng = np.random.default_rng(0)
    learning = np.minimum(500, 10 + np.arange(2000) * 0.5) + rng.normal(0, 20, 2000)
    learning[rng.choice(2000, 40, replace=False)] = 60  # a stochastic policy's occasional failure
    detector = ReturnDrop(threshold=10, slack=0.5, warmup=50)
    assert _first_alarm(detector, learning) is None


def test_cusum_reference_is_per_context_and_forgotten_on_request():
    detector = ReturnDrop(warmup=3)
    for value in (100, 100, 100):
        detector.update(0, value)
    assert detector.reference(0) == 100 and detector.reference(1) is None
    detector.forget(0)
    assert detector.reference(0) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, "threshold=0: expected a positive number"),
        ({"threshold": -1.5}, "threshold=-1.5: expected a positive number"),
        ({"slack": -1}, "slack=-1: expected a number >= 0"),
        ({"warmup": 0}, "warmup=0: expected a positive int"),
    ],
)
def test_bad_detector_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReturnDrop(**kwargs)


# ------------------------------------------------------------ context trials
def test_trials_pick_the_stored_context_that_fits():
    trials = ContextTrials([1, 0], {0: 500.0, 1: 500.0}, fit=0.5, episodes=2)
    for value in (10, 12):  # context 1 fails on this task
        assert trials.context == 1
        trials.add(value)
    assert not trials.done and trials.context == 0
    trials.add(480)
    trials.add(500)
    assert trials.done and trials.choice == 0


def test_trials_with_select_best_try_every_context():
    trials = ContextTrials([0, 1, 2], {0: 100.0, 1: 100.0, 2: 100.0}, fit=0.5, select="best")
    for value in (60, 95, 80):
        trials.add(value)
    assert trials.done and trials.choice == 1


def test_trials_where_nothing_fits_say_so_and_name_the_best():
    trials = ContextTrials([0, 1], {0: 100.0, 1: -200.0}, fit=0.5)
    trials.add(20)  # 0.8 below its reference
    trials.add(-350)  # 0.75 below (negative returns: relative to |reference|)
    assert trials.done and trials.choice is None and trials.best == 1


# ------------------------------------------- the rewritten observation, a known toy
def _controller(flip: int):
    """CartPole's hand-made controller, pushing towards the pole's lean; context ``flip`` pushes
    the other way (the right policy for the reversed task)."""

    class Policy:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            lean = obs["obs"][:, 2] + 0.5 * obs["obs"][:, 3]
            push = (lean > 0).astype(np.int64)
            return np.where(obs["task"] == flip, 1 - push, push), None

    return Policy()


def test_hidden_ids_reach_the_agent_as_task_zero_and_the_wrapper_writes_the_chosen_context():
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"], task_ids="hidden")
    env = sequence.make_vec_env(1, n_envs=2, seed=0)
    assert (env.reset()["task"] == 0).all()
    chooser = FixedContext(1)
    wrapped = InferredTaskEnv(env, chooser)
    assert (wrapped.reset()["task"] == 1).all()
    obs, *_ = wrapped.step(np.zeros(2, dtype=np.int64))
    assert (obs["task"] == 1).all()
    wrapped.close()


def test_deployment_finds_the_context_that_plays_the_reversed_task():
    """Two tasks, two contexts, a policy that plays task k well only under context k: starting
    from context 0 on the reversed task, the deployment tries 0, sees it fail, and keeps 1."""
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"], task_ids="hidden")
    refs = {0: 200.0, 1: 200.0}
    policy = _controller(flip=1)
    deployments = {}

    def wrap(env, task):
        deployments[task] = Deployment(0, ContextTrials([0, 1], refs, fit=0.5))
        return InferredTaskEnv(env, deployments[task])

    default, reversed_ = evaluate_tasks(policy, sequence, episodes=6, seed=lambda t: 7 + t, wrap=wrap)
    assert deployments[0].context == 0 and deployments[1].context == 1
    assert default.mean > 150  # context 0 fits the default task at once
    # the reversed task: one failed trial episode of context 0 is counted, then context 1 plays
    assert reversed_.returns[0] < 30 and min(reversed_.returns[1:]) > 150


# ----------------------------------------------------------- TaskInference
class _Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


class _Agent:
    def __init__(self):
        self.num_timesteps, self.updates_held, self.starts, self.confirmed = 0, False, [], 0

    def on_task_start(self, task, steps=None):
        self.starts.append(task)

    def on_inferred_switch(self, task, steps=None):
        self.starts.append(task)

    def confirm_switch(self):
        self.confirmed += 1


class _Sequence(list):
    """Tasks of 1,000 steps, as task inference reads a sequence (``max_tasks``, ``schedule`` set after)."""


def _loop(max_tasks: int):
    sequence = _Sequence([SimpleNamespace(steps=1000)] * 3)
    sequence.max_tasks, sequence.schedule = max_tasks, [0, 1, 2]
    return SimpleNamespace(agent=_Agent(), writer=_Writer(), sequence=sequence, seed=0)


def _episodes(inference: TaskInference, values):
    for value in values:
        inference.episode_end(value, inference.context, True)


def _until(inference: TaskInference, value: float, condition, limit: int = 50) -> int:
    """Episodes returning ``value`` until ``condition()`` holds; how many it took."""
    for count in range(limit):
        if condition():
            return count
        inference.episode_end(value, inference.context, True)
    raise AssertionError(f"not reached after {limit} episodes")


def test_inference_takes_a_fresh_context_then_reuses_the_stored_one_and_holds_updates_during_trials():
    loop = _loop(max_tasks=3)
    inference = TaskInference(warmup_episodes=5, trial_episodes=2)
    inference.before_training(loop)
    _episodes(inference, [100] * 10)  # context 0 learned task A
    # task B: each episode adds (100 - 5) / 25 - 1 = 2.8 to the statistic; the alarm is at > 20
    assert _until(inference, 5, lambda: inference.trials is not None) == 8
    assert loop.agent.updates_held and inference.context == 0  # the acting context is tried first
    _episodes(inference, [5, 5])  # and fails: a fresh context
    assert inference.context == 1 and not loop.agent.updates_held
    assert inference.choices[-1][1:] == [1, "fresh"] and loop.agent.starts[-1] == 1
    assert inference.task_steps == 1000  # the horizon of the agent's schedules: the sequence's mean task
    # the agent drops the previous context's data once the switch has stood switch_confirm_steps
    inference.count_steps(1999)
    assert loop.agent.confirmed == 0
    inference.count_steps(1)
    inference.count_steps(5000)
    assert loop.agent.confirmed == 1 and inference.since_switch is None
    _episodes(inference, [80] * 10)  # context 1 learned task B
    _until(inference, 3, lambda: inference.trials is not None)  # task A is back: alarm
    _episodes(inference, [4, 4])  # context 1 fails its trial
    assert inference.context == 0
    _episodes(inference, [100, 95])  # context 0 fits
    assert inference.context == 0 and inference.choices[-1][1:] == [0, "stored"]
    assert [d[1] for d in inference.detections] == [0, 1]


def test_when_every_context_is_taken_the_best_stored_one_is_kept_and_relearned():
    loop = _loop(max_tasks=2)
    inference = TaskInference(warmup_episodes=5, trial_episodes=1)
    inference.before_training(loop)
    _episodes(inference, [100] * 10)
    _until(inference, 5, lambda: inference.context == 1)  # alarm, trial of context 0 fails: fresh 1
    _episodes(inference, [100] * 10)
    _until(inference, 5, lambda: inference.trials is not None)  # a third task
    _episodes(inference, [5, 30])  # context 1 scores -0.95, context 0 -0.7: none fits, none is free
    assert inference.choices[-1][1:] == [0, "exhausted"] and inference.context == 0
    assert inference.detector.reference(0) is None  # warmed up again on the task it now learns


def _through_a_checkpoint(saved: TaskInference, restored: TaskInference, folder) -> None:
    """Save ``saved``'s state as a checkpoint does and load it into ``restored`` (``weights_only``)."""
    CheckpointStore.save_callbacks(folder, [saved])
    CheckpointStore.load_callbacks(folder, [restored])


def test_inference_state_round_trips_through_a_checkpoint(tmp_path):
    loop = _loop(max_tasks=3)
    inference = TaskInference(warmup_episodes=5, trial_episodes=3)
    inference.before_training(loop)
    _episodes(inference, [100] * 10)
    _until(inference, 5, lambda: inference.trials is not None)
    _episodes(inference, [5])  # mid-way through a trial
    restored = TaskInference(warmup_episodes=5, trial_episodes=3)
    _through_a_checkpoint(inference, restored, tmp_path)
    resumed_loop = _loop(max_tasks=3)
    restored.before_training(resumed_loop)
    assert restored.state_dict() == inference.state_dict() and resumed_loop.agent.updates_held
    assert resumed_loop.agent.starts == []  # a resumed run's context is no new start
    assert restored.task_steps == inference.task_steps == 1000  # the schedules' horizon after a resume too
    for value in (5, 5, 5):
        inference.episode_end(value, inference.context, True)
        restored.episode_end(value, restored.context, True)
    assert restored.context == inference.context == 1


def test_score_counts_detections_delays_false_alarms_and_returning_contexts():
    switches = [
        {"step": 1000, "noticeable": True},
        {"step": 2000, "noticeable": False},
        {"step": 3000, "noticeable": True},
    ]
    score = score_inference(switches, [1100, 2500, 9000], [[9, 1], [1, 9], [8, 2]], [0, 1, 0], 10_000, 500)
    assert score["noticeable_switches"] == 2 and score["detection_rate"] == 0.5
    assert score["mean_delay"] == 100 and score["false_alarms"] == 1
    assert score["returning_mapped_to_own_context"] == 1.0 and score["returning_reused_a_stored_context"] == 1.0
    assert "false_alarms_by_source" not in score  # (no sources given)
    sources = ["returns", "dynamics", "returns"]
    by_source = score_inference(switches, [1100, 2500, 9000], [[9, 1], [1, 9], [8, 2]], [0, 1, 0], 10_000, 500, sources)
    assert by_source["false_alarms_by_source"] == {"returns": 1}  # 9,000 only: 2,500 is the switch at 2,000's


# ------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agent": {"method": "separate", "context": "none"}}, "needs the task id"),
        ({"agent": {"method": "ewc", "context": "none"}}, "method='ewc'"),
        ({"inference": {"threshold": 0}}, "inference.threshold: input should be greater than 0, got 0"),
        ({"inference": {"fit": 1.5}}, "inference.fit"),
        ({"inference": {"window": 5000}}, "inference.window=5000 > inference.dynamics_warmup=2000"),
        ({"inference": {"evidence": "dynamics", "trial_episodes": 8}}, "inference.trial_episodes with inference.evid"),
        ({"inference": {"evidence": "td_error"}}, "inference.evidence"),
        ({"inference": {"return_alarms": False}}, "inference.return_alarms=False with inference.evidence='returns'"),
        ({"inference": {"return_check": True}}, "inference.return_check=True with inference.evidence='returns'"),
        (
            {"inference": {"evidence": "dynamics", "return_check": True, "confirm": True}},
            "inference.return_check=True with inference.confirm=True: expected one of them",
        ),
        (
            {"inference": {"evidence": "dynamics", "return_check": True, "select": "best"}},
            "inference.select with inference.evidence='dynamics'",
        ),
        (
            {"inference": {"evidence": "dynamics", "check_exhausted": "move"}},
            "inference.check_exhausted='move' with inference.return_check=False: expected return_check=True",
        ),
        ({"inference": {"check_exhausted": "refit"}}, "inference.check_exhausted"),
        (
            {"inference": {"choice_error": "median"}},
            "inference.choice_error='median' with inference.evidence='returns': expected evidence 'dynamics'",
        ),
        ({"inference": {"evidence": "dynamics", "choice_error": "max"}}, "inference.choice_error"),
        (
            {"inference": {"name_windows": True}},
            "inference.name_windows=True with inference.evidence='returns' and inference.error_alarm='surprises': "
            "expected evidence 'dynamics' and error_alarm 'surprises'",
        ),
        (
            {"inference": {"count_fit": 10}},
            "inference.count_fit=10.0 with inference.evidence='returns' and inference.error_alarm='surprises': "
            "expected evidence 'dynamics'",
        ),
        ({"inference": {"evidence": "dynamics", "count_fit": 0.5}}, "inference.count_fit"),
        (
            {"inference": {"evidence": "dynamics", "error_alarm": "cusum", "surprise_below": True}},
            "inference.surprise_below=True with inference.evidence='dynamics' and inference.error_alarm='cusum'",
        ),
        (
            {"inference": {"evidence": "dynamics", "check_reference": "task"}},
            "inference.check_reference='task' with inference.return_check=False: expected return_check=True",
        ),
    ],
)
def test_bad_hidden_id_settings_are_one_line_errors(change, message):
    config = {"name": "x", "sequence": {"name": "cartpole-shift", "task_ids": "hidden"}, **change}
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(config)
    assert "\n" not in str(info.value)


# 8,192 steps a task: at 4,096, seed 1 learned the default task to 141 only, with training returns
# still climbing, and the switch went undetected on every float path: context 0 relearned the
# reversed task (171) before the return-drop statistic, whose reference spread the climb had
# inflated, reached its threshold.
HIDDEN_STEPS = 8192
HIDDEN_KILL = "learn:1200"  # vec-env steps of 8 envs: env step 9,600, in task 2, after its detection
HIDDEN_RUN = {
    "name": "hidden",
    "seed": 0,
    "sequence": {
        "name": "cartpole-shift",
        "tasks": ["default", "reversed"],
        "steps": HIDDEN_STEPS,
        "task_ids": "hidden",
    },
    "agent": {
        "algo": "ppo",
        "net_arch": [32, 32],
        "n_envs": 8,
        "n_steps": 32,
        "batch_size": 256,
        "gamma": 0.98,
        "gae_lambda": 0.8,
        "n_epochs": 10,
        "learning_rate": 0.003,
    },
    "inference": {"warmup_episodes": 10},
    "eval": {"every": HIDDEN_STEPS, "episodes": 4},
    "checkpoint": {"every": 2048},
}


@pytest.fixture(scope="module")
def hidden_run(tmp_path_factory, request):
    config = {**HIDDEN_RUN, "seed": request.config.getoption("--learning-seed")}
    return finished_run(tmp_path_factory.mktemp("hidden"), config)


@pytest.mark.learning
def test_a_hidden_id_run_detects_the_switch_and_takes_a_fresh_context(hidden_run, record_property):
    """Seeds 0-4 on the native, AVX2 and baseline float paths (experiments/learning_margins.py):
    detected 280-488 env steps after the switch (bound 2,000), no false alarm, a fresh context."""
    _, run_dir = hidden_run
    inference = json.loads((run_dir / "metrics.json").read_text())["TaskInference"]
    (switch,) = inference["switches"]
    record_property("delay", float(switch["delay"] if switch["delay"] is not None else float("inf")))
    record_property("false_alarms", float(inference["false_alarms"]))
    assert switch["noticeable"] and switch["delay"] is not None and switch["delay"] <= 2000
    assert [c[1:] for c in inference["choices"]] == [[1, "fresh"]]
    assert inference["false_alarms"] == 0
    assert inference["stage_contexts"][0][0] == HIDDEN_STEPS
    assert inference["stage_contexts"][1][1] > HIDDEN_STEPS - 2000


def test_the_report_marks_detections_and_the_context_of_each_visit(hidden_run, tmp_path):
    from psp_rl.reporting.plots import returns_figure
    from psp_rl.reporting.report import RunData, write_report

    _, run_dir = hidden_run
    inference = json.loads((run_dir / "metrics.json").read_text())["TaskInference"]
    run = RunData(run_dir)
    marks = run.inference()
    assert marks.detections == [d[0] for d in inference["detections"]]
    contexts = [int(np.argmax(steps)) for steps in inference["stage_contexts"]]
    visits = [(task, context) for _, _, task, context in marks.visits]
    assert visits == list(zip(["default", "reversed"], contexts, strict=True))
    fig = returns_figure({run.label: run.curves()}, run.tasks, {run.label: run.boundaries()}, {run.label: marks})
    for ax, task in zip(fig.axes, run.tasks, strict=True):
        (triangles,) = [line for line in ax.lines if line.get_marker() == "v"]
        assert list(triangles.get_xdata()) == marks.detections
        visited = [context for _, _, trained, context in marks.visits if trained == task]
        assert [t.get_text() for t in ax.texts] == [f"c{context}" for context in visited]
    report = write_report([run_dir], tmp_path / "report").read_text()
    assert "## Task inference (hidden task ids)" in report and f"reversed: c{contexts[1]}" in report


def test_a_killed_hidden_id_run_resumes_exactly(hidden_run, tmp_path):
    config_path, whole = hidden_run
    run_dir = tmp_path / "run"
    killed = run_train(config_path, run_dir, env={"PSP_RL_KILL_AT": HIDDEN_KILL})
    assert killed.returncode != 0
    train_here(config_path, run_dir, "--resume")
    assert (run_dir / "eval.csv").read_bytes() == (whole / "eval.csv").read_bytes()
    a, b = (json.loads((d / "metrics.json").read_text())["TaskInference"] for d in (whole, run_dir))
    assert a == b


@pytest.mark.learning
def test_psp_rl_evaluate_uses_the_runs_inference(hidden_run, record_property):
    """Seeds 0-4, three float paths: the reversed task evaluates at 112-500 through the run's
    inference (bound > 19, twice what context 0 gets), 0.79-1.13 of the run's own last evaluation
    (bound 0.5)."""
    _, run_dir = hidden_run
    assert main(["evaluate", str(run_dir), "--episodes", "4"]) == 0  # in this process: no seconds of imports
    rows = (run_dir / "evaluate.csv").read_text().splitlines()[1:]
    means = {row.split(",")[0]: float(row.split(",")[1]) for row in rows}
    final = {r.split(",")[2]: float(r.split(",")[3]) for r in (run_dir / "eval.csv").read_text().splitlines()[-2:]}
    record_property("reversed", float(means["reversed"]))
    record_property("reversed_over_run", float(means["reversed"] / final["reversed"]))
    # context 0 plays the reversed task at ~9; the inference's contexts give what the run's own evaluation got
    assert means["reversed"] > 2 * 9.5 and means["reversed"] >= 0.5 * final["reversed"]


@pytest.mark.slow  # 12 s: the default suite keeps PPO's hidden-id run
@pytest.mark.learning
def test_psp_dqn_runs_under_hidden_ids(tmp_path, tiny_config, learning_seed):
    """The inference holds and restarts DQN as it does PPO (its replay stores the chosen contexts)."""
    from psp_rl.config import ContinualTrainer

    tiny_config["sequence"]["task_ids"] = "hidden"
    tiny_config["seed"] = learning_seed
    tiny_config["inference"] = {"warmup_episodes": 5, "trial_episodes": 2}
    metrics = ContinualTrainer(parse_config(tiny_config), tmp_path / "run").run()
    inference = metrics["TaskInference"]
    assert len(inference["switches"]) == 1 and sum(map(sum, inference["stage_contexts"])) == metrics["env_steps"]


def test_evaluation_while_a_fresh_context_warms_up_still_tries_the_stored_ones():
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"], task_ids="hidden", max_tasks=3)
    loop = SimpleNamespace(agent=_Agent(), writer=_Writer(), sequence=sequence, seed=0)
    inference = TaskInference(warmup_episodes=5, trial_episodes=1)
    inference.before_training(loop)
    _episodes(inference, [100] * 10)
    _until(inference, 5, lambda: inference.context == 1)  # a fresh context, not warmed up yet
    _episodes(inference, [40])
    env = inference.wrap_env(loop, sequence.make_vec_env(0, 1, seed=0), 0, training=False)
    assert env.chooser.trials.candidates == [1, 0]  # compared with its mean so far, then the stored one
    env.close()


@pytest.mark.parametrize(("order", "candidates"), [("recent", [3, 2, 1, 0]), ("oldest", [3, 0, 1, 2])])
def test_trials_try_the_acting_context_then_the_others_in_the_chosen_order(order, candidates):
    inference = TaskInference(warmup_episodes=1, order=order)
    for context in range(4):
        inference.detector.update(context, 100.0)
    inference.used, inference.context = [0, 1, 2, 3], 3  # chosen in this order; 3 acts now
    assert inference._candidates(3, inference._references()) == candidates


# ---------------------------------------------------------- dynamics evidence
@pytest.fixture(scope="module")
def shifted():
    return get_sequence("cartpole-shift", tasks=["default", "high-gravity", "reversed"])


def _play(inference: TaskInference, sequence, task: int, transitions: int, seed: int) -> None:
    """Random play of ``task`` reported as the wrapper reports it: vector steps of 8 envs."""
    from experiments.probe_dynamics import play_episodes

    for obs, actions, next_obs in play_episodes(sequence, task, transitions, seed):
        for i in range(0, len(obs), 8):
            inference.transitions(obs[i : i + 8], actions[i : i + 8], next_obs[i : i + 8], inference.context)


def _dynamics_inference(shifted, **settings):
    loop = _loop(max_tasks=3)
    loop.sequence.spaces = shifted.spaces
    inference = TaskInference(evidence="dynamics", window=40, dynamics_warmup=1000, **settings)
    inference.before_training(loop)
    return loop, inference


def test_dynamics_evidence_sees_a_switch_the_returns_hide_and_names_the_returning_task(shifted):
    loop, inference = _dynamics_inference(shifted)
    _play(inference, shifted, 0, 3000, seed=0)  # context 0 learns task A (default)
    assert 0 in inference.usual_error and not inference.detections
    _play(inference, shifted, 1, 400, seed=1)  # high gravity: the returns say nothing (none are reported)
    assert len(inference.detections) == 1 and inference.choices[-1][1:] == [1, "fresh"]
    assert inference.dynamics.model.count[0] <= 3000  # B's windows before the alarm stayed out of A's model
    assert inference.trials is None and not loop.agent.updates_held and loop.agent.starts == [0, 1]
    _play(inference, shifted, 1, 3000, seed=2)  # context 1 learns task B
    _play(inference, shifted, 0, 400, seed=3)  # A is back: its own context, chosen at once
    assert len(inference.detections) == 2 and inference.choices[-1][1:] == [0, "stored"]
    _play(inference, shifted, 0, 2000, seed=4)  # no false alarm while A goes on
    assert len(inference.detections) == 2


def test_confirmed_dynamics_choice_at_a_return_alarm_and_its_state_round_trip(shifted, tmp_path):
    loop, inference = _dynamics_inference(shifted, warmup_episodes=5, confirm=True)
    _play(inference, shifted, 0, 3000, seed=0)
    _episodes(inference, [100] * 10)
    _play(inference, shifted, 2, 40, seed=5)  # one window of the reversed task: no dynamics alarm yet
    _until(inference, 5, lambda: inference.detections)  # the returns fall first
    # confirm: the best stored context (the only one) is on probation for a window, with updates held
    assert inference.confirming == (0, 0) and loop.agent.updates_held and inference.choices == []
    restored = TaskInference(evidence="dynamics", window=40, dynamics_warmup=1000, warmup_episodes=5, confirm=True)
    _through_a_checkpoint(inference, restored, tmp_path)
    resumed = _loop(max_tasks=3)
    resumed.sequence.spaces = shifted.spaces
    restored.before_training(resumed)
    assert restored.state_dict() == inference.state_dict() and resumed.agent.updates_held
    for agent in (inference, restored):
        _play(agent, shifted, 2, 3000, seed=6)  # its window fails: a fresh context learns the task
    assert restored.state_dict() == inference.state_dict()
    assert inference.choices[-1][1:] == [1, "fresh"] and not loop.agent.updates_held


@pytest.mark.parametrize("error_alarm", ["surprises", "cusum"])
def test_a_switch_that_keeps_the_return_is_seen_by_either_error_alarm(shifted, error_alarm):
    _, inference = _dynamics_inference(shifted, error_alarm=error_alarm, error_warmup=10)
    _play(inference, shifted, 0, 3000, seed=0)
    assert not inference.detections  # no false alarm on its own task
    _play(inference, shifted, 1, 600, seed=1)  # high gravity, no returns reported
    assert len(inference.detections) == 1 and inference.choices[-1][1:] == [1, "fresh"]


def test_dynamics_deployment_plays_the_window_then_the_best_context(shifted):
    from psp_rl.plugins.inference.context_trials import DynamicsDeployment

    _, inference = _dynamics_inference(shifted)
    _play(inference, shifted, 0, 3000, seed=0)
    _play(inference, shifted, 2, 3400, seed=1)  # a switch to the reversed task, seen and learned by context 1
    assert inference.context == 1 and set(inference.usual_error) == {0, 1}
    deployment = inference._deployment()
    assert isinstance(deployment, DynamicsDeployment) and deployment.context == 1
    from experiments.probe_dynamics import play_episodes

    obs, actions, next_obs = (np.concatenate(col) for col in zip(*play_episodes(shifted, 0, 40, seed=9), strict=True))
    deployment.transitions(obs, actions, next_obs, 1)
    assert deployment.decided and deployment.context == 0


@pytest.mark.parametrize(("usual_error", "chosen"), [(None, 4), ({4: 0.80, 3: 0.63, 2: 1.91}, 3)])
def test_a_deployment_with_channel_counts_weighs_both_statistics(usual_error, chosen):
    """The first 10 transitions of an Asterix episode at the end of hidden-ids-minatar's seed 0 (counts-10): Seaquest's
    model (context 4) predicts them best in absolute terms, Freeway's (2) over its usual error; Asterix's own (3)
    has the nearest counts and the best product of the two ratios."""
    from psp_rl.plugins.inference.context_trials import DynamicsDeployment

    evidence = SimpleNamespace(
        scale=SimpleNamespace(fixed=True),
        errors=lambda *window: np.array([0.096, 0.200, 0.193]),
        count_ratios=lambda obs, contexts: np.array([5.90, 1.71, 30.86]),
    )
    deployment = DynamicsDeployment(4, evidence, [4, 3, 2], window=2, usual_error=usual_error)
    deployment.transitions(np.zeros((2, 3)), np.zeros(2), np.zeros((2, 3)), 4)
    assert deployment.decided and deployment.context == chosen


def test_a_restored_inference_evaluates_with_its_dynamics_and_its_deploy_window(shifted, tmp_path):
    """``psp-rl evaluate`` loads the inference from a checkpoint and starts no training: its deployment
    still reads the stored models (it played the acting context throughout before 2026-12-02)."""
    from experiments.probe_dynamics import play_episodes

    _, inference = _dynamics_inference(shifted)
    _play(inference, shifted, 0, 3000, seed=0)
    _play(inference, shifted, 2, 3400, seed=1)  # context 1 learns the reversed task
    restored = TaskInference(evidence="dynamics", window=40, dynamics_warmup=1000, deploy_window=5)
    _through_a_checkpoint(inference, restored, tmp_path)
    loop = _loop(max_tasks=3)
    loop.sequence.spaces, loop.sequence[0].name = shifted.spaces, "default"
    env = restored.wrap_env(loop, shifted.make_vec_env(0, 1, seed=0, training=False), 0, training=False)
    deployment = env.chooser
    assert deployment.context == 1 and not deployment.decided
    obs, actions, next_obs = (np.concatenate(col) for col in zip(*play_episodes(shifted, 0, 5, seed=9), strict=True))
    deployment.transitions(obs[:4], actions[:4], next_obs[:4], 1)
    assert not deployment.decided  # 4 of the 5 transitions of its deploy window
    deployment.transitions(obs[4:5], actions[4:5], next_obs[4:5], 1)
    assert deployment.decided and deployment.context == 0
    env.close()


def test_dynamics_evidence_an_agent_cannot_give_is_a_one_line_error():
    loop = _loop(max_tasks=2)
    loop.sequence.spaces = (spaces.Dict({"obs": spaces.Discrete(4), "task": spaces.Discrete(2)}), spaces.Discrete(2))
    with pytest.raises(ValueError, match="inference.evidence='dynamics': .*expected a Box"):
        TaskInference(evidence="dynamics").before_training(loop)


@pytest.mark.parametrize(("floor", "false_alarms"), [(0.0, 1), (5e-5, 0)])
def test_an_error_floor_keeps_a_tiny_usual_error_from_raising_alarms_on_the_same_task(shifted, floor, false_alarms):
    """A context fitted on a balancing policy's states predicts them to ~1e-9 (probe_false_alarms.py); the same
    task's other states then look like a switch unless the usual error has a floor. A true switch is still seen."""
    _, inference = _dynamics_inference(shifted, error_floor=floor)
    _play(inference, shifted, 0, 3000, seed=0)
    inference.usual_error[0] = 1e-9  # as after a long spell of balancing
    _play(inference, shifted, 0, 600, seed=7)  # the same task, random play's states
    assert len(inference.detections) == false_alarms
    if false_alarms:  # the alarm took a fresh context for a task context 0 knows
        assert inference.choices[-1][1:] == [1, "fresh"]
        return
    _play(inference, shifted, 1, 600, seed=1)  # high gravity
    assert len(inference.detections) == 1 and inference.choices[-1][1:] == [1, "fresh"]


@pytest.mark.parametrize(("kept_return", "alarms"), [("keep", 3), ("reset", 1)])
def test_a_kept_answer_to_a_return_alarm_can_reset_the_usual_return(shifted, kept_return, alarms):
    """A returning task playing below its context's old return: the dynamics say it is the same task (kept),
    and with the old usual return kept the return CUSUM alarms again and again (the benchmark's bursts)."""
    _, inference = _dynamics_inference(shifted, warmup_episodes=5, kept_return=kept_return)
    _play(inference, shifted, 0, 3000, seed=0)  # context 0 knows task A's dynamics
    _episodes(inference, [100] * 10)  # and its usual return
    _episodes(inference, [5] * 30)  # the same task, played worse
    assert len(inference.detections) == alarms and {how for *_, how in inference.choices} == {"kept"}
    assert inference.detector.reference(0) == (100 if kept_return == "keep" else 5)  # reset: re-learned at 5


@pytest.mark.parametrize(("return_alarms", "alarms"), [(True, 1), (False, 0)])
def test_return_drops_can_be_left_out_of_the_alarms(shifted, return_alarms, alarms):
    """PSP-DQN's training return drops within a task (exploration restarting, Q-learning's collapses): with
    dynamics evidence each was an alarm answered `kept`. Without return alarms the drop raises none, and a
    switch of the dynamics is still seen."""
    _, inference = _dynamics_inference(shifted, warmup_episodes=5, return_alarms=return_alarms)
    _play(inference, shifted, 0, 3000, seed=0)
    _episodes(inference, [100] * 10)
    _episodes(inference, [5] * 10)  # the same task, played worse
    assert len(inference.detections) == alarms and {how for *_, how in inference.choices} <= {"kept"}
    _play(inference, shifted, 1, 600, seed=1)  # high gravity
    assert len(inference.detections) == alarms + 1 and inference.choices[-1][1:] == [1, "fresh"]
    assert [d[3] for d in inference.detections] == ["returns"] * alarms + ["dynamics"]  # what raised each


def _minatar_inference(**settings):
    """Dynamics inference over MinAtar's 5 games, as hidden-ids-minatar's config sets it up (in short)."""
    pytest.importorskip("minatar")
    games = get_sequence("minatar")
    loop = _loop(max_tasks=5)
    loop.sequence.spaces = games.spaces
    settings = {"dynamics_warmup": 2000, **settings}
    inference = TaskInference(evidence="dynamics", window=50, return_alarms=False, **settings)
    inference.before_training(loop)
    return games, inference


@pytest.mark.parametrize(("name_windows", "back"), [(False, []), (True, [[0, "stored"]])])
def test_naming_every_window_sees_a_returning_game_the_acting_model_reads_as_usual(name_windows, back):
    """MinAtar (hidden-ids-minatar's README): Freeway's frames change most, so its model reads Asterix's windows
    at or below its usual error and Asterix's return goes unseen; Asterix's own model predicts them far better."""
    games, inference = _minatar_inference(name_windows=name_windows)
    _play(inference, games, 3, 4000, seed=0)  # Asterix, context 0
    _play(inference, games, 2, 4000, seed=1)  # Freeway: seen either way (4.7x Asterix's usual error)
    assert [c[1:] for c in inference.choices] == [[1, "fresh"]]
    _play(inference, games, 3, 1500, seed=2)  # Asterix is back
    assert [c[1:] for c in inference.choices[1:]] == back


@pytest.mark.parametrize("seed", [0, 10, 20])
@pytest.mark.parametrize(("count_fit", "choices"), [(None, []), (10.0, [[1, "fresh"], [2, "fresh"]])])
def test_the_frames_channel_counts_alone_see_each_change_of_game_and_no_other(seed, count_fit, choices):
    """MinAtar (hidden-ids-minatar's README): under trained play Freeway's dynamics model read Asterix's frame
    changes at 0.2x its usual error, and the switch went unseen; Freeway's frames always hold 8 cars, Asterix's a
    few enemies. Here the dynamics raise no surprise (error_fit 1e6), so what is seen is seen by the counts:
    Breakout -> Freeway and Freeway -> Asterix, each a fresh context, and no second context within Freeway, whose
    speed channels hold still for an episode and move at the next (with a 2,000-transition warmup, one random
    Freeway episode, its young context took a second context on 4 of 5 seeds: the counts need a warmup spanning
    several episodes, as the benchmark's 20,000 steps of 8 envs do)."""
    games, inference = _minatar_inference(count_fit=count_fit, dynamics_warmup=4000, error_fit=1e6)
    _play(inference, games, 0, 5000, seed=seed)  # Breakout, context 0: its changes fix the units, as in a run
    _play(inference, games, 2, 8000, seed=seed + 1)  # Freeway, three episodes of random play
    _play(inference, games, 3, 1500, seed=seed + 2)  # Asterix
    assert [c[1:] for c in inference.choices] == choices


def test_channel_counts_need_frames(shifted):
    with pytest.raises(ValueError, match=r"^inference.count_fit=10.0: observation space Box.*: expected frames"):
        _dynamics_inference(shifted, count_fit=10.0)  # CartPole's 4 numbers


@pytest.mark.parametrize(("surprise_below", "choices"), [(False, []), (True, [[1, "fresh"]])])
def test_a_run_of_windows_far_below_the_usual_error_can_be_a_surprise(shifted, surprise_below, choices):
    """A context that learned a task whose changes are noisy (noise added to every next observation) then
    sees the same dynamics without the noise: its windows score far below the usual error, and at the alarm
    that context does not fit them either (it would be `kept`, and the alarm would come back)."""
    from experiments.probe_dynamics import play_episodes

    _, inference = _dynamics_inference(shifted, surprise_below=surprise_below)
    rng = np.random.default_rng(0)
    for obs, actions, next_obs in play_episodes(shifted, 0, 3000, seed=0):
        noisy = next_obs + rng.normal(0.0, 0.05, next_obs.shape)
        for i in range(0, len(obs), 8):
            inference.transitions(obs[i : i + 8], actions[i : i + 8], noisy[i : i + 8], inference.context)
    assert not inference.detections
    _play(inference, shifted, 0, 600, seed=1)  # the same task, quiet
    assert [c[1:] for c in inference.choices] == choices


@pytest.mark.parametrize(("floor_in_choice", "choice"), [(True, (0, "stored")), (False, (1, "fresh"))])
def test_the_floor_can_stay_out_of_the_choice(shifted, floor_in_choice, choice):
    """A window at 1e-5 under a context whose usual error is 1e-9: no surprise with the 5e-5 floor, and
    at an alarm that context fits it only when the floor applies to the choice too."""
    _, inference = _dynamics_inference(shifted, error_floor=5e-5, floor_in_choice=floor_in_choice)
    inference.usual_error[0] = 1e-9
    assert inference._fits(1e-5, 0)  # the surprise test keeps the floor either way
    assert inference._fit_or_fresh(0, 1e-5, before=2) == choice


def _three_tasks_then_a_return(shifted, **settings):
    """Contexts 0-2 learn default, high gravity and reversed (their dynamics models and a usual return of
    100 each), then default comes back: the dynamics alarm names context 0's model."""
    loop, inference = _dynamics_inference(shifted, warmup_episodes=5, **settings)
    for task, context in ((0, 0), (1, 1), (2, 2)):
        _play(inference, shifted, task, 3400 if task else 3000, seed=task)
        assert inference.context == context
        _episodes(inference, [100] * 10)
    _play(inference, shifted, 0, 400, seed=3)
    return loop, inference


def test_without_a_return_check_the_dynamics_choice_acts_at_once(shifted):
    loop, inference = _three_tasks_then_a_return(shifted)
    assert inference.choices[-1][1:] == [0, "stored"] and inference.trials is None and not loop.agent.updates_held


@pytest.mark.parametrize(
    ("trial_returns", "acting", "label"),
    [
        ([100], 0, "stored"),  # the task's own context plays it: as without the check
        ([10, 90], 2, "kept"),  # it plays badly; the context acting before the alarm plays on
        ([10, 10, 100], 1, "returns"),  # another task's context plays it
        ([10, 10, 10], 0, "stored"),  # none fits: the task's own context learns it again
    ],
)
def test_a_return_check_lets_another_context_play_a_task_its_own_context_plays_badly(
    shifted, tmp_path, trial_returns, acting, label
):
    loop, inference = _three_tasks_then_a_return(shifted, return_check=True, trial_episodes=1)
    # the dynamics named context 0; its returns are checked first, then the others, most recent first
    assert inference.trials.candidates == [0, 2, 1] and loop.agent.updates_held and inference.choices[-1][2] == "fresh"
    _episodes(inference, trial_returns[:1])
    restored = TaskInference(evidence="dynamics", window=40, dynamics_warmup=1000, warmup_episodes=5, return_check=True)
    _through_a_checkpoint(inference, restored, tmp_path)  # mid-way through a check
    resumed = _loop(max_tasks=3)
    resumed.sequence.spaces = shifted.spaces
    restored.before_training(resumed)
    assert restored.state_dict() == inference.state_dict()
    for agent in (inference, restored):
        _episodes(agent, trial_returns[1:])
    assert restored.state_dict() == inference.state_dict()
    assert inference.choices[-1][1:] == [acting, label] and inference.context == acting
    assert inference.model_context == 0 and not loop.agent.updates_held  # default's own model reads it on
    assert loop.agent.starts[-1] == (2 if label == "kept" else acting)  # (kept: no switch to tell the agent of)
    assert inference.plays == ({0: acting} if acting != 0 else {})
    _play(inference, shifted, 0, 2000, seed=4)  # default goes on: its own model fits, no alarm
    assert len(inference.detections) == 3
    from experiments.probe_dynamics import play_episodes

    deployment = inference._deployment()  # an evaluation of default plays the context that plays it
    obs, actions, next_obs = (np.concatenate(col) for col in zip(*play_episodes(shifted, 0, 40, seed=9), strict=True))
    deployment.transitions(obs, actions, next_obs, inference.context)
    assert deployment.decided and deployment.context == acting


@pytest.mark.parametrize(
    ("check_exhausted", "plays", "model", "usual_errors"),
    [
        ("map", {0: 1}, 0, [1, 2]),  # context 1 plays long pole; context 0's model re-fits to it
        ("move", {}, 1, [0, 2]),  # context 1's own model re-fits; context 0's model keeps default
        ("skip", {}, 0, [0, 1, 2]),  # no check: context 0 learns long pole (its model re-warmed in the window)
    ],
)
def test_an_exhausted_choice_is_checked_as_check_exhausted_says(check_exhausted, plays, model, usual_errors):
    """Every context taken and a new task (long pole) none fits: the dynamics re-take the best model (an
    exhausted choice, context 0's). The check can hand the task to another context's policy; which model
    re-fits to the task, or whether the choice is checked at all, is ``check_exhausted``."""
    sequence = get_sequence("cartpole-shift", tasks=["default", "high-gravity", "reversed", "long-pole"])
    loop, inference = _dynamics_inference(
        sequence, warmup_episodes=5, return_check=True, trial_episodes=1, check_exhausted=check_exhausted
    )
    for task in (0, 1, 2):
        _play(inference, sequence, task, 3400 if task else 3000, seed=task)
        _episodes(inference, [100] * 10)
    _play(inference, sequence, 3, 400, seed=3)
    assert (inference.checking is None) == (check_exhausted == "skip")
    if inference.checking is not None:
        assert inference.checking[:2] == (0, "exhausted") and inference.trials.candidates == [0, 2, 1]
        _episodes(inference, [10, 10, 100])  # context 1's policy plays long pole within its usual return
    assert inference.plays == plays and inference.model_context == model and not loop.agent.updates_held
    assert inference.context == (0 if check_exhausted == "skip" else 1)
    assert inference.choices[-1][2] == ("returns" if check_exhausted == "map" else "exhausted")
    assert sorted(inference.usual_error) == usual_errors


@pytest.mark.parametrize(("check_reference", "acting", "label"), [("own", 1, "returns"), ("task", 0, "stored")])
def test_a_candidate_can_be_held_to_the_tasks_own_return(shifted, check_reference, acting, label):
    """Context 1 never learned its task (usual return 10, against 100 for the others). Held to its own usual
    return it fits default at 10 (a context that learned nothing fits every task); held to the task's (default's
    own context, 100) it does not, and as none fits, the dynamics' choice plays."""
    _, inference = _dynamics_inference(
        shifted, warmup_episodes=5, return_check=True, trial_episodes=1, check_reference=check_reference
    )
    for task, usual in ((0, 100), (1, 10), (2, 100)):
        _play(inference, shifted, task, 3400 if task else 3000, seed=task)
        _episodes(inference, [usual] * 10)
    _play(inference, shifted, 0, 400, seed=3)
    assert inference.trials.candidates == [0, 2, 1]
    _episodes(inference, [10, 10, 10])
    assert inference.choices[-1][1:] == [acting, label] and inference.context == acting


def test_a_task_played_by_another_context_keeps_it_when_it_returns(shifted):
    """The answer of a check stands: when the task comes back, the context that played it is checked first."""
    _, inference = _three_tasks_then_a_return(shifted, return_check=True, trial_episodes=1)
    _episodes(inference, [10, 10, 100])  # context 1 plays default
    _play(inference, shifted, 0, 2000, seed=4)
    _play(inference, shifted, 2, 400, seed=5)  # reversed: its own context 2
    assert inference.trials.candidates[0] == 2
    _episodes(inference, [100])
    assert inference.choices[-1][1:] == [2, "stored"] and inference.plays == {0: 1}
    _play(inference, shifted, 2, 1000, seed=6)
    _play(inference, shifted, 0, 400, seed=7)  # default again
    assert inference.trials.candidates[:2] == [1, 0]


@pytest.mark.parametrize(("choice_error", "how"), [(None, "exhausted"), ("median", "stored")])
def test_a_window_mixing_the_old_tasks_transitions_is_decided_by_its_choice_error(shifted, choice_error, how):
    """n_envs envs switch at their own resets: the window an alarm is decided on can hold a quarter of the old
    task's transitions, whose errors under the new task's model swamp a mean; their median stays usual."""
    from experiments.probe_dynamics import play_episodes

    _, inference = _dynamics_inference(shifted, warmup_episodes=5, choice_error=choice_error)
    for task in (0, 1, 2):  # every context taken: default, high gravity, reversed
        _play(inference, shifted, task, 3400 if task else 3000, seed=task)
        _episodes(inference, [100] * 10)
    rows = []
    for task, count, seed in ((0, 30, 7), (2, 10, 8)):  # default is back in 30 rows, reversed still in 10
        episodes = play_episodes(shifted, task, count, seed)
        rows += [row for episode in episodes for row in zip(*episode, strict=True)][:count]
    inference.recent = rows
    best, error = inference._best_stored()
    assert best == 0 and inference._fit_or_fresh(best, error, before=2) == (0, how)
