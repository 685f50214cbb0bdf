"""``PSPSettings``: how a network superposes its tasks, as one object handed from the config to
the policy, the torsos and the heads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

from psp_rl.contexts import ContextKind, check_kind

# The allowed values, as types the config schema shares (its `agent.network` section).
Torso = Literal["auto", "mlp", "nature_cnn", "minatar_cnn"]
InputLayer = Literal["auto", "per_task", "expand", "superposed"]
Heads = Literal["shared", "per_task"]
Drift = Literal["none", "smooth", "smooth_bins", "binned", "mixture"]
Init = Literal["torch", "orthogonal"]
TORSOS: tuple[str, ...] = get_args(Torso)
INPUT_LAYERS: tuple[str, ...] = get_args(InputLayer)
HEADS: tuple[str, ...] = get_args(Heads)
DRIFTS: tuple[str, ...] = get_args(Drift)
INITS: tuple[str, ...] = get_args(Init)


@dataclass(frozen=True)
class PSPSettings:
    """How a network stores its tasks.

    :param context: context kind: ``binary``, ``complex``, ``rotation`` or ``none`` (the plain network).
    :param context_seed: seed of every context; with a layer's id it fixes each task's context.
    :param torso: ``auto`` (MLP for vectors, Nature CNN for 84x84 frames, MinAtar CNN for other
        frames), ``mlp``, ``nature_cnn`` or ``minatar_cnn``.
    :param input_layer: the MLP's first layer on a narrow input (see :mod:`psp_rl.networks`):
        ``auto``, ``per_task``, ``expand`` or ``superposed``.
    :param heads: ``shared`` (superposed output layers) or ``per_task`` (the multi-head baseline).
    :param separate: one plain network per task (the separate-networks baseline; ``K x`` parameters).
    :param center: superposed fully connected layers centre their input per task (PSP-DQN; see
        :class:`~psp_rl.layers.SuperposedLinear`). Ignored by layers without per-task biases.
    :param drift: how the context follows a drifting task's ``theta`` observation (in ``[0, 1]``):
        ``none`` (the ``task`` entry picks it, one fixed context for a drifting task), ``smooth``
        (the ``num_tasks`` contexts are :func:`~psp_rl.contexts.drift_context` at ``theta = k /
        (num_tasks - 1)``, powers of one context, and ``theta`` picks the nearest: complex or
        rotation), ``smooth_bins`` (the same powers at the centres of ``num_tasks`` equal bins of
        ``theta``, its bin picking one: every slot trains on the same share of a sweep, where the
        grid's two end slots get half; :func:`~psp_rl.policies.drift_grid`), ``binned`` (``theta``'s
        bin of width ``1 / num_tasks`` picks one of ``num_tasks`` independent contexts: a hard switch
        at every bin), or ``mixture`` (as ``smooth``, the nearest of ``num_tasks`` grid points, whose
        contexts are mixtures of the two neighbouring of 4 independent contexts:
        :func:`~psp_rl.contexts.mixture_contexts`; any kind).
    :param init: the weights' initialisation: ``torch`` (each layer as ``nn.Linear`` / ``nn.Conv2d``
        would be) or ``orthogonal`` (SB3's and CleanRL's PPO: orthogonal weights with gain
        ``sqrt(2)`` in the torsos and heads' own gains, zero biases; :func:`~psp_rl.networks.orthogonal_init`).
    """

    context: ContextKind = "binary"
    context_seed: int = 0
    torso: Torso = "auto"
    input_layer: InputLayer = "auto"
    heads: Heads = "shared"
    separate: bool = False
    center: bool = False
    drift: Drift = "none"
    init: Init = "torch"

    def __post_init__(self) -> None:
        check_kind(self.context)
        if isinstance(self.context_seed, bool) or not isinstance(self.context_seed, int) or self.context_seed < 0:
            raise ValueError(f"context_seed={self.context_seed!r}: expected a non-negative int")
        choices = (
            ("torso", TORSOS),
            ("input_layer", INPUT_LAYERS),
            ("heads", HEADS),
            ("drift", DRIFTS),
            ("init", INITS),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {list(allowed)}")
        for name in ("separate", "center"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        if self.drift in ("smooth", "smooth_bins") and self.context not in ("complex", "rotation"):
            raise ValueError(
                f"drift={self.drift!r} with context={self.context!r}: smooth drift needs powers of a context; "
                "expected context complex or rotation"
            )

    @classmethod
    def of(cls, settings: PSPSettings | str | None = None, **overrides: Any) -> PSPSettings:
        """Settings from an object, a context kind's name (``"binary"``) or ``None`` (the defaults),
        with ``overrides`` (the policies' loose keywords, e.g. SB3's ``policy_kwargs``) applied."""
        if isinstance(settings, str):
            settings = cls(context=settings)
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {unknown}; PSP settings are {[f.name for f in fields(cls)]}"
            )
        return replace(settings or cls(), **overrides)

    @property
    def output_heads(self) -> str:
        """The heads actually built: separate networks have one output layer per task."""
        return "per_task" if self.separate else self.heads

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments (what SB3 saves as a policy's constructor arguments);
        ``init`` only when it is not ``torch``, as policies saved before the option have them."""
        kwargs = asdict(self)
        if kwargs["init"] == "torch":
            del kwargs["init"]
        return kwargs
