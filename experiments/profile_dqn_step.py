"""Where a DQN env step's time goes, PSP vs vanilla SB3: the parts ``learn`` repeats, in CPU time.

    python -m experiments.profile_dqn_step [--rows minatar-dqn cartpole-dqn] [--repeats 3]

For each agent of ``bench_throughput.py`` (same rows, settings and env chains) it times, in CPU
microseconds (``time.process_time``, so other work on the cores moves the numbers less than it
moves wall time; memory contention still does):

- ``collect``: one env step of ``learn`` without its action choice or update (``learning_starts``
  beyond the steps: SB3 samples the action), i.e. the env, the replay buffer, the callbacks;
- ``predict``: one greedy action for one observation, as ``learn`` asks for it;
- ``update``: one call of ``train`` as ``learn`` makes it (``gradient_steps`` batches, after a
  switch from acting to training mode);
- ``step``: ``collect + predict + update / train_freq``, an env step once exploration has ended;
  ``speed/vanilla`` (vanilla's step over the agent's) is what ``bench_throughput``'s ratio should approach.

Best of ``--repeats`` interleaved measurements. It explains ``bench_throughput``'s ratios; it does
not replace them (their wall time also covers exploration and the learning start).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from experiments.bench_throughput import make_agent
from psp_rl.threads import set_threads

PARTS = ("collect", "predict", "update")


def _cpu_us(fn, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1e6


def measure(model, part: str, calls: int) -> float:
    """CPU microseconds of one ``part`` of ``model``'s env step (see the module docstring)."""
    if part == "collect":
        starts, model.learning_starts = model.learning_starts, 10**12
        try:
            return _cpu_us(lambda: model.learn(calls, reset_num_timesteps=False), 1) / calls
        finally:
            model.learning_starts = starts
    if part == "predict":
        obs = model.env.reset()
        model.policy.set_training_mode(False)
        return _cpu_us(lambda: model.predict(obs, deterministic=True), calls)

    def update() -> None:
        model.policy.set_training_mode(False)  # learn acts between two updates
        model.train(gradient_steps=model.gradient_steps, batch_size=model.batch_size)

    return _cpu_us(update, max(2, calls // (8 * model.gradient_steps)))  # ~calls / 8 batches (CartPole: 128 a call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["minatar-dqn", "cartpole-dqn"])
    parser.add_argument("--agents", nargs="+", default=["vanilla", "none", "binary", "binary-uncentred"])
    parser.add_argument("--calls", type=int, default=800, help="env steps / predictions per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2_000, help="env steps learned before measuring")
    args = parser.parse_args()
    set_threads(1)
    print("| row | agent | collect | predict | update | step | speed/vanilla |")
    print("|---|---|---|---|---|---|---|")
    for row in args.rows:
        models = {agent: make_agent(row, agent, 1, 20_000, 0, "cpu") for agent in args.agents}
        for model in models.values():
            model.learn(args.warmup)  # a filled buffer, the optimizer's state, paths taken once
        best = {(agent, part): np.inf for agent in models for part in PARTS}
        for _ in range(args.repeats):
            for agent, model in models.items():
                for part in PARTS:
                    best[agent, part] = min(best[agent, part], measure(model, part, args.calls))
        step = {
            agent: best[agent, "collect"] + best[agent, "predict"] + best[agent, "update"] / model.train_freq.frequency
            for agent, model in models.items()
        }
        for agent in models:
            parts = " | ".join(f"{best[agent, part]:.0f}" for part in PARTS)
            ratio = step["vanilla"] / step[agent] if "vanilla" in step else float("nan")
            print(f"| {row} | {agent} | {parts} | {step[agent]:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
