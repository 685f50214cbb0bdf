"""Choosing among stored contexts by trying them, and the env wrapper that hands the choice to the agent.

:class:`ContextTrials` runs trial episodes of candidate contexts in order; :class:`InferredTaskEnv`
writes the chosen context into every observation's ``task`` entry and reports finished episodes to
a :class:`Chooser` (task inference while training, a :class:`Deployment` while evaluating).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from psp_rl.plugins.inference.dynamics import DynamicsEvidence

SELECT = ("first_fit", "best")


def relative_return(value: float, reference: float) -> float:
    """``(value - reference) / |reference|``: 0 at the reference, -1 a full reference below it
    (meaningful for negative returns too, e.g. Acrobot's)."""
    return (value - reference) / max(abs(reference), 1e-8)


@dataclass
class ContextTrials:
    """Trial episodes of candidate contexts, in order, until one fits or all were tried.

    :param candidates: contexts to try, in order.
    :param references: each candidate's usual return.
    :param fit: a candidate fits if its mean trial return >= reference - (1 - fit) x |reference|.
    :param episodes: trial episodes per candidate.
    :param select: ``"first_fit"`` stops at the first candidate that fits; ``"best"`` tries all
        and keeps the best-scoring one.
    """

    candidates: list[int]
    references: dict[int, float]
    fit: float
    episodes: int = 1
    select: str = "first_fit"
    scores: dict[int, float] = field(default_factory=dict)
    returns: list[float] = field(default_factory=list)
    done: bool = False

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("candidates is empty: expected at least one context to try")
        if self.select not in SELECT:
            raise ValueError(f"select={self.select!r}: expected one of {list(SELECT)}")

    @property
    def context(self) -> int:
        """The context under trial (the last one tried, once done)."""
        return self.candidates[min(len(self.scores), len(self.candidates) - 1)]

    def fits(self, context: int) -> bool:
        return self.scores[context] >= -(1 - self.fit)

    @property
    def best(self) -> int:
        """The best-scoring context tried so far (ties: the earlier candidate)."""
        return max(self.scores, key=lambda c: (self.scores[c], -self.candidates.index(c)))

    @property
    def choice(self) -> int | None:
        """Once done: the chosen context, or None if none fits."""
        if self.select == "first_fit":
            return next((c for c in self.scores if self.fits(c)), None)
        return self.best if self.fits(self.best) else None

    def add(self, value: float) -> None:
        """One finished trial episode of :attr:`context`."""
        if self.done:
            raise RuntimeError("trials are done; read choice")
        self.returns.append(float(value))
        if len(self.returns) < self.episodes:
            return
        context = self.context
        self.scores[context] = relative_return(float(np.mean(self.returns)), self.references[context])
        self.returns = []
        self.done = len(self.scores) == len(self.candidates) or (self.select == "first_fit" and self.fits(context))

    def state_dict(self) -> dict[str, Any]:
        return {
            "candidates": list(self.candidates),
            "references": [[c, r] for c, r in self.references.items()],
            "fit": self.fit,
            "episodes": self.episodes,
            "select": self.select,
            "scores": [[c, s] for c, s in self.scores.items()],
            "returns": list(self.returns),
            "done": self.done,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ContextTrials:
        return cls(
            candidates=[int(c) for c in state["candidates"]],
            references={int(c): float(r) for c, r in state["references"]},
            fit=float(state["fit"]),
            episodes=int(state["episodes"]),
            select=str(state["select"]),
            scores={int(c): float(s) for c, s in state["scores"]},
            returns=[float(r) for r in state["returns"]],
            done=bool(state["done"]),
        )


class Chooser(Protocol):
    """What :class:`InferredTaskEnv` asks: which context acts, and what to do with a finished episode."""

    context: int

    def episode_end(self, value: float, context: int, clean: bool) -> None:
        """An episode returned ``value``; it started under ``context``; ``clean``: that context
        acted throughout (no switch mid-episode)."""

    def count_steps(self, steps: int) -> None:
        """``steps`` env steps were taken under :attr:`context`."""


class TransitionChooser(Chooser, Protocol):
    """A chooser that also reads the transitions (dynamics evidence), when ``reads_transitions``."""

    reads_transitions: bool

    def transitions(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, context: int) -> None:
        """One vector step's ``obs -> next_obs`` under ``actions``, taken under ``context``
        (``next_obs`` of an env whose episode ended is its last observation, not the reset)."""


class InferredTaskEnv(VecEnvWrapper):
    """Writes ``chooser.context`` into every observation's ``task`` entry and reports each
    finished episode (Monitor's ``info["episode"]``) to the chooser, and every step's transitions
    to a chooser that reads them (:class:`TransitionChooser`).

    A context chosen during a step applies from that step's observations on: to new episodes and
    to the rest of running ones (those are then not ``clean``).
    """

    def __init__(self, venv: VecEnv, chooser: Chooser) -> None:
        super().__init__(venv)
        self.chooser = chooser
        self.started = np.zeros(self.num_envs, dtype=np.int64)  # the context each episode started with
        self.clean = np.ones(self.num_envs, dtype=bool)
        self.reads_transitions = bool(getattr(chooser, "reads_transitions", False))
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def _label(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.reads_transitions:
            self._obs = np.array(obs["obs"])  # (a copy: the next step may write into the env's buffer)
        obs["task"] = np.full_like(obs["task"], self.chooser.context)
        return obs

    def reset(self) -> dict[str, np.ndarray]:
        obs = self.venv.reset()
        self.started[:], self.clean[:] = self.chooser.context, True
        return self._label(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.array(actions)
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.chooser.count_steps(self.num_envs)
        if self.reads_transitions and self._obs is not None:
            next_obs = np.array(obs["obs"])
            for i, info in enumerate(infos):
                if dones[i] and "terminal_observation" in info:
                    next_obs[i] = info["terminal_observation"]["obs"]
            self.chooser.transitions(self._obs, self._actions, next_obs, self.chooser.context)  # type: ignore[attr-defined]
        ended = [i for i, info in enumerate(infos) if "episode" in info]
        for i in ended:
            self.chooser.episode_end(float(infos[i]["episode"]["r"]), int(self.started[i]), bool(self.clean[i]))
        context = self.chooser.context
        self.started[ended], self.clean[ended] = context, True
        self.clean &= self.started == context
        return self._label(obs), rewards, dones, infos


class FixedContext:
    """A chooser that always answers ``context`` (to measure a task under one context)."""

    def __init__(self, context: int) -> None:
        self.context = context

    def episode_end(self, value: float, context: int, clean: bool) -> None:
        pass

    def count_steps(self, steps: int) -> None:
        pass


class DynamicsDeployment:
    """Evaluation's chooser under dynamics evidence: the acting context plays the first ``window``
    transitions, then the stored context whose dynamics model predicts them best plays on, or the
    context ``plays`` names for it (return_check's answers; no fresh context: nothing learns).
    With ``usual_error`` (each candidate's usual error; ``inference.count_fit``, whose evidence keeps
    the frames' channel counts) a candidate scores its window error over its usual one times its counts'
    distance over theirs (:meth:`DynamicsEvidence.count_ratios`): on MinAtar an Asterix episode's first
    10 transitions are predicted best by Seaquest's model in absolute terms and by Freeway's over their
    usual errors, and Asterix's own context is named by its counts (hidden-ids-minatar's README).
    Without candidates, or before the errors' units are fixed, the acting context plays throughout."""

    reads_transitions = True

    def __init__(
        self,
        context: int,
        evidence: DynamicsEvidence | None,
        candidates: list[int],
        window: int,
        plays: dict[int, int] | None = None,
        usual_error: dict[int, float] | None = None,
    ) -> None:
        self.context, self.evidence, self.candidates, self.window = context, evidence, candidates, window
        self.plays, self.usual_error = dict(plays or {}), usual_error
        self.rows: list[tuple[np.ndarray, int, np.ndarray]] = []
        self.decided = not candidates or evidence is None or not evidence.scale.fixed

    def transitions(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, context: int) -> None:
        if self.decided:
            return
        self.rows.extend(zip(obs, np.asarray(actions).reshape(-1), next_obs, strict=True))
        if len(self.rows) >= self.window:
            assert self.evidence is not None  # (else decided at construction)
            window = [np.stack(col) for col in zip(*self.rows[: self.window], strict=True)]
            score = self.evidence.errors(*window, self.candidates)
            if self.usual_error is not None:
                score *= self.evidence.count_ratios(window[0], self.candidates)
                score /= np.array([self.usual_error[c] for c in self.candidates])
            task = self.candidates[int(np.argmin(score))]
            self.context = self.plays.get(task, task)
            self.decided = True

    def episode_end(self, value: float, context: int, clean: bool) -> None:
        pass

    def count_steps(self, steps: int) -> None:
        pass


class Deployment:
    """Evaluation's chooser: trials of the stored contexts (one episode each, the acting context
    first) at the start of a task, then the chosen context; no fresh context (nothing learns).
    Without ``trials`` (no context has a reference yet) the acting context plays throughout."""

    def __init__(self, context: int, trials: ContextTrials | None = None) -> None:
        self.trials = trials
        self.context = context if trials is None else trials.context

    def episode_end(self, value: float, context: int, clean: bool) -> None:
        if self.trials is None or self.trials.done or not clean or context != self.context:
            return
        self.trials.add(value)
        if self.trials.done:
            choice = self.trials.choice
            self.context = self.trials.best if choice is None else choice
        else:
            self.context = self.trials.context

    def count_steps(self, steps: int) -> None:
        pass
