"""Raw env steps/s of every built-in sequence's first task (random actions, with the task wrapper).

    python experiments/bench_envs.py [--steps 5000]
    python experiments/bench_envs.py --atari-vec [--game Pong --n-envs 8 --steps 4000]

Prints a markdown table (the one in README.md). ``--atari-vec`` compares the two ways a run steps an
Atari task's training envs, in one run on this machine: the gymnasium wrapper chain in SB3's
``DummyVecEnv`` (``vec_env: dummy``) and ale-py's C++ vector env (``vec_env: ale``) with 1 and 2
threads; env steps/s summed over the envs, random actions, and the ratios to the chain.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from psp_rl.envs import get_sequence, list_sequences, sequence_from_spec


def steps_per_second(env, steps: int) -> float:
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vec_steps_per_second(venv, steps: int, seed: int = 0) -> float:
    """Env steps/s (summed over the envs) of ``steps`` vector steps of random actions."""
    rng = np.random.default_rng(seed)
    venv.seed(seed)
    venv.reset()
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.integers(venv.action_space.n, size=venv.num_envs))
    rate = steps * venv.num_envs / (time.perf_counter() - start)
    venv.close()
    return rate


def atari_vec(game: str, n_envs: int, steps: int) -> None:
    from psp_rl.envs.atari_vector import AtariTaskVecEnv

    sequence = sequence_from_spec({"tasks": [{"atari": game}], "steps": 1})
    chain = vec_steps_per_second(sequence.make_vec_env(0, n_envs, vec_env="dummy"), steps)
    print(f"{game}, {n_envs} envs, {steps} vector steps, random actions, sticky 0.25, full actions\n")
    print("| training envs | env steps/s | vs the chain |\n|---|---:|---:|")
    print(f"| wrapper chain in DummyVecEnv (vec_env: dummy) | {chain:,.0f} | 1.00x |")
    for threads in (1, 2):
        rate = vec_steps_per_second(AtariTaskVecEnv(game, n_envs, 0, 1, num_threads=threads), steps)
        label = f"ale-py vector env, {threads} thread{'s' * (threads > 1)} (vec_env: ale)"
        print(f"| {label} | {rate:,.0f} | {rate / chain:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--atari-vec", action="store_true", help="the Atari training vec envs compared")
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--n-envs", type=int, default=8)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.atari_vec:
        atari_vec(args.game, args.n_envs, args.steps)
        return
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
