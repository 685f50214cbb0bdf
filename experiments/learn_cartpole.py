"""Does PSP learn? PSP-DQN (60k steps) and PSP-PPO (100k steps) on CartPole-v1, 3 seeds each.

    python experiments/learn_cartpole.py [--algo dqn|ppo|both] [--seeds 0 1 2] [--context binary] [--steps N]

Prints the deterministic mean return over 20 episodes per seed. Targets (issue 4): DQN >= 450
on at least 2 of 3 seeds within 60k steps; PPO >= 475 within 100k steps.
"""

from __future__ import annotations

import argparse
import time

from stable_baselines3.common.evaluation import evaluate_policy

from psp_rl.agents import ContinualDQN, ContinualPPO
from psp_rl.envs import get_sequence
from psp_rl.hyperparams import DQN_CARTPOLE, DQN_CARTPOLE_NET, PPO_CARTPOLE, PPO_CARTPOLE_ENVS


def train(algo: str, context: str, seed: int, steps: int | None = None) -> tuple[float, float]:
    seq = get_sequence("cartpole-shift", tasks=["default"])
    if algo == "dqn":
        steps, env = steps or 60_000, seq.make_vec_env(0, 1, seed=seed)
        kwargs = dict(DQN_CARTPOLE, policy_kwargs=dict(context=context, net_arch=DQN_CARTPOLE_NET))
        model = ContinualDQN("PSPPolicy", env, seed=seed, **kwargs)
    else:
        steps, env = steps or 100_000, seq.make_vec_env(0, PPO_CARTPOLE_ENVS, seed=seed)
        model = ContinualPPO("PSPPolicy", env, seed=seed, policy_kwargs=dict(context=context), **PPO_CARTPOLE)
    model.on_task_start(0, steps)
    start = time.perf_counter()
    model.learn(steps)
    mean, _ = evaluate_policy(model, seq.make_vec_env(0, 4, seed=10_000 + seed), n_eval_episodes=20)
    return mean, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["dqn", "ppo", "both"], default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--context", default="binary")
    parser.add_argument("--steps", type=int, help="env steps per run (default: 60k DQN, 100k PPO: the targets' budget)")
    args = parser.parse_args()
    for algo in ["dqn", "ppo"] if args.algo == "both" else [args.algo]:
        target = 450 if algo == "dqn" else 475
        results = [train(algo, args.context, seed, args.steps) for seed in args.seeds]
        for seed, (mean, secs) in zip(args.seeds, results, strict=True):
            print(f"{algo} context={args.context} seed={seed}: mean return {mean:.1f} ({secs:.0f} s)", flush=True)
        hits = sum(mean >= target for mean, _ in results)
        print(f"{algo}: {hits}/{len(results)} seeds reach {target}", flush=True)


if __name__ == "__main__":
    main()
