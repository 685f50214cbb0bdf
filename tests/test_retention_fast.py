"""One fast retention check per agent (default suite): after a second task, the default PSP
agent keeps task 0's return where the plain network (fine-tuning) loses it. CI fails if
retention regresses. PSP and its control are separate tests, so that parallel workers share them."""

import numpy as np
import pytest

from psp_rl.continual import ContinualCallback, ContinualTrainer, parse_config

EPISODES = 20  # evaluation episodes of task 0
STATES = 1000  # task-0 states whose greedy actions are compared
LEARNED = 50  # task 0's return at its end: over twice random play's ~22
KEPT = 0.8  # share of task 0's greedy actions still taken
RETURN_KEPT = 0.5  # share of task 0's return still got

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


class _GreedyActions(ContinualCallback):
    """Task 0's greedy actions on the states its own greedy policy visits, at the end of task 0."""

    def after_task(self, loop, stage, task):
        if stage == 0:
            env = loop.sequence.make_env(0, seed=loop.seed)
            obs, _ = env.reset(seed=loop.seed)
            states = []
            while len(states) < STATES:
                states.append(obs)
                obs, _, terminated, truncated, _ = env.step(loop.agent.predict(obs, deterministic=True)[0])
                if terminated or truncated:
                    obs, _ = env.reset()
            self.states = {key: np.stack([s[key] for s in states]) for key in states[0]}
            self.actions = loop.agent.predict(self.states, deterministic=True)[0]


def task0_retention(tmp_path, algo: str, method: str, seed: int = 0, steps: int | None = None) -> dict[str, float]:
    """Task 0's (default) mean return after training it (``before``) and after training 'reversed'
    next (``after``), and the share of task 0's greedy actions the final agent still takes
    (``kept``) on the states task 0's policy visited."""
    agent, default_steps = AGENTS[algo]
    steps = steps or default_steps
    config = {
        "name": f"{algo}-{method}",
        "seed": seed,
        "sequence": {"name": "cartpole-shift", "tasks": ["default", "reversed"], "steps": steps},
        "agent": {**agent, "method": method, "context": "binary" if method == "psp" else "none"},
        "eval": {"every": steps, "episodes": EPISODES},
        "checkpoint": {"every": steps, "replay_buffer": False},
    }
    greedy = _GreedyActions()
    trainer = ContinualTrainer(parse_config(config), tmp_path / f"{algo}-{method}", callbacks=[greedy])
    matrix = np.array(trainer.run()["eval_matrix"])
    kept = float((trainer.agent.predict(greedy.states, deterministic=True)[0] == greedy.actions).mean())
    return {"before": float(matrix[0, 0]), "after": float(matrix[1, 0]), "kept": kept}


@pytest.mark.learning
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_default_psp_agent_keeps_task_0(tmp_path, algo, learning_seed, record_property):
    result = task0_retention(tmp_path, algo, "psp", learning_seed)
    for key, value in result.items():
        record_property(key, value)
    assert result["before"] >= LEARNED, result  # task 0 was learned at all
    assert result["kept"] >= KEPT, result
    assert result["after"] >= RETURN_KEPT * result["before"], result


@pytest.mark.learning
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_finetuning_loses_task_0_on_the_same_budget(tmp_path, algo, learning_seed, record_property):
    """The control: the same agent with a plain network forgets, so the check above can fail."""
    result = task0_retention(tmp_path, algo, "finetune", learning_seed)
    for key, value in result.items():
        record_property(key, value)
    assert result["before"] >= LEARNED, result
    assert result["kept"] < KEPT, result
    assert result["after"] < RETURN_KEPT * result["before"], result
