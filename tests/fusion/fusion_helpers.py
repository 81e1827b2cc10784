"""Shared helpers for the fusion tests: a small CNN with BatchNorm and a float64 reference."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedfaas import codec

Tensors = dict[str, np.ndarray]


class SmallCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> pool -> Linear: every kind of state_dict entry, 200 params."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3)))


def train_parties(n: int, dtype: torch.dtype = torch.float32) -> list[Tensors]:
    """State dicts of ``n`` parties that each trained a few SGD steps from one global model.

    Party ``i`` runs ``i + 1`` steps, so their ``num_batches_tracked`` are 1..n.
    """
    torch.manual_seed(0)
    global_model = SmallCNN()
    out = []
    for i in range(n):
        model = SmallCNN()
        model.load_state_dict(global_model.state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        gen = torch.Generator().manual_seed(100 + i)
        for _ in range(i + 1):
            x = torch.randn(8, 1, 6, 6, generator=gen)
            y = torch.randint(0, 3, (8,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
        out.append({k: np.array(v) for k, v in codec.from_state_dict(sd).items()})
    return out


def reference_mean(updates: list[Tensors], weights: list[float]) -> dict[str, np.ndarray]:
    """Weighted mean in float64, computed the obvious way."""
    total = sum(weights)
    out = {}
    for k in updates[0]:
        acc = np.zeros(np.shape(updates[0][k]))
        for u, w in zip(updates, weights, strict=True):
            acc += np.asarray(u[k], dtype=np.float64) * w
        out[k] = acc / total
    return out
