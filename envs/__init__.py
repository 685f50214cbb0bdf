"""Task sequences and their wrappers (package ``psp_rl.envs``; depends on gymnasium and ale-py only)."""

from psp_rl.envs.builtin import get_sequence, list_sequences, register_sequence
from psp_rl.envs.factories import make_atari_env, make_gym_env, make_minatar_env
from psp_rl.envs.sequence import TaskSequence, TaskSpec, sequence_from_spec
from psp_rl.envs.wrappers import (
    DriftingParam,
    PadChannels,
    PermuteObservation,
    ReverseAction,
    ShiftedParams,
    TaskObservation,
)

__all__ = [
    "DriftingParam",
    "PadChannels",
    "PermuteObservation",
    "ReverseAction",
    "ShiftedParams",
    "TaskObservation",
    "TaskSequence",
    "TaskSpec",
    "get_sequence",
    "list_sequences",
    "make_atari_env",
    "make_gym_env",
    "make_minatar_env",
    "register_sequence",
    "sequence_from_spec",
]
