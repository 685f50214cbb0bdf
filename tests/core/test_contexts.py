import subprocess
import sys

import pytest
import torch

from psp_rl.contexts import CONTEXT_KINDS, drift_context, make_context, make_contexts


def test_binary_entries_are_plus_minus_one():
    c = make_contexts("binary", 512, 4, seed=3, layer=1)
    assert c.shape == (4, 512)
    assert set(c.unique().tolist()) == {-1.0, 1.0}
    # Different tasks get different contexts (about half the signs flip).
    assert 0.35 < (c[0] != c[1]).float().mean() < 0.65


def test_complex_entries_have_unit_modulus():
    c = make_contexts("complex", 300, 3, seed=1)
    assert c.dtype == torch.complex64
    torch.testing.assert_close(c.abs(), torch.ones(3, 300), atol=1e-6, rtol=0)
    phases = torch.angle(c).flatten() % (2 * torch.pi)
    # Phases cover [0, 2pi) evenly: each quarter holds roughly a quarter of them.
    counts = torch.histc(phases, bins=4, min=0, max=2 * torch.pi)
    assert (counts / phases.numel() - 0.25).abs().max() < 0.06


@pytest.mark.parametrize("n", [5, 64, 200])
def test_rotation_is_orthogonal(n):
    r = make_context("rotation", n, seed=7, task=2)
    torch.testing.assert_close(r @ r.T, torch.eye(n), atol=1e-5, rtol=0)


def test_rotation_is_haar_not_biased_by_qr_signs():
    # Without Mezzadri's sign fix, QR's diagonal convention biases the diagonal of Q; with it,
    # the mean of R[0, 0] over draws is ~0.
    draws = torch.stack([make_context("rotation", 4, seed=s)[0, 0] for s in range(400)])
    assert abs(draws.mean().item()) < 0.08


def test_none_is_identity():
    assert torch.equal(make_context("none", 10), torch.ones(10))


def test_same_seed_same_context_in_a_new_process():
    """Every kind in one fresh process (a process costs seconds of imports)."""
    code = (
        "import torch; from psp_rl.contexts import make_context; "
        f"cs = [make_context(kind, 16, seed=11, layer=2, task=3) for kind in {list(CONTEXT_KINDS)!r}]; "
        "print(repr([torch.view_as_real(c).tolist() if c.is_complex() else c.tolist() for c in cs]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    there = eval(out)  # our own repr of lists of floats
    for kind, theirs in zip(CONTEXT_KINDS, there, strict=True):
        here = make_context(kind, 16, seed=11, layer=2, task=3)
        assert theirs == (torch.view_as_real(here).tolist() if here.is_complex() else here.tolist()), kind


def test_seed_layer_task_each_change_the_context():
    base = make_context("binary", 256, seed=0, layer=0, task=0)
    for kwargs in ({"seed": 1}, {"layer": 1}, {"task": 1}):
        other = make_context("binary", 256, **{"seed": 0, "layer": 0, "task": 0, **kwargs})
        assert not torch.equal(base, other), kwargs


@pytest.mark.parametrize("kind", ["complex", "rotation"])
def test_drift_is_smooth_and_starts_at_identity(kind):
    c0 = drift_context(kind, 64, 0.0, seed=2)
    eye = torch.eye(64) if kind == "rotation" else torch.ones(64, dtype=torch.complex64)
    torch.testing.assert_close(c0, eye, atol=1e-5, rtol=0)
    near = (drift_context(kind, 64, 1.0, seed=2) - drift_context(kind, 64, 1.01, seed=2)).abs().mean()
    far = (drift_context(kind, 64, 1.0, seed=2) - drift_context(kind, 64, 2.0, seed=2)).abs().mean()
    assert near < 0.05 * far
    if kind == "rotation":
        r = drift_context(kind, 64, 0.7, seed=2)
        torch.testing.assert_close(r @ r.T, torch.eye(64), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_context("gaussian", 8), "context='gaussian'"),
        (lambda: make_context("binary", 0), "size=0"),
        (lambda: make_context("binary", 8, seed=-1), "seed=-1"),
        (lambda: make_contexts("binary", 8, 0), "num_tasks=0"),
        (lambda: drift_context("binary", 8, 0.5), "no smooth drift"),
        (lambda: drift_context("complex", 8, float("nan")), "theta=nan"),
    ],
)
def test_bad_arguments_name_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
