"""Superposed layers: ``nn.Linear`` / ``nn.Conv2d`` that hold one model per task.

``layer(x, task)`` computes ``y = W (C_task x) + b_task``. ``task`` is an ``int`` (the whole
batch is one task: the fast path) or an integer tensor of shape ``(batch,)`` (a batch that
mixes tasks, as a replay batch does; each row uses its own context).

``num_tasks`` is fixed at construction: the contexts of all tasks are generated up front from
``(seed, layer_id, task)`` (not stored in the ``state_dict``), and a task id outside
``[0, num_tasks)`` is an error, never a silent wrap-around. Size ``num_tasks`` for the longest
sequence you plan to run.

Biases are per task: in RL the tasks share their observations and differ in what to do with
them, so a shared bias would be state that every task overwrites. Context ``none`` is the plain
layer (one shared bias, exactly ``nn.Linear`` / ``nn.Conv2d``): the fine-tune baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from psp_rl.checks import is_int
from psp_rl.contexts import Context, context_class, kind_of_code

TaskArg = int | torch.Tensor


class TaskModule(nn.Module):
    """A module called as ``module(x, task)``; validates task ids against ``num_tasks``."""

    takes_task = True  # TaskSequential passes the task to modules that declare this
    num_tasks: int

    def _name(self) -> str:
        return type(self).__name__

    def _check_task(self, task: TaskArg, batch: int | None) -> int | torch.Tensor:
        """Return an ``int`` when the batch is one task (fast path), else a ``(batch,)`` LongTensor."""
        if isinstance(task, bool | np.bool_):
            raise TypeError(f"task={task!r}: expected an int or an integer tensor, got a bool ({self._name()})")
        if isinstance(task, int | np.integer):
            self._check_range(int(task), int(task), task)
            return int(task)
        if not isinstance(task, torch.Tensor):
            raise TypeError(f"task: expected an int or an integer tensor, got {type(task).__name__} ({self._name()})")
        if task.is_floating_point() or task.is_complex() or task.dtype == torch.bool:
            raise TypeError(f"task: expected an integer tensor, got dtype {task.dtype} ({self._name()})")
        if task.dim() == 0:
            return self._check_task(int(task), batch)
        if task.dim() != 1 or batch is None or task.shape[0] != batch:
            raise ValueError(
                f"task: expected shape ({batch},) (one id per sample), got {tuple(task.shape)} ({self._name()})"
            )
        if batch == 0:
            return 0
        lo, hi = int(task.min()), int(task.max())
        self._check_range(lo, hi, task)
        return lo if lo == hi else task.long()

    def _check_range(self, lo: int, hi: int, task: TaskArg) -> None:
        if lo < 0 or hi >= self.num_tasks:
            bad = lo if lo < 0 else hi
            raise ValueError(f"task id {bad} out of range [0, {self.num_tasks}) for {self._name()}")


def per_task_groups(
    fn: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, task: torch.Tensor
) -> torch.Tensor:
    """``fn(rows, t)`` once per task ``t`` present in a mixed batch; rows go back to their places."""
    parts, rows = [], []
    for t in torch.unique(task).tolist():
        index = (task == t).nonzero(as_tuple=True)[0]
        parts.append(fn(x.index_select(0, index), t))
        rows.append(index)
    order = torch.argsort(torch.cat(rows))
    return torch.cat(parts).index_select(0, order)


class _Superposed(TaskModule):
    """The context object, per-task biases and the context-key check shared by the superposed layers."""

    context: str
    contexts: Context

    def _setup_contexts(self, num_tasks: int, context: str, seed: int, layer_id: int, size: int) -> None:
        kind = context_class(context)
        for name, value in (("num_tasks", num_tasks), ("seed", seed), ("layer_id", layer_id)):
            if not is_int(value) or value < (1 if name == "num_tasks" else 0):
                raise ValueError(f"{name}={value!r}: expected an int >= {1 if name == 'num_tasks' else 0}")
        self.num_tasks, self.context, self.seed, self.layer_id = num_tasks, context, seed, layer_id
        self.contexts = kind(size, num_tasks, seed=seed, layer=layer_id)
        # Contexts are regenerated from the seed, so they stay out of the state_dict;
        # context_key is saved instead so a load into a layer with other contexts fails loudly.
        key = [seed, layer_id, kind.code, num_tasks]
        self.register_buffer("context_key", torch.tensor(key, dtype=torch.int64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        saved = state_dict.get(prefix + "context_key")
        if saved is not None and not torch.equal(saved.cpu(), self.context_key.cpu()):
            seed, layer_id, code, num_tasks = saved.tolist()
            raise ValueError(
                f"state_dict entry {prefix}context_key was saved by a layer with seed={seed}, "
                f"layer_id={layer_id}, context={kind_of_code(code)!r}, num_tasks={num_tasks}; "
                f"this {self._name()} has seed={self.seed}, layer_id={self.layer_id}, "
                f"context={self.context!r}, num_tasks={self.num_tasks}"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _bias(self, task: int | torch.Tensor) -> torch.Tensor | None:
        if self.bias is None:
            return None
        if self.bias.shape[0] == 1:  # context 'none': one shared bias, as in the plain layer
            return self.bias[0]
        return self.bias[task]


class SuperposedLinear(_Superposed):
    """A linear layer storing ``num_tasks`` models in superposition: ``y = W (C_task x) + b_task``.

    :param in_features: input width ``n``.
    :param out_features: output width ``m``.
    :param num_tasks: how many task contexts the layer holds (fixed; ids in ``[0, num_tasks)``).
    :param context: ``binary`` (+-1 diagonal), ``complex`` (unit phasors, complex weights, real
        output), ``rotation`` (Haar orthogonal ``n x n``: O(n^2) memory per task) or ``none``.
    :param bias: add a learned bias (one per task; one shared for ``none``).
    :param seed: context seed; with ``layer_id`` it fixes every task's context.
    :param layer_id: this layer's index in its network, so layers draw independent contexts.
    :param center: subtract a per-task running mean of the input before the context (see below).
    :param center_momentum: how far each training batch moves that mean (``center=True`` only).

    Centring. Crosstalk from training task ``j`` onto task ``k`` is ``dW (C_k x_k)`` with
    ``dW ~ delta (C_j x_j)^T``: when the inputs share a large mean (ReLU features do), the term
    ``(C_j x_j) . (C_k x_k)`` keeps one sign for every state, so it shifts task ``k``'s outputs
    alike everywhere (a common-mode shift that can flip a greedy action in every state). With
    ``center=True`` the layer computes ``W C_task (x - m_task) + b_task``; in training mode each
    batch moves ``m_task`` towards its mean and folds the change into ``b_task``
    (``b += W C (m_new - m_old)``), so the function the layer computes is unchanged by the
    update (a value-based learner sees no jump) while the inputs the context multiplies become
    zero-mean. A finished task's mean stays where its training left it.

    Shapes: ``x`` is ``(*, n)`` with an ``int`` task, ``(batch, n)`` with a ``(batch,)`` task
    tensor; the output is ``(*, m)``. Initialisation matches ``nn.Linear``'s output variance
    (for ``complex`` the real and imaginary weights each get ``nn.Linear``'s distribution, and
    ``Re(W c) = W_re cos - W_im sin`` has the same variance as one of them).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_tasks: int,
        context: str = "binary",
        bias: bool = True,
        seed: int = 0,
        layer_id: int = 0,
        center: bool = False,
        center_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not is_int(value) or value <= 0:
                raise ValueError(f"{name}={value!r}: expected a positive int")
        if not 0 < center_momentum <= 1:
            raise ValueError(f"center_momentum={center_momentum!r}: expected 0 < center_momentum <= 1")
        if center and (not bias or context == "none"):
            raise ValueError(
                f"center=True needs per-task biases to fold the mean into (bias=True, context={context!r})"
            )
        self.in_features, self.out_features = in_features, out_features
        self.center, self.center_momentum = center, center_momentum
        self._setup_contexts(num_tasks, context, seed, layer_id, in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        imag = self.contexts.complex_weights
        self.weight_imag = nn.Parameter(torch.empty(out_features, in_features)) if imag else None
        bias_rows = 1 if context == "none" else num_tasks
        self.bias = nn.Parameter(torch.empty(bias_rows, out_features)) if bias else None
        if center:  # saved with the weights: the mean is part of each task's function
            # "running_" names: SB3's DQN copies such buffers into its target network at each sync.
            self.register_buffer("running_input_mean", torch.zeros(num_tasks, in_features))
            self.register_buffer("running_batches", torch.zeros(num_tasks))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation for every weight and every task's bias."""
        for weight in (self.weight, self.weight_imag):
            if weight is not None:
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def _name(self) -> str:
        return f"SuperposedLinear({self.in_features}->{self.out_features})"

    def task_weight(self, task: int) -> torch.Tensor:
        """The effective real weight ``Re(W C_task)``, shape ``(out_features, in_features)``."""
        return self.contexts.weight(self.weight, self.weight_imag, self._check_task(task, None))

    def forward(self, x: torch.Tensor, task: TaskArg) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"input: expected last dimension {self.in_features}, got shape {tuple(x.shape)} ({self._name()})"
            )
        if not (type(task) is int and 0 <= task < self.num_tasks):  # skip re-checks on the hot path
            task = self._check_task(task, x.shape[0] if x.dim() == 2 else None)
        if self.center:
            if self.training and x.dim() == 2 and x.shape[0] > 0:
                self._update_mean(x.detach(), task)
            x = x - self.running_input_mean[task]
        if isinstance(task, int):
            return self._forward_one_task(x, task)
        return self._forward_mixed(x, task)

    @torch.no_grad()
    def _update_mean(self, x: torch.Tensor, task: TaskArg) -> None:
        """Move each present task's input mean towards this batch's, keeping the layer's function."""
        if isinstance(task, int):  # the update's usual batch: one task, no masking
            self._move_mean(x.sum(0), x.shape[0], task)
            return
        for t in torch.unique(task).tolist():
            rows = x[task == t]
            self._move_mean(rows.sum(0), rows.shape[0], t)

    def _move_mean(self, batch_sum: torch.Tensor, rows: int, task: int) -> None:
        # A plain average over a task's first 1/momentum batches, an exponential one after.
        count = self.running_batches[task].add_(1)
        rate = max(self.center_momentum, 1.0 / float(count))
        mean = self.running_input_mean[task]
        # step = rate (batch mean - m), from the batch's sum in two in-place ops (a mean costs three more, and
        # with a power-of-two batch the scalings are exact: the same bits as through the mean).
        step = batch_sum.sub_(mean, alpha=rows).mul_(rate / rows)
        mean.add_(step)
        # W C (x - m_new) + b_new == W C (x - m_old) + b_old  <=>  b_new = b_old + W C (m_new - m_old).
        self.contexts.fold(self.bias[task], step, self.weight, self.weight_imag, task)

    def _forward_one_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.contexts.linear(x, self.weight, self.weight_imag, task, self._bias(task))

    def _forward_mixed(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        out = self.contexts.linear_mixed(x, self.weight, self.weight_imag, task)
        bias = self._bias(task)
        return out if bias is None else out + bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, num_tasks={self.num_tasks}, "
            f"context={self.context!r}, bias={self.bias is not None}, seed={self.seed}, layer_id={self.layer_id}"
            + (", center=True" if self.center else "")
        )


def kernel_like_input(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight`` in ``x``'s memory format: a ``channels_last`` input with a ``channels_last``
    kernel takes oneDNN's fastest path (the Nature CNN's update, one thread: 1.45x on an AVX2 EPYC;
    :func:`psp_rl.networks.cnn_torso`); a mixed pair is slower than both contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return weight.contiguous(memory_format=torch.channels_last)
    return weight


class SuperposedConv2d(_Superposed):
    """A 2-D convolution storing ``num_tasks`` kernels in superposition.

    As in the authors' code, the context has one entry per (input channel, kernel position) and
    multiplies the kernel: ``W * (C_task x) = (W C_task) * x``, because the kernel is smaller than
    the image. ``rotation`` rotates the flattened fan-in ``in_channels * kh * kw``.

    :param in_channels: input channels.
    :param out_channels: output channels.
    :param kernel_size: an int or ``(kh, kw)``.
    :param num_tasks: how many task contexts the layer holds (fixed).
    :param context: ``binary``, ``complex``, ``rotation`` or ``none``.
    :param stride: as ``nn.Conv2d``.
    :param padding: as ``nn.Conv2d`` (an int or a pair).
    :param bias: add a learned per-task bias (one shared for ``none``).
    :param seed: context seed.
    :param layer_id: this layer's index in its network.

    Shapes: ``x`` is ``(batch, in_channels, H, W)``; ``task`` an int or ``(batch,)``. A mixed
    batch runs one convolution per distinct task present.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        num_tasks: int,
        context: str = "binary",
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        seed: int = 0,
        layer_id: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not is_int(value) or value <= 0:
                raise ValueError(f"{name}={value!r}: expected a positive int")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding = stride, padding
        fan_in = in_channels * kh * kw
        self._setup_contexts(num_tasks, context, seed, layer_id, fan_in)
        shape = (out_channels, in_channels, kh, kw)
        self.weight = nn.Parameter(torch.empty(shape))
        self.weight_imag = nn.Parameter(torch.empty(shape)) if self.contexts.complex_weights else None
        bias_rows = 1 if context == "none" else num_tasks
        self.bias = nn.Parameter(torch.empty(bias_rows, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation for every kernel and every task's bias."""
        for weight in (self.weight, self.weight_imag):
            if weight is not None:
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
            nn.init.uniform_(self.bias, -bound, bound)

    def _name(self) -> str:
        return f"SuperposedConv2d({self.in_channels}->{self.out_channels}, k={self.kernel_size})"

    def task_weight(self, task: int) -> torch.Tensor:
        """The effective real kernel ``Re(W C_task)``, shape ``(out, in, kh, kw)``: diagonal contexts
        act per (input channel, kernel position), ``rotation`` on the flattened fan-in."""
        return self.contexts.weight(self.weight, self.weight_imag, self._check_task(task, None))

    def _conv(self, x: torch.Tensor, task: int) -> torch.Tensor:  # (task checked by forward)
        weight = kernel_like_input(self.contexts.weight(self.weight, self.weight_imag, task), x)
        return F.conv2d(x, weight, self._bias(task), self.stride, self.padding)

    def forward(self, x: torch.Tensor, task: TaskArg) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input: expected shape (batch, {self.in_channels}, H, W), got {tuple(x.shape)} ({self._name()})"
            )
        if not (type(task) is int and 0 <= task < self.num_tasks):
            task = self._check_task(task, x.shape[0])
        if isinstance(task, int):
            return self._conv(x, task)
        return per_task_groups(self._conv, x, task)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, num_tasks={self.num_tasks}, context={self.context!r}, "
            f"bias={self.bias is not None}, seed={self.seed}, layer_id={self.layer_id}"
        )
