"""How should an MLP torso treat a narrow input? Measured on a two-task CartPole switch.

    python experiments/bench_input_layer.py [--steps 10000] [--seeds 0 1 2]

DQN trains on ``default`` then on ``reversed`` (the controls swapped). On states visited by the
task-0 policy we count how many greedy actions survive task 1, and the task-0 return before
and after, and how much task 0's Q-values move (``|dQ|``) against their size (``|Q|``) and the
gap between the two actions (``|gap|``). Rows: context x first-layer treatment x width.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from stable_baselines3.common.evaluation import evaluate_policy

from psp_rl.agents import ContinualDQN
from psp_rl.envs import get_sequence
from psp_rl.hyperparams import DQN_CARTPOLE


def visited_states(model, seq, n: int, seed: int) -> dict[str, np.ndarray]:
    env = seq.make_env(0, seed=seed)
    obs, _ = env.reset(seed=seed)
    states = []
    while len(states) < n:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(model.predict(obs, deterministic=True)[0])
        if terminated or truncated:
            obs, _ = env.reset()
    return {"obs": np.stack([s["obs"] for s in states]), "task": np.zeros(n, dtype=np.int64)}


def _q_values(model, states: dict) -> np.ndarray:
    obs, _ = model.policy.obs_to_tensor(states)
    with torch.no_grad():
        return model.q_net(obs).numpy()


def switch(context: str, input_layer: str, width: int, steps: int, seed: int) -> tuple[float, ...]:
    seq = get_sequence("cartpole-shift", tasks=["default", "reversed"])
    kwargs = dict(context=context, input_layer=input_layer, net_arch=[width, width])
    model = ContinualDQN(
        "PSPPolicy", seq.make_vec_env(0, 1, seed=seed), seed=seed, policy_kwargs=kwargs, **DQN_CARTPOLE
    )
    model.on_task_start(0, steps)
    model.learn(steps)
    states = visited_states(model, seq, 500, seed)
    before_actions, q_before = model.predict(states, deterministic=True)[0], _q_values(model, states)
    before, _ = evaluate_policy(model, seq.make_vec_env(0, 5, seed=100 + seed), n_eval_episodes=10)
    model.set_env(seq.make_vec_env(1, 1, seed=seed + 1))
    model.on_task_start(1, steps)
    model.learn(steps, reset_num_timesteps=False)
    after_actions, q_after = model.predict(states, deterministic=True)[0], _q_values(model, states)
    after, _ = evaluate_policy(model, seq.make_vec_env(0, 5, seed=100 + seed), n_eval_episodes=10)
    kept = float((before_actions == after_actions).mean())
    q_move, q_size = float(np.abs(q_after - q_before).mean()), float(np.abs(q_before).mean())
    gap = float(np.abs(q_before[:, 1] - q_before[:, 0]).mean())
    return kept, before, after, q_move, q_size, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--widths", type=int, nargs="+", default=[256])
    args = parser.parse_args()
    cases = [("none", "superposed")] + [(c, i) for c in ("binary", "complex") for i in ("per_task", "expand")]
    print("| context | first layer | width | greedy actions kept | task-0 return before | after | |dQ| | |Q| | |gap| |")
    print("|---|---|---|---|---|---|---|---|---|")
    for width in args.widths:
        for context, input_layer in cases:
            runs = np.array([switch(context, input_layer, width, args.steps, s) for s in args.seeds])
            kept, before, after, q_move, q_size, gap = runs.mean(axis=0)
            print(
                f"| {context} | {input_layer} | {width} | {kept:.3f} | {before:.0f} | {after:.0f} "
                f"| {q_move:.2f} | {q_size:.1f} | {gap:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
