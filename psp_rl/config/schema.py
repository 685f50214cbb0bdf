"""The run configuration: one validated object, saved next to every run as ``config.yaml``.

Unknown keys, wrong types and missing fields raise :class:`ConfigError` whose message names the
key path, e.g. ``agent.learning_rate: expected float, got 'fast'``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from psp_rl.agents.distillation import ObservationKind
from psp_rl.config.agent import HASHED_WHEN_SET, AgentConfig
from psp_rl.config.compat import nested_path
from psp_rl.continual.parts import first_difference
from psp_rl.continual.seeds import SEED_SCHEME
from psp_rl.continual.settings import CheckpointConfig, EvalConfig, StrictSettings
from psp_rl.envs.episodes import check_vec_env_carries
from psp_rl.plugins.inference.settings import InferenceConfig
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
    keep_best: bool = Field(
        default=False,
        description="at each stage's end, go back to the weights of the stage's best evaluation on its task when "
        "they beat the final ones (psp_rl.plugins.keep_best; DQN's returns oscillate within a stage)",
    )
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
    def _keep_best(self) -> RunConfig:
        if self.keep_best and self.sequence.task_ids == "hidden":
            raise ValueError(
                "keep_best: true with sequence.task_ids 'hidden': the stage's task chooses the weights kept, and "
                "under hidden ids the agent does not know it; expected keep_best false or task_ids announced"
            )
        return self

    @model_validator(mode="after")
    def _mid_episode(self) -> RunConfig:
        check_vec_env_carries(self.sequence.switch, self.agent.vec_env)
        return self

    def shaping(self) -> dict[str, Any]:
        """The settings that shape the model and the task stream (not eval/checkpoint cadence),
        the agent's under their flat names (:mod:`psp_rl.config.compat`), without those left at
        their defaults (:func:`canonical_shaping`)."""
        shaping = self.model_dump(mode="json", include={"seed", "sequence"})
        shaping["agent"] = self.agent.flat()
        if self.seed_scheme not in (None, 1):  # runs saved before the scheme was recorded drew scheme 1's
            shaping["seed_scheme"] = self.seed_scheme
        if self.probes.enabled:  # the probes' state is in the checkpoints: a resume keeps the setting
            shaping["probes"] = self.probes.model_dump(mode="json")
        if self.keep_best:  # the weights a stage hands on; absent when off, so older runs keep their fingerprint
            shaping["keep_best"] = True
        if self.sequence.task_ids == "hidden":  # the inference decides which context trains
            shaping["inference"] = self.inference.model_dump(mode="json")
        return canonical_shaping(shaping)

    def resolved(self, observation: ObservationKind | None = None) -> RunConfig:
        """This config with every agent option left out set to its default (``observation``: the
        sequence's observation kind, see :meth:`AgentConfig.resolved`), and the newest seed scheme
        unless one is set (what runs)."""
        agent = self.agent.resolved(observation)
        return self.model_copy(update={"agent": agent, "seed_scheme": self.seed_scheme or SEED_SCHEME})

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
        mine, theirs = config.agent.flat(), saved.agent.flat()
        taken = {name: theirs[name] for name in HASHED_WHEN_SET if mine[name] is None and theirs[name] is not None}
        return config.model_copy(update={"agent": config.agent.with_flat(**taken)}) if taken else config

    def as_saved_by(self, saved_shaping: dict[str, Any]) -> RunConfig:
        """This config as a run saved with ``saved_shaping`` knew it: options that did not exist
        yet (absent from the saved agent settings) are left out, so that run keeps its model."""
        saved_agent = saved_shaping.get("agent", {})
        missing = {name: None for name in HASHED_WHEN_SET if name not in saved_agent}
        return self.model_copy(update={"agent": self.agent.with_flat(**missing)}) if missing else self

    def matches(self, saved_shaping: dict[str, Any]) -> bool:
        """Whether a run saved with ``saved_shaping`` (any release's) resumes under this config."""
        return canonical_shaping(saved_shaping) == self.as_saved_by(saved_shaping).shaping()

    def fingerprint(self) -> str:
        """A hash of :meth:`shaping`: a checkpoint resumes only under the same one."""
        return hashlib.sha256(json.dumps(self.shaping(), sort_keys=True).encode()).hexdigest()[:16]

    def difference(self, saved_shaping: dict[str, Any]) -> str:
        """Which setting differs from a run saved with ``saved_shaping``, as a sentence."""
        saved = with_defaults(canonical_shaping(saved_shaping))
        current = with_defaults(self.as_saved_by(saved_shaping).shaping())
        return first_difference(saved, current, name=nested_path)  # shapings are flat; messages name sections

    def to_yaml(self) -> str:
        """The config as YAML (what ``config.yaml`` holds)."""
        return dump_config(self)

    def hparams(self) -> dict[str, Any]:
        """The settings TensorBoard's hparams tab compares runs by."""
        return {"context": self.agent.network.context, "method": self.agent.method, "seed": self.seed}


# How a run computes, not what it computes: a run may resume under other values (vec_env: dummy or
# subproc; the ale vector env's frame stacks start otherwise, so it is hashed; env_threads: the ale
# vector env's steps are the same on any number of threads; precision as threads and device: a float
# path, like another machine's).
_NOT_HASHED = ("vec_env", "env_threads", "replay_buffer", "precision")
_SAME_NUMBERS = {"vec_env": ("dummy", "subproc")}


def _field_defaults(model: type[BaseModel]) -> dict[str, Any]:
    return {
        name: _json_default(field.get_default(call_default_factory=True)) for name, field in model.model_fields.items()
    }


def canonical_shaping(shaping: dict[str, Any]) -> dict[str, Any]:
    """``shaping`` without the agent and sequence settings at their defaults (and without those
    that do not change what a run computes), so that adding an option with a default leaves
    every saved run's fingerprint, and its resume, as it was."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in shaping.items()}
    for section, defaults in _SECTION_DEFAULTS.items():
        values = out.get(section, {})
        for name in _NOT_HASHED if section == "agent" else ():
            if name not in _SAME_NUMBERS or values.get(name) in _SAME_NUMBERS[name]:
                values.pop(name, None)
        for name, default in defaults.items():
            if name in values and values[name] == default:
                del values[name]
    return out


def with_defaults(shaping: dict[str, Any]) -> dict[str, Any]:
    """A canonical shaping with the left-out defaults written back (for messages naming values)."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in shaping.items()}
    for section in ("agent", "sequence"):  # the inference section is in a shaping only when used
        for name, default in _SECTION_DEFAULTS[section].items():
            if name not in _NOT_HASHED or section != "agent":
                out.setdefault(section, {}).setdefault(name, default)
    return out


def _json_default(value: Any) -> Any:
    return json.loads(json.dumps(value))


# Each section's defaults (the agent's under the flat names a shaping has), dropped from a shaping.
_SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "agent": AgentConfig().flat(),
    "sequence": _field_defaults(SequenceConfig),
    "inference": _field_defaults(InferenceConfig),
}


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what actually ran)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
