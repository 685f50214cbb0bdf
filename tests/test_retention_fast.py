"""One fast retention check per agent (default suite): after a second task, the default PSP
agent keeps task 0's return where the plain network (fine-tuning) loses it. CI fails if
retention regresses. PSP and its control are separate tests, so that parallel workers share them."""

import numpy as np
import pytest

from psp_rl.continual import ContinualTrainer, parse_config

AGENTS = {
    # rl-baselines3-zoo's CartPole settings, smaller networks and budgets
    "dqn": (
        {
            "algo": "dqn",
            "net_arch": [64, 64],
            "learning_rate": 0.0023,
            "batch_size": 64,
            "buffer_size": 20000,
            "learning_starts": 1000,
            "gamma": 0.99,
            "target_update_interval": 10,
            "train_freq": 256,
            "gradient_steps": 128,
            "exploration_fraction": 0.16,
            "exploration_final_eps": 0.04,
        },
        12_000,
    ),
    "ppo": (
        {
            "algo": "ppo",
            "n_envs": 8,
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "ent_coef": 0.0,
            "learning_rate": 0.001,
            "clip_range": 0.2,
        },
        20_000,
    ),
}


def task0_returns(tmp_path, algo: str, method: str, seed: int = 0) -> tuple[float, float]:
    """Task 0's (default) mean return after training it, and after training 'reversed' next."""
    agent, steps = AGENTS[algo]
    config = {
        "name": f"{algo}-{method}",
        "seed": seed,
        "sequence": {"name": "cartpole-shift", "tasks": ["default", "reversed"], "steps": steps},
        "agent": {**agent, "method": method, "context": "binary" if method == "psp" else "none"},
        "eval": {"every": steps, "episodes": 10},
        "checkpoint": {"every": steps, "replay_buffer": False},
    }
    metrics = ContinualTrainer(parse_config(config), tmp_path / f"{algo}-{method}").run()
    matrix = np.array(metrics["eval_matrix"])
    return float(matrix[0, 0]), float(matrix[1, 0])


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_default_psp_agent_keeps_task_0(tmp_path, algo):
    before, after = task0_returns(tmp_path, algo, "psp")
    assert before >= 100, before  # task 0 was learned at all
    assert after >= 0.8 * before, (before, after)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_finetuning_loses_task_0_on_the_same_budget(tmp_path, algo):
    """The control: the same agent with a plain network forgets, so the check above can fail."""
    before, after = task0_returns(tmp_path, algo, "finetune")
    assert before >= 100, before
    assert after < 0.3 * before, (before, after)
