"""Env-steps/s of PSP agents vs vanilla SB3, and replay bytes per transition, measured in one run.

    python experiments/bench_throughput.py [--repeats 3] [--out experiments/results/throughput/cpu.md]
    python experiments/bench_throughput.py --device cuda --atari      # the GPU rows

    python experiments/bench_throughput.py --rows atari-ppo --n-envs 8 --steps 4096   # Atari PPO only

Rows: CartPole DQN and PPO (rl-zoo's settings) and MinAtar DQN (Breakout, minatar.yaml's
settings), each with n_envs 1 and 8; with ``--atari`` Pong DQN and Breakout PPO (CleanRL's Atari
PPO settings). Agents: ``vanilla`` (SB3 with ``MlpPolicy`` on the raw env, ``CnnPolicy`` on Atari's
frames: the package's gymnasium wrapper chain without the task id, what a user would run; on
MinAtar SB3's DQN with the MinAtar CNN as a features extractor), and PSP agents as a config builds
them (``method: psp`` with its defaults) for ``binary`` and ``complex`` contexts, ``none``: the
plain network behind the ``{"obs", "task"}`` observation (``method: finetune``), all on the same
env chain as vanilla, ``binary-ale``: PSP binary on ale-py's C++ vector env (``vec_env: ale``,
one ALE thread; Atari rows only), the configuration a run uses, and ``binary-uncentred``: PSP-DQN
binary with ``center: false`` (DQN rows only), so that one run prices the centring, and
``vanilla-fused``: vanilla SB3 DQN given the fused Adam PSP-DQN uses (DQN rows only), so that one
run also prices the optimizer, and ``binary-fp32``: PSP binary held to ``precision: fp32``, so that on a
machine where ``auto`` takes bf16 (a CUDA GPU, a CPU with AMX or AVX512-BF16) one run prices the bf16
autocast of the Nature CNN (``auto`` keeps the other torsos fp32); the machine line says what ``auto``
takes. Stock SB3 always runs fp32.
DQN with n_envs 8 keeps the one-env replay ratio (vanilla: ``train_freq / 8`` vector steps).
Runs are interleaved, one process at a time, best of ``--repeats``; torch uses one thread unless
``--threads`` says otherwise. Timed: ``learn(steps)`` from a fresh agent, updates included
(``learning_starts`` is a tenth of the steps).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from torch import nn

from psp_rl.agents import CompactDictReplayBuffer
from psp_rl.config.agent import AgentConfig
from psp_rl.config.build import build_agent, replay_buffer_kwargs
from psp_rl.envs import get_sequence
from psp_rl.hyperparams import DQN_CARTPOLE, DQN_CARTPOLE_NET, PPO_CARTPOLE
from psp_rl.precision import resolve_precision
from psp_rl.threads import set_threads

MINATAR_DQN: dict[str, Any] = dict(
    learning_rate=1e-4, batch_size=32, buffer_size=100_000, gamma=0.99, target_update_interval=1000,
    train_freq=4, gradient_steps=1, exploration_fraction=0.1, exploration_final_eps=0.01,
)  # fmt: skip
ATARI_DQN: dict[str, Any] = dict(
    learning_rate=1e-4, batch_size=32, buffer_size=100_000, gamma=0.99, target_update_interval=1000,
    train_freq=4, gradient_steps=1, exploration_fraction=0.1, exploration_final_eps=0.01,
)  # fmt: skip
# CleanRL's Atari PPO (ppo_atari.py): 8 envs x 128 steps, 4 epochs of 4 minibatches.
ATARI_PPO: dict[str, Any] = dict(
    n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4, gamma=0.99, gae_lambda=0.95,
    clip_range=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
)  # fmt: skip
AGENTS = ("vanilla", "binary", "complex", "none", "binary-ale", "binary-uncentred", "vanilla-fused", "binary-fp32")
VANILLA = ("vanilla", "vanilla-fused")  # stock SB3 agents: DQN's train_freq counts their vector steps


class MinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar network's torso (Young & Tian 2019) for vanilla SB3: a 3x3 conv of 16, 128 units."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape
        flat = 16 * (height - 2) * (width - 2)
        self.net = nn.Sequential(nn.Conv2d(channels, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(flat, 128), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class _Plain(gym.ObservationWrapper):
    """The ``obs`` of a ``{"obs", "task"}`` env: the same env and preprocessing, no task id."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space["obs"]

    def observation(self, observation: dict) -> Any:
        return observation["obs"]


def _plain_vec_env(sequence, n_envs: int, seed: int) -> VecEnv:
    from stable_baselines3.common.monitor import Monitor

    venv = DummyVecEnv([lambda: Monitor(_Plain(sequence.make_env(0)))] * n_envs)
    venv.seed(seed)
    return venv


def _per_transition(hparams: dict[str, Any], n_envs: int, steps: int) -> dict[str, Any]:
    """DQN settings for ``steps`` env steps, with the one-env replay ratio for vanilla SB3."""
    out = {**hparams, "learning_starts": steps // 10}
    if n_envs > 1 and "train_freq" in out:  # SB3 counts vector steps: update n_envs x as often per step
        tf, gs = out["train_freq"], out["gradient_steps"]
        out["train_freq"] = max(1, tf // n_envs)
        out["gradient_steps"] = max(1, round(gs * out["train_freq"] * n_envs / tf))
    return out


def _case(row: str) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """(sequence, algo, SB3 hyperparameters, vanilla policy kwargs) of a benchmark row."""
    if row == "cartpole-dqn":
        return get_sequence("cartpole-shift", tasks=["default"]), "dqn", DQN_CARTPOLE, dict(net_arch=DQN_CARTPOLE_NET)
    if row == "cartpole-ppo":
        return get_sequence("cartpole-shift", tasks=["default"]), "ppo", PPO_CARTPOLE, {}
    if row == "minatar-dqn":
        kwargs = dict(features_extractor_class=MinAtarCNN, net_arch=[])
        return get_sequence("minatar", tasks=["breakout"]), "dqn", MINATAR_DQN, kwargs
    if row == "atari-dqn":
        kwargs = dict(net_arch=[])  # SB3's NatureCNN, as the PSP torso
        return get_sequence("atari-small", tasks=["pong"]), "dqn", ATARI_DQN, kwargs
    if row == "atari-ppo":  # SB3's CnnPolicy: one NatureCNN shared by actor and critic, as the PSP policy
        return get_sequence("atari-small", tasks=["breakout"]), "ppo", ATARI_PPO, {}
    raise ValueError(f"row {row!r}: unknown")


def make_agent(row: str, agent: str, n_envs: int, steps: int, seed: int, device: str):
    sequence, algo, hparams, vanilla_kwargs = _case(row)
    hparams = dict(hparams)
    if algo == "dqn":  # ContinualDQN keeps the one-env ratio itself; vanilla SB3 is told in vector steps
        hparams = _per_transition(hparams, n_envs if agent in VANILLA else 1, steps)
    if algo == "ppo":
        hparams["n_steps"] = max(hparams["n_steps"], 256 // n_envs)  # a rollout of >= 256 transitions
    if agent in VANILLA:
        image = row.startswith("atari")
        cls, policy = (
            (DQN, "CnnPolicy" if image else "MlpPolicy")
            if algo == "dqn"
            else (PPO, "CnnPolicy" if image else "MlpPolicy")
        )
        if agent == "vanilla-fused":  # PSP-DQN's optimizer (Adam's fused kernel), DQN rows only
            if algo != "dqn":
                return None
            vanilla_kwargs = {**vanilla_kwargs, "optimizer_kwargs": {"fused": True}}
        env = _plain_vec_env(sequence, n_envs, seed)
        return cls(policy, env, seed=seed, device=device, policy_kwargs=vanilla_kwargs, **hparams)
    # binary-ale: PSP binary on ale-py's C++ vector env (the others step the gymnasium chain, as vanilla)
    method, context = ("finetune", "none") if agent == "none" else ("psp", agent.split("-")[0])
    settings: dict[str, Any] = dict(algo=algo, method=method, context=context, n_envs=n_envs, **hparams)
    if agent == "binary-uncentred":
        if algo != "dqn":  # (PSP-PPO does not centre by default)
            return None
        settings["center"] = False
    if agent == "binary-fp32":
        settings["precision"] = "fp32"
    if row.startswith("cartpole") and algo == "dqn":
        settings["net_arch"] = DQN_CARTPOLE_NET
    vec_env = "ale" if agent.endswith("-ale") else "dummy"
    if vec_env == "ale" and not row.startswith("atari"):
        return None
    env = sequence.make_vec_env(0, n_envs, seed=seed, vec_env=vec_env)
    return build_agent(AgentConfig(**settings).resolved(), env, seed, device)


def steps_per_second(model, steps: int) -> float:
    start = time.perf_counter()
    model.learn(steps)
    rate = model.num_timesteps / (time.perf_counter() - start)
    model.env.close()
    return rate


def replay_bytes(row: str, transitions: int) -> tuple[float, float]:
    """Bytes per transition of SB3's DictReplayBuffer and of the compact buffer, filled by random play."""
    sequence = (
        get_sequence("minatar", tasks=["breakout"]) if row == "minatar" else get_sequence("atari-small", tasks=["pong"])
    )
    env = sequence.make_vec_env(0, 1, seed=0)
    space, actions = env.observation_space, env.action_space
    plain = DictReplayBuffer(transitions, space, actions, device="cpu")
    compact_kwargs = replay_buffer_kwargs("compact", env)["replay_buffer_kwargs"]
    compact = CompactDictReplayBuffer(transitions, space, actions, device="cpu", **compact_kwargs)
    obs = env.reset()
    for _ in range(transitions):
        action = np.array([actions.sample()])
        next_obs, reward, done, infos = env.step(action)
        stored_next = {key: value.copy() for key, value in next_obs.items()}
        if done[0]:
            stored_next["obs"][0] = infos[0]["terminal_observation"]["obs"]
        for buffer in (plain, compact):
            buffer.add({k: v.copy() for k, v in obs.items()}, stored_next, action, reward, done, infos)
        obs = next_obs
    env.close()
    plain_bytes = sum(a.nbytes for a in (*plain.observations.values(), *plain.next_observations.values()))
    plain_bytes += sum(a.nbytes for a in (plain.actions, plain.rewards, plain.dones, plain.timeouts))
    return plain_bytes / transitions, compact.nbytes() / transitions


def machine(device: str, threads: int | str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = f"{cpu}, {os.cpu_count()} cores, torch threads {threads}"
    if device == "cuda":
        where += f", GPU {torch.cuda.get_device_name(0)}"
    auto = resolve_precision("auto", torch.device(device), torso="nature_cnn")
    return where + f"; precision auto takes {auto} for the Nature CNN, fp32 for the others"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["cartpole-dqn", "cartpole-ppo", "minatar-dqn"])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, nargs="+", help="steps per row (default: 10k DQN, 30k PPO)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1", help="torch threads: an int or 'auto'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--atari", action="store_true", help="add the Atari rows (Pong DQN, Breakout PPO)")
    parser.add_argument("--replay-transitions", type=int, default=5000, help="0: skip the replay bytes")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    threads = args.threads if args.threads == "auto" else int(args.threads)
    set_threads(threads)
    rows = args.rows + (["atari-dqn", "atari-ppo"] if args.atari else [])
    lines = [f"# Throughput: env-steps/s, best of {args.repeats} interleaved runs", ""]
    lines += [f"Machine: {machine(args.device, threads)}; device {args.device}.", ""]
    lines += ["| row | n_envs | steps | " + " | ".join(args.agents) + " | " + " | ".join(
        f"{a}/vanilla" for a in args.agents if a != "vanilla") + " |"]  # fmt: skip
    lines += ["|" + "---|" * (3 + 2 * len(args.agents) - 1)]
    for i, row in enumerate(rows):
        steps = args.steps[min(i, len(args.steps) - 1)] if args.steps else (30_000 if "ppo" in row else 10_000)
        for n_envs in args.n_envs:
            rates: dict[str, list[float]] = {agent: [] for agent in args.agents}
            for repeat in range(args.repeats):
                for agent in args.agents:
                    model = make_agent(row, agent, n_envs, steps, repeat, args.device)
                    if model is not None:  # (the ale vector env steps Atari only)
                        rates[agent].append(steps_per_second(model, steps))
            best = {agent: max(values, default=float("nan")) for agent, values in rates.items()}
            ratios = [f"{best[a] / best['vanilla']:.2f}x" for a in args.agents if a != "vanilla" and "vanilla" in best]
            line = f"| {row} | {n_envs} | {steps} | " + " | ".join(f"{best[a]:.0f}" for a in args.agents)
            lines.append(line + " | " + " | ".join(ratios) + " |")
            print(lines[-1], flush=True)
    if args.replay_transitions:
        lines += ["", "| replay | DictReplayBuffer B/transition | compact B/transition | per 1M transitions |"]
        lines += ["|---|---|---|---|"]
        for name in ("minatar", "atari"):
            plain, compact = replay_bytes(name, args.replay_transitions)
            lines.append(f"| {name} | {plain:.0f} | {compact:.0f} | {plain / 1e3:.1f} GB -> {compact / 1e3:.2f} GB |")
            print(lines[-1], flush=True)
    lines += ["", "Command: `python " + " ".join(["experiments/bench_throughput.py", *sys.argv[1:]]) + "`", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
