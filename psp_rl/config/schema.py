"""The run configuration: one validated object, saved next to every run as ``config.yaml``.

Unknown keys, wrong types and missing fields raise :class:`ConfigError` whose message names the
key path, e.g. ``agent.learning_rate: expected float, got 'fast'``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from torch import nn

from psp_rl.agents import AGENTS
from psp_rl.contexts import ContextKind
from psp_rl.continual.parts import first_difference
from psp_rl.continual.seeds import SEED_SCHEME
from psp_rl.continual.settings import CheckpointConfig, EvalConfig, StrictSettings
from psp_rl.envs.episodes import check_vec_env_carries
from psp_rl.plugins.ewc import OnlineEWC
from psp_rl.plugins.inference.settings import InferenceConfig
from psp_rl.settings import PSPSettings
from psp_rl.threads import check_threads


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
# How a run computes, not what it computes: a run may resume under other values (vec_env: dummy or
# subproc; the ale vector env's frame stacks start otherwise, so it is hashed).
_NOT_HASHED = ("vec_env", "replay_buffer")
_SAME_NUMBERS = {"vec_env": ("dummy", "subproc")}
# Options added after runs were first saved. A run records their resolved values; a run saved
# before an option existed lacks the key, and resumes as it ran (see RunConfig.as_saved_by).
_HASHED_WHEN_SET = ("activation", "task_lr_schedule", "center", *_DQN_RETENTION)
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
# Online EWC's defaults, for the descriptions of the ewc_* options (left out, they take these).
_EWC = {name: p.default for name, p in inspect.signature(OnlineEWC.__init__).parameters.items()}


def option_defaults(agent_class: type) -> dict[str, Any]:
    """What each resolved option (:data:`_HASHED_WHEN_SET`) an agent class takes means when a config
    leaves it out: the default its constructor, its ``"PSPPolicy"`` or :class:`PSPSettings` gives
    it, read from their signatures, so each default is written once, where it acts."""
    agent = inspect.signature(agent_class.__init__).parameters
    policy = inspect.signature(agent_class.policy_aliases["PSPPolicy"].__init__).parameters
    settings = {field.name: field.default for field in dataclasses.fields(PSPSettings)}
    names = {"activation", "task_lr_schedule", *agent_class.config_options, *agent_class.policy_options}
    out: dict[str, Any] = {}
    for name in (n for n in _HASHED_WHEN_SET if n in names):
        if name == "activation":
            default = policy["activation_fn"].default
            out[name] = next(key for key, cls in ACTIVATIONS.items() if cls is default)
        elif name in agent:
            out[name] = agent[name].default
        elif name in policy:
            out[name] = policy[name].default
        else:
            out[name] = settings[name]
    return out


# What an agent option left out (None) means, per algorithm: the same for every method (the
# baselines differ from PSP only in the method), except PSP_DEFAULTS below.
AGENT_DEFAULTS: dict[str, dict[str, Any]] = {algo: option_defaults(cls) for algo, cls in AGENTS.items()}
# PSP-DQN's own mechanisms: centring acts on superposed layers only, and a finished task acts from a
# policy distilled from its Q; the baselines' plain networks act from Q (why: docs/results.md).
PSP_DEFAULTS: dict[str, dict[str, Any]] = {"dqn": {"center": True, "acting": "distilled"}, "ppo": {}}
_PPO_ONLY = ("n_steps", "n_epochs", "gae_lambda", "clip_range", "ent_coef", "vf_coef")
ALGO_ONLY: dict[str, tuple[str, ...]] = {"dqn": _DQN_ONLY, "ppo": _PPO_ONLY}
"""The agent settings only one algorithm has."""


Method = Literal["psp", "finetune", "multihead", "separate", "ewc"]
# What each method means; a baseline's network is a plain one, so it implies context: none.
METHODS: dict[str, str] = {
    "psp": "one superposed network (agent.context: binary, complex or rotation)",
    "finetune": "one plain network, trained on each task in turn (context: none)",
    "multihead": "a plain torso with a head per task (context: none)",
    "separate": "one plain network per task (context: none)",
    "ewc": "one plain network with online EWC (context: none)",
}


class AgentConfig(StrictSettings):
    """The agent: SB3 algorithm, network and context settings, and SB3 hyperparameters.

    Hyperparameters left out take SB3's defaults.
    """

    algo: Literal["dqn", "ppo"] = "dqn"
    method: Method = Field(default="psp", description="; ".join(f"{k}: {v}" for k, v in METHODS.items()))
    context: ContextKind = Field(default="binary", description="psp's context kind; the baselines imply none")
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
    vec_env: Literal["dummy", "subproc", "ale"] = Field(
        default="dummy",
        description="dummy: the envs step in the training process; subproc: one worker process per env, "
        "kept for the whole task; ale: Atari only, ale-py's C++ vector env (frames preprocessed in C++; a "
        "reset's frame stack starts from zeros, so it changes the numbers and is part of the fingerprint)",
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
    ewc_lambda: float | None = Field(default=None, ge=0, description=f"EWC penalty weight (default {_EWC['strength']})")
    ewc_decay: float | None = Field(
        default=None, gt=0, le=1, description=f"online EWC's gamma (default {_EWC['decay']})"
    )
    ewc_samples: int | None = Field(
        default=None, gt=0, description=f"states per task for the Fisher (default {_EWC['samples']})"
    )
    # PPO only
    n_steps: int | None = Field(default=None, gt=0)
    n_epochs: int | None = Field(default=None, gt=0)
    gae_lambda: float | None = Field(default=None, gt=0, le=1)
    clip_range: float | None = Field(default=None, gt=0)
    ent_coef: float | None = Field(default=None, ge=0)
    vf_coef: float | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _method_implies_context(cls, data: Any) -> Any:
        """A baseline's network is plain: ``context: none`` goes without saying."""
        if isinstance(data, dict) and data.get("method", "psp") != "psp" and "context" not in data:
            return {**data, "context": "none"}
        return data

    @model_validator(mode="after")
    def _algo_fields(self) -> AgentConfig:
        other = [name for algo, names in ALGO_ONLY.items() if algo != self.algo for name in names]
        if self.gradient_steps == 0:
            raise ValueError("agent.gradient_steps: expected a positive int or -1, got 0")
        wrong = [name for name in other if getattr(self, name) is not None]
        if wrong:
            raise ValueError(f"agent.{wrong[0]}: not a setting of algo={self.algo!r}")
        ewc_set = [name for name in ("ewc_lambda", "ewc_decay", "ewc_samples") if getattr(self, name) is not None]
        if ewc_set and self.method != "ewc":
            raise ValueError(f"agent.{ewc_set[0]}: only used by method='ewc', not method={self.method!r}")
        if self.method in ("finetune", "multihead", "separate", "ewc") and self.context != "none":
            raise ValueError(
                f"agent.context: method={self.method!r} is a plain-network baseline, which implies context none; "
                f"got {self.context!r} (leave agent.context out)"
            )
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
        names += [n for n in ALGO_ONLY[self.algo] if n not in _NOT_SB3]
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
    seed_scheme: Literal[1, 2] | None = Field(
        default=None,
        description="how every random purpose's seed derives from `seed` (psp_rl.continual.seeds): new runs "
        "take 2; a run saved without the key drew scheme 1's seeds and resumes under it",
    )
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
        return check_threads(value)

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
        check_vec_env_carries(self.sequence.switch, self.agent.vec_env)
        return self

    def shaping(self) -> dict[str, Any]:
        """The settings that shape the model and the task stream (not eval/checkpoint cadence),
        without those left at their defaults (:func:`canonical_shaping`)."""
        shaping = self.model_dump(mode="json", include={"seed", "sequence", "agent"})
        if self.seed_scheme not in (None, 1):  # runs saved before the scheme was recorded drew scheme 1's
            shaping["seed_scheme"] = self.seed_scheme
        if self.probes.enabled:  # the probes' state is in the checkpoints: a resume keeps the setting
            shaping["probes"] = self.probes.model_dump(mode="json")
        if self.sequence.task_ids == "hidden":  # the inference decides which context trains
            shaping["inference"] = self.inference.model_dump(mode="json")
        return canonical_shaping(shaping)

    def resolved(self) -> RunConfig:
        """This config with every agent option left out set to its default, and the newest seed
        scheme unless one is set (what runs)."""
        return self.model_copy(update={"agent": self.agent.resolved(), "seed_scheme": self.seed_scheme or SEED_SCHEME})

    def with_defaults_of(self, saved: RunConfig) -> RunConfig:
        """This config with the agent options it leaves out taken from ``saved``, the config a run
        recorded: a run keeps the defaults of the day it started, so changing a default (PSP-DQN's
        acting) does not stop a run from resuming under the config that started it; so does its seed
        scheme."""
        # The saved run's seed scheme; a run that recorded none drew scheme 1's seeds.
        config = (
            self if self.seed_scheme is not None else self.model_copy(update={"seed_scheme": saved.seed_scheme or 1})
        )
        if (saved.agent.algo, saved.agent.method) != (config.agent.algo, config.agent.method):
            return config  # another agent: the comparison names the difference
        taken = {
            name: getattr(saved.agent, name)
            for name in _HASHED_WHEN_SET
            if getattr(config.agent, name) is None and getattr(saved.agent, name) is not None
        }
        return config.model_copy(update={"agent": config.agent.model_copy(update=taken)}) if taken else config

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
            if name not in _SAME_NUMBERS or values.get(name) in _SAME_NUMBERS[name]:
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


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what actually ran)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
