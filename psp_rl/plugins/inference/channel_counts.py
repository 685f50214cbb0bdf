"""Evidence for a context from what its frames show: how many pixels each channel lights.

A model of the frames' change names the game of a window when stored models are compared, but it
cannot always tell that the acting game has ended: from MinAtar's Freeway, whose cars move in every
row, a quieter game's windows read 0.2-0.5x Freeway's usual error, and no statistic of the acting
model alone separated every change of game from a game's own play
(``experiments/results/hidden-ids-minatar/probe``). The games differ plainly in what their frames
hold: Freeway always shows 8 cars and one chicken, Breakout ~30 bricks, a paddle and a ball, Asterix
a few enemies and no speed channels. So each context also keeps the mean and covariance of its frames'
per-channel pixel counts (``(C + 1)^2`` numbers for ``C`` channels, no frames), and a window's mean
Mahalanobis distance from them, over the distance the context's own frames lie at (:meth:`ChannelCounts.usual`),
says how unlike the context's frames it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def gaussian_of(second: np.ndarray, first: np.ndarray, count: float, ridge: float) -> tuple[np.ndarray, ...]:
    """The mean, covariance and ridge-regularized covariance of rows summed as ``second`` (``sum x x^T``) and
    ``first`` (``sum x``) over ``count`` rows."""
    mean = first / count
    covariance = second / count - np.outer(mean, mean)
    return mean, covariance, covariance + ridge * np.eye(len(mean))


def mean_distance(x: np.ndarray, mean: np.ndarray, regularized: np.ndarray) -> float:
    """The rows of ``x``'s mean squared Mahalanobis distance from ``mean`` under ``regularized``, per dimension."""
    z = x - mean
    return float(np.mean(np.sum(z * np.linalg.solve(regularized, z.T).T, axis=1)) / len(mean))


class ChannelCounts:
    """Per context, the first and second moments of a frame's per-channel sums (lit pixels for MinAtar's
    binary frames), as sufficient statistics.

    :param channels: the frame's first axis (MinAtar's channels; Atari's stacked frames).
    :param num_tasks: contexts.
    :param ridge: added to every channel's variance, in squared counts, so a count that never moved in what a
        context saw has a finite spread. 1 (a change of one pixel is one spread): Freeway's speed channels hold
        still for an episode and move at the next (random play), and at 0.01 a young Freeway context read the next
        episode's frames 600x farther than usual; at 1 the games still lie apart (MinAtar, the announced run's
        policy: 2-600x between games against up to 3.6x within one; a context fitted on random play reads the
        trained play of its own game up to 5-40x farther, so a context's counts must keep learning with it).
    """

    def __init__(self, channels: int, num_tasks: int, ridge: float = 1.0) -> None:
        if not ridge > 0:
            raise ValueError(f"channel counts ridge={ridge!r}: expected a positive number")
        self.channels, self.ridge = channels, float(ridge)
        self.moments = np.zeros((num_tasks, channels + 1, channels + 1))  # [counts, 1]^T [counts, 1]

    def counts(self, obs: np.ndarray) -> np.ndarray:
        """``(n, channels)``: each frame's sum per channel."""
        obs = np.asarray(obs, dtype=np.float64)
        return obs.reshape(len(obs), self.channels, -1).sum(axis=2)

    def observe(self, obs: np.ndarray, context: int) -> None:
        x = np.hstack([self.counts(obs), np.ones((len(obs), 1))])
        self.moments[context] += x.T @ x

    def forget(self, context: int) -> None:
        self.moments[context] = 0.0

    def _statistics(self, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``context``'s mean counts, their covariance, and it with the ridge added."""
        moments = self.moments[context]
        return gaussian_of(moments[:-1, :-1], moments[:-1, -1], max(moments[-1, -1], 1.0), self.ridge)

    def distances(self, obs: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
        """Each context's mean squared Mahalanobis distance of the window's counts, per channel."""
        counts, out = self.counts(obs), []
        for context in contexts:
            mean, _, regularized = self._statistics(context)
            out.append(mean_distance(counts, mean, regularized))
        return np.array(out)

    def usual(self, context: int) -> float:
        """The distance ``context``'s own frames lie at on average (the trace of the regularized covariance's
        inverse times the covariance, per channel), at least that of one channel one spread away: a game whose
        counts barely move (Breakout's random play: a paddle, a ball, ~30 bricks) would otherwise make any
        change infinitely far."""
        _, covariance, regularized = self._statistics(context)
        return max(float(np.trace(np.linalg.solve(regularized, covariance))), 1.0) / self.channels

    def state_dict(self) -> dict[str, Any]:
        return {"moments": self.moments.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.moments[:] = state["moments"]
