"""The rehearsal memory (a data-keeping baseline): it keeps a finished task's Q-values and resumes."""

import copy

import numpy as np
import pytest
import torch

from psp_rl.agents import ContinualDQN
from tests.conftest import trained_on_task_0


def _q_drift_of_task_0(rehearsal_states: int, seed: int) -> tuple[float, ContinualDQN]:
    """Relative change of task 0's Q-values on its kept states while task 1 trains."""
    sequence, agent = trained_on_task_0(seed, rehearsal_states=200, policy_kwargs=dict(net_arch=[64, 64]))
    agent.rehearsal_states = rehearsal_states or 200  # the memory to measure on, kept either way ...
    agent.set_env(sequence.make_vec_env(1, 1, seed=1))
    agent.on_task_start(1, 1500)
    memory = copy.deepcopy(agent.rehearsal_memory)
    if not rehearsal_states:
        agent.rehearsal_memory = None  # ... and rehearsed only when asked
    agent.learn(1500, reset_num_timesteps=False)
    with torch.no_grad():
        now = agent.q_net(agent.policy.obs_to_tensor(memory["obs"])[0]).numpy()
    return float(np.linalg.norm(now - memory["q"]) / np.linalg.norm(memory["q"])), agent


@pytest.mark.learning
def test_rehearsal_keeps_a_finished_tasks_q_values_and_resumes(tmp_path, learning_seed, record_property):
    """Task 0's Q drift rehearsed over not, seeds 0-4 on the native, AVX2 and baseline float paths
    (experiments/learning_margins.py): 0.0044-0.0091 (bound 0.5)."""
    rehearsed, agent = _q_drift_of_task_0(200, learning_seed)
    plain, _ = _q_drift_of_task_0(0, learning_seed)
    record_property("rehearsed_over_plain", float(rehearsed / plain))
    assert rehearsed < 0.5 * plain, (rehearsed, plain)
    memory = agent.rehearsal_memory
    assert len(memory["q"]) == 200 and set(memory["obs"]["task"].ravel().tolist()) == {0}
    agent.save(tmp_path / "agent.zip")  # the memory is part of the agent: a resume rehearses the same
    loaded = ContinualDQN.load(tmp_path / "agent.zip")
    assert np.array_equal(loaded.rehearsal_memory["q"], memory["q"]) and loaded.rehearsal_states == 200
