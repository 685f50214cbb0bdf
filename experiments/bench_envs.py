"""Raw env steps/s of every built-in sequence's first task (random actions, with the task wrapper).

    python experiments/bench_envs.py [--steps 5000]

Prints a markdown table (the one in README.md).
"""

from __future__ import annotations

import argparse
import time
import warnings

from psp_rl.envs import get_sequence, list_sequences


def steps_per_second(env, steps: int) -> float:
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| sequence | tasks | observation | actions | raw steps/s |")
    print("|---|---|---|---|---|")
    for name in list_sequences():
        seq = get_sequence(name)
        steps = args.steps // 10 if name.startswith("atari") else args.steps
        rate = steps_per_second(seq.make_env(0), steps)
        obs = seq.observation_space["obs"]
        print(f"| `{name}` | {', '.join(seq.names)} | {obs.shape} {obs.dtype} | {seq.action_space} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
