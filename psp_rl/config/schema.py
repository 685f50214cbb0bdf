"""The run configuration: one validated object, saved next to every run as ``config.yaml``.

Unknown keys, wrong types and missing fields raise :class:`ConfigError` whose message names the
key path, e.g. ``agent.learning_rate: expected float, got 'fast'``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.resources
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from psp_rl.checks import is_int
from psp_rl.contexts import ContextKind
from psp_rl.continual.parts import first_difference
from psp_rl.continual.settings import CheckpointConfig, EvalConfig, StrictSettings, format_validation_error
from psp_rl.errors import ConfigError
from psp_rl.plugins.ewc import EWC_LAMBDA
from psp_rl.plugins.inference.settings import InferenceConfig


class SequenceConfig(StrictSettings):
    """Which tasks to train on: a built-in sequence by ``name`` or a custom ``spec``."""

    name: str | None = None
    tasks: list[str] | None = Field(default=None, description="subset of a built-in sequence's tasks, in order")
    spec: dict[str, Any] | None = Field(default=None, description="a custom sequence (see sequence_from_spec)")
    steps: int | None = Field(default=None, gt=0, description="env steps per task (default: the sequence's)")
    cycles: int = Field(default=1, gt=0)
    max_tasks: int | None = Field(default=None, gt=0)
    task_ids: Literal["announced", "hidden"] = Field(
        default="announced",
        description="hidden: observations carry task 0 and no boundary reaches the agent; the `inference` "
        "section's detector and context choice find the tasks",
    )
    switch: Literal["reset", "mid_episode"] = Field(
        default="reset",
        description="mid_episode: at a switch the running episodes go on under the next task's physics "
        "(classic-control envs, vec_env dummy); reset: fresh episodes",
    )

    @model_validator(mode="after")
    def _one_source(self) -> SequenceConfig:
        if (self.name is None) == (self.spec is None):
            raise ValueError("give exactly one of sequence.name (built-in) or sequence.spec (custom)")
        if self.spec is not None and self.tasks is not None:
            raise ValueError("sequence.tasks selects from a built-in sequence; list a spec's tasks in sequence.spec")
        return self


_DQN_ONLY = (
    "buffer_size",
    "learning_starts",
    "train_freq",
    "gradient_steps",
    "target_update_interval",
    "exploration_fraction",
    "exploration_initial_eps",
    "exploration_final_eps",
    "replay_on_switch",
    "replay_buffer",
    *(
        _DQN_RETENTION := (
            "dueling",
            "advantage_learning",
            "acting",
            "distil_loss",
            "distil_steps",
            "distil_margin",
            "distil_visits",
            "rehearsal_states",
        )
    ),
)
# Settings of the continual agent and its networks, not of SB3's constructors ("center" is both
# algorithms': PSP-DQN's default, an option of PSP-PPO measured in experiments/results/minatar/).
_NOT_SB3 = ("replay_on_switch", "replay_buffer", "center", *_DQN_RETENTION)
# How a run computes, not what it computes: a run may resume under other values.
_NOT_HASHED = ("vec_env", "replay_buffer")
# What an agent option left out (None) means, per algorithm: the same for every method (the
# baselines differ from PSP only in the method), except PSP_DEFAULTS below.
AGENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "dqn": {
        "activation": "relu",
        "task_lr_schedule": "constant",
        "dueling": False,
        "center": False,
        "advantage_learning": 0.0,
        "acting": "q",
        "distil_loss": "margin",
        "distil_steps": 3000,
        "distil_margin": 5.0,
        "distil_visits": 0,
        "rehearsal_states": 0,
    },
    "ppo": {"activation": "tanh", "task_lr_schedule": "constant"},
}
# PSP-DQN's own mechanisms (experiments/results/dqn-retention/): centring acts on superposed
# layers only, and acting from a distilled per-task policy (an MLP for vectors, a CNN for frames:
# experiments/results/minatar-distil/) is how a superposed Q-network keeps its finished tasks'
# actions; the baselines' plain networks act from Q. (A margin of 20 led on cartpole-shift but lost
# a task of the fast retention test: the margin stays at AGENT_DEFAULTS' 5.)
PSP_DEFAULTS: dict[str, dict[str, Any]] = {"dqn": {"center": True, "acting": "distilled"}, "ppo": {}}
# Options added after runs were first saved. A run records their resolved values; a run saved
# before an option existed lacks the key, and resumes as it ran (see RunConfig.as_saved_by).
_HASHED_WHEN_SET = ("activation", "task_lr_schedule", "center", *_DQN_RETENTION)
_PPO_ONLY = ("n_steps", "n_epochs", "gae_lambda", "clip_range", "ent_coef", "vf_coef")


class AgentConfig(StrictSettings):
    """The agent: SB3 algorithm, network and context settings, and SB3 hyperparameters.

    Hyperparameters left out take SB3's defaults.
    """

    algo: Literal["dqn", "ppo"] = "dqn"
    method: Literal["psp", "finetune", "multihead", "separate", "ewc"] = Field(
        default="psp",
        description="psp: superposed; finetune: one plain network; multihead: plain torso, a head per task; "
        "separate: one plain network per task; ewc: one plain network with online EWC",
    )
    context: ContextKind = "binary"
    context_seed: int | None = Field(default=None, ge=0, description="default: the run's seed")
    net_arch: list[int] | None = None
    torso: Literal["auto", "mlp", "nature_cnn", "minatar_cnn"] = "auto"
    input_layer: Literal["auto", "per_task", "expand", "superposed"] = "auto"
    heads: Literal["shared", "per_task"] = "shared"
    drift: Literal["none", "smooth", "binned"] = Field(
        default="none",
        description="how the context follows a drifting task's theta: none (one context), smooth (powers of one "
        "context on a grid of max_tasks points; complex or rotation), binned (an independent context per bin)",
    )
    activation: Literal["relu", "tanh"] | None = Field(
        default=None, description="hidden activation (default: DQN relu, PPO tanh)"
    )
    task_lr_schedule: Literal["constant", "task_linear"] | None = Field(
        default=None, description="task_linear: the learning rate anneals to 0 at each task's end"
    )
    n_envs: int = Field(default=1, gt=0)
    vec_env: Literal["dummy", "subproc"] = Field(
        default="dummy",
        description="dummy: the envs step in the training process; subproc: one worker process per env, "
        "kept for the whole task (worth it for envs slower than the network, e.g. Atari)",
    )
    # SB3 hyperparameters (both algorithms)
    learning_rate: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    gamma: float | None = Field(default=None, gt=0, le=1)
    max_grad_norm: float | None = Field(default=None, gt=0)
    # DQN only
    buffer_size: int | None = Field(default=None, gt=0)
    learning_starts: int | None = Field(default=None, ge=0)
    train_freq: int | None = Field(default=None, gt=0)
    gradient_steps: int | None = Field(default=None, ge=-1, description="-1: as many as env steps collected")
    target_update_interval: int | None = Field(default=None, gt=0)
    exploration_fraction: float | None = Field(default=None, gt=0, le=1)
    exploration_initial_eps: float | None = Field(default=None, ge=0, le=1)
    exploration_final_eps: float | None = Field(default=None, ge=0, le=1)
    replay_on_switch: Literal["clear", "keep"] | None = None
    replay_buffer: Literal["auto", "dict", "compact"] | None = Field(
        default=None,
        description="dict: SB3's DictReplayBuffer; compact: each frame stored once as uint8 or bits, no "
        "next_obs copy (psp_rl.agents.replay); auto (default): compact for image observations",
    )
    dueling: bool | None = Field(default=None, description="dueling Q-head, V + A - mean(A)")
    center: bool | None = Field(default=None, description="superposed layers centre their inputs per task")
    advantage_learning: float | None = Field(default=None, ge=0, lt=1, description="advantage learning's alpha")
    acting: Literal["q", "distilled", "auto"] | None = Field(
        default=None,
        description="distilled: a finished task acts from a policy distilled from its Q (an MLP for vectors, a "
        "CNN for frames); auto: distilled for flat observations, q for images (default: distilled for psp, q "
        "for the baselines)",
    )
    distil_loss: Literal["margin", "cross_entropy"] | None = Field(
        default=None, description="how acting='distilled' distils a finished task (default margin)"
    )
    distil_steps: int | None = Field(default=None, gt=0, description="Adam steps per distillation (default 3000)")
    distil_margin: float | None = Field(
        default=None, gt=0, description="the logit margin distil_loss='margin' asks of every state (default 5)"
    )
    distil_visits: int | None = Field(
        default=None,
        ge=0,
        description="env steps each distillation spends in the finished task's env (DAgger: Q acts, then the "
        "distilled policy), its states labelled by Q; 0 (default): replayed states only",
    )
    rehearsal_states: int | None = Field(
        default=None,
        ge=0,
        description="states (with Q-values) kept per finished task and rehearsed in every update; 0 (default): "
        "none, PSP keeps no data",
    )
    # method: ewc only (psp_rl.plugins.ewc)
    ewc_lambda: float | None = Field(default=None, ge=0, description=f"EWC penalty weight (default {EWC_LAMBDA})")
    ewc_decay: float | None = Field(default=None, gt=0, le=1, description="online EWC's gamma (default 1)")
    ewc_samples: int | None = Field(default=None, gt=0, description="states per task for the Fisher (default 256)")
    # PPO only
    n_steps: int | None = Field(default=None, gt=0)
    n_epochs: int | None = Field(default=None, gt=0)
    gae_lambda: float | None = Field(default=None, gt=0, le=1)
    clip_range: float | None = Field(default=None, gt=0)
    ent_coef: float | None = Field(default=None, ge=0)
    vf_coef: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _algo_fields(self) -> AgentConfig:
        other = _PPO_ONLY if self.algo == "dqn" else _DQN_ONLY
        if self.gradient_steps == 0:
            raise ValueError("agent.gradient_steps: expected a positive int or -1, got 0")
        wrong = [name for name in other if getattr(self, name) is not None]
        if wrong:
            raise ValueError(f"agent.{wrong[0]}: not a setting of algo={self.algo!r}")
        ewc_set = [name for name in ("ewc_lambda", "ewc_decay", "ewc_samples") if getattr(self, name) is not None]
        if ewc_set and self.method != "ewc":
            raise ValueError(f"agent.{ewc_set[0]}: only used by method='ewc', not method={self.method!r}")
        if self.method in ("finetune", "multihead", "separate", "ewc") and self.context != "none":
            raise ValueError(f"agent.context: method={self.method!r} is a plain-network baseline; use context: none")
        if self.drift != "none" and self.method != "psp":
            raise ValueError(f"agent.drift: {self.drift!r} needs method='psp' (drifting contexts), got {self.method!r}")
        if self.drift == "smooth" and self.context not in ("complex", "rotation"):
            raise ValueError(
                f"agent.drift: 'smooth' with context={self.context!r}; smooth drift needs powers of a context, "
                "expected context complex or rotation"
            )
        if self.method == "psp" and self.context == "none":
            raise ValueError("agent.context: method='psp' needs a superposing context (binary, complex, rotation)")
        return self

    def resolved(self) -> AgentConfig:
        """These settings with every option left out set to its default for the algorithm and method."""
        defaults = dict(AGENT_DEFAULTS[self.algo])
        if self.method == "psp":
            defaults.update(PSP_DEFAULTS[self.algo])
        return self.model_copy(update={name: value for name, value in defaults.items() if getattr(self, name) is None})

    def sb3_kwargs(self) -> dict[str, Any]:
        """The SB3 constructor hyperparameters that were set."""
        names = ["learning_rate", "batch_size", "gamma", "max_grad_norm"]
        names += [n for n in (_DQN_ONLY if self.algo == "dqn" else _PPO_ONLY) if n not in _NOT_SB3]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class ProbeConfig(StrictSettings):
    """Retention probes (psp_rl.plugins.probes): crosstalk, margins and weight movement per task."""

    enabled: bool = False
    samples: int = Field(default=500, gt=0, description="states kept per finished task")


# Methods whose networks need the task id and cannot infer it (or that need the boundaries).
_NEED_TASK_IDS = ("multihead", "separate", "ewc")


class RunConfig(StrictSettings):
    """A whole continual run."""

    name: str = Field(min_length=1)
    seed: int = Field(default=0, ge=0)
    sequence: SequenceConfig
    agent: AgentConfig = Field(default_factory=AgentConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    device: str = "auto"
    threads: int | Literal["auto"] = Field(
        default=1,
        description="torch's intra-op threads for this run: 1 (default; runs sharing the cores stay fast) "
        "or 'auto' (torch's default, one per core)",
    )

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        if value != "auto" and (not is_int(value) or value < 1):
            raise ValueError(f"threads: expected a positive int or 'auto', got {value!r}")
        return value

    @model_validator(mode="after")
    def _hidden_ids(self) -> RunConfig:
        if self.sequence.task_ids == "hidden" and self.agent.method in _NEED_TASK_IDS:
            raise ValueError(
                f"sequence.task_ids: 'hidden' with agent.method={self.agent.method!r}, a method that needs the task "
                "id (or the task boundaries) and cannot infer it; expected method psp (infers a context) or finetune"
            )
        return self

    @model_validator(mode="after")
    def _mid_episode(self) -> RunConfig:
        if self.sequence.switch == "mid_episode" and self.agent.vec_env == "subproc":
            raise ValueError(
                "sequence.switch: 'mid_episode' moves running episodes between envs of the training process, "
                "agent.vec_env='subproc' steps them in workers; expected vec_env: dummy"
            )
        return self

    def shaping(self) -> dict[str, Any]:
        """The settings that shape the model and the task stream (not eval/checkpoint cadence),
        without those left at their defaults (:func:`canonical_shaping`)."""
        shaping = self.model_dump(mode="json", include={"seed", "sequence", "agent"})
        if self.probes.enabled:  # the probes' state is in the checkpoints: a resume keeps the setting
            shaping["probes"] = self.probes.model_dump(mode="json")
        if self.sequence.task_ids == "hidden":  # the inference decides which context trains
            shaping["inference"] = self.inference.model_dump(mode="json")
        return canonical_shaping(shaping)

    def resolved(self) -> RunConfig:
        """This config with every agent option left out set to its default (what runs)."""
        return self.model_copy(update={"agent": self.agent.resolved()})

    def with_defaults_of(self, saved: RunConfig) -> RunConfig:
        """This config with the agent options it leaves out taken from ``saved``, the config a run
        recorded: a run keeps the defaults of the day it started, so changing a default (PSP-DQN's
        acting) does not stop a run from resuming under the config that started it."""
        if (saved.agent.algo, saved.agent.method) != (self.agent.algo, self.agent.method):
            return self  # another agent: the comparison names the difference
        taken = {
            name: getattr(saved.agent, name)
            for name in _HASHED_WHEN_SET
            if getattr(self.agent, name) is None and getattr(saved.agent, name) is not None
        }
        return self.model_copy(update={"agent": self.agent.model_copy(update=taken)}) if taken else self

    def as_saved_by(self, saved_shaping: dict[str, Any]) -> RunConfig:
        """This config as a run saved with ``saved_shaping`` knew it: options that did not exist
        yet (absent from the saved agent settings) are left out, so that run keeps its model."""
        saved_agent = saved_shaping.get("agent", {})
        missing = {name: None for name in _HASHED_WHEN_SET if name not in saved_agent}
        return self.model_copy(update={"agent": self.agent.model_copy(update=missing)}) if missing else self

    def matches(self, saved_shaping: dict[str, Any]) -> bool:
        """Whether a run saved with ``saved_shaping`` (any release's) resumes under this config."""
        return canonical_shaping(saved_shaping) == self.as_saved_by(saved_shaping).shaping()

    def fingerprint(self) -> str:
        """A hash of :meth:`shaping`: a checkpoint resumes only under the same one."""
        return hashlib.sha256(json.dumps(self.shaping(), sort_keys=True).encode()).hexdigest()[:16]

    def difference(self, saved_shaping: dict[str, Any]) -> str:
        """Which setting differs from a run saved with ``saved_shaping``, as a sentence."""
        saved = with_defaults(canonical_shaping(saved_shaping))
        return first_difference(saved, with_defaults(self.as_saved_by(saved_shaping).shaping()))

    def to_yaml(self) -> str:
        """The config as YAML (what ``config.yaml`` holds)."""
        return dump_config(self)

    def hparams(self) -> dict[str, Any]:
        """The settings TensorBoard's hparams tab compares runs by."""
        return {"context": self.agent.context, "method": self.agent.method, "seed": self.seed}


# Sections whose settings left at their defaults are dropped from a shaping (see canonical_shaping).
_DEFAULTED_SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("agent", AgentConfig),
    ("sequence", SequenceConfig),
    ("inference", InferenceConfig),
)


def canonical_shaping(shaping: dict[str, Any]) -> dict[str, Any]:
    """``shaping`` without the agent and sequence settings at their defaults (and without those
    that do not change what a run computes), so that adding an option with a default leaves
    every saved run's fingerprint, and its resume, as it was."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in shaping.items()}
    for section, model in _DEFAULTED_SECTIONS:
        values = out.get(section, {})
        for name in _NOT_HASHED if section == "agent" else ():
            values.pop(name, None)
        for name, field in model.model_fields.items():
            if name in values and values[name] == _json_default(field.get_default(call_default_factory=True)):
                del values[name]
    return out


def with_defaults(shaping: dict[str, Any]) -> dict[str, Any]:
    """A canonical shaping with the left-out defaults written back (for messages naming values)."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in shaping.items()}
    for section, model in _DEFAULTED_SECTIONS[:2]:  # the inference section is in a shaping only when used
        for name, field in model.model_fields.items():
            if name not in _NOT_HASHED or section != "agent":
                out.setdefault(section, {}).setdefault(
                    name, _json_default(field.get_default(call_default_factory=True))
                )
    return out


def _json_default(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _section(model: type[BaseModel] | None, key: Any) -> type[BaseModel] | None:
    """The settings model of ``model``'s field ``key`` where that field is a section, else None."""
    field = model.model_fields.get(str(key)) if model is not None else None
    annotation = field.annotation if field is not None else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """``"; did you mean 'learning_rate'?"`` for a misspelled key of a known section."""
    model: type[BaseModel] | None = RunConfig
    for part in loc[:-1]:
        model = _section(model, part)
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_config(data: Any, source: str = "config") -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`; raise :class:`ConfigError` naming the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, hint=_did_you_mean)}") from None


def read_config(path: str | Path, settings: Sequence[str] = ()) -> Any:
    """A YAML config file as data (``yaml.safe_load``) with ``key.path=value`` ``settings`` applied
    (:func:`apply_settings`), not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r}: not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r}: not valid YAML ({exc})") from None
    return apply_settings(data, settings) if isinstance(data, dict) and settings else data


def shipped_configs() -> dict[str, Path]:
    """The configs installed with the package (``experiments/configs/`` in a checkout), by name."""
    root = importlib.resources.files("psp_rl.configs")
    return {Path(e.name).stem: Path(str(e)) for e in root.iterdir() if e.name.endswith(".yaml")}


def find_config(name: str | Path) -> Path:
    """A config file: ``name`` itself where it is a file, else the shipped config of that name
    (``quickstart`` or ``quickstart.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    stem = path.name.removesuffix(".yaml")
    if path.parent == Path(".") and stem in shipped:
        return shipped[stem]
    close = difflib.get_close_matches(stem, list(shipped), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"config {str(name)!r}: neither a file nor a shipped config; {hint}shipped: {', '.join(sorted(shipped))}"
    )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None, settings: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config with its ``key.path=value`` ``settings`` (:func:`read_config`), apply
    top-level ``overrides`` and validate it."""
    data = read_config(path, settings)
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_config(data, source=f"{path} with --set {' '.join(settings)}" if settings else str(path))


def apply_settings(data: dict[str, Any], settings: Sequence[str]) -> dict[str, Any]:
    """``data`` (a config mapping) with each ``KEY=VALUE`` of ``settings`` set, as ``--set`` gives
    them: ``agent.learning_rate=1e-3`` sets ``data["agent"]["learning_rate"]``. A value is read as
    a YAML scalar (``50000`` an int, ``true`` a bool, ``[64, 64]`` a list), so the config's own
    validation types it as it types the file; a key must name a setting of the schema."""
    out = copy.deepcopy(data)
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. agent.learning_rate=1e-3")
        parts = key.split(".")
        _check_setting_key(item, parts)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value {text!r} is not a YAML scalar") from None
        section = out
        for part in parts[:-1]:
            if not isinstance(section.get(part), dict):
                section[part] = {}
            section = section[part]
        section[parts[-1]] = value
    return out


def _check_setting_key(item: str, parts: list[str]) -> None:
    """Raise naming the first part of a ``--set`` key that is not a setting of :class:`RunConfig`."""
    model: type[BaseModel] | None = RunConfig
    for depth, part in enumerate(parts):
        if model is None or model is SequenceConfig and part == "spec":
            return  # a free-form mapping (a custom sequence): its own validation names bad keys
        if part not in model.model_fields:
            close = difflib.get_close_matches(part, list(model.model_fields), n=1)
            hint = f"; did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else ""
            raise ConfigError(f"--set {item!r}: unknown key {'.'.join(parts[: depth + 1])!r}{hint}")
        section = _section(model, part)
        if section is None and depth < len(parts) - 1:
            raise ConfigError(f"--set {item!r}: {'.'.join(parts[: depth + 1])!r} is a setting, not a section")
        model = section


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what actually ran)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
