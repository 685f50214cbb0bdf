"""Build the sequence and the agent a :class:`~psp_rl.continual.config.RunConfig` describes."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from psp_rl.agents import ContinualDQN, ContinualPPO
from psp_rl.continual.callbacks import ContinualCallback
from psp_rl.continual.config import AgentConfig, ConfigError, RunConfig, SequenceConfig
from psp_rl.continual.ewc import OnlineEWC
from psp_rl.continual.probes import RetentionProbes
from psp_rl.envs import TaskSequence, get_sequence, sequence_from_spec

AGENT_CLASSES: dict[str, type[BaseAlgorithm]] = {"dqn": ContinualDQN, "ppo": ContinualPPO}
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def build_sequence(config: SequenceConfig) -> TaskSequence:
    """The task sequence of a config; bad names or specs raise :class:`ConfigError` naming the field."""
    try:
        if config.name is not None:
            return get_sequence(
                config.name, steps=config.steps, tasks=config.tasks, cycles=config.cycles, max_tasks=config.max_tasks
            )
        spec = dict(config.spec or {})
        for key in ("steps", "cycles", "max_tasks"):
            if getattr(config, key) is not None and key not in spec:
                spec[key] = getattr(config, key)
        return sequence_from_spec(spec)
    except ValueError as exc:
        raise ConfigError(f"sequence: {exc}") from None


def policy_kwargs(config: AgentConfig, seed: int) -> dict[str, Any]:
    config = config.resolved()
    kwargs: dict[str, Any] = dict(
        context=config.context,
        context_seed=seed if config.context_seed is None else config.context_seed,
        torso=config.torso,
        input_layer=config.input_layer,
        heads="per_task" if config.method == "multihead" else config.heads,
        separate=config.method == "separate",
        activation_fn=ACTIVATIONS[config.activation],
    )
    if config.algo == "dqn":
        kwargs.update(dueling=config.dueling, center=config.center, acting=config.acting)
    if config.net_arch is not None:
        kwargs["net_arch"] = config.net_arch
    return kwargs


def build_agent(config: AgentConfig, env: VecEnv, seed: int, device: str = "auto") -> BaseAlgorithm:
    """A fresh continual agent on ``env``."""
    kwargs = config.sb3_kwargs()
    config = config.resolved()
    kwargs["task_lr_schedule"] = config.task_lr_schedule
    if config.algo == "dqn":
        kwargs.update(
            advantage_learning=config.advantage_learning,
            distil_loss=config.distil_loss,
            distil_steps=config.distil_steps,
        )
        if config.replay_on_switch is not None:
            kwargs["replay_on_switch"] = config.replay_on_switch
    return AGENT_CLASSES[config.algo](
        "PSPPolicy", env, seed=seed, device=device, policy_kwargs=policy_kwargs(config, seed), **kwargs
    )


def build_callbacks(config: RunConfig) -> list[ContinualCallback]:
    """The loop hooks a run needs: online EWC for ``method: ewc``, the retention probes if enabled."""
    callbacks: list[ContinualCallback] = []
    agent = config.agent
    if agent.method == "ewc":
        settings = {"strength": agent.ewc_lambda, "decay": agent.ewc_decay, "samples": agent.ewc_samples}
        callbacks.append(OnlineEWC(**{key: value for key, value in settings.items() if value is not None}))
    if config.probes.enabled:
        callbacks.append(RetentionProbes(samples=config.probes.samples))
    return callbacks
