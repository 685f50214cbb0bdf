"""Env-steps/s of PSP agents vs vanilla SB3 on CartPole, measured in one run.

    python experiments/bench_agents.py [--steps 20000] [--repeats 2]

Vanilla SB3 (``MlpPolicy`` on the raw env) and PSP (``PSPPolicy`` on the ``{"obs", "task"}``
env) train the same steps with the same hyperparameters (rl-zoo's CartPole settings); runs are
interleaved and repeated so machine noise hits all alike. Prints steps/s and PSP/vanilla.
Target (issue 4): binary >= 0.90x vanilla.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.env_util import make_vec_env

from psp_rl.agents import ContinualDQN, ContinualPPO
from psp_rl.envs import get_sequence
from psp_rl.hyperparams import DQN_CARTPOLE, DQN_CARTPOLE_NET, PPO_CARTPOLE, PPO_CARTPOLE_ENVS


def _vanilla(algo: str, seed: int):
    if algo == "dqn":
        env = make_vec_env(lambda: gym.make("CartPole-v1"), 1, seed=seed)
        return DQN("MlpPolicy", env, seed=seed, policy_kwargs=dict(net_arch=DQN_CARTPOLE_NET), **DQN_CARTPOLE)
    env = make_vec_env(lambda: gym.make("CartPole-v1"), PPO_CARTPOLE_ENVS, seed=seed)
    return PPO("MlpPolicy", env, seed=seed, **PPO_CARTPOLE)


def _psp(algo: str, context: str, seed: int):
    seq = get_sequence("cartpole-shift", tasks=["default"])
    if algo == "dqn":
        env = seq.make_vec_env(0, 1, seed=seed)
        kwargs = dict(context=context, net_arch=DQN_CARTPOLE_NET)
        return ContinualDQN("PSPPolicy", env, seed=seed, policy_kwargs=kwargs, **DQN_CARTPOLE)
    env = seq.make_vec_env(0, PPO_CARTPOLE_ENVS, seed=seed)
    return ContinualPPO("PSPPolicy", env, seed=seed, policy_kwargs=dict(context=context), **PPO_CARTPOLE)


def steps_per_second(model, steps: int) -> float:
    start = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--contexts", nargs="+", default=["binary", "complex", "none"])
    args = parser.parse_args()
    for algo in ("dqn", "ppo"):
        rates: dict[str, list[float]] = {"vanilla": []} | {c: [] for c in args.contexts}
        for rep in range(args.repeats):
            rates["vanilla"].append(steps_per_second(_vanilla(algo, rep), args.steps))
            for context in args.contexts:
                rates[context].append(steps_per_second(_psp(algo, context, rep), args.steps))
        base = max(rates["vanilla"])
        print(f"{algo.upper()} CartPole-v1, {args.steps} steps, best of {args.repeats}:")
        for name, values in rates.items():
            print(f"  {name:<8} {max(values):8.0f} steps/s   ratio {max(values) / base:.2f}x")


if __name__ == "__main__":
    main()
