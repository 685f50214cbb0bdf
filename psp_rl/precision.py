"""The precision of an agent's update: fp32, or bf16 autocast where the hardware computes bf16 natively.

``bf16`` runs the networks' forward passes (convolutions and matrix products) under
``torch.autocast`` in bfloat16 during the update; parameters, their gradients, Adam's moments, the
contexts and the per-task biases stay fp32, and the heads hand fp32 values to the loss. Acting
(rollouts, evaluation) stays fp32. Complex contexts stay fp32: autocast has no complex bfloat16.

``auto`` takes bf16 only where it pays: on native bf16 hardware, for the Nature CNN. Measured on a
2-core AMD EPYC with AVX512-BF16 (one thread, ``experiments/bench_throughput.py``, 2026-12-04): the
Nature CNN's update alone ran 1.75x faster in bf16 (2,926 against 1,670 samples/s, ``channels_last``)
and PSP-PPO on Breakout 1.30x end to end, while the small networks lost: CartPole PPO's MLP 0.77x
(2,675 against 3,458 env-steps/s), CartPole DQN's 0.90x, the MinAtar CNN 1.01x. Their casts cost more
than their few small products save, and fp32 keeps their learning the same on every machine.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]
# The update's slowdown under bf16 autocast where the CPU emulates bf16 (Nature CNN, one thread,
# batch 256, fwd + bwd + Adam: experiments/bench_throughput.py's protocol).
EMULATED_BF16_SLOWDOWN = "about 10x slower than fp32 on a 2-core AMD EPYC with AVX2 only"


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AMX or
    AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


BF16_TORSOS = frozenset({"nature_cnn"})  # where auto takes bf16: the torsos whose update it speeds up


def resolve_precision(
    precision: Precision, device: torch.device, complex_contexts: bool = False, torso: str | None = None
) -> str:
    """``fp32`` or ``bf16``: ``auto`` is bf16 where :func:`native_bf16`, the contexts are not complex
    and the network's (resolved) ``torso`` is one of :data:`BF16_TORSOS` (``None``: not known, the
    hardware decides), fp32 elsewhere."""
    if precision == "bf16" and complex_contexts:
        raise ValueError("precision='bf16' with complex contexts: autocast has no complex bfloat16; use fp32 or auto")
    if precision == "auto":
        pays = torso is None or torso in BF16_TORSOS
        return "bf16" if native_bf16(device) and not complex_contexts and pays else "fp32"
    return precision


def update_autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context an update runs in: bf16 autocast for ``precision="bf16"``, nothing for fp32."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
