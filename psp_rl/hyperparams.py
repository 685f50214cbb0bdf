"""Tuned SB3 hyperparameters (from rl-baselines3-zoo) used as defaults by configs and benchmarks."""

from __future__ import annotations

from typing import Any

# rl-zoo's CartPole-v1 DQN: solves in ~50k steps; large train_freq / gradient_steps keep it fast on CPU.
DQN_CARTPOLE: dict[str, Any] = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
)
DQN_CARTPOLE_NET = [256, 256]

# rl-zoo's CartPole-v1 PPO (8 envs) with constant learning rate and clip range.
PPO_CARTPOLE: dict[str, Any] = dict(
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=1e-3,
    clip_range=0.2,
)
PPO_CARTPOLE_ENVS = 8
