"""Torsos and heads built from superposed layers; every module here is called as ``module(x, task)``.

The context kind is a constructor argument everywhere: ``context="none"`` gives the plain
network (the fine-tune baseline) from the same code.

Narrow inputs. Interference between tasks grows like ``sqrt(K / N)`` with a layer's input width
``N``; a CartPole observation (N = 4) leaves a first-layer context almost no room. The MLP torso
therefore handles its first layer by ``input_layer``:

- ``"per_task"``: one small ordinary layer per task (4 x 256 weights each for CartPole);
- ``"expand"``: a fixed random (untrained) ``N -> width`` projection with a nonlinearity, then
  superposed layers only, so parameters stay 1x the plain network;
- ``"superposed"``: the first layer is superposed like the others (wide inputs);
- ``"auto"`` (default): ``per_task`` when the input is narrower than :data:`NARROW_INPUT` and the
  context is not ``none``, else ``superposed``. Measured on a two-task switch in
  ``tests/core/test_policies.py`` and ``experiments/bench_input_layer.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from psp_rl.checks import is_int
from psp_rl.layers import SuperposedConv2d, SuperposedLinear, TaskArg, TaskModule, kernel_like_input, per_task_groups
from psp_rl.settings import HEADS, INPUT_LAYERS, TORSOS, PSPSettings, Torso

__all__ = [
    "HEADS",
    "INPUT_LAYERS",
    "NARROW_INPUT",
    "TORSOS",
    "LayerIds",
    "build_head",
    "build_torso",
    "mlp_torso",
    "orthogonal_init",
]

NARROW_INPUT = 64


class LayerIds:
    """Every layer id of the PSP networks, in one place: a layer draws its contexts from
    ``(context_seed, layer id)``, so two layers of one model must never share an id. These are the
    ids every release so far used (changing one changes that layer's contexts and old checkpoints).
    """

    TORSO = 0  # the (actor's) torso: 0, 1, 2, ...
    CRITIC_TORSO = 100  # PPO's own critic torso: 100, 101, ...
    DISTILLED_TORSO = 200  # PSP-DQN's distilled policy torso: 200, 201, ...
    DUELING_VALUE_HEAD = 97
    ACTION_HEAD = 98  # PPO's actor output
    Q_HEAD = 99  # DQN's Q (or dueling advantage) output
    VALUE_HEAD = 199  # PPO's value output
    DISTILLED_HEAD = 399  # the distilled policy's logits


class PerTaskLinear(TaskModule):
    """``num_tasks`` independent linear layers, row ``i`` of the batch through layer ``task[i]``.

    Used for a narrow first layer and for the multi-head baseline's output heads.
    """

    def __init__(self, in_features: int, out_features: int, num_tasks: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.num_tasks = in_features, out_features, num_tasks
        self.weight = nn.Parameter(torch.empty(num_tasks, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_tasks, out_features))
        bound = 1 / math.sqrt(in_features)
        for k in range(num_tasks):  # each task gets nn.Linear's initialisation
            nn.init.kaiming_uniform_(self.weight.data[k], a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, task: TaskArg) -> torch.Tensor:
        task = self._check_task(task, x.shape[0] if x.dim() == 2 else None)
        if isinstance(task, int):
            return F.linear(x, self.weight[task], self.bias[task])
        return torch.bmm(self.weight[task], x.unsqueeze(-1)).squeeze(-1) + self.bias[task]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, num_tasks={self.num_tasks}"


class PerTaskConv2d(TaskModule):
    """``num_tasks`` independent convolutions (the separate-networks baseline's conv layers)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_tasks: int, stride: int = 1) -> None:
        super().__init__()
        self.num_tasks, self.stride = num_tasks, stride
        self.convs = nn.ModuleList(nn.Conv2d(in_channels, out_channels, kernel_size, stride) for _ in range(num_tasks))

    def _conv(self, x: torch.Tensor, task: int) -> torch.Tensor:
        conv = self.convs[task]
        return F.conv2d(x, kernel_like_input(conv.weight, x), conv.bias, conv.stride)

    def forward(self, x: torch.Tensor, task: TaskArg) -> torch.Tensor:
        task = self._check_task(task, x.shape[0])
        return self._conv(x, task) if isinstance(task, int) else per_task_groups(self._conv, x, task)


class RandomExpansion(nn.Module):
    """A fixed random projection ``N -> width`` (seeded, never trained), ``cos(R x + b)`` features.

    Random Fourier features turn a narrow observation into a wide input a superposed layer can
    separate tasks in, without adding a trainable parameter.
    """

    def __init__(self, in_features: int, width: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(width, in_features, generator=gen), persistent=False)
        self.register_buffer("phase", torch.rand(width, generator=gen) * 2 * math.pi, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cos(F.linear(x, self.projection, self.phase))


class TaskSequential(nn.Module):
    """Like ``nn.Sequential``, passing ``task`` to the modules that take one (``takes_task``).

    :param memory_format: the input is first made contiguous in this format (``channels_last``
        for the Nature CNN); the values, and the state dict, are the same in either.
    """

    takes_task = True

    def __init__(
        self, *modules: nn.Module, latent_dim: int, memory_format: torch.memory_format = torch.contiguous_format
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)
        self.latent_dim = latent_dim
        self.memory_format = memory_format

    def forward(self, x: torch.Tensor, task: TaskArg) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        for layer in self.layers:
            x = layer(x, task) if getattr(layer, "takes_task", False) else layer(x)
        return x


def _linear(in_f: int, out_f: int, num_tasks: int, psp: PSPSettings, layer_id: int) -> nn.Module:
    if psp.separate:  # the separate-networks baseline: one plain layer per task
        return PerTaskLinear(in_f, out_f, num_tasks)
    # Centring needs per-task biases to fold its mean into; the plain layer (context none) has one.
    center = psp.center and psp.context != "none"
    seed = psp.context_seed
    return SuperposedLinear(in_f, out_f, num_tasks, psp.context, seed=seed, layer_id=layer_id, center=center)


def mlp_torso(
    in_features: int,
    net_arch: Sequence[int],
    num_tasks: int,
    psp: PSPSettings | str | None = None,
    *,
    layer_offset: int = LayerIds.TORSO,
    activation_fn: type[nn.Module] = nn.ReLU,
) -> TaskSequential:
    """An MLP torso ``in_features -> net_arch[0] -> ... -> net_arch[-1]`` with activations.

    :param psp: the settings (or a context kind's name); ``input_layer`` decides how the first
        layer treats a narrow input (see the module docstring).
    :param layer_offset: first ``layer_id`` used (:class:`LayerIds`).
    """
    psp = PSPSettings.of(psp)
    if not net_arch or any(not is_int(w) or w <= 0 for w in net_arch):
        raise ValueError(f"net_arch={list(net_arch)!r}: expected a non-empty list of positive ints")
    input_layer = psp.input_layer
    if input_layer == "auto":
        input_layer = "per_task" if psp.context != "none" and in_features < NARROW_INPUT else "superposed"
    modules: list[nn.Module] = []
    widths = [in_features, *net_arch]
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i == 0 and input_layer == "per_task":
            modules.append(PerTaskLinear(w_in, w_out, num_tasks))
        elif i == 0 and input_layer == "expand":
            modules += [RandomExpansion(w_in, w_out, seed=psp.context_seed * 1000 + layer_offset)]
            continue  # the expansion is its own nonlinearity
        else:
            modules.append(_linear(w_in, w_out, num_tasks, psp, layer_offset + i))
        modules.append(activation_fn())
    return TaskSequential(*modules, latent_dim=widths[-1])


# (out channels, kernel, stride) of each convolution, then the fully connected layer's width.
CNN_ARCHS: dict[str, tuple[list[tuple[int, int, int]], int]] = {
    "nature_cnn": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512),  # Mnih et al. 2015, (C, 84, 84) frames
    "minatar_cnn": ([(16, 3, 1)], 128),  # Young & Tian 2019, (C, 10, 10) frames
}


def cnn_torso(
    obs_shape: Sequence[int], num_tasks: int, psp: PSPSettings | str | None = None, *, layer_offset: int = 0
) -> TaskSequential:
    """The CNN ``psp.torso`` names (:data:`CNN_ARCHS`): convolutions, then a fully connected layer.

    ``center`` centres the input of the fully connected layer (the convolutions' is not). The
    Nature CNN computes in ``channels_last`` (its update, fwd + bwd + Adam on 256 frames, one thread
    on an AVX2 EPYC: 816 -> 1,235 samples/s binary, 797 -> 1,158 plain); the MinAtar CNN's 10x10
    frames are faster contiguous (40,700 against 36,800), so it stays so.
    """
    psp = PSPSettings.of(psp)
    convs, hidden = CNN_ARCHS[psp.torso]
    modules: list[nn.Module] = []
    channels = obs_shape[0]
    for i, (out_channels, kernel, stride) in enumerate(convs):
        if psp.separate:
            conv: nn.Module = PerTaskConv2d(channels, out_channels, kernel, num_tasks, stride=stride)
        else:
            conv = SuperposedConv2d(
                channels,
                out_channels,
                kernel,
                num_tasks,
                psp.context,
                stride=stride,
                seed=psp.context_seed,
                layer_id=layer_offset + i,
            )
        modules += [conv, nn.ReLU()]
        channels = out_channels
    modules.append(nn.Flatten())
    convs_only = TaskSequential(*modules, latent_dim=0)
    with torch.no_grad():  # infer the flattened size from one dummy forward, no hard-coded 3136
        flat = convs_only(torch.zeros(1, *obs_shape), 0).shape[1]
    modules += [_linear(flat, hidden, num_tasks, psp, layer_offset + len(convs)), nn.ReLU()]
    fmt = torch.channels_last if psp.torso == "nature_cnn" else torch.contiguous_format
    return TaskSequential(*modules, latent_dim=hidden, memory_format=fmt)


def resolve_torso(obs_shape: Sequence[int], torso: Torso = "auto") -> Torso:
    """``torso``, with ``auto`` resolved: the MLP for vectors, the Nature CNN for ``(C, 84, 84)``
    frames and the MinAtar CNN for other ``(C, H, W)`` frames."""
    if torso != "auto":
        return torso
    if len(obs_shape) == 1:
        return "mlp"
    if len(obs_shape) == 3:
        return "nature_cnn" if tuple(obs_shape[1:]) == (84, 84) else "minatar_cnn"
    raise ValueError(f"observation shape {tuple(obs_shape)}: expected (n,) or (C, H, W) for torso='auto'")


def build_torso(
    obs_shape: Sequence[int],
    num_tasks: int,
    psp: PSPSettings | str | None = None,
    *,
    net_arch: Sequence[int] | None = None,
    layer_offset: int = LayerIds.TORSO,
    activation_fn: type[nn.Module] = nn.ReLU,
) -> TaskSequential:
    """The torso for an observation shape: ``psp.torso="auto"`` picks the MLP for vectors, the
    Nature CNN for ``(C, 84, 84)`` frames and the MinAtar CNN for other ``(C, H, W)`` frames.

    :param net_arch: MLP hidden widths (default ``[256, 256]``); CNN torsos ignore it.
    """
    psp = PSPSettings.of(psp)
    torso = resolve_torso(obs_shape, psp.torso)
    if torso == "mlp":
        if len(obs_shape) != 1:
            raise ValueError(f"torso='mlp' needs a flat observation, got shape {tuple(obs_shape)}")
        arch = [256, 256] if net_arch is None else net_arch
        return mlp_torso(obs_shape[0], arch, num_tasks, psp, layer_offset=layer_offset, activation_fn=activation_fn)
    if len(obs_shape) != 3:
        raise ValueError(f"torso={torso!r} needs (C, H, W) frames, got shape {tuple(obs_shape)}")
    return cnn_torso(obs_shape, num_tasks, replace(psp, torso=torso), layer_offset=layer_offset)


def build_head(
    in_features: int, out_features: int, num_tasks: int, psp: PSPSettings | str | None = None, *, layer_id: int
) -> nn.Module:
    """An output layer: superposed (``heads="shared"``) or one plain layer per task (``"per_task"``,
    and always for separate networks)."""
    psp = PSPSettings.of(psp)
    if psp.output_heads == "per_task":
        return PerTaskLinear(in_features, out_features, num_tasks)
    return _linear(in_features, out_features, num_tasks, psp, layer_id)


class DuelingHead(TaskModule):
    """``Q = V + A - mean(A)`` (Wang et al. 2016) from two output layers of the same kind.

    Crosstalk on the value stream shifts every action's Q alike and so cannot flip a greedy
    action; only the advantage stream's crosstalk can, and it scales with the advantages.

    :param value: a ``(x, task) -> (batch, 1)`` layer.
    :param advantage: a ``(x, task) -> (batch, n_actions)`` layer.
    """

    def __init__(self, value: nn.Module, advantage: nn.Module) -> None:
        super().__init__()
        self.value, self.advantage = value, advantage
        self.num_tasks = getattr(advantage, "num_tasks", 1)

    def forward(self, x: torch.Tensor, task: TaskArg) -> torch.Tensor:
        advantage = self.advantage(x, task)
        return self.value(x, task) + advantage - advantage.mean(dim=-1, keepdim=True)


@torch.no_grad()
def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Give every weight in ``module`` an orthogonal initialisation with ``gain`` and every bias 0,
    as SB3's ``ortho_init`` and CleanRL's ``layer_init`` do for PPO (``agent.network.init:
    orthogonal``). The superposed layers' task models ``W C_k`` are then orthogonal too (a binary or
    rotation context is an orthogonal matrix); a complex layer's real and imaginary weights each get
    the initialisation, as each gets ``nn.Linear``'s under ``torch``. Per-task layers (separate
    networks, per-task heads) initialise each task's weight on its own.

    Why: under torch's default (``kaiming_uniform_`` with ``a = sqrt(5)``, gain ``1/sqrt(3)``) the
    Nature CNN's features on Atari frames come out ~20x smaller than under SB3's (RMS 0.012 against
    0.25 on Breakout frames), and PSP-PPO learned Breakout more slowly than stock SB3 PPO.
    """
    for layer in module.modules():
        if isinstance(layer, SuperposedLinear | SuperposedConv2d):
            weights = [layer.weight, layer.weight_imag]
        elif isinstance(layer, PerTaskLinear):
            weights = list(layer.weight)  # one (out, in) view per task
        elif isinstance(layer, nn.Conv2d | nn.Linear):  # a separate network's per-task convolutions
            weights = [layer.weight]
        else:
            continue
        for weight in weights:
            if weight is not None:
                nn.init.orthogonal_(weight, gain=gain)
        if layer.bias is not None:
            layer.bias.zero_()
