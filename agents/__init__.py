"""SB3-compatible continual agents (package ``psp_rl.agents``)."""

from psp_rl.agents.continual import ContinualDQN, ContinualPPO, TaskSwitchMixin, task_states
from psp_rl.agents.replay import CompactDictReplayBuffer, compact_encoding

__all__ = [
    "CompactDictReplayBuffer",
    "ContinualDQN",
    "ContinualPPO",
    "TaskSwitchMixin",
    "compact_encoding",
    "task_states",
]
