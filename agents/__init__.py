"""SB3-compatible continual agents (package ``psp_rl.agents``): ``ContinualDQN``, ``ContinualPPO``,
the task switch they share, and reading a task's states back from their buffers."""

from psp_rl.agents.dqn import ContinualDQN
from psp_rl.agents.ppo import ContinualPPO
from psp_rl.agents.replay import CompactDictReplayBuffer, compact_encoding
from psp_rl.agents.task_switch import TaskSwitchMixin

AGENTS = {"dqn": ContinualDQN, "ppo": ContinualPPO}
"""The continual agents by ``agent.algo``."""

__all__ = ["AGENTS", "CompactDictReplayBuffer", "ContinualDQN", "ContinualPPO", "TaskSwitchMixin", "compact_encoding"]
