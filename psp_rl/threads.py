"""Torch's intra-op threads, set by every run, benchmark and test rather than left to chance.

Measured on a 2-core AMD EPYC: a run alone is as fast with 1 thread as with torch's default 2,
but as soon as anything else shares the cores 2-thread runs crawl (two vanilla SB3 DQN CartPole
runs side by side: 401 + 405 env-steps/s with 2 threads each, 1,677 + 1,658 with one). Results
are identical either way, so runs default to one thread.
"""

from __future__ import annotations

from typing import Literal

import torch

from psp_rl.checks import is_int

Threads = int | Literal["auto"]

# What torch chose at start-up (its default, or OMP_NUM_THREADS): what "auto" restores.
_TORCH_DEFAULT = torch.get_num_threads()


def check_threads(threads: object) -> Threads:
    """``threads`` if it is a positive int or ``"auto"``, else ``ValueError`` naming it (the config's
    ``threads`` is checked here too)."""
    if threads != "auto" and (not is_int(threads) or threads < 1):
        raise ValueError(f"threads={threads!r}: expected a positive int or 'auto'")
    return threads


def set_threads(threads: Threads) -> int:
    """Set torch's intra-op threads and return the previous number.

    :param threads: a positive int, or ``"auto"`` for torch's own default (the number of cores,
        unless ``OMP_NUM_THREADS`` said otherwise when the process started).
    """
    check_threads(threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(_TORCH_DEFAULT if threads == "auto" else threads)
    return previous
