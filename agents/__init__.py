"""SB3-compatible continual agents (package ``psp_rl.agents``)."""

from psp_rl.agents.continual import ContinualDQN, ContinualPPO, TaskSwitchMixin, task_states

__all__ = ["ContinualDQN", "ContinualPPO", "TaskSwitchMixin", "task_states"]
