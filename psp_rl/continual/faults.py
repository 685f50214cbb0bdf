"""Fault injection for the kill-and-resume tests (``PSP_RL_KILL_AT``)."""

from __future__ import annotations

import os
import signal

_COUNTS: dict[str, int] = {}


def fault_point(point: str) -> None:
    """With ``PSP_RL_KILL_AT=<point>:<n>`` in the environment, the process SIGKILLs itself the
    ``n``-th time it reaches ``point`` (``learn``: an env step, ``eval``: a task evaluated,
    ``checkpoint``: inside a checkpoint write, ``task_end``: a stage finished, ``metrics``:
    before metrics.json); ``<point>:<n>:SIGINT`` sends that signal instead (the graceful-stop
    tests). Unset, this is one dictionary lookup.
    """
    target = os.environ.get("PSP_RL_KILL_AT")
    if not target or not target.startswith(point + ":"):
        return
    _COUNTS[point] = _COUNTS.get(point, 0) + 1
    _, count, *name = target.split(":")
    if _COUNTS[point] == int(count):
        os.kill(os.getpid(), getattr(signal, name[0]) if name else signal.SIGKILL)
