import os
import warnings

import pytest

# Training tests use a handful of small networks; one thread each keeps them fast and deterministic on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", category=DeprecationWarning)

TINY_CONFIG = {
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


@pytest.fixture
def tiny_config() -> dict:
    """A 2-task cartpole-shift DQN run of 2 x 1500 steps (a few seconds)."""
    import copy

    return copy.deepcopy(TINY_CONFIG)
