import atexit
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

# Training tests use a handful of small networks; one thread each keeps them fast and deterministic on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# SB3 makes a fresh /tmp/SB3-<time> folder for every agent that learns without a logger of its own (hundreds a
# suite, left behind); its SB3_LOGDIR names one folder instead, this process's (and its CLI children's), removed
# at exit.
if "SB3_LOGDIR" not in os.environ:
    os.environ["SB3_LOGDIR"] = tempfile.mkdtemp(prefix="psp-rl-tests-sb3-")
    atexit.register(shutil.rmtree, os.environ["SB3_LOGDIR"], ignore_errors=True)
warnings.filterwarnings("ignore", category=DeprecationWarning)


def pytest_addoption(parser):
    parser.addoption(
        "--learning-seed",
        type=int,
        default=0,
        help="seed of the learning tests (marked `learning`); experiments/learning_margins.py runs them at "
        "seeds 0-4 on every float path of the machine",
    )


# The files whose tests train for minutes, then those holding a test of ~40-60 s (durations of the default suite,
# 2026-12-03): collected first, longest first, so that the two workers of `pytest -n auto` start them early
# instead of one worker finishing one alone at the end (the suite's wall time was ~100 s over half its sum).
LONG_FIRST = (
    "tests/test_retention_fast.py",
    "tests/sweep/test_sweep.py",
    "tests/core/test_layers.py",
    "tests/envs/test_atari_vector.py",
    "tests/plugins/test_keep_best.py",
    "tests/envs/test_episodes.py",
    "tests/plugins/test_ewc.py",
    "tests/agents/test_distillation.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture
def learning_seed(request) -> int:
    """The seed a learning test trains with (``--learning-seed``, 0 by default). A different CPU picks
    different float kernels and acts like a different seed, so each learning test's threshold has a
    margin measured over seeds 0-4 on several float paths (its docstring says which)."""
    return request.config.getoption("--learning-seed")


_TINY = {
    "name": "tiny",
    "seed": 0,
    "sequence": {"name": "cartpole-shift", "tasks": ["default", "reversed"], "steps": 1500},
    "agent": {
        "algo": "dqn",
        "context": "binary",
        "net_arch": [32, 32],
        "learning_starts": 200,
        "train_freq": 64,
        "gradient_steps": 32,
        "buffer_size": 5000,
        "distil_steps": 300,  # PSP-DQN's distillation at each switch: the default 3000 is most of a tiny run
    },
    "eval": {"every": 500, "episodes": 2},
    "checkpoint": {"every": 1000},
}


def tiny(changes: dict[str, Any] | None = None) -> dict:
    """The tiny config: a 2-task cartpole-shift DQN run of 2 x 1500 steps (a few seconds), a fresh
    copy, with ``changes`` set by dotted key (``{"sequence.steps": 300}``; :data:`DELETE` removes one)."""
    config = copy.deepcopy(_TINY)
    for dotted, value in (changes or {}).items():
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return config


class _Delete:
    """Marks a key for :func:`tiny` to remove; its repr keeps test ids stable across processes (xdist)."""

    def __repr__(self) -> str:
        return "<deleted>"


DELETE = _Delete()


@pytest.fixture
def tiny_config() -> dict:
    """:func:`tiny`'s config, for a test to change."""
    return tiny()


def train_command(config_path: Path, run_dir: Path, *extra: str) -> list[str]:
    """``psp-rl train CONFIG --run-dir RUN_DIR ...`` as a fresh Python process's argv."""
    return [sys.executable, "-m", "psp_rl.cli", "train", str(config_path), "--run-dir", str(run_dir), *extra]


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``psp-rl ARGS`` in a fresh process (as a user's shell would); output captured as text.

    :param env: variables added to this process's environment (``PSP_RL_KILL_AT``, ...).
    """
    command = [sys.executable, "-m", "psp_rl.cli", *args]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd, timeout=timeout)


def run_train(config_path: Path, run_dir: Path, *extra: str, env: dict | None = None):
    """``psp-rl train CONFIG --run-dir RUN_DIR ...`` in a fresh process (see :func:`run_cli`)."""
    return run_cli("train", str(config_path), "--run-dir", str(run_dir), *extra, env=env)


def train_here(config_path: Path | str, run_dir: Path, *extra: str) -> None:
    """``psp-rl train CONFIG --run-dir RUN_DIR ...`` (CONFIG a file or a shipped name) in this process, which must
    succeed. A fresh process costs seconds of imports (torch, SB3, torch._dynamo at the first optimizer); a run's
    state lives in its run dir, so a resume here reads what a fresh process would (the kill tests kill a fresh one)."""
    from psp_rl.cli import main

    assert main(["train", str(config_path), "--run-dir", str(run_dir), "--no-progress", *extra]) == 0


def finished_run(root: Path, config: dict) -> tuple[Path, Path]:
    """``config`` written to ``root`` and trained uninterrupted by ``psp-rl train`` (in this process):
    (config file, run dir)."""
    config_path = root / f"{config['name']}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    train_here(config_path, root / "whole")
    return config_path, root / "whole"


def write_config(directory: Path, config: dict, name: str = "config.yaml") -> Path:
    """``config`` as a YAML file in ``directory``; returns its path."""
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(config))
    return path


def small_dqn(env, seed: int = 0, **kwargs):
    """A PSP-DQN with one 16-unit layer that updates from its first step (agent-level tests)."""
    from psp_rl.agents import ContinualDQN

    return ContinualDQN(
        "PSPPolicy", env, learning_starts=0, batch_size=16, seed=seed, policy_kwargs=dict(net_arch=[16]), **kwargs
    )


def filled(agent, steps: int = 300):
    """``agent`` after ``agent.learn(steps)``."""
    agent.learn(steps)
    return agent


def trained_on_task_0(seed: int = 0, **kwargs) -> tuple:
    """(sequence, a small PSP-DQN trained 1,500 steps on task 0 of default -> reversed)."""
    from stable_baselines3.common.logger import configure

    from psp_rl.agents import ContinualDQN
    from psp_rl.envs import get_sequence

    sequence = get_sequence("cartpole-shift", tasks=["default", "reversed"])
    agent = ContinualDQN(
        "PSPPolicy",
        sequence.make_vec_env(0, 1, seed=seed),
        learning_starts=100,
        train_freq=64,
        gradient_steps=32,
        seed=seed,
        **kwargs,
    )
    agent.set_logger(configure(None, []))
    agent.on_task_start(0, 1500)
    agent.learn(1500, reset_num_timesteps=False)
    return sequence, agent
