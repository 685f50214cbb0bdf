"""scikit-learn's 8x8 digits (ships with the package: nothing is downloaded), split and scaled."""

from __future__ import annotations

import numpy as np
import torch


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: x in [0, 1], shape ``(n, 64)``; a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(), torch.from_numpy(x_te), torch.from_numpy(y_te).long()


def permutations(num_tasks: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``(num_tasks, size)`` pixel permutations; task 0 is the identity (as in the paper)."""
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.arange(size)] + [torch.randperm(size, generator=gen) for _ in range(num_tasks - 1)]
    return torch.stack(perms)


def rotate(x: torch.Tensor, angle: float | torch.Tensor) -> torch.Tensor:
    """Rotate flat 8x8 images by ``angle`` radians (bilinear, zero fill), continuous in the angle."""
    angle = torch.as_tensor(angle, dtype=torch.float32).expand(x.shape[0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.zeros_like(cos)], 1), torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1
    )
    grid = torch.nn.functional.affine_grid(theta, (x.shape[0], 1, 8, 8), align_corners=False)
    out = torch.nn.functional.grid_sample(x.view(-1, 1, 8, 8), grid, align_corners=False)
    return out.view(-1, 64)
