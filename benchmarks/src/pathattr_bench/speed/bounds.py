"""The least work each method needs for the result pathattr returns: bare plain-torch implementations, with no
validation, no target resolution, no planning and no result object, timed beside the floor.

The floor (one batched forward + backward of the path's rows) leaves out work a method cannot skip: IG must also
evaluate ``f(x)`` and ``f(x')`` to report its completeness gap and weight the gradients; Guided IG must choose,
at every step, the features with the smallest gradients. The Guided IG bound runs PAIR's algorithm with its
per-step selection in NumPy (:func:`minimal_guided_ig`): the same operations in torch took 1.6x as long on
the MLP and 1.2x on the small CNN (one thread, 200 steps). Quadrature nodes and weights come from
:func:`pathattr.integrators.quadrature` (Captum's definitions), computed once, outside the timing.
``bound / floor`` is how far above the floor a bare implementation of the same result is (a lower bound for any
implementation in eager PyTorch that does the same work); ``ours / bound`` is pathattr's own overhead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def minimal_ig(model: nn.Module, x: torch.Tensor, target: int, alphas: torch.Tensor, weights: torch.Tensor,
               chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """IG from a zero baseline with its completeness gap: one forward of the two ends, forward + backward of all
    ``B * n_steps`` nodes in calls of ``chunk`` rows (default: one call), the weighted sum."""
    b, n = x.shape[0], alphas.shape[0]
    base = torch.zeros_like(x)
    with torch.no_grad():
        ends = model(torch.cat([x, base]))[:, target]
    shape = (1, n) + (1,) * (x.ndim - 1)
    points = (base.unsqueeze(1) + alphas.view(shape) * (x - base).unsqueeze(1)).flatten(0, 1)
    grads = []
    for rows in points.split(chunk or points.shape[0]):
        rows = rows.requires_grad_(True)
        grads.append(torch.autograd.grad(model(rows)[:, target].sum(), rows)[0])
    grad = grads[0] if len(grads) == 1 else torch.cat(grads)
    attr = (grad.view(b, n, *x.shape[1:]) * weights.view(shape)).sum(1) * (x - base)
    return attr, attr.flatten(1).sum(1) - (ends[:b] - ends[b:])


def minimal_guided_ig(model: nn.Module, x: torch.Tensor, target: int, n_steps: int, fraction: float = 0.25,
                            max_dist: float = 0.02, eps: float = 1e-9) -> np.ndarray:
    """Guided IG (Kapishnikov et al., CVPR 2021) from a zero baseline, one example ``x`` of shape ``[1, *S]``, as
    PAIR's ``guided_ig_impl`` computes it: the model in torch, the per-step selection in NumPy on flat arrays.
    In float32, sums in another order than pathattr's move, over a few hundred steps, which features tie at the
    threshold; in float64 the two agree (``benchmarks/tests/test_speed_bounds.py``)."""
    xin = x[0].flatten().numpy()
    diff = xin.copy()  # zero baseline
    cur = np.zeros_like(xin)
    attr = np.zeros_like(xin)
    l1_total = float(np.abs(diff).sum())
    if l1_total == 0:
        return attr.reshape(x.shape)
    nonzero = diff != 0
    safe = np.where(nonzero, diff, 1)
    k = int(math.floor(fraction * (xin.size - 1)))  # np.quantile(..., "lower") as a k-th smallest
    for step in range(n_steps):
        point = torch.from_numpy(cur.reshape(x.shape)).requires_grad_(True)
        (g,) = torch.autograd.grad(model(point)[:, target].sum(), point)
        grad_actual = g.numpy().reshape(-1)
        grad = grad_actual.copy()
        alpha = (step + 1.0) / n_steps
        a_min, a_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        x_min, x_max = diff * a_min, diff * a_max
        l1_target = l1_total * (1 - alpha)
        gamma = math.inf
        while gamma > 1.0:
            old = cur.copy()
            x_alpha = np.where(nonzero, cur / safe, a_max)
            low = x_alpha < a_min
            cur[low] = x_min[low]
            l1_current = float(np.abs(cur - xin).sum())
            if math.isclose(l1_target, l1_current, rel_tol=eps, abs_tol=eps):
                attr += (cur - old) * grad_actual
                break
            grad[cur == x_max] = np.inf
            absg = np.abs(grad)
            threshold = np.partition(absg, k)[k]
            s = (absg <= threshold) & (grad != np.inf)
            l1_s = float((np.abs(cur - x_max) * s).sum())
            gamma = (l1_current - l1_target) / l1_s if l1_s > 0 else math.inf
            cur[s] = x_max[s] if gamma > 1.0 else (cur + gamma * (x_max - cur))[s]
            attr += (cur - old) * grad_actual
    return attr.reshape(x.shape)
