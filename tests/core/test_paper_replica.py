import numpy as np
import pytest

from experiments.paper_replica.data import permutations, rotate
from experiments.paper_replica.permuting import train_permuted


def test_permutations_start_with_the_identity_and_rotation_is_continuous():
    import torch

    perms = permutations(5)
    assert torch.equal(perms[0], torch.arange(64)) and not torch.equal(perms[1], torch.arange(64))
    x = torch.rand(3, 64)
    torch.testing.assert_close(rotate(x, 0.0), x, atol=1e-5, rtol=0)
    assert (rotate(x, 0.01) - rotate(x, 0.0)).abs().max() < 0.1 < (rotate(x, 1.5) - x).abs().max()


@pytest.mark.slow
@pytest.mark.learning
def test_k10_binary_keeps_task_zero_and_none_forgets_it(learning_seed, record_property):
    """Seeds 0-3 (two a learning seed) on three float paths: binary 0.82-0.89 (bound 0.75), none
    0.09-0.14 (bound 0.30)."""
    seeds = (2 * learning_seed, 2 * learning_seed + 1)
    binary = np.mean([train_permuted("binary", 10, seed=s)[-1, 0] for s in seeds])
    none = np.mean([train_permuted("none", 10, seed=s)[-1, 0] for s in seeds])
    record_property("binary", float(binary))
    record_property("none", float(none))
    print(f"K=10 task-0 accuracy after all tasks: binary {binary:.3f}, none {none:.3f}")
    assert binary >= 0.75
    assert none < 0.30
