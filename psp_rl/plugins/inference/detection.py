"""Change detection from the agent's own returns: a one-sided CUSUM (Page, 1954) per context.

A task change the agent must react to is one that makes its current context act worse, so the
signal is the episode return under that context, compared with what the context usually gets.
"""

from __future__ import annotations

import math
from typing import Any

from psp_rl.checks import is_int, is_number


def _positive(name: str, value: float) -> float:
    if not is_number(value) or not value > 0:
        raise ValueError(f"{name}={value!r}: expected a positive number")
    return float(value)


class ReturnDrop:
    """Alarms when episode returns fall below the current context's reference.

    Per context it keeps a reference: the mean and spread of the context's episode returns (plain
    averages over its first ``warmup`` episodes, exponential averages with weight ``rate`` after).
    Each later episode with return ``r`` updates ``S = max(0, S + (mean - r) / scale - slack)``;
    the alarm is ``S > threshold``. ``scale`` is the returns' standard deviation but at least
    ``min_scale * |mean|``: a context that gets 500 every episode would otherwise alarm at the
    first episode cut short. The reference learns only while ``S == 0``, so a change under way
    does not drag it along; a context still learning (returns rising) never alarms.

    :param threshold: the alarm level, in return scales (larger: fewer false alarms, later alarms).
    :param slack: subtracted per episode, in return scales: drops smaller than this are tolerated.
    :param warmup: episodes of a context before it is watched (its reference is set by then).
    :param min_scale: the floor of ``scale``, as a fraction of the reference return.
    :param rate: weight of a new episode in the reference after warm-up.
    """

    def __init__(
        self, threshold: float = 20.0, slack: float = 1.0, warmup: int = 50, min_scale: float = 0.25, rate: float = 0.05
    ) -> None:
        self.threshold = _positive("threshold", threshold)
        if not is_number(slack) or slack < 0:
            raise ValueError(f"slack={slack!r}: expected a number >= 0")
        if not is_int(warmup) or warmup < 1:
            raise ValueError(f"warmup={warmup!r}: expected a positive int (episodes)")
        self.slack, self.warmup = float(slack), warmup
        self.min_scale, self.rate = _positive("min_scale", min_scale), _positive("rate", rate)
        self.stats: dict[int, list[float]] = {}  # context -> [episodes, mean, variance]
        self.statistic = 0.0

    def reference(self, context: int, provisional: bool = False) -> float | None:
        """The context's usual return, once it has been watched for ``warmup`` episodes (with
        ``provisional``: its mean return so far, after one episode)."""
        count, mean, _ = self.stats.get(context, (0, 0.0, 0.0))
        return mean if count >= (1 if provisional else self.warmup) else None

    def scale(self, context: int) -> float:
        _, mean, var = self.stats[context]
        return max(math.sqrt(var), self.min_scale * abs(mean), 1e-8)

    def watch(self, context: int) -> None:
        """Start watching ``context`` afresh (it was just chosen): no evidence of a change yet."""
        self.statistic = 0.0
        self.stats.setdefault(context, [0, 0.0, 0.0])

    def forget(self, context: int) -> None:
        """Drop ``context``'s reference: it is warmed up again from its next episodes."""
        self.stats.pop(context, None)

    def update(self, context: int, value: float) -> bool:
        """Add one episode return of ``context``; True when it raises the alarm (the statistic
        restarts at 0)."""
        stats = self.stats.setdefault(context, [0, 0.0, 0.0])
        count, mean, var = stats
        if count < self.warmup:  # Welford's running mean and variance
            count += 1
            delta = value - mean
            mean += delta / count
            var += (delta * (value - mean) - var) / count
            stats[:] = [count, mean, var]
            return False
        self.statistic = max(0.0, self.statistic + (mean - value) / self.scale(context) - self.slack)
        if self.statistic > self.threshold:
            self.statistic = 0.0
            return True
        if self.statistic == 0.0:
            delta = value - mean
            stats[1] = mean + self.rate * delta
            stats[2] = (1 - self.rate) * (var + self.rate * delta * delta)
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"stats": [[c, *s] for c, s in sorted(self.stats.items())], "statistic": self.statistic}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = {int(row[0]): [int(row[1]), float(row[2]), float(row[3])] for row in state["stats"]}
        self.statistic = float(state["statistic"])
