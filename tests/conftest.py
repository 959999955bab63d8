"""Shared fixtures: small deterministic float64 models with known structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def make_mlp(seed: int = 0, d_in: int = 6, hidden: int = 8, d_out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out)).double().eval()


class RowCounter(nn.Module):
    """Wraps a model and records the number of rows of every forward call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(x.shape[0]))
        return self.model(x)


class SmallCNN(nn.Module):
    """Smooth CNN (softplus) on [B, 2, 8, 8] inputs, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.softplus(self.conv1(x))
        h = nn.functional.avg_pool2d(nn.functional.softplus(self.conv2(h)), 2)
        return self.head(h.flatten(1))


class TwoInputModel(nn.Module):
    """f(a, b, scale) = head(tanh(A a) * scale + B b): two attributed inputs plus a per-example extra argument."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(3, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.a(a)) * scale.unsqueeze(1) + torch.tanh(self.b(b)))


@pytest.fixture
def mlp() -> nn.Module:
    return make_mlp()


@pytest.fixture
def cnn() -> nn.Module:
    torch.manual_seed(1)
    return SmallCNN().double().eval()


@pytest.fixture
def two_input_model() -> nn.Module:
    torch.manual_seed(2)
    return TwoInputModel().double().eval()


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
