"""The ``agent`` section of a run config: the algorithm and method, their shared training settings,
and one section per concern: ``network`` (:class:`~psp_rl.settings.PSPSettings`' fields and the
network's shape), ``dqn`` / ``ppo`` (one algorithm's settings), ``distil`` (PSP-DQN's distilled
acting) and ``ewc`` (``method: ewc``).

Every option left out (``None``) means a default written once, where it acts: the agents', their
policies' or :class:`PSPSettings`' signatures (:func:`option_defaults`); :meth:`AgentConfig.resolved`
sets them. Flat configs of earlier releases load through :mod:`psp_rl.config.compat`.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator
from torch import nn

from psp_rl.agents import AGENTS
from psp_rl.agents.distillation import DISTIL_MARGINS, ObservationKind
from psp_rl.config.compat import FLAT_OPTIONS, flat_agent_options, nest_agent_options
from psp_rl.contexts import ContextKind
from psp_rl.continual.settings import StrictSettings
from psp_rl.plugins.ewc import OnlineEWC
from psp_rl.precision import Precision
from psp_rl.settings import Drift, Heads, Init, InputLayer, PSPSettings, Torso

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
# Online EWC's and PSP-DQN's defaults, for the descriptions of their options (left out, they take these).
_EWC = {name: p.default for name, p in inspect.signature(OnlineEWC.__init__).parameters.items()}
_DQN = {name: p.default for name, p in inspect.signature(AGENTS["dqn"].__init__).parameters.items()}


class NetworkConfig(StrictSettings):
    """How the network superposes its tasks (:class:`PSPSettings`' fields) and its shape."""

    context: ContextKind = Field(default="binary", description="psp's context kind; the baselines imply none")
    context_seed: int | None = Field(default=None, ge=0, description="default: the run's seed")
    net_arch: list[int] | None = None
    torso: Torso = "auto"
    input_layer: InputLayer = "auto"
    heads: Heads = "shared"
    drift: Drift = Field(
        default="none",
        description="how the context follows a drifting task's theta: none (one context), smooth (powers of one "
        "context on a grid of max_tasks points, ends included; complex or rotation), smooth_bins (the same powers "
        "at the centres of max_tasks equal bins), binned (an independent context per bin), mixture (the grid's "
        "contexts mix the two nearest of 4 independent ones; any kind)",
    )
    activation: Literal["relu", "tanh"] | None = Field(
        default=None, description="hidden activation (default: DQN relu, PPO tanh)"
    )
    center: bool | None = Field(default=None, description="superposed layers centre their inputs per task")
    init: Init = Field(
        default="torch",
        description="the weights' initialisation: torch (nn.Linear's and nn.Conv2d's) or orthogonal (SB3's and "
        "CleanRL's PPO: gain sqrt(2) in the torsos, 0.01 on the actor's output, 1 on the critic's and Q's; "
        "zero biases)",
    )


class DQNConfig(StrictSettings):
    """DQN's settings (SB3's, and the continual agent's)."""

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
    advantage_learning: float | None = Field(default=None, ge=0, lt=1, description="advantage learning's alpha")
    acting: Literal["q", "distilled", "auto"] | None = Field(
        default=None,
        description="distilled: a finished task acts from a policy distilled from its Q (an MLP for vectors, a "
        "CNN for frames); auto: distilled for flat observations, q for images (default: distilled for psp, q "
        "for the baselines)",
    )
    rehearsal_states: int | None = Field(
        default=None,
        ge=0,
        description="states (with Q-values) kept per finished task and rehearsed in every update; "
        f"{_DQN['rehearsal_states']} (default): none, PSP keeps no data",
    )


class DistilConfig(StrictSettings):
    """How ``dqn.acting: distilled`` distils a finished task's Q into its acting policy."""

    loss: Literal["margin", "cross_entropy"] | None = Field(default=None, description=f"default {_DQN['distil_loss']}")
    steps: int | None = Field(
        default=None, gt=0, description=f"Adam steps per distillation (default {_DQN['distil_steps']})"
    )
    margin: float | None = Field(
        default=None,
        gt=0,
        description="the logit margin loss 'margin' asks (default: "
        + ", ".join(f"{value:g} for {kind}" for kind, value in DISTIL_MARGINS.items())
        + ")",
    )
    visits: int | None = Field(
        default=None,
        ge=0,
        description="env steps each distillation spends in the finished task's env (DAgger: Q acts, then the "
        f"distilled policy), its states labelled by Q; {_DQN['distil_visits']} (default): replayed states only",
    )
    arch: list[PositiveInt] | None = Field(
        default=None,
        min_length=1,
        description="hidden widths of the distilled policy's tanh MLP (flat observations; default [64, 64]); frames "
        "get a CNN of Q's torso kind",
    )


class EWCConfig(StrictSettings):
    """Online EWC (``method: ewc``; :class:`~psp_rl.plugins.ewc.OnlineEWC`)."""

    strength: float | None = Field(
        default=None, ge=0, description=f"penalty weight lambda (default {_EWC['strength']})"
    )
    decay: float | None = Field(default=None, gt=0, le=1, description=f"online EWC's gamma (default {_EWC['decay']})")
    samples: int | None = Field(default=None, gt=0, description=f"states per task for the Fisher ({_EWC['samples']})")


class PPOConfig(StrictSettings):
    """PPO's settings (SB3's)."""

    n_steps: int | None = Field(default=None, gt=0)
    n_epochs: int | None = Field(default=None, gt=0)
    gae_lambda: float | None = Field(default=None, gt=0, le=1)
    clip_range: float | None = Field(default=None, gt=0)
    ent_coef: float | None = Field(default=None, ge=0)
    vf_coef: float | None = Field(default=None, ge=0)


Method = Literal["psp", "finetune", "multihead", "separate", "ewc"]
# What each method means; a baseline's network is a plain one, so it implies context: none.
METHODS: dict[str, str] = {
    "psp": "one superposed network (agent.network.context: binary, complex or rotation)",
    "finetune": "one plain network, trained on each task in turn (context: none)",
    "multihead": "a plain torso with a head per task (context: none)",
    "separate": "one plain network per task (context: none)",
    "ewc": "one plain network with online EWC (context: none)",
}
# The sections of one algorithm, and of one method.
ALGO_SECTIONS: dict[str, tuple[str, ...]] = {"dqn": ("dqn", "distil"), "ppo": ("ppo",)}
_EWC_SECTION = "ewc"


class AgentConfig(StrictSettings):
    """The agent: SB3 algorithm, method, training settings and the sections of its network, its
    algorithm and its plugins. Hyperparameters left out take SB3's defaults."""

    algo: Literal["dqn", "ppo"] = "dqn"
    method: Method = Field(default="psp", description="; ".join(f"{k}: {v}" for k, v in METHODS.items()))
    n_envs: int = Field(default=1, gt=0)
    vec_env: Literal["dummy", "subproc", "ale"] = Field(
        default="dummy",
        description="dummy: the envs step in the training process; subproc: one worker process per env, "
        "kept for the whole task; ale: Atari only, ale-py's C++ vector env (frames preprocessed in C++; a "
        "reset's frame stack starts from zeros, so it changes the numbers and is part of the fingerprint)",
    )
    env_threads: int = Field(
        default=1,
        ge=0,
        description="vec_env ale: C++ threads stepping a run's training envs (0: one per core); the numbers are the "
        "same for any count, so a run resumes under another",
    )
    learning_rate: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    gamma: float | None = Field(default=None, gt=0, le=1)
    max_grad_norm: float | None = Field(default=None, gt=0)
    task_lr_schedule: Literal["constant", "task_linear", "task_hold_linear"] | None = Field(
        default=None,
        description="task_linear: the learning rate anneals to 0 at each task's end; task_hold_linear: it holds "
        "over each task's first half and anneals to 0 over its second",
    )
    precision: Precision = Field(
        default="auto",
        description="the update's precision: bf16 autocast or fp32 (psp_rl.precision); auto: bf16 on CUDA and "
        "on CPUs with AMX or AVX512-BF16, fp32 elsewhere and for complex contexts. How a run computes, not what: "
        "a run resumes under another",
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    dqn: DQNConfig | None = None
    distil: DistilConfig | None = None
    ewc: EWCConfig | None = None
    ppo: PPOConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _nest_and_imply_context(cls, data: Any) -> Any:
        """Flat options (earlier releases' configs) into their sections; a baseline's network is
        plain, so ``context: none`` goes without saying."""
        if not isinstance(data, dict):
            return data
        data = nest_agent_options(data)
        network = data.get("network")
        plain = data.get("method", "psp") != "psp"
        if plain and (network is None or isinstance(network, dict)) and "context" not in (network or {}):
            data["network"] = {**(network or {}), "context": "none"}
        return data

    @model_validator(mode="after")
    def _sections_fit(self) -> AgentConfig:
        for algo, sections in ALGO_SECTIONS.items():
            for section in sections if algo != self.algo else ():
                name = _first_set(getattr(self, section))
                if name is not None:
                    raise ValueError(f"agent.{section}.{name}: not a setting of algo={self.algo!r}")
        name = _first_set(self.ewc)
        if name is not None and self.method != "ewc":
            raise ValueError(f"agent.ewc.{name}: only used by method='ewc', not method={self.method!r}")
        if self.dqn is not None and self.dqn.gradient_steps == 0:
            raise ValueError("agent.dqn.gradient_steps: expected a positive int or -1, got 0")
        context, drift = self.network.context, self.network.drift
        if self.method != "psp" and context != "none":
            raise ValueError(
                f"agent.network.context: method={self.method!r} is a plain-network baseline, which implies context "
                f"none; got {context!r} (leave agent.network.context out)"
            )
        if drift != "none" and self.method != "psp":
            raise ValueError(
                f"agent.network.drift: {drift!r} needs method='psp' (drifting contexts), got {self.method!r}"
            )
        if drift in ("smooth", "smooth_bins") and context not in ("complex", "rotation"):
            raise ValueError(
                f"agent.network.drift: {drift!r} with context={context!r}; smooth drift needs powers of a context, "
                "expected context complex or rotation"
            )
        if self.precision == "bf16" and context == "complex":
            raise ValueError(
                "agent.precision: 'bf16' with network.context='complex': autocast has no complex bfloat16; "
                "expected fp32 or auto (auto keeps complex contexts fp32)"
            )
        if self.method == "psp" and context == "none":
            raise ValueError(
                "agent.network.context: method='psp' needs a superposing context (binary, complex, rotation)"
            )
        return self

    def flat(self) -> dict[str, Any]:
        """These settings under the flat names (what fingerprints hash; the agents' keywords)."""
        return flat_agent_options(self.model_dump(mode="json"))

    def with_flat(self, **options: Any) -> AgentConfig:
        """These settings with ``options`` (flat names) replaced: validated again, the flat names
        nested as an earlier release's config is."""
        return AgentConfig.model_validate({**self.flat(), **options})

    def resolved(self, observation: ObservationKind | None = None) -> AgentConfig:
        """These settings with every option left out set to its default for the algorithm and
        method, and the algorithm's (and method's) sections present.

        :param observation: the observations' kind, ``"vector"`` or ``"frames"``
            (:func:`~psp_rl.agents.distillation.observation_kind`), for the options whose default
            depends on it (the agent class's ``observation_defaults``); None: those stay left out,
            and the agent sets them from the env it is built on.
        """
        defaults = dict(AGENT_DEFAULTS[self.algo])
        if self.method == "psp":
            defaults.update(PSP_DEFAULTS[self.algo])
        if observation is not None:
            by_kind = AGENTS[self.algo].observation_defaults
            defaults.update({name: values[observation] for name, values in by_kind.items()})
        flat = self.flat()
        config = self.with_flat(**{name: value for name, value in defaults.items() if flat[name] is None})
        sections = [*ALGO_SECTIONS[self.algo], *([_EWC_SECTION] if self.method == "ewc" else [])]
        missing = {name: _model_of(name)() for name in sections if getattr(config, name) is None}
        return config.model_copy(update=missing)

    def sb3_kwargs(self) -> dict[str, Any]:
        """The SB3 constructor hyperparameters that were set."""
        names = ["learning_rate", "batch_size", "gamma", "max_grad_norm"]
        for section in ALGO_SECTIONS[self.algo]:
            names += [FLAT[section, name] for name in _model_of(section).model_fields]
        flat = self.flat()
        return {name: flat[name] for name in names if name not in _NOT_SB3 and flat[name] is not None}


def _first_set(section: StrictSettings | None) -> str | None:
    """The first option ``section`` sets, if any."""
    if section is None:
        return None
    return next((name for name, value in section if value is not None), None)


def _model_of(section: str) -> type[StrictSettings]:
    return AgentConfig.model_fields[section].annotation.__args__[0]  # type: ignore[union-attr]


FLAT: dict[tuple[str, str], str] = {nested: flat for flat, nested in FLAT_OPTIONS.items()}
# Settings of the continual agent and its networks, not of SB3's constructors.
_DQN_RETENTION = (
    "dueling",
    "advantage_learning",
    "acting",
    *(f"distil_{name}" for name in DistilConfig.model_fields),
    "rehearsal_states",
)
_NOT_SB3 = ("replay_on_switch", "replay_buffer", *_DQN_RETENTION)
# Options added after runs were first saved. A run records their resolved values; a run saved
# before an option existed lacks the key, and resumes as it ran (see RunConfig.as_saved_by).
HASHED_WHEN_SET = ("activation", "task_lr_schedule", "center", *_DQN_RETENTION)


def option_defaults(agent_class: type) -> dict[str, Any]:
    """What each resolved option (:data:`HASHED_WHEN_SET`, flat names) an agent class takes means
    when a config leaves it out: the default its constructor, its ``"PSPPolicy"`` or
    :class:`PSPSettings` gives it, read from their signatures, so each default is written once,
    where it acts."""
    agent = inspect.signature(agent_class.__init__).parameters
    policy = inspect.signature(agent_class.policy_aliases["PSPPolicy"].__init__).parameters
    settings = {field.name: field.default for field in dataclasses.fields(PSPSettings)}
    names = {"activation", "task_lr_schedule", *agent_class.config_options, *agent_class.policy_options}
    out: dict[str, Any] = {}
    for name in (n for n in HASHED_WHEN_SET if n in names):
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
