"""A continual run built from a :class:`~psp_rl.config.schema.RunConfig`: its parts, and
:class:`ContinualTrainer`, the loop they make (what ``psp-rl train`` runs).

A baseline is a choice of network (``multihead``, ``separate``: :func:`psp_settings`), of context
(every baseline implies ``none``: the schema) or a callback (``ewc``: :func:`build_callbacks`); the
loop itself knows none of them. What each algorithm takes comes from its agent class
(``action_spaces``, ``config_options``, ``policy_options``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from psp_rl.agents import AGENTS, CompactDictReplayBuffer, compact_encoding
from psp_rl.agents.distillation import ObservationKind, observation_kind
from psp_rl.config.agent import ACTIVATIONS, AgentConfig, EWCConfig
from psp_rl.config.loading import parse_config
from psp_rl.config.schema import RunConfig, SequenceConfig
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.loop import ContinualLoop
from psp_rl.continual.parts import AgentFactory
from psp_rl.continual.resume import check_resume
from psp_rl.continual.run_dir import RunDir
from psp_rl.envs import TaskSequence, get_sequence, sequence_from_spec
from psp_rl.errors import CheckpointError, ConfigError
from psp_rl.networks import resolve_torso
from psp_rl.plugins.ewc import OnlineEWC
from psp_rl.plugins.inference.task_inference import TaskInference, check_evidence_fits
from psp_rl.plugins.keep_best import KeepStageBest
from psp_rl.plugins.probes import RetentionProbes
from psp_rl.plugins.videos import TaskVideos
from psp_rl.precision import EMULATED_BF16_SLOWDOWN, native_bf16, resolve_precision
from psp_rl.settings import PSPSettings

log = logging.getLogger(__name__)
SPACE_WORDS = {spaces.Discrete: "discrete", spaces.Box: "continuous"}


def build_sequence(config: SequenceConfig) -> TaskSequence:
    """The task sequence of a config; bad names or specs raise :class:`ConfigError` naming the field."""
    try:
        if config.name is not None:
            return get_sequence(
                config.name,
                steps=config.steps,
                tasks=config.tasks,
                cycles=config.cycles,
                max_tasks=config.max_tasks,
                task_ids=config.task_ids,
                switch=config.switch,
            )
        spec = dict(config.spec or {})
        for key in ("steps", "cycles", "max_tasks", "task_ids", "switch"):
            if getattr(config, key) is not None and key not in spec:
                spec[key] = getattr(config, key)
        return sequence_from_spec(spec)
    except ValueError as exc:
        raise ConfigError(f"sequence: {exc}") from None


def check_agent_fits(config: AgentConfig, sequence: TaskSequence) -> None:
    """Refuse, before any run dir is touched, an algorithm that cannot act in the sequence's actions
    or a vec env that cannot step its tasks."""
    try:
        sequence.check_vec_env(config.vec_env)
    except ValueError as exc:
        raise ConfigError(f"agent.vec_env: {exc}") from None
    observation_space, action_space = sequence.spaces
    drift = config.network.drift
    if drift != "none" and "theta" not in observation_space.spaces:
        raise ConfigError(
            f"agent.network.drift: {drift!r} needs a drifting task (a 'theta' observation); sequence "
            f"{sequence.name!r} has none"
        )
    if config.distil is not None and config.distil.arch is not None and observation_kind(observation_space) == "frames":
        raise ConfigError(
            f"agent.distil.arch: {config.distil.arch} sets the widths of an MLP distilled policy; sequence "
            f"{sequence.name!r} has image observations, whose distilled policy is a CNN of Q's torso (leave it out)"
        )
    acts_in = AGENTS[config.algo].action_spaces
    if not isinstance(action_space, acts_in):
        kinds = " or ".join(SPACE_WORDS.get(space, space.__name__) for space in acts_in)
        raise ConfigError(
            f"agent.algo: {config.algo!r} needs a {kinds} action space; sequence {sequence.name!r} has {action_space} "
            "(use algo: ppo)"
        )


def infers_tasks(config: RunConfig) -> bool:
    """Whether the run infers its task ids (PSP under hidden ids; the baselines have no contexts to choose)."""
    return config.sequence.task_ids == "hidden" and config.agent.method == "psp"


def check_inference_fits(config: RunConfig, sequence: TaskSequence) -> None:
    """Refuse, before any run dir is touched, task-inference evidence the sequence's spaces cannot give
    (``inference.count_fit`` on flat observations, dynamics evidence of continuous actions)."""
    if not infers_tasks(config):
        return
    observations, actions = sequence.spaces
    try:
        check_evidence_fits(config.inference.evidence, config.inference.count_fit, observations["obs"], actions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def psp_settings(config: AgentConfig, seed: int) -> PSPSettings:
    """How a resolved agent's networks superpose: its ``network`` section, with ``method`` picking
    the baseline's network."""
    network = config.network
    return PSPSettings(
        context=network.context,
        context_seed=seed if network.context_seed is None else network.context_seed,
        torso=network.torso,
        input_layer=network.input_layer,
        heads="per_task" if config.method == "multihead" else network.heads,
        separate=config.method == "separate",
        center=bool(network.center),
        drift=network.drift,
        init=network.init,
    )


def policy_kwargs(config: AgentConfig, seed: int) -> dict[str, Any]:
    """SB3's ``policy_kwargs`` of resolved settings: the PSP settings and the policy's options by
    name (saved in ``model.zip`` as plain values, so every later release loads them)."""
    kwargs: dict[str, Any] = dict(
        **psp_settings(config, seed).as_kwargs(), activation_fn=ACTIVATIONS[config.network.activation]
    )
    options, flat = AGENTS[config.algo].policy_options, config.flat()
    kwargs.update({name: flat[name] for name in options})
    if not kwargs["center"] and "center" not in options:
        del kwargs["center"]  # an uncentred PSP-PPO's saved policy_kwargs never named it: they load as saved
    if config.network.net_arch is not None:
        kwargs["net_arch"] = config.network.net_arch
    return kwargs


def build_agent(config: AgentConfig, env: VecEnv, seed: int, device: str = "auto") -> BaseAlgorithm:
    """A fresh continual agent on ``env``; options ``config`` leaves out take their defaults
    (:meth:`AgentConfig.resolved`; a trainer's config is resolved already, and stays so).

    The agent takes its options by their flat names (``distil_steps``), as its constructor does.
    """
    config = config.resolved(observation_kind(env.observation_space))
    agent_class, options = AGENTS[config.algo], config.flat()
    kwargs: dict[str, Any] = dict(config.sb3_kwargs(), task_lr_schedule=config.task_lr_schedule)
    kwargs.update({name: options[name] for name in agent_class.config_options if options[name] is not None})
    if issubclass(agent_class, OffPolicyAlgorithm):
        kwargs.update(replay_buffer_kwargs(options["replay_buffer"], env))
    agent = agent_class("PSPPolicy", env, seed=seed, device=device, policy_kwargs=policy_kwargs(config, seed), **kwargs)
    return with_precision(agent, config)


def with_precision(agent: BaseAlgorithm, config: AgentConfig) -> BaseAlgorithm:
    """``agent`` with ``config.precision`` resolved for the device it runs on (``agent.precision``),
    the choice logged: a built agent and a loaded one compute as their config says."""
    requested, complex_contexts = config.precision, config.network.context == "complex"
    torso = resolve_torso(agent.observation_space["obs"].shape, config.network.torso)
    agent.precision = resolve_precision(requested, agent.device, complex_contexts, torso)
    why = "agent.precision"
    if requested == "auto":
        if complex_contexts:
            why += " auto: complex contexts stay fp32"
        elif not native_bf16(agent.device):
            why += " auto: no native bf16"
        else:
            why += f" auto: native bf16, {'taken' if agent.precision == 'bf16' else 'not taken'} for the {torso} torso"
    log.info("update precision %s on %s (%s)", agent.precision, agent.device, why)
    if agent.precision == "bf16" and not native_bf16(agent.device):
        log.warning(
            "agent.precision: bf16 on %s, which has no native bf16 (AMX, AVX512-BF16 or a CUDA GPU): "
            "its updates run %s; expected auto or fp32 here", agent.device, EMULATED_BF16_SLOWDOWN,
        )  # fmt: skip
    return agent


def replay_buffer_kwargs(choice: str | None, env: VecEnv) -> dict[str, Any]:
    """SB3's ``replay_buffer_class`` / ``replay_buffer_kwargs`` for ``agent.replay_buffer``."""
    space = env.observation_space["obs"]
    encoding = compact_encoding(space)
    image = len(space.shape) >= 2
    if choice == "dict" or (choice in (None, "auto") and not (image and encoding)):
        return {}
    if encoding is None:
        raise ConfigError(
            f"agent.replay_buffer: 'compact' stores uint8 or 0/1 observations, got {space}; use 'dict' or 'auto'"
        )
    # Atari's FrameStackObservation: a new frame per step, so the stack is rebuilt from single frames.
    frame_stack = int(env.get_attr("stack_size")[0]) if env.has_attr("stack_size") else 1
    return {"replay_buffer_class": CompactDictReplayBuffer, "replay_buffer_kwargs": {"frame_stack": frame_stack}}


def build_callbacks(config: RunConfig) -> list[ContinualCallback]:
    """The loop hooks a run needs: online EWC for ``method: ewc``, the retention probes if enabled,
    task inference for PSP under hidden task ids, TensorBoard videos with ``eval.video_every``, the
    stage's best weights with ``keep_best``."""
    callbacks: list[ContinualCallback] = []
    agent = config.agent
    if infers_tasks(config):
        callbacks.append(TaskInference(**config.inference.model_dump()))
    if agent.method == "ewc":
        settings = (agent.ewc or EWCConfig()).model_dump(exclude_none=True)
        callbacks.append(OnlineEWC(**settings))
    if config.probes.enabled:
        callbacks.append(RetentionProbes(samples=config.probes.samples))
    if config.eval.video_every is not None:
        callbacks.append(TaskVideos(config.eval.video_every))
    if config.keep_best:
        callbacks.append(KeepStageBest())
    return callbacks


class ConfigAgentFactory(AgentFactory):
    """The agent an :class:`AgentConfig` describes (its replay buffer chosen from the env), built
    or loaded with the config's ``precision`` resolved for the device it runs on."""

    def __init__(self, config: AgentConfig, device: str = "auto") -> None:
        super().__init__(AGENTS[config.algo], device=device)
        self.config = config

    def build(self, env: VecEnv, seed: int) -> BaseAlgorithm:
        return build_agent(self.config, env, seed, self.device)

    def load(self, path: Path, env: VecEnv) -> BaseAlgorithm:
        return with_precision(super().load(path, env), self.config)


def config_for_run_dir(
    config: RunConfig, run_dir: str | Path, resume: bool | str, observation: ObservationKind | None = None
) -> RunConfig:
    """``config`` resolved (its left-out agent options set; ``observation``: the sequence's
    observation kind, see :meth:`~AgentConfig.resolved`), as the run in ``run_dir`` saved it when
    resuming one.

    Defaults are those of the day a run started: an agent option ``config`` leaves out takes the
    value the run recorded (:meth:`~RunConfig.with_defaults_of`), and a run saved before an option
    existed resumes as it ran (the option stays unset); a config that differs in a setting that
    shapes the run raises :class:`CheckpointError` naming it.
    """
    saved = RunDir(run_dir).config
    if not resume or not saved.exists():
        return config.resolved(observation)
    before = parse_config(yaml.safe_load(saved.read_text()), source=str(saved))
    config = config.with_defaults_of(before).resolved(observation)
    if not config.matches(before.shaping()):
        raise CheckpointError(f"run dir {str(run_dir)!r} {config.difference(before.shaping())}")
    return config.as_saved_by(before.shaping())


def loop_arguments(config: RunConfig, sequence: TaskSequence | None = None) -> dict[str, Any]:
    """The :class:`~psp_rl.continual.loop.ContinualLoop` arguments ``config`` describes (``sequence``:
    its task sequence, when built already)."""
    sequence = build_sequence(config.sequence) if sequence is None else sequence
    check_agent_fits(config.agent, sequence)
    check_inference_fits(config, sequence)
    return dict(
        agent=ConfigAgentFactory(config.agent, config.device),
        sequence=sequence,
        identity=config,
        callbacks=build_callbacks(config),
        eval=config.eval,
        checkpoint=config.checkpoint,
        seed=config.seed,
        seed_scheme=config.seed_scheme,
        n_envs=config.agent.n_envs,
        vec_env=config.agent.vec_env,
        env_threads=config.agent.env_threads,
        threads=config.threads,
    )


class ContinualTrainer(ContinualLoop):
    """Trains the agent a config describes on its task sequence; writes ``runs/<name>/``.

    :param config: the validated run config; options left out take their defaults now, so
        ``config.yaml`` and the checkpoints record what ran whatever later releases change them to.
    :param run_dir: the run directory (default ``runs/<config.name>``).
    :param resume: ``True``: continue the run in ``run_dir``; ``"or_start"``: continue it if there
        is one, else start one. A config that differs from the saved run in a setting that shapes
        it raises :class:`~psp_rl.continual.checkpoints.CheckpointError`.
    :param callbacks: hooks run after those the config brings (``method: ewc`` brings
        :class:`~psp_rl.plugins.ewc.OnlineEWC`, ``probes.enabled`` the retention probes).
    :param options: ``overwrite``, ``progress``, ``stop_within_s`` (see :class:`ContinualLoop`).
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path | None = None,
        *,
        resume: bool | Literal["or_start"] = False,
        callbacks: Sequence[ContinualCallback] = (),
        **options: object,
    ) -> None:
        check_resume(resume)  # before the run dir's config.yaml is read
        run_dir = Path(run_dir) if run_dir is not None else Path("runs") / config.name
        sequence = build_sequence(config.sequence)
        self.config = config_for_run_dir(config, run_dir, resume, observation_kind(sequence.spaces[0]))
        arguments = loop_arguments(self.config, sequence)
        arguments["callbacks"] = [*arguments["callbacks"], *callbacks]
        super().__init__(run_dir=run_dir, resume=resume, **arguments, **options)

    @property
    def name(self) -> str:
        return self.config.name
