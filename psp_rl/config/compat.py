"""Agent settings written before the nested ``agent`` sections: where each flat option lives now.

Every release before the sections wrote ``agent.center``, ``agent.buffer_size``, ``agent.ewc_lambda``
... flat, in configs and in each run's ``config.yaml``; a run's fingerprint hashes them under those
names. :func:`nest_agent_options` reads them into the sections (old configs, saved runs and
``--set agent.center=true`` keep working); :func:`flat_agent_options` writes the sections back under
the flat names, which is what a fingerprint hashes, so every saved run keeps its fingerprint.
"""

from __future__ import annotations

from typing import Any

# flat name -> (section, name in the section). The options that stay at the top of `agent` (algo,
# method, n_envs, vec_env, learning_rate, batch_size, gamma, max_grad_norm, task_lr_schedule) are
# the same in both shapes.
FLAT_OPTIONS: dict[str, tuple[str, str]] = {
    **{
        name: ("network", name)
        for name in (
            "context",
            "context_seed",
            "net_arch",
            "torso",
            "input_layer",
            "heads",
            "drift",
            "activation",
            "init",
        )
    },
    "center": ("network", "center"),
    **{
        name: ("dqn", name)
        for name in (
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
            "dueling",
            "advantage_learning",
            "acting",
            "rehearsal_states",
        )
    },
    **{f"distil_{name}": ("distil", name) for name in ("loss", "steps", "margin", "visits", "arch")},
    "ewc_lambda": ("ewc", "strength"),
    "ewc_decay": ("ewc", "decay"),
    "ewc_samples": ("ewc", "samples"),
    **{name: ("ppo", name) for name in ("n_steps", "n_epochs", "gae_lambda", "clip_range", "ent_coef", "vf_coef")},
}
SECTIONS = ("network", "dqn", "distil", "ewc", "ppo")


def nest_agent_options(agent: dict[str, Any]) -> dict[str, Any]:
    """An ``agent`` mapping with its flat options moved into their sections.

    A flat option set to ``None`` is dropped: earlier releases wrote every option, ``null`` for
    another algorithm's. A flat option and its nested key with two values raise ``ValueError``.
    """
    out = dict(agent)
    for flat, (section, name) in FLAT_OPTIONS.items():
        if flat not in out:
            continue
        value = out.pop(flat)
        if value is None:
            continue
        values = dict(out.get(section) or {})
        if name in values and values[name] != value:
            raise ValueError(
                f"agent.{flat} and agent.{section}.{name}: two values ({value!r}, {values[name]!r}); give one"
            )
        values[name] = value
        out[section] = values
    return out


def merge_agent_options(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay``'s agent settings laid over ``base``'s (a sweep's method, an ablation's variant),
    either written flat or nested: a section's settings replace only those they name."""
    out = nest_agent_options(base)
    for key, value in nest_agent_options(overlay).items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def flat_agent_options(agent: dict[str, Any]) -> dict[str, Any]:
    """A dumped ``agent`` section (``model_dump``) under the flat names every release hashes."""
    out = {key: value for key, value in agent.items() if key not in SECTIONS}
    for flat, (section, name) in FLAT_OPTIONS.items():
        out[flat] = (agent.get(section) or {}).get(name)
    return out


def nested_path(flat_path: str) -> str:
    """``"agent.distil_steps"`` -> ``"agent.distil.steps"`` (messages name today's keys)."""
    section, _, name = flat_path.partition(".")
    if section == "agent" and name in FLAT_OPTIONS:
        return "agent." + ".".join(FLAT_OPTIONS[name])
    return flat_path
