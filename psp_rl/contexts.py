"""Task contexts for Parameter Superposition (Cheung et al., NeurIPS 2019).

A superposed layer computes ``y = W (C_k x)`` where ``C_k`` is the context of task ``k``.
Every context here is a pure function of ``(seed, layer, task)``: a model for K tasks can
regenerate its contexts instead of storing them, and the same seed gives the same context in
any process.

Kinds:

- ``binary``: a diagonal of random +-1 (returned as the diagonal, shape ``(n,)``).
- ``complex``: a diagonal of unit phasors ``e^{i phi}``, ``phi ~ U[0, 2pi)`` (shape ``(n,)``, complex64).
- ``rotation``: a Haar-random orthogonal matrix (shape ``(n, n)``).
- ``none``: the identity (a diagonal of ones, shape ``(n,)``): the plain, non-superposed layer.

Drift (a continuous task parameter ``theta``, e.g. gravity): :func:`drift_context` returns
"powers of one context": phases ``theta * omega`` for ``complex`` and ``expm(theta * A)`` with a
fixed skew-symmetric ``A`` for ``rotation``, so nearby ``theta`` give nearby contexts.

Inside a layer each kind is a :class:`Context` module (:data:`CONTEXTS` maps names to classes):
it holds the contexts of all tasks of that layer and applies them (to a one-task batch, to a
mixed batch, or as the effective weight ``W C_k``); the layers hold no per-kind code.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from psp_rl.checks import is_int

ContextKind = Literal["binary", "complex", "rotation", "none"]
CONTEXT_KINDS: tuple[str, ...] = get_args(ContextKind)

# Drift streams must never collide with per-task streams; tasks are non-negative ids.
_DRIFT_STREAM = 2**31 - 1


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a known context kind, else raise ``ValueError`` naming it."""
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"context={kind!r} is not a context kind; expected one of {list(CONTEXT_KINDS)}")
    return kind


def _generator(seed: int, layer: int, task: int) -> torch.Generator:
    for name, value in (("seed", seed), ("layer", layer), ("task", task)):
        if not is_int(value) or value < 0:
            raise ValueError(f"{name}={value!r}: expected a non-negative int")
    # SeedSequence mixes the three integers so (1, 0, 2) and (0, 1, 2) give unrelated streams.
    state = np.random.SeedSequence([int(seed), int(layer), int(task)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def haar_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed random orthogonal ``(n, n)`` matrix.

    QR of a Gaussian matrix is not Haar on its own; multiplying Q's columns by the signs of
    R's diagonal makes it so (Mezzadri 2006, "How to generate random matrices from the
    classical compact groups").
    """
    gaussian = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(torch.float32)


def make_context(kind: str, size: int, *, seed: int = 0, layer: int = 0, task: int = 0) -> torch.Tensor:
    """The context of one task for one layer.

    :param kind: one of ``binary``, ``complex``, ``rotation``, ``none``.
    :param size: the layer's input width ``n`` (for a conv layer: the flattened kernel fan-in).
    :param seed: the model's context seed.
    :param layer: the layer's index inside the model, so layers get independent contexts.
    :param task: the task id.
    :return: ``(n,)`` float32 diagonal for ``binary``/``none``, ``(n,)`` complex64 diagonal for
        ``complex``, ``(n, n)`` float32 orthogonal matrix for ``rotation``.
    """
    check_kind(kind)
    if not is_int(size) or size <= 0:
        raise ValueError(f"size={size!r}: expected a positive int (the layer's input width)")
    gen = _generator(seed, layer, task)
    if kind == "none":
        return torch.ones(size)
    if kind == "binary":
        return torch.randint(0, 2, (size,), generator=gen).to(torch.float32) * 2.0 - 1.0
    if kind == "complex":
        phases = torch.rand(size, generator=gen, dtype=torch.float64) * (2 * math.pi)
        return torch.polar(torch.ones_like(phases), phases).to(torch.complex64)
    return haar_orthogonal(size, gen)


def make_contexts(kind: str, size: int, num_tasks: int, *, seed: int = 0, layer: int = 0) -> torch.Tensor:
    """Contexts of tasks ``0 .. num_tasks - 1`` stacked on a leading task axis."""
    if not is_int(num_tasks) or num_tasks <= 0:
        raise ValueError(f"num_tasks={num_tasks!r}: expected a positive int")
    return torch.stack([make_context(kind, size, seed=seed, layer=layer, task=k) for k in range(num_tasks)])


def drift_context(kind: str, size: int, theta: float, *, seed: int = 0, layer: int = 0) -> torch.Tensor:
    """A context that is a smooth function of a continuous task parameter ``theta``.

    ``complex``: phases ``theta * omega`` with fixed ``omega ~ U[0, 2pi)`` per input unit, i.e.
    the ``theta``-th power of one context. ``rotation``: ``expm(theta * A)`` with a fixed
    skew-symmetric ``A`` scaled so that ``theta = 1`` is a rotation of the same magnitude as
    a random one. Both give the identity at ``theta = 0`` and ``|C(a) - C(b)| -> 0`` as ``a -> b``.
    ``binary`` has no continuous powers, so it raises ``ValueError``.
    """
    check_kind(kind)
    if not isinstance(theta, int | float) or not math.isfinite(theta):
        raise ValueError(f"theta={theta!r}: expected a finite float")
    if kind == "none":
        return make_context("none", size)
    if kind == "binary":
        raise ValueError("context='binary' has no smooth drift; use 'complex' or 'rotation' for drift")
    gen = _generator(seed, layer, _DRIFT_STREAM)
    if kind == "complex":
        omega = torch.rand(size, generator=gen, dtype=torch.float64) * (2 * math.pi)
        return torch.polar(torch.ones_like(omega), omega * theta).to(torch.complex64)
    gaussian = torch.randn(size, size, generator=gen, dtype=torch.float64) / math.sqrt(size)
    skew = (gaussian - gaussian.T) * (math.pi / 2)
    return torch.linalg.matrix_exp(skew * theta).to(torch.float32)


MIXTURE_ANCHORS = 4
"""Independent contexts a ``mixture`` drift moves between, at ``theta = 0, 1/3, 2/3, 1``."""


def mixture_contexts(kind: str, size: int, slots: int, *, seed: int = 0, layer: int = 0) -> torch.Tensor:
    """``slots`` contexts on the grid ``theta = k / (slots - 1)``, each the mixture of the two
    :data:`MIXTURE_ANCHORS` independent contexts (tasks ``0 .. 3``' contexts) around it, weighted by
    closeness: a context that moves continuously from one random context to the next, for any kind
    (a mixture of binary or rotation contexts is a real diagonal or matrix that is neither).
    """
    anchors = make_contexts(kind, size, MIXTURE_ANCHORS, seed=seed, layer=layer)
    position = torch.linspace(0, MIXTURE_ANCHORS - 1, slots, dtype=torch.float64)
    low = position.floor().long().clamp(max=MIXTURE_ANCHORS - 2)
    weight = (position - low).to(torch.float32).view(-1, *([1] * (anchors.dim() - 1)))
    return anchors[low] * (1 - weight) + anchors[low + 1] * weight


class Context(nn.Module):
    """The contexts of one layer for tasks ``0 .. num_tasks - 1`` and how they act.

    A layer with weight ``W`` (``(out, n)``, or a kernel ``(out, in, kh, kw)`` with ``n`` its
    fan-in) and, for complex contexts, ``W_imag`` computes ``Re(W C_k x)``. The tensors are
    regenerated from ``(seed, layer, task)``, so they stay out of the ``state_dict``.

    :cvar name: the kind's name (``agent.network.context`` in configs).
    :cvar code: the kind's number in a saved ``context_key``; fixed forever, so adding a kind
        changes no saved model.
    :cvar complex_weights: the layer needs an imaginary weight too.
    """

    name: ClassVar[str]
    code: ClassVar[int]
    complex_weights: ClassVar[bool] = False

    def __init__(self, size: int, num_tasks: int, *, seed: int = 0, layer: int = 0) -> None:
        super().__init__()
        self.size, self.num_tasks = size, num_tasks
        self.assign(make_contexts(self.name, size, num_tasks, seed=seed, layer=layer))

    def assign(self, table: torch.Tensor) -> None:
        """Use ``table`` (``(num_tasks, ...)``, as :func:`make_contexts` returns) as the contexts,
        e.g. drifting contexts (:func:`drift_context`) or a mixture of the generated ones."""
        self.register_buffer("table", table.to(torch.float32).contiguous(), persistent=False)

    def weight(self, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: int) -> torch.Tensor:
        """The effective real weight ``Re(W C_task)``, shaped as ``weight``."""
        return weight * self.table[task].view(weight.shape[1:])

    def linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_imag: torch.Tensor | None,
        task: int,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """``Re(W C_task x) + b`` for a batch of one task."""
        return F.linear(x, self.weight(weight, weight_imag, task), bias)

    def linear_mixed(
        self, x: torch.Tensor, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: torch.Tensor
    ) -> torch.Tensor:
        """``Re(W C_task[i] x_i)`` row by row (no bias)."""
        return F.linear(x * self.table[task], weight)

    def fold(
        self, bias: torch.Tensor, step: torch.Tensor, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: int
    ) -> None:
        """``bias += Re(W C_task step)`` in place (a centred layer's mean moving by ``step``); ``step`` may be
        overwritten. The layer's own product on one row: no ``(out, n)`` weight is formed."""
        bias.add_(self.linear(step.unsqueeze(0), weight, weight_imag, task, None).squeeze(0))


class BinaryContext(Context):
    """A diagonal of random +-1 per task."""

    name, code = "binary", 0

    def linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_imag: torch.Tensor | None,
        task: int,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        # Multiplying the (batch, n) input is cheaper than the (m, n) weight for RL batch sizes.
        return F.linear(x * self.table[task], weight, bias)

    def fold(
        self, bias: torch.Tensor, step: torch.Tensor, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: int
    ) -> None:
        # One matrix-vector product into the bias: the general path's row, transpose and add cost three ops more.
        # The step takes the bias's dtype: under bf16 autocast the batch (hence the step) is bf16, the bias fp32.
        bias.addmv_(weight, step.mul_(self.table[task]).to(bias.dtype))


class ComplexContext(Context):
    """A diagonal of unit phasors per task; the layer's weights are complex (two real tensors)."""

    name, code, complex_weights = "complex", 1, True

    def assign(self, table: torch.Tensor) -> None:
        self.register_buffer("cos", table.real.contiguous(), persistent=False)
        self.register_buffer("sin", table.imag.contiguous(), persistent=False)

    def weight(self, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: int) -> torch.Tensor:
        shape = weight.shape[1:]
        return weight * self.cos[task].view(shape) - weight_imag * self.sin[task].view(shape)

    def linear_mixed(
        self, x: torch.Tensor, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: torch.Tensor
    ) -> torch.Tensor:
        # Re(W (c * x)) = W_re (cos * x) - W_im (sin * x): one matmul over the stacked halves.
        stacked_x = torch.cat([x * self.cos[task], x * self.sin[task]], dim=-1)
        return F.linear(stacked_x, torch.cat([weight, -weight_imag], dim=-1))


class RotationContext(Context):
    """A Haar-random orthogonal ``n x n`` matrix per task (O(n^2) memory per task)."""

    name, code = "rotation", 2

    def weight(self, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: int) -> torch.Tensor:
        return (weight.reshape(weight.shape[0], -1) @ self.table[task]).view_as(weight)

    def linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_imag: torch.Tensor | None,
        task: int,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        return F.linear(F.linear(x, self.table[task]), weight, bias)

    def linear_mixed(
        self, x: torch.Tensor, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: torch.Tensor
    ) -> torch.Tensor:
        return F.linear(torch.bmm(self.table[task], x.unsqueeze(-1)).squeeze(-1), weight)


class NoContext(Context):
    """The identity: the plain layer (the fine-tune baseline). No tensors are kept."""

    name, code = "none", 3

    def assign(self, table: torch.Tensor) -> None:
        pass

    def weight(self, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: int) -> torch.Tensor:
        return weight

    def linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_imag: torch.Tensor | None,
        task: int,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        return F.linear(x, weight, bias)

    def linear_mixed(
        self, x: torch.Tensor, weight: torch.Tensor, weight_imag: torch.Tensor | None, task: torch.Tensor
    ) -> torch.Tensor:
        return F.linear(x, weight)


CONTEXTS: dict[str, type[Context]] = {
    cls.name: cls for cls in (BinaryContext, ComplexContext, RotationContext, NoContext)
}
"""Context kinds by name; ``CONTEXT_KINDS`` lists the same names."""


def context_class(kind: str) -> type[Context]:
    """The :class:`Context` class of ``kind`` (``ValueError`` naming it if unknown)."""
    return CONTEXTS[check_kind(kind)]


def kind_of_code(code: int) -> str:
    """The kind saved as ``code`` in a ``context_key``."""
    return next((cls.name for cls in CONTEXTS.values() if cls.code == code), f"<unknown kind {code}>")
