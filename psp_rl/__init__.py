"""psp_rl: continual reinforcement learning with Parameter Superposition on Stable-Baselines3.

The layers and contexts load on first use, so ``import psp_rl.envs`` (gymnasium only) does not
import torch: subprocess env workers and env-only tools start without it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CONTEXTS": "psp_rl.contexts",
    "CONTEXT_KINDS": "psp_rl.contexts",
    "PSPSettings": "psp_rl.settings",
    "drift_context": "psp_rl.contexts",
    "make_context": "psp_rl.contexts",
    "make_contexts": "psp_rl.contexts",
    "SuperposedConv2d": "psp_rl.layers",
    "SuperposedLinear": "psp_rl.layers",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'psp_rl' has no attribute {name!r}")
