"""The paper's MLP of superposed layers, and online EWC as its comparison point."""

from __future__ import annotations

import torch
from torch import nn

from psp_rl.layers import SuperposedLinear


class SuperposedMLP(nn.Module):
    """``64 -> hidden -> hidden -> 10`` with every layer superposed (``context="none"``: the plain MLP)."""

    def __init__(self, num_tasks: int, context: str, hidden: int = 256, seed: int = 0) -> None:
        super().__init__()
        widths = [64, hidden, hidden, 10]
        self.layers = nn.ModuleList(
            SuperposedLinear(a, b, num_tasks, context, seed=seed, layer_id=i)
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )

    def forward(self, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, task)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class OnlineEWC:
    """Online EWC (Schwarz et al. 2018): a diagonal Fisher accumulated over tasks, and the
    quadratic penalty ``lambda / 2 * sum F (theta - theta*)^2`` towards the last task's weights."""

    def __init__(self, model: nn.Module, ewc_lambda: float, gamma: float = 1.0) -> None:
        self.model, self.ewc_lambda, self.gamma = model, ewc_lambda, gamma
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def consolidate(self, x: torch.Tensor, task: int, samples: int = 200) -> None:
        """Estimate the Fisher from per-sample gradients on ``samples`` of a task's inputs (labels
        drawn from the model's own predictions) and anchor the weights."""
        fisher = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        for i in range(min(samples, len(x))):
            self.model.zero_grad()
            logits = self.model(x[i : i + 1], task)
            label = torch.distributions.Categorical(logits=logits).sample()
            nn.functional.cross_entropy(logits, label).backward()
            for n, p in self.model.named_parameters():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2 / min(samples, len(x))
        for n, f in fisher.items():
            self.fisher[n] = self.gamma * self.fisher.get(n, torch.zeros_like(f)) + f
        self.anchor = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def penalty(self) -> torch.Tensor:
        if not self.fisher:
            return torch.zeros(())
        total = sum((self.fisher[n] * (p - self.anchor[n]) ** 2).sum() for n, p in self.model.named_parameters())
        return 0.5 * self.ewc_lambda * total
