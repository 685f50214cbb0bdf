"""Task inference's settings: its one place of defaults and checks (the config's ``inference``
section is this model; :class:`~psp_rl.plugins.inference.task_inference.TaskInference` takes its fields)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from psp_rl.continual.settings import StrictSettings


class InferenceConfig(StrictSettings):
    """Task inference under hidden task ids (psp_rl.plugins.inference.task_inference): a CUSUM on episode returns
    detects a change, trial episodes choose among the stored contexts or take a fresh one."""

    threshold: float = Field(default=20.0, gt=0, description="CUSUM alarm level, in return scales")
    slack: float = Field(default=1.0, ge=0, description="CUSUM drift allowance per episode, in return scales")
    warmup_episodes: int = Field(default=50, gt=0, description="episodes of a new context before it is watched")
    min_scale: float = Field(
        default=0.25, gt=0, le=1, description="the return scale is at least this fraction of the reference return"
    )
    fit: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a stored context fits if its trial return >= reference - (1 - fit) x |reference| "
        "(fit x reference for positive returns)",
    )
    trial_episodes: int = Field(default=4, gt=0, description="training episodes that score one candidate context")
    select: Literal["first_fit", "best"] = Field(
        default="first_fit", description="first_fit: the first candidate that fits (in `order`); best: try all"
    )
    order: Literal["recent", "oldest"] = Field(
        default="recent",
        description="stored contexts tried after the acting one: most (recent) or least (oldest) recently chosen first",
    )
    max_delay: int = Field(default=2000, gt=0, description="env steps after a switch within which a detection counts")
    evidence: Literal["returns", "dynamics"] = Field(
        default="returns",
        description="how a context is chosen at an alarm: returns (trial episodes of the stored contexts) or "
        "dynamics (per-context ridge models of the observation's change score the last `window` transitions; "
        "flat observations and discrete actions)",
    )
    window: int = Field(default=50, gt=0, description="evidence dynamics: transitions scored to choose a context")
    deploy_window: int | None = Field(
        default=None,
        gt=0,
        description="evidence dynamics: transitions an evaluation episode set plays under the acting context before "
        "the best-predicting stored context takes over (default: window); CartPole's wrong policy drops the pole in "
        "~10-20 steps, so a 50-transition window costs the first 2-3 episodes (experiments/probe_contexts.py)",
    )
    error_fit: float = Field(
        default=4.0,
        gt=1,
        description="evidence dynamics: the best-scoring stored context fits if its error on the window is at most "
        "error_fit x its usual error; else a fresh context",
    )
    error_floor: float = Field(
        default=0.0,
        ge=0,
        description="evidence dynamics: the smallest usual error a window is compared with (mean squared error in "
        "the observed changes' standard deviations); a model fitted on a balancing policy's states predicts them to "
        "~1e-9 and a falling pole's states of the same task to ~3e-5, which without a floor read as a switch "
        "(experiments/results/hidden-ids-dynamics/false-alarms.md)",
    )
    floor_in_choice: bool = Field(
        default=True,
        description="evidence dynamics: error_floor applies to the choice at an alarm too (does a stored context fit "
        "the window?), not only to the acting context's surprise test; near upright states the floored error of "
        "`default` fits high gravity's windows (experiments/results/hidden-ids-dynamics/README.md)",
    )
    kept_return: Literal["keep", "reset"] = Field(
        default="keep",
        description="when an alarm ends with the acting context kept (evidence dynamics: its model fits the window), "
        "keep the context's usual return, or reset it (re-learned from its next warmup_episodes): a returning task "
        "that plays below its context's old return otherwise raises alarm after alarm",
    )
    return_alarms: bool = Field(
        default=True,
        description="evidence dynamics: a drop of the acting context's return raises an alarm too (the dynamics then "
        "choose), or only the dynamics error does (false); a task that changes the rewards and not the dynamics is "
        "seen by the returns alone. On PSP-DQN every alarm outside a switch was a return drop answered `kept` "
        "(experiments/results/hidden-ids-dqn/README.md)",
    )
    return_check: bool = Field(
        default=False,
        description="evidence dynamics: a stored context the dynamics choose at an alarm first plays trial_episodes "
        "(updates held); if it plays below `fit` of its usual return, the other stored contexts are tried in `order` "
        "and the first that fits plays the task from then on (its own dynamics model still reads it); none: the "
        "dynamics' choice. A task's own context can be the weak one "
        "(experiments/results/hidden-ids-dynamics/README.md)",
    )
    check_exhausted: Literal["map", "move", "skip"] = Field(
        default="map",
        description="return_check of an `exhausted` choice (every context taken, the best model does not fit the "
        "window, so it re-fits to the task): map: the check's answer plays the task and the chosen model re-fits "
        "to it; move: the answer's own model re-fits to it (the chosen model keeps its task: the dynamics may have "
        "named another task's model); skip: not checked, adopted at once "
        "(experiments/results/hidden-ids-dynamics/README.md)",
    )
    check_reference: Literal["own", "task"] = Field(
        default="own",
        description="return_check: each candidate fits if it plays within `fit` of its own usual return (own), or of "
        "the higher of its own and the first candidate's, the context that played the task before (task): a context "
        "whose task was never learned has a low usual return and otherwise fits any task "
        "(experiments/results/hidden-ids-dynamics/README.md)",
    )
    dynamics_warmup: int = Field(
        default=2000,
        gt=0,
        description="evidence dynamics: the run's first transitions fix the errors' units, and a context's first "
        "ones its usual error",
    )
    surprises: int = Field(
        default=3, gt=0, description="evidence dynamics: windows in a row beyond error_fit that raise an alarm"
    )
    surprise_below: bool = Field(
        default=False,
        description="evidence dynamics: a window whose error is below 1/error_fit of the acting context's usual one is "
        "a surprise too, and at an alarm a context fits only within error_fit of its usual error either way: a "
        "change to a task whose observations change less (MinAtar's Freeway -> Asterix read 0.2x Freeway's usual "
        "error; experiments/results/hidden-ids-minatar/README.md)",
    )
    name_windows: bool = Field(
        default=False,
        description="evidence dynamics: every window is scored under the other stored contexts too, and one that "
        "another context's model predicts error_fit times better is a surprise (a returning task whose windows the "
        "acting context's model reads as usual); one forward pass per stored context per window",
    )
    count_fit: float | None = Field(
        default=None,
        gt=1,
        description="evidence dynamics on frames: each context also keeps its frames' per-channel pixel counts "
        "(plugins/inference/channel_counts.py), and a window whose counts lie count_fit times farther than usual "
        "from the acting context's is a surprise; at an alarm a stored context fits only within count_fit of its "
        "usual distance too. Freeway's dynamics model reads Asterix's frames at 0.2-0.5x its usual error; their "
        "counts lie 9x (random play) to 31x (the benchmark's runs) farther than Freeway's own, a game's own play "
        "at most 4.6x (experiments/results/hidden-ids-minatar/README.md). A context learns every window of its first "
        "dynamics_warmup transitions before its counts are watched; they should span several episodes (Freeway's "
        "speed channels hold still for one); default: off",
    )
    confirm: bool = Field(
        default=False,
        description="evidence dynamics: the best stored context first acts for one window (updates held) and that "
        "window judges its fit (measured: more false alarms took fresh contexts; docs/results.md)",
    )
    error_alarm: Literal["surprises", "cusum"] = Field(
        default="surprises",
        description="evidence dynamics: alarms from `surprises` windows in a row, or from a CUSUM on the windows' "
        "log errors (error_threshold, error_warmup; measured: more false alarms)",
    )
    exhausted_model: Literal["keep", "forget"] = Field(
        default="keep",
        description="evidence dynamics: when a context is taken again for a task none fits (every context taken), "
        "keep its dynamics model (it then blends the tasks it saw, and a switch to one of them can go unseen) or "
        "forget it (it warms up again on the task it now learns)",
    )
    window_error: Literal["mean", "median"] = Field(
        default="mean",
        description="evidence dynamics: a window's error is the mean of its transitions' errors, or their median "
        "(a few states the model predicts badly weigh little)",
    )
    choice_error: Literal["mean", "median"] | None = Field(
        default=None,
        description="evidence dynamics: how the window an alarm is decided on scores each stored context, if not as "
        "window_error; `median`: n_envs envs switch at their own resets, so that window can hold a minority of the "
        "old task's transitions, whose errors under every other model swamp a mean "
        "(experiments/results/hidden-ids-dynamics/README.md)",
    )
    switch_confirm_steps: int = Field(
        default=2000,
        gt=0,
        description="env steps an inferred switch must stand before the agent drops the data the previous context "
        "gathered (PSP-DQN's replay); a switch back within them (a false alarm) loses nothing",
    )
    task_steps: int | None = Field(
        default=None,
        gt=0,
        description="the horizon of the agent's per-task schedules (DQN's exploration, a task_linear learning rate) "
        "restarted at each inferred switch; default: the sequence's mean steps per task (a length the config "
        "states, not a boundary)",
    )
    error_threshold: float = Field(
        default=10.0,
        gt=0,
        description="error_alarm cusum: alarm level of the CUSUM on each window's log error, in its spreads "
        "(slack as for returns)",
    )
    error_warmup: int = Field(
        default=20, gt=0, description="error_alarm cusum: windows of a context before its errors are watched"
    )

    @model_validator(mode="after")
    def _evidence_settings(self) -> InferenceConfig:
        if self.window > self.dynamics_warmup:
            raise ValueError(
                f"inference.window={self.window} > inference.dynamics_warmup={self.dynamics_warmup}: expected a window "
                "within the transitions that fix the errors' units"
            )
        if self.evidence == "returns" and not self.return_alarms:
            raise ValueError(
                "inference.return_alarms=False with inference.evidence='returns': expected evidence 'dynamics' "
                "(the return drops are the only alarms with evidence 'returns')"
            )
        if self.return_check and self.evidence != "dynamics":
            raise ValueError(
                f"inference.return_check=True with inference.evidence={self.evidence!r}: expected evidence 'dynamics' "
                "(with evidence 'returns' the trial episodes choose every context already)"
            )
        for name in ("surprise_below", "name_windows", "count_fit"):
            if getattr(self, name) and (self.evidence != "dynamics" or self.error_alarm != "surprises"):
                raise ValueError(
                    f"inference.{name}={getattr(self, name)!r} with inference.evidence={self.evidence!r} and "
                    f"inference.error_alarm={self.error_alarm!r}: expected evidence 'dynamics' and error_alarm "
                    "'surprises' (it says which windows are surprises)"
                )
        if self.choice_error is not None and self.evidence != "dynamics":
            raise ValueError(
                f"inference.choice_error={self.choice_error!r} with inference.evidence={self.evidence!r}: expected "
                "evidence 'dynamics' (it scores the dynamics models on the window an alarm is decided on)"
            )
        for name in ("check_exhausted", "check_reference"):
            if getattr(self, name) != _default(name) and not self.return_check:
                raise ValueError(
                    f"inference.{name}={getattr(self, name)!r} with inference.return_check=False: expected "
                    f"return_check=True ({name} says how the check works)"
                )
        if self.return_check and self.confirm:
            raise ValueError(
                "inference.return_check=True with inference.confirm=True: expected one of them (both put the dynamics' "
                "choice on probation, by its returns or by a window of its own play)"
            )
        # (values other than the defaults: a saved config.yaml writes every field)
        trial_only = ("select",) if self.return_check else ("fit", "select", "trial_episodes")
        changed = [name for name in trial_only if getattr(self, name) != _default(name)]
        if self.evidence == "dynamics" and changed:
            where = "trial episodes choose contexts only with evidence 'returns' or inference.return_check=True"
            if self.return_check:  # (its trials take the first candidate that fits, in `order`)
                where = "expected the default 'first_fit': inference.return_check tries candidates in `order`"
            raise ValueError(f"inference.{changed[0]} with inference.evidence='dynamics': {where}")
        return self


def _default(name: str) -> object:
    return InferenceConfig.model_fields[name].default
