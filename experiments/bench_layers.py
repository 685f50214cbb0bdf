"""Forward+backward time of superposed networks divided by the plain torch network, per context kind.

    python experiments/bench_layers.py [--repeats 30]

Both networks are timed in the same process, interleaved, so machine noise hits both alike.
"fast" is one task per batch (the RL case: a rollout or a single-task replay batch), "mixed"
spreads the batch over 4 tasks.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from psp_rl.layers import SuperposedConv2d, SuperposedLinear

NUM_TASKS = 4


class PlainMLP(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())


class SuperposedMLP(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList([SuperposedLinear(256, 256, NUM_TASKS, kind, layer_id=i) for i in range(2)])

    def forward(self, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x, task))
        return x


class PlainNatureCNN(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
        )  # fmt: skip


class SuperposedNatureCNN(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        specs = [(4, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]
        self.convs = nn.ModuleList(
            [SuperposedConv2d(i, o, k, NUM_TASKS, kind, stride=s, layer_id=n) for n, (i, o, k, s) in enumerate(specs)]
        )
        self.linear = SuperposedLinear(3136, 512, NUM_TASKS, kind, layer_id=3)

    def forward(self, x: torch.Tensor, task: int | torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x, task))
        return torch.relu(self.linear(x.flatten(1), task))


def _step_time(net: nn.Module, x: torch.Tensor, task: int | torch.Tensor | None) -> float:
    start = time.perf_counter()
    out = net(x) if task is None else net(x, task)
    out.sum().backward()
    return time.perf_counter() - start


def ratio(plain: nn.Module, sup: nn.Module, x: torch.Tensor, task: int | torch.Tensor, repeats: int) -> float:
    for _ in range(3):  # warm-up
        _step_time(plain, x, None), _step_time(sup, x, task)
    plain_t, sup_t = [], []
    for _ in range(repeats):
        plain_t.append(_step_time(plain, x, None))
        sup_t.append(_step_time(sup, x, task))
    # Medians resist the odd slow step of a shared machine.
    return float(torch.tensor(sup_t).median() / torch.tensor(plain_t).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    mixed = torch.arange(args.batch) % NUM_TASKS
    cases = {
        "MLP 256x2": (PlainMLP, SuperposedMLP, torch.randn(args.batch, 256)),
        "NatureCNN": (PlainNatureCNN, SuperposedNatureCNN, torch.rand(args.batch, 4, 84, 84)),
    }
    print(f"forward+backward time, superposed / plain torch (batch {args.batch}, CPU, median of {args.repeats})")
    print(f"{'network':<10} {'context':<9} {'fast':>6} {'mixed':>6}")
    for name, (plain_cls, sup_cls, x) in cases.items():
        plain = plain_cls()
        for kind in ("none", "binary", "complex", "rotation"):
            if kind == "rotation" and name == "NatureCNN":
                # A 3136x3136 rotation per task is a study setting, not a CNN one (O(N^2) memory per task).
                continue
            sup = sup_cls(kind)
            fast = ratio(plain, sup, x, 1, args.repeats)
            mix = ratio(plain, sup, x, mixed, args.repeats)
            print(f"{name:<10} {kind:<9} {fast:>5.2f}x {mix:>5.2f}x")


if __name__ == "__main__":
    main()
