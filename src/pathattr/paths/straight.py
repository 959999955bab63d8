"""The straight-line path of Integrated Gradients (Sundararajan, Taly & Yan, ICML 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ParametricPath


class StraightLinePath(ParametricPath):
    """``gamma(alpha) = x' + alpha (x - x')`` for every example and each of its ``k`` baselines.

    Baselines are kept as a *pool* and gathered per chunk, so shared baselines or a reference set are never
    copied once per path.

    Args:
        inputs: per input ``[B, *S]``.
        pools: per input ``[M, *S]``, the distinct baselines.
        baseline_index: ``[B * k]`` long; path ``p`` joins ``pools[baseline_index[p]]`` to ``inputs[p // k]``.
        k: paths per example.
        alphas: nodes ``[J]`` shared by all paths, or ``[B * k, J]`` per path (Expected Gradients).
        weights: quadrature weights, same shape as ``alphas``.
        multiply_by_inputs: if False the displacement is the weight alone, so the integrator returns the
            weighted mean path gradient (Captum's "local" attributions).
    """

    def __init__(
        self,
        inputs: tuple[Tensor, ...],
        pools: tuple[Tensor, ...],
        baseline_index: Tensor,
        k: int,
        alphas: Tensor,
        weights: Tensor,
        multiply_by_inputs: bool = True,
    ) -> None:
        self.inputs = inputs
        self.pools = pools
        self.baseline_index = baseline_index
        self.k = k
        self.alphas = alphas
        self.weights = weights
        self.multiply_by_inputs = multiply_by_inputs

    @classmethod
    def from_baselines(
        cls,
        inputs: tuple[Tensor, ...],
        baselines: tuple[Tensor, ...],
        alphas: Tensor,
        weights: Tensor,
        multiply_by_inputs: bool = True,
    ) -> StraightLinePath:
        """Paths from resolved baselines ``[B or 1, K, *S]`` (see :func:`pathattr.baselines.resolve_baselines`)."""
        b = inputs[0].shape[0]
        k = baselines[0].shape[1]
        shared = all(t.shape[0] == 1 for t in baselines)
        pools = tuple(
            t.reshape(-1, *t.shape[2:]) if shared else t.expand(b, *t.shape[1:]).reshape(-1, *t.shape[2:])
            for t in baselines
        )
        paths = torch.arange(b * k, device=inputs[0].device)
        index = paths % k if shared else paths
        return cls(inputs, pools, index, k, alphas, weights, multiply_by_inputs)

    @property
    def n_paths(self) -> int:
        return self.baseline_index.shape[0]

    @property
    def n_nodes(self) -> int:
        return self.alphas.shape[-1]

    def example_index(self, path_index: Tensor) -> Tensor:
        return path_index // self.k

    def _node(self, table: Tensor, path_index: Tensor, step_index: Tensor) -> Tensor:
        return table[step_index] if table.ndim == 1 else table[path_index, step_index]

    def start_points(self, path_index: Tensor) -> tuple[Tensor, ...]:
        rows = self.baseline_index[path_index]
        return tuple(pool[rows] for pool in self.pools)

    def points(self, path_index: Tensor, step_index: Tensor) -> tuple[Tensor, ...]:
        ex = self.example_index(path_index)
        alpha = self._node(self.alphas, path_index, step_index)
        out = []
        for x, start in zip(self.inputs, self.start_points(path_index)):
            a = alpha.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
            out.append(start + a * (x[ex] - start))
        return tuple(out)

    def displacements(
        self, path_index: Tensor, step_index: Tensor, points: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        ex = self.example_index(path_index)
        w = self._node(self.weights, path_index, step_index)
        out = []
        for x, start in zip(self.inputs, self.start_points(path_index)):
            wv = w.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
            out.append(wv * (x[ex] - start) if self.multiply_by_inputs else wv.expand_as(start).clone())
        return tuple(out)
