"""Permuting digits: K tasks, each a fixed pixel permutation, trained one after another."""

from __future__ import annotations

import numpy as np
import torch

from experiments.paper_replica.data import load_digits_split, permutations
from experiments.paper_replica.model import OnlineEWC, SuperposedMLP


def accuracy(model: SuperposedMLP, x: torch.Tensor, y: torch.Tensor, task: int) -> float:
    with torch.no_grad():
        return float((model(x, task).argmax(1) == y).float().mean())


def train_permuted(
    context: str,
    num_tasks: int,
    *,
    hidden: int = 256,
    seed: int = 0,
    epochs: int = 30,
    lr: float = 1e-3,
    batch: int = 128,
    ewc_lambda: float | None = None,
) -> np.ndarray:
    """Train tasks 0..K-1 in turn; return the accuracy matrix ``A[i, j]`` (test accuracy on
    task ``j`` after training task ``i``). ``ewc_lambda`` adds online EWC (use with ``none``)."""
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_digits_split(seed)
    perms = permutations(num_tasks, seed=seed)
    model = SuperposedMLP(num_tasks, context, hidden, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ewc = OnlineEWC(model, ewc_lambda) if ewc_lambda else None
    gen = torch.Generator().manual_seed(seed)
    matrix = np.zeros((num_tasks, num_tasks))
    for task in range(num_tasks):
        x_task = x_tr[:, perms[task]]
        for _ in range(epochs):
            order = torch.randperm(len(x_task), generator=gen)
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                loss = torch.nn.functional.cross_entropy(model(x_task[idx], task), y_tr[idx])
                if ewc is not None:
                    loss = loss + ewc.penalty()
                opt.zero_grad()
                loss.backward()
                opt.step()
        if ewc is not None:
            ewc.consolidate(x_task, task)
        for j in range(num_tasks):
            matrix[task, j] = accuracy(model, x_te[:, perms[j]], y_te, j)
    return matrix
