"""PSP-DQN at an inferred switch (hidden task ids): a false alarm loses nothing, a confirmed
switch leaves no data of the previous context."""

import numpy as np

from psp_rl.agents import ContinualDQN
from psp_rl.envs import get_sequence
from psp_rl.plugins.inference.context_trials import FixedContext, InferredTaskEnv
from tests.conftest import small_dqn


def _hidden_dqn():
    """A small PSP-DQN acting under the context a chooser writes into its observations, after 600
    steps under context 0 (the buffer's first 600 rows)."""
    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"])
    chooser = FixedContext(0)
    agent = small_dqn(InferredTaskEnv(sequence.make_vec_env(0, 1, seed=0), chooser), buffer_size=5000)
    agent.on_task_start(0)
    agent.learn(600)
    return agent, chooser


def _rows(agent):
    buffer = agent.replay_buffer
    return {key: value[: buffer.pos].copy() for key, value in buffer.observations.items()}, buffer.actions[: buffer.pos]


def _learn_under(agent, chooser, context: int, steps: int) -> None:
    chooser.context = context
    agent.learn(steps, reset_num_timesteps=False)


def test_a_false_alarm_and_the_switch_back_keep_every_transition():
    agent, chooser = _hidden_dqn()
    before, actions = _rows(agent)
    agent.on_inferred_switch(1, steps=5000)  # a false alarm: context 1 acts and explores ...
    assert agent.current_task == 1 and agent.pending_switch == 0
    assert agent.exploration_rate == agent.exploration_initial_eps  # (over the 5,000 steps the inference assumes)
    _learn_under(agent, chooser, 1, 200)
    agent.on_inferred_switch(0)  # ... until the evidence takes context 0 back
    assert agent.pending_switch is None
    _learn_under(agent, chooser, 0, 200)
    agent.confirm_switch()  # (nothing is pending: the inference's confirmation changes nothing)
    after, after_actions = _rows(agent)
    assert agent.replay_buffer.pos == 1000  # every transition, each under the context that gathered it
    np.testing.assert_array_equal(after["obs"][:600], before["obs"])
    np.testing.assert_array_equal(after_actions[:600], actions)
    assert (after["task"][:600] == 0).all() and (after["task"][610:800] == 1).all() and (after["task"][810:] == 0).all()


def test_a_confirmed_switch_keeps_the_new_contexts_transitions_only(tmp_path):
    agent, chooser = _hidden_dqn()
    agent.on_inferred_switch(1)
    agent.save(tmp_path / "model.zip")  # a checkpoint while the switch is pending keeps it pending
    assert ContinualDQN.load(tmp_path / "model.zip").pending_switch == 0
    _learn_under(agent, chooser, 1, 400)
    kept, kept_actions = _rows(agent)
    agent.confirm_switch()
    after, after_actions = _rows(agent)
    assert agent.pending_switch is None and (after["task"] == 1).all()
    assert agent.replay_buffer.pos == int((kept["task"] == 1).sum()) >= 399  # (the first step still read context 0)
    np.testing.assert_array_equal(after["obs"], kept["obs"][kept["task"].reshape(-1) == 1])
    # the buffer holds fewer than learning_starts transitions: updates wait for the rest
    assert agent.learning_starts == agent.num_timesteps + max(0, agent.base_learning_starts - agent.replay_buffer.pos)


def test_a_switch_that_keeps_the_acting_context_drops_none_of_its_data():
    agent, chooser = _hidden_dqn()
    before, _ = _rows(agent)
    agent.on_inferred_switch(0)  # every context taken: the acting one relearns (or it was a false alarm)
    _learn_under(agent, chooser, 0, 200)
    agent.confirm_switch()
    after, _ = _rows(agent)
    assert agent.replay_buffer.pos == 800
    np.testing.assert_array_equal(after["obs"][:600], before["obs"])


def test_an_announced_switch_still_clears_the_replay():
    agent, _ = _hidden_dqn()
    agent.on_task_start(1)
    assert agent.replay_buffer.size() == 0 and agent.pending_switch is None
