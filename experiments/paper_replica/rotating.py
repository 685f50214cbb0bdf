"""Rotating digits: the input rotates continuously, a full turn every ``period`` steps.

Context schedules compared (the paper's continuous-drift experiment):
``fixed`` one context throughout; ``every100`` a new context every 100 steps, 10 per turn,
reused each turn (as the authors did); ``every_step`` a new context every step (``period``
per turn); ``drift`` complex contexts that are a smooth function of the angle
(:func:`psp_rl.contexts.drift_context`, "powers of one context").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from experiments.paper_replica.data import load_digits_split, rotate
from experiments.paper_replica.model import SuperposedMLP
from psp_rl.contexts import drift_context

SCHEDULES = ("fixed", "every100", "every_step", "drift")


def _num_contexts(schedule: str, period: int) -> int:
    return {"fixed": 1, "every100": max(period // 100, 1), "every_step": period, "drift": period}[schedule]


def _context_index(schedule: str, position: int) -> int:
    """Which context serves a step at ``position`` in [0, period) of the turn."""
    if schedule == "fixed":
        return 0
    if schedule == "every100":
        return position // 100
    return position


def build_model(schedule: str, period: int, hidden: int, seed: int) -> SuperposedMLP:
    if schedule == "drift":
        model = SuperposedMLP(period, "complex", hidden, seed=seed)
        for layer in model.layers:  # contexts as a smooth function of the angle, one per position
            phases = [
                drift_context("complex", layer.in_features, k / period, seed=seed, layer=layer.layer_id)
                for k in range(period)
            ]
            layer.contexts.assign(torch.stack(phases))
        return model
    return SuperposedMLP(_num_contexts(schedule, period), "binary", hidden, seed=seed)


def train_rotating(
    schedule: str,
    *,
    turns: int = 10,
    period: int = 1000,
    hidden: int = 256,
    seed: int = 0,
    lr: float = 1e-3,
    batch: int = 128,
) -> dict[str, np.ndarray]:
    """Train on a continuously rotating stream; return online accuracy per turn and the final
    test accuracy at 36 angles (each served by its schedule's context)."""
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_digits_split(seed)
    model = build_model(schedule, period, hidden, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    online = np.zeros(turns)
    for step in range(turns * period):
        position = step % period
        angle = 2 * math.pi * position / period
        idx = torch.randint(0, len(x_tr), (batch,), generator=gen)
        logits = model(rotate(x_tr[idx], angle), _context_index(schedule, position))
        loss = torch.nn.functional.cross_entropy(logits, y_tr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        online[step // period] += float((logits.argmax(1) == y_tr[idx]).float().mean()) / period
    angles = np.arange(36) * (2 * math.pi / 36)
    final = np.zeros(len(angles))
    with torch.no_grad():
        for i, angle in enumerate(angles):
            position = int(round(angle / (2 * math.pi) * period)) % period
            pred = model(rotate(x_te, float(angle)), _context_index(schedule, position)).argmax(1)
            final[i] = float((pred == y_te).float().mean())
    return {"online": online, "angles": angles, "final": final}
