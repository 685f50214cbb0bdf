"""psp_rl: continual reinforcement learning with Parameter Superposition on Stable-Baselines3."""

from psp_rl.contexts import CONTEXT_KINDS, drift_context, make_context, make_contexts
from psp_rl.layers import SuperposedConv2d, SuperposedLinear

__version__ = "0.1.0"

__all__ = [
    "CONTEXT_KINDS",
    "SuperposedConv2d",
    "SuperposedLinear",
    "drift_context",
    "make_context",
    "make_contexts",
]
