"""Task inference under hidden task ids: detect a change, choose a context, keep learning.

With ``sequence.task_ids: hidden`` every observation carries task 0 and the agent is told of no
boundary. :class:`TaskInference` (a loop callback) decides which context acts instead:

1. it watches the episode returns of the acting context (:class:`~psp_rl.plugins.inference.detection.ReturnDrop`);
2. on an alarm, it *tries* contexts for a few episodes each, the current one first, then the
   others most recently used first (:class:`~psp_rl.plugins.inference.context_trials.ContextTrials`),
   while the agent's updates are held so trial episodes train nothing;
3. it keeps the first stored context that fits (its trial return is within ``1 - fit`` of that
   context's usual return), or takes a fresh context when none does; once all ``max_tasks``
   contexts are taken it keeps the best-scoring stored one (logged as ``exhausted``).

With ``evidence: dynamics`` steps 2-3 read the dynamics instead of returns, which cannot tell apart tasks that a
good policy plays equally well: every context keeps a ridge model of the observation's change
(:class:`~psp_rl.plugins.inference.dynamics.DynamicsEvidence`, fed by the transitions the context acts in), and
at an alarm the context whose model predicts the last ``window`` transitions best (by ``choice_error``: their
mean or median error) is taken at once (no trial episodes, no held updates) if its error is within ``error_fit``
times its usual one; else a fresh context (``confirm``: it first acts for one window, updates held, and that
window judges the fit). The same evidence raises alarms (``surprises`` windows in a row beyond ``error_fit``; a
usual error below ``error_floor`` counts as the floor; ``surprise_below``: or below 1/``error_fit`` of it, and
such a context does not fit at an alarm either; ``name_windows``: or another stored context's model predicts the
window ``error_fit`` times better; ``count_fit``: or its frames' per-channel pixel counts lie ``count_fit`` times
farther than the context's own, and such a context does not fit at an alarm either; ``return_alarms: false``
leaves it the only alarm) and keeps another task's transitions out of a context's model
(:meth:`TaskInference.transitions`).
With ``return_check``, a stored context the dynamics name is first checked by its returns (trial episodes,
updates held, as with ``evidence: returns``): a task's own context can play it worse than another task's
context, and the first candidate that plays it within ``fit`` of its usual return acts for that task from then
on, while the task's own dynamics model keeps watching it (:attr:`TaskInference.plays`).

The choice reaches the network by rewriting the ``task`` entry of the observations
(:class:`~psp_rl.plugins.inference.context_trials.InferredTaskEnv`), so any agent whose networks read
that entry works unchanged. Evaluation chooses the same way, without a fresh context (trial episodes,
or the acting context for ``deploy_window`` transitions), and what it plays first counts in the return:
what a deployed agent would get. The loop still knows the true schedule; this module uses it only to
score the detector (delays, false alarms, which context each returning task got) in ``metrics.json``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from psp_rl.checks import check_int
from psp_rl.continual.callbacks import ContinualCallback, LoopView
from psp_rl.continual.evaluation import evaluate_tasks
from psp_rl.continual.seeds import Stream
from psp_rl.continual.settings import validated
from psp_rl.plugins.inference.context_trials import (
    ContextTrials,
    Deployment,
    DynamicsDeployment,
    FixedContext,
    InferredTaskEnv,
    relative_return,
)
from psp_rl.plugins.inference.detection import ReturnDrop
from psp_rl.plugins.inference.dynamics import DynamicsEvidence, check_spaces
from psp_rl.plugins.inference.scoring import score_inference
from psp_rl.plugins.inference.settings import InferenceConfig

# The settings TaskInference keeps as attributes of the same names (InferenceConfig documents each).
READ_AS_ATTRIBUTES = {"order", "fit", "select", "trial_episodes", "max_delay", "evidence", "window", "error_fit",
    "dynamics_warmup", "window_error", "exhausted_model", "error_floor", "kept_return", "surprises", "confirm",
    "error_alarm", "switch_confirm_steps", "task_steps", "deploy_window", "floor_in_choice", "choice_error",
    "return_alarms", "return_check", "check_exhausted", "check_reference", "surprise_below",
    "name_windows", "count_fit"}  # fmt: skip


def check_evidence_fits(
    evidence: str, count_fit: float | None, observations: spaces.Space, actions: spaces.Space
) -> None:
    """``ValueError`` naming the setting, if the evidence ``evidence`` (and ``count_fit``) asks of the task
    sequence's ``obs`` and action spaces what they cannot give: a run checks it before it starts (a config error,
    exit 2, no run dir), the callback again when it builds the models."""
    if evidence != "dynamics":
        return
    if count_fit is not None and len(getattr(observations, "shape", None) or ()) < 2:
        raise ValueError(
            f"inference.count_fit={count_fit}: observation space {observations}: expected frames (2+ axes: the "
            "counts are per channel)"
        )
    try:
        check_spaces(observations, actions)
    except ValueError as exc:
        raise ValueError(f"inference.evidence='dynamics': {exc}") from None


class TaskInference(ContinualCallback):
    """Chooses the acting context when task ids are hidden (see the module's docstring).

    :param settings: the fields of :class:`~psp_rl.plugins.inference.settings.InferenceConfig` (the
        detector's ``threshold``, ``slack``, ``warmup_episodes``, ``min_scale``; the trials' ``fit``,
        ``trial_episodes``, ``select``, ``order``; the scoring's ``max_delay``), defaults and checks
        there; a bad one raises ``ValueError`` naming it.
    :param probe_episodes: episodes measuring, at each true switch, the new task under the old
        context (a switch that context handles is not one to detect).
    """

    name = "TaskInference"

    def __init__(self, probe_episodes: int = 5, **settings: Any) -> None:
        config = validated(InferenceConfig, "inference", settings)
        self.detector = ReturnDrop(config.threshold, config.slack, config.warmup_episodes, config.min_scale)
        vars(self).update(config.model_dump(include=READ_AS_ATTRIBUTES))
        self.reads_transitions = self.evidence == "dynamics"  # (InferredTaskEnv reports every step's transitions)
        self.dynamics: DynamicsEvidence | None = None
        self.surprises_in_a_row = 0
        # error_alarm cusum: a CUSUM per context on each window's log error (errors span orders of magnitude).
        self.error_detector = ReturnDrop(config.error_threshold, config.slack, config.error_warmup, min_scale=1e-3)
        self.pending: list[tuple[np.ndarray, int, np.ndarray]] = []  # the acting context's newest transitions
        self.recent: list[tuple[np.ndarray, int, np.ndarray]] = []  # its last full window (what a choice scores)
        self.usual_error: dict[int, float] = {}  # each context's error on its own windows (a running average)
        self.confirming: tuple[int, int] | None = None  # (context on probation, context before the alarm)
        self.since_switch: int | None = None  # env steps since the last switch the agent has not confirmed
        self._dynamics_state: dict[str, Any] | None = None
        self.probe_episodes = check_int("probe_episodes", probe_episodes)
        self.context = 0  # the context that acts (its policy plays, its returns are watched)
        self.model_context = 0  # the context whose dynamics model reads the acting windows
        # return_check: a task (named by its dynamics model's context) played by another context's policy
        self.plays: dict[int, int] = {}
        self.checking: tuple[int, str, int] | None = None  # return_check: the dynamics' choice, how, acting before
        self.used: list[int] = [0]  # contexts taken, least recently chosen first
        self.trials: ContextTrials | None = None
        self.detections: list[list[Any]] = []  # [step, acting context, true task, source: returns|dynamics]
        self.choices: list[list[Any]] = []  # [step, chosen context, how: kept|stored|fresh|exhausted|returns]
        self.switches: list[dict[str, Any]] = []  # one per stage after the first (scoring)
        self.stage_contexts: list[list[int]] = []  # per stage: env steps under each context
        self._deployments: dict[str, Deployment] = {}  # eval task -> its deployment at the last evaluation
        self._last_eval: dict[str, float] = {}
        self._restored = False
        self.loop: LoopView | None = None

    def before_training(self, loop: LoopView) -> None:
        self.loop = loop
        if not hasattr(loop.agent, "updates_held"):
            raise ValueError(
                f"task inference: agent {type(loop.agent).__name__} cannot hold its updates during context trials; "
                "expected a continual agent (ContinualPPO, ContinualDQN)"
            )
        loop.agent.updates_held = self.trials is not None or self.confirming is not None
        self._build_dynamics(loop)
        if self.task_steps is None:  # (a resumed run too: it is no saved state)
            self.task_steps = round(sum(task.steps for task in loop.sequence) / len(loop.sequence))
        if not self._restored:
            self.detector.watch(self.context)
            if hasattr(loop.agent, "on_task_start"):  # the agent's first context, not a signalled boundary
                loop.agent.on_task_start(self.context, self.task_steps)

    def _build_dynamics(self, loop: LoopView) -> None:
        """The dynamics models, once: for training, and for ``psp-rl evaluate`` of a checkpoint (no training)."""
        if self.evidence != "dynamics" or self.dynamics is not None:
            return
        observations = loop.sequence.spaces[0]["obs"]
        check_evidence_fits(self.evidence, self.count_fit, observations, loop.sequence.spaces[1])
        try:
            self.dynamics = DynamicsEvidence(
                observations, loop.sequence.spaces[1], loop.sequence.max_tasks,
                warmup=self.dynamics_warmup, window_error=self.window_error, counts=self.count_fit is not None,
            )  # fmt: skip
        except ValueError as exc:
            raise ValueError(f"inference.evidence='dynamics': {exc}") from None
        if self._dynamics_state is not None:
            self.dynamics.load_state_dict(self._dynamics_state)

    def wrap_env(self, loop: LoopView, env: VecEnv, task: int, *, training: bool) -> VecEnv:
        if training:
            return InferredTaskEnv(env, self)
        self._build_dynamics(loop)  # (psp-rl evaluate starts no training)
        deployment = self._deployment()
        self._deployments[loop.sequence[task].name] = deployment
        return InferredTaskEnv(env, deployment)

    def before_task(self, loop: LoopView, stage: int, task: int) -> None:
        self.stage_contexts.append([0] * loop.sequence.max_tasks)
        if stage == 0:
            return
        # Scoring only: how the new task does under the context that is acting now.
        (result,) = evaluate_tasks(
            loop.agent,
            loop.sequence,
            episodes=self.probe_episodes,
            seed=lambda t: loop.stream_seed(Stream.INFERENCE, stage, t),
            tasks=[task],
            max_episode_steps=loop.eval.max_episode_steps,
            wrap=lambda env, _: InferredTaskEnv(env, FixedContext(self.context)),
        )
        self.switches.append(
            {
                "stage": stage,
                "step": int(loop.agent.num_timesteps),
                "from_task": loop.sequence.schedule[stage - 1],
                "to_task": task,
                "context": self.context,
                "return_under_old_context": result.mean,
            }
        )

    def after_eval(self, loop: LoopView, rows: list[dict[str, Any]]) -> None:
        self._last_eval = {row["eval_task"]: row["mean"] for row in rows}
        for name, deployment in self._deployments.items():
            loop.writer.add_scalar(f"eval/{name}/context", deployment.context, loop.agent.num_timesteps)

    def after_task(self, loop: LoopView, stage: int, task: int) -> None:
        contexts = self.stage_contexts[stage]
        loop.writer.add_scalar("inference/stage_context", int(np.argmax(contexts)), loop.agent.num_timesteps)
        if stage == 0:
            return
        switch = self.switches[-1]
        trained = self._last_eval[loop.sequence[task].name]
        switch["trained_return"] = trained
        # A switch the acting context handles (>= half the new task's trained return) is not a miss.
        switch["noticeable"] = bool(relative_return(switch["return_under_old_context"], trained) < -0.5)
        hits = [d[0] for d in self.detections if switch["step"] <= d[0]]
        switch["detected_step"] = hits[0] if hits else None
        if hits:
            loop.writer.add_scalar("inference/delay", hits[0] - switch["step"], loop.agent.num_timesteps)

    # -------------------------------------------------- the chooser protocol
    def count_steps(self, steps: int) -> None:
        if self.stage_contexts:
            self.stage_contexts[-1][self.context] += steps
        if self.since_switch is not None:
            self.since_switch += steps
            if self.since_switch >= self.switch_confirm_steps:
                self.since_switch = None
                if self.loop is not None and hasattr(self.loop.agent, "confirm_switch"):
                    self.loop.agent.confirm_switch()

    def episode_end(self, value: float, context: int, clean: bool) -> None:
        if not clean or context != self.context or self.confirming is not None:
            return  # started under another context (or one on probation): it tells nothing about this one
        step = self._step()
        if self.trials is None:
            alarm = self.detector.update(context, value)  # (updated either way: its statistic is logged)
            if self.loop is not None:
                self.loop.writer.add_scalar("inference/cusum", self.detector.statistic, step)
            if alarm and self.return_alarms:
                self._start_trials(step, "returns")
            return
        self.trials.add(value)
        if self.trials.done:
            self._choose(step)
        else:
            self.context = self.trials.context

    def transitions(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, context: int) -> None:
        """Dynamics evidence, one ``window`` of the acting context's transitions at a time: scored
        under its model before the model learns it (so the error is out of sample). A window whose
        error is beyond ``error_fit`` times the context's usual one is a surprise and stays out of
        the model (another task's dynamics do not pollute it); ``surprises`` in a row are an alarm,
        as a return drop is, so a switch that leaves the return up is seen too (``error_alarm:
        cusum``: a CUSUM on the windows' log errors decides both instead)."""
        if self.dynamics is None or self.trials is not None:
            return
        context = self.model_context  # (the acting context's, unless return_check gave the task another policy)
        self.pending.extend(zip(obs, np.asarray(actions).reshape(-1), next_obs, strict=True))
        if len(self.pending) < self.window:
            return
        self.recent = list(self.pending)
        self.pending.clear()
        window = [np.stack(col) for col in zip(*self.recent, strict=True)]
        if self.confirming is not None:
            self._confirm(float(self.dynamics.errors(*window, [context])[0]))
            return
        usual = self.usual_error.get(context)
        if usual is None:  # a context still warming up learns everything
            self.dynamics.observe(*window, context)
            if self.dynamics.scale.fixed and self.dynamics.model.count[context] >= self.dynamics_warmup:
                self.usual_error[context] = float(self.dynamics.errors(*window, [context])[0])
            return
        # name_windows: the other stored contexts score the same window in the same call (one embedding)
        others = [c for c in self.used if c != context and c in self.usual_error] if self.name_windows else []
        error, *other_errors = self.dynamics.errors(*window, [context, *others])
        counts = self._count_ratio(window[0], context) if self.count_fit is not None else None
        step = self._step()
        if self.loop is not None:
            self.loop.writer.add_scalar("inference/dynamics_error", error / usual, step)
            if counts is not None:
                self.loop.writer.add_scalar("inference/count_distance", counts, step)
        if self.error_alarm == "cusum":
            alarm = self.error_detector.update(context, -math.log(max(error, self.error_floor, 1e-300)))
            learn = not alarm and self.error_detector.statistic == 0.0
        else:
            # name_windows: another stored context's model predicts the window error_fit times better
            named_elsewhere = bool(other_errors) and min(other_errors) * self.error_fit < error
            learn = self._fits(error, context, counts=counts) and not named_elsewhere
            self.surprises_in_a_row = 0 if learn else self.surprises_in_a_row + 1
            alarm = self.surprises_in_a_row >= self.surprises
        if alarm:
            self._start_trials(step, "dynamics")
        elif learn:
            self.dynamics.observe(*window, context)
            self.usual_error[context] = usual + 0.05 * (error - usual)

    # ----------------------------------------------------------- decisions
    def _references(self, provisional: bool = False) -> dict[int, float]:
        """The usual return of every context taken that has one (:meth:`ReturnDrop.reference`)."""
        refs = {c: self.detector.reference(c, provisional) for c in self.used}
        return {c: r for c, r in refs.items() if r is not None}

    def _candidates(self, acting: int, refs: dict[int, float]) -> list[int]:
        """``acting`` first, then the others in :attr:`order`: those with a reference in ``refs``."""
        others = [c for c in self._by_order() if c != acting and c in refs]
        return ([acting] if acting in refs else []) + others

    def _by_order(self) -> list[int]:
        """The contexts taken, in the order they are tried (:attr:`order`)."""
        return list(reversed(self.used)) if self.order == "recent" else list(self.used)

    def _start_trials(self, step: int, source: str) -> None:
        """An alarm at ``step`` from ``source``: the ``returns`` (a drop) or the ``dynamics`` (surprises)."""
        stage = len(self.stage_contexts) - 1  # scoring only: the task truly being trained
        task = self.loop.sequence.schedule[stage] if self.loop is not None and stage >= 0 else -1
        self.detections.append([step, self.context, int(task), source])
        if self.loop is not None:
            self.loop.writer.add_scalar("inference/detections", len(self.detections), step)
        if self.evidence == "dynamics":
            if self.confirm:
                self._probation()
            elif self.return_check:
                self._check_returns(*self._dynamics_choice(), step)
            else:
                self._adopt(*self._dynamics_choice(), step)
            return
        refs = self._references()
        self.trials = ContextTrials(
            self._candidates(self.context, refs), refs, self.fit, self.trial_episodes, self.select
        )
        self.context = self.trials.context
        self._hold(True)

    def _choose(self, step: int) -> None:
        assert self.trials is not None
        if self.checking is not None:  # return_check: the first candidate that fits plays; none: the dynamics' choice
            (choice, how, before), self.checking = self.checking, None
            plays = choice if self.trials.choice is None else self.trials.choice
            if how == "exhausted" and self.check_exhausted == "move":  # the player's own model re-fits to the task
                choice = plays
            if plays == before and not (how == "exhausted" and plays == choice):
                label = "kept"  # the context acting before the alarm plays on
            else:
                label = how if plays == choice else "returns"  # returns: another task's context plays it
            self._adopt(choice, how, step, plays=plays, label=label)
            return
        before = self.trials.candidates[0]
        choice, how = self.trials.choice, "stored"
        if choice is None:
            choice, how = (free[0], "fresh") if (free := self._free()) else (self.trials.best, "exhausted")
        elif choice == before:
            how = "kept"
        self._adopt(choice, how, step)

    def _best_stored(self) -> tuple[int, float] | None:
        """The stored context whose model predicts the last window best, and its error (None:
        nothing to compare with yet)."""
        candidates = [c for c in self.used if c in self.usual_error]
        if not candidates or len(self.recent) < self.window:
            return None
        assert self.dynamics is not None
        window = (np.stack(col) for col in zip(*self.recent, strict=True))
        errors = self.dynamics.errors(*window, candidates, reduce=self.choice_error)
        return candidates[int(np.argmin(errors))], float(errors.min())

    def _fit_or_fresh(self, best: int, error: float, before: int) -> tuple[int, str]:
        """``best`` if the last window fits it (:meth:`_fits`); else a fresh context (``best``, ``exhausted``, if
        none)."""
        counts = None
        if self.count_fit is not None and self.recent:
            counts = self._count_ratio(np.stack([o for o, _, _ in self.recent]), best)
        if self._fits(error, best, floor=self.floor_in_choice, counts=counts):
            return best, "kept" if best == before else "stored"
        return (free[0], "fresh") if (free := self._free()) else (best, "exhausted")

    def _fits(self, error: float, context: int, floor: bool = True, counts: float | None = None) -> bool:
        """A window's ``error`` is usual for ``context``: within ``error_fit`` x its usual error (or the floor),
        and with ``surprise_below`` above 1/``error_fit`` of it (a quieter task is another task too); with
        ``count_fit``, its frames' channel ``counts`` lie within ``count_fit`` x their usual distance too."""
        usual = self.usual_error[context]
        above = not self.surprise_below or error * self.error_fit >= usual
        near = counts is None or counts <= self.count_fit
        return near and above and error <= self.error_fit * max(usual, self.error_floor if floor else 0.0)

    def _count_ratio(self, obs: np.ndarray, context: int) -> float:
        """``count_fit``: how far the window's frames' channel counts lie from ``context``'s, over how far its own
        lie (:meth:`DynamicsEvidence.count_ratios`)."""
        assert self.dynamics is not None
        return float(self.dynamics.count_ratios(obs, [context])[0])

    def _dynamics_choice(self) -> tuple[int, str]:
        """Dynamics evidence at an alarm: the best stored context on the last window, if it fits."""
        found = self._best_stored()
        if found is None:
            return self.model_context, "kept"
        return self._fit_or_fresh(*found, before=self.model_context)

    def _probation(self) -> None:
        """``confirm``: the stored context whose model predicts the last window best acts for one
        window with the agent's updates held, and that window, played by its own policy, judges the
        fit (:meth:`_confirm`); the window that raised the alarm was played by the acting context's
        policy, whose states can be unusual for every model (a falling pole)."""
        found = self._best_stored()
        if found is None:
            self._adopt(self.model_context, "kept", self._step())
            return
        self.confirming = (found[0], self.model_context)
        self.context = self.model_context = found[0]
        self.pending = []
        self._hold(True)

    def _confirm(self, error: float) -> None:
        """The probation window's error under its context decides (:meth:`_fit_or_fresh`)."""
        assert self.confirming is not None
        best, before = self.confirming
        self.confirming = None
        self._adopt(*self._fit_or_fresh(best, error, before), self._step())

    def _check_returns(self, choice: int, how: str, step: int) -> None:
        """``return_check``: a stored context the dynamics chose (``stored`` or ``exhausted``) first plays
        trial episodes, then the other stored contexts, until one plays within ``fit`` of its usual return
        (updates held); kept and fresh choices are adopted at once, as is a choice with nothing to compare
        (and an exhausted one with ``check_exhausted: skip``)."""
        if how not in (("stored",) if self.check_exhausted == "skip" else ("stored", "exhausted")):
            self._adopt(choice, how, step)
            return
        refs = self._references()
        first = self.plays.get(choice, choice) if how == "stored" else choice
        candidates = [c for c in dict.fromkeys([first, choice, *self._by_order()]) if c in refs]
        if not candidates:
            self._adopt(choice, how, step, plays=choice)
            return
        if self.check_reference == "task":  # no candidate passes below the task's own bar
            refs = {c: max(r, refs[candidates[0]]) for c, r in refs.items()}
        self.checking = (choice, how, self.context)
        self.trials = ContextTrials(candidates, refs, self.fit, self.trial_episodes)
        self.context = self.trials.context
        self._hold(True)

    def _adopt(self, choice: int, how: str, step: int, plays: int | None = None, label: str | None = None) -> None:
        """From now on ``choice``'s dynamics model reads the task (``how``: kept, stored, fresh or
        exhausted) and the context that plays it acts: ``plays`` (return_check's answer, ``choice``
        itself included), else the one that played the task before (:attr:`plays`), else ``choice``.
        ``label`` (default ``how``) is what :attr:`choices` records; the agent is told of a switch
        unless it is ``kept``."""
        self.trials = None
        self.pending, self.surprises_in_a_row = [], 0  # a window holds one context's transitions
        label = how if label is None else label
        if how == "exhausted" or plays is not None:  # (exhausted: the model reads another task now)
            self.plays.pop(choice, None)
        if plays is not None and plays != choice:
            self.plays[choice] = plays
        acting = self.plays.get(choice, choice)
        if how == "exhausted":  # it now learns another task: its old references say nothing
            self.usual_error.pop(choice, None)
            self.error_detector.forget(choice)
            self.detector.forget(choice)
            if self.dynamics is not None and self.exhausted_model == "forget":
                self.dynamics.forget(choice)
        if label == "kept" and self.kept_return == "reset":  # the same task, by the evidence: its return moved
            self.detector.forget(acting)
        self.error_detector.watch(choice)
        self.detector.watch(acting)
        self.context, self.model_context = acting, choice
        self.used = [c for c in self.used if c not in (choice, acting)] + list(dict.fromkeys([choice, acting]))
        self.choices.append([step, acting, label])
        self._hold(False)
        if self.loop is not None:
            self.loop.writer.add_scalar("inference/context", acting, step)
            if label != "kept" and hasattr(self.loop.agent, "on_inferred_switch"):
                self.loop.agent.on_inferred_switch(acting, self.task_steps)  # (as the loop at an announced one)
                self.since_switch = 0

    def _step(self) -> int:
        """The agent's env steps so far (0 without a loop: the unit tests drive the hooks by hand)."""
        return int(self.loop.agent.num_timesteps) if self.loop is not None else 0

    def _hold(self, held: bool) -> None:
        if self.loop is not None:
            self.loop.agent.updates_held = held

    def _free(self) -> list[int]:  # the contexts no task has taken yet
        n = self.loop.sequence.max_tasks if self.loop is not None else len(self.used)
        return [c for c in range(n) if c not in self.used]

    def _deployment(self) -> Deployment | DynamicsDeployment:
        """An evaluated task's chooser: every stored context, one episode each, the acting one
        first. A context still warming up is compared with its returns so far."""
        refs = self._references(provisional=True)
        acting = self.trials.candidates[0] if self.trials is not None else self.context
        if self.evidence == "dynamics":
            candidates = [c for c in self._by_order() if c in self.usual_error]
            window = self.deploy_window or self.window
            usual = self.usual_error if self.count_fit is not None else None
            return DynamicsDeployment(acting, self.dynamics, candidates, window, plays=self.plays, usual_error=usual)
        order = self._candidates(acting, refs)
        if not order:  # nothing to compare with yet
            return Deployment(acting)
        return Deployment(order[0], ContextTrials(order, refs, self.fit, episodes=1, select="first_fit"))

    # -------------------------------------------------------------- results
    def metrics(self, loop: LoopView) -> dict[str, Any]:
        """Detection delays, false alarms and the context each task got (``metrics.json``)."""
        return score_inference(
            self.switches,
            [d[0] for d in self.detections],
            self.stage_contexts,
            loop.sequence.schedule,
            int(loop.agent.num_timesteps),
            self.max_delay,
            sources=[d[3] if len(d) > 3 else "unrecorded" for d in self.detections],
        ) | {
            "choices": self.choices,
            "detections": self.detections,
            "eval_contexts": {name: d.context for name, d in self._deployments.items()},
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector.state_dict(),
            "context": self.context,
            "used": list(self.used),
            "trials": self.trials.state_dict() if self.trials is not None else {},
            "detections": self.detections,
            "choices": [[s, c, how] for s, c, how in self.choices],
            "switches": self.switches,
            "stage_contexts": self.stage_contexts,
            "last_eval": self._last_eval,
            "dynamics": self.dynamics.state_dict() if self.dynamics is not None else None,
            "pending": [[o.tolist(), int(a), n.tolist()] for o, a, n in self.pending],
            "recent": [[o.tolist(), int(a), n.tolist()] for o, a, n in self.recent],
            "usual_error": [[c, float(e)] for c, e in self.usual_error.items()],
            "error_detector": self.error_detector.state_dict(),
            "surprises_in_a_row": self.surprises_in_a_row,
            "confirming": list(self.confirming) if self.confirming is not None else None,
            "since_switch": self.since_switch,
            "model_context": self.model_context,
            "plays": [[task, context] for task, context in self.plays.items()],
            "checking": list(self.checking) if self.checking is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.detector.load_state_dict(state["detector"])
        self.context, self.used = int(state["context"]), [int(c) for c in state["used"]]
        self.trials = ContextTrials.from_state(state["trials"]) if state["trials"] else None
        # [step, context, task, source]; runs saved before 2026-12-04 recorded no source
        self.detections = [[*(int(v) for v in d[:3]), *(str(v) for v in d[3:])] for d in state["detections"]]
        self.choices = [[int(s), int(c), str(how)] for s, c, how in state["choices"]]
        self.switches = [dict(s) for s in state["switches"]]
        self.stage_contexts = [[int(v) for v in row] for row in state["stage_contexts"]]
        self._last_eval = dict(state["last_eval"])
        self._dynamics_state = state.get("dynamics")  # (loaded once the model is built: before_training)
        if self.dynamics is not None and self._dynamics_state is not None:
            self.dynamics.load_state_dict(self._dynamics_state)
        self.pending = [(np.array(o), int(a), np.array(n)) for o, a, n in state.get("pending", [])]
        self.recent = [(np.array(o), int(a), np.array(n)) for o, a, n in state.get("recent", [])]
        self.usual_error = {int(c): float(e) for c, e in state.get("usual_error", [])}
        if "error_detector" in state:
            self.error_detector.load_state_dict(state["error_detector"])
        self.surprises_in_a_row = int(state.get("surprises_in_a_row", 0))
        confirming, since = state.get("confirming"), state.get("since_switch")
        self.confirming = (int(confirming[0]), int(confirming[1])) if confirming else None
        self.since_switch = int(since) if since is not None else None
        # (runs saved before return_check: the acting context's model read its windows)
        self.model_context = int(state.get("model_context", self.context))
        self.plays = {int(task): int(context) for task, context in state.get("plays", [])}
        checking = state.get("checking")
        self.checking = (int(checking[0]), str(checking[1]), int(checking[2])) if checking else None
        self._restored = True
