"""Captum drop-in arguments: per-call ``abs``, ``compute_convergence_delta`` and tuple targets."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import Saliency as CaptumSaliency

import pathattr
from pathattr.errors import TargetError


def test_saliency_abs_per_call(mlp):
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = pathattr.Saliency(mlp).attribute(x, target=1, abs=False)
    theirs = CaptumSaliency(mlp).attribute(x, target=1, abs=False)
    assert (ours < 0).any() and torch.allclose(ours, theirs, atol=1e-12)
    assert torch.allclose(pathattr.Saliency(mlp, abs=False).attribute(x, target=1, abs=True), theirs.abs())


def test_compute_convergence_delta_matches_captum(mlp):
    g = torch.Generator().manual_seed(1)
    x, b = torch.randn(3, 6, dtype=torch.float64, generator=g), torch.randn(3, 6, dtype=torch.float64, generator=g)
    ig = pathattr.IntegratedGradients(mlp)
    attr, delta = ig.attribute(x, baselines=b, target=2, n_steps=20, return_convergence_delta=True)
    ours = ig.compute_convergence_delta(attr, b, x, target=2)
    theirs = CaptumIG(mlp).compute_convergence_delta(attr, b, x, target=2)
    assert torch.allclose(ours, delta.to(torch.float64), atol=1e-12)
    assert torch.allclose(ours, theirs.to(torch.float64), atol=1e-10)
    with pytest.raises(pathattr.InputValidationError, match="start_point"):
        ig.compute_convergence_delta(attr, b[:, :3], x, target=2)


class _Grid(torch.nn.Module):
    """[B, 6] -> [B, 2, 3]: a multi-dimensional output."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(6, 6).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(x)).view(-1, 2, 3)


def test_tuple_target_indexes_output_dimensions():
    torch.manual_seed(0)
    model = _Grid().eval()
    x = torch.randn(2, 6, dtype=torch.float64)
    ours = pathattr.IntegratedGradients(model).attribute(x, target=(1, 2), n_steps=16)
    theirs = CaptumIG(model).attribute(x, target=(1, 2), n_steps=16)
    assert torch.allclose(ours, theirs, atol=1e-10)
    with pytest.raises(TargetError, match="list of tuples"):
        pathattr.IntegratedGradients(model).attribute(x, target=[(0, 1), (1, 2)])
    with pytest.raises(TargetError, match="indexes 1 output dimensions"):
        pathattr.IntegratedGradients(model).attribute(x, target=(1,))
