"""The progress bar over a whole sequence (rich), redrawn at most a few times a second."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class SequenceProgress:
    """One bar: env steps done of the sequence's total, the current task, the last evaluation.

    :param title: the run's name.
    :param total: env steps of the whole sequence.
    """

    def __init__(self, title: str, total: int, last_eval: str = "-") -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("last eval: {task.fields[last_eval]}"),
            auto_refresh=False,  # redrawn from update(): a refresh thread would contend for the GIL
        )
        self.total = total
        self._id = self.bar.add_task(title, total=total, completed=0, last_eval=last_eval)
        self._last_draw = 0.0

    def __enter__(self) -> SequenceProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    @property
    def tasks(self):
        return self.bar.tasks

    def due(self) -> bool:
        """Whether a redraw is due (a quarter second since the last): the loop asks every env step."""
        return time.perf_counter() - self._last_draw >= 0.25

    def update(self, done: int, description: str) -> None:
        """Redraw at ``done`` env steps."""
        self.bar.update(self._id, completed=min(done, self.total), description=description)
        self.bar.refresh()
        self._last_draw = time.perf_counter()

    def show_eval(self, text: str) -> None:
        self.bar.update(self._id, last_eval=text)
