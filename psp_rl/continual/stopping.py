"""Stopping a run gracefully on SIGINT/SIGTERM, so that ``--resume`` continues exactly."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any


class GracefulStop:
    """Turns the first SIGINT/SIGTERM into a stop request; a second one raises ``KeyboardInterrupt``.

    The loop asks :meth:`keep_training` at every env step. A request is honoured at a chunk
    boundary, where a resume continues exactly: if the current chunk ends within ``within_s``
    it is finished (and saved), else it is abandoned, and the resume redoes it from the last
    checkpoint (also exact, as after a kill).

    :param within_s: how far away (in seconds, at the current pace) a chunk end may be to be reached.
    """

    def __init__(self, within_s: float = 5.0) -> None:
        self.within_s = within_s
        self.requested: str | None = None  # the signal's name once one arrived
        self.abandon_chunk: bool | None = None  # decided once, when the request is first seen
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only: Python sets signal handlers there alone)."""

        def request_stop(signum: int, _frame: Any) -> None:
            if self.requested:  # a second Ctrl-C: stop now; the last checkpoint stays the resume point
                raise KeyboardInterrupt
            self.requested = signal.Signals(signum).name

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, request_stop)

    def restore(self) -> None:
        """Put the handlers back as they were."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def keep_training(self, chunk: tuple[int, int, float], steps_now: int, overall_rate: float) -> bool:
        """False once a stop is requested and the chunk's end is further than ``within_s`` away.

        :param chunk: (steps at its start, steps at its end, clock at its start).
        :param steps_now: env steps done so far.
        :param overall_rate: the run's env-steps/s so far (used when the chunk is too young to tell).
        """
        if not self.requested:
            return True
        if self.abandon_chunk is None:
            start_steps, end_steps, start = chunk
            done, elapsed = steps_now - start_steps, time.perf_counter() - start
            rate = done / max(elapsed, 1e-9) if done >= 100 else overall_rate
            remaining_s = (end_steps - steps_now) / rate if rate > 0 else float("inf")
            self.abandon_chunk = remaining_s > self.within_s
        return not self.abandon_chunk
