"""The least work each method needs for the result pathattr returns: bare plain-torch implementations, with no
validation, no target resolution, no planning and no result object, timed beside the floor.

The floor (one batched forward + backward of the path's rows) leaves out work a method cannot skip: IG must also
evaluate ``f(x)`` and ``f(x')`` to report its completeness gap and weight the gradients; Guided IG must choose,
at every step, the features with the smallest gradients. The Guided IG bound runs PAIR's algorithm with its
per-step selection in NumPy (:func:`minimal_guided_ig`): the same operations in torch took 1.6x as long on
the MLP and 1.2x on the small CNN (one thread, 200 steps). Quadrature nodes and weights come from
:func:`pathattr.integrators.quadrature` (Captum's definitions), computed once, outside the timing.
The deletion / insertion bound (:func:`minimal_causal_curve`) builds the same perturbed rows (pixel units, zeros
substrate) and scores them in calls of the floor's batch size. The IG2 bound (:func:`minimal_ig2`) runs the
authors' algorithm fused, as pathattr does (one forward and two backward passes per step), with the checks
pathattr's result implies: the noise-floor stop of a converged path and one finiteness test per step.
``bound / floor`` is how far above the floor a bare implementation of the same result is (a lower bound for any
implementation in eager PyTorch that does the same work); ``ours / bound`` is pathattr's own overhead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pathattr.paths.gradpath import default_eps, noise_floor_tolerance


def minimal_ig(model: nn.Module, x: torch.Tensor, target: int, alphas: torch.Tensor, weights: torch.Tensor,
               chunk: int | None = None, with_gap: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """IG from a zero baseline with its completeness gap: forward + backward of all ``B * n_steps`` nodes in calls
    of ``chunk`` rows (default: one call), the weighted sum, and ``f(x)``, ``f(x')``: read from the rows where the
    nodes include both ends (``alphas[0] = 0``, ``alphas[-1] = 1``), else one forward of the two ends.
    ``with_gap=False``: the attributions alone (what ``attribute()`` without the convergence delta returns; the
    gap is None)."""
    b, n = x.shape[0], alphas.shape[0]
    base = torch.zeros_like(x)
    both_ends = float(alphas[0]) == 0.0 and float(alphas[-1]) == 1.0
    if with_gap and not both_ends:
        with torch.no_grad():
            ends = model(torch.cat([x, base]))[:, target]
    shape = (1, n) + (1,) * (x.ndim - 1)
    points = (base.unsqueeze(1) + alphas.view(shape) * (x - base).unsqueeze(1)).flatten(0, 1)
    grads, outs = [], []
    for rows in points.split(chunk or points.shape[0]):
        rows = rows.requires_grad_(True)
        out = model(rows)[:, target]
        grads.append(torch.autograd.grad(out.sum(), rows)[0])
        outs.append(out.detach())
    grad = grads[0] if len(grads) == 1 else torch.cat(grads)
    attr = (grad.view(b, n, *x.shape[1:]) * weights.view(shape)).sum(1) * (x - base)
    if not with_gap:
        return attr, None
    if both_ends:  # the zero baseline makes the last node ``0 + 1 * x``, exactly x
        per_node = torch.cat(outs).view(b, n)
        return attr, attr.flatten(1).sum(1) - (per_node[:, -1] - per_node[:, 0])
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


def minimal_ig2(model: nn.Module, representation: nn.Module, x: torch.Tensor, refs: torch.Tensor, target: int,
                n_steps: int, step_size: float | None = None,
                bounds: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """IG2 (Zhuo & Ge, TPAMI 2024) with the reference rule (fixed steps, left Riemann sum) from ``B`` explicands
    ``x`` to ``R`` shared references ``refs`` ``[R, *S]``, fused: per step one forward of the ``B * R`` path rows
    with the representation (the input of ``representation``) captured, the distance gradient and the target
    gradient through the retained graph; a path whose representation difference is float noise stops. Also one
    forward of ``x`` (``f(x)``), of the references (their representations) and of GradCF (``f`` at the far end).
    Returns the attributions ``[B, *S]`` (mean over references) and the completeness gap ``[B]``."""
    b, r = x.shape[0], refs.shape[0]
    n, view = b * r, (-1,) + (1,) * (x.ndim - 1)
    slot: list = [None]
    handle = representation.register_forward_pre_hook(lambda m, a: slot.__setitem__(0, a[0]))
    try:
        with torch.no_grad():
            f_x = model(x)[:, target]
            model(refs)
            rho = slot[0].reshape(r, -1).repeat(b, 1)
        point = x.repeat_interleave(r, 0)
        ref_rows = refs.repeat(b, *([1] * (x.ndim - 1)))
        if step_size is None:
            eta = torch.linalg.vector_norm((point - ref_rows).reshape(n, -1), dim=1) / n_steps
        else:
            eta = torch.full((n,), float(step_size), dtype=x.dtype)
        eps, tol = default_eps(x.dtype), noise_floor_tolerance(x.dtype)
        rho64 = rho.to(torch.float64)
        rho_norm = torch.linalg.vector_norm(rho64, dim=1)
        stopped = torch.zeros(n, dtype=torch.bool)
        acc = torch.zeros_like(point)
        for _ in range(n_steps):
            z = point.detach().requires_grad_(True)
            out = model(z)[:, target]
            h = slot[0].reshape(n, -1)
            (u,) = torch.autograd.grad((h - rho).pow(2).sum(1).sum(), z, retain_graph=True)
            (g,) = torch.autograd.grad(out.sum(), z)
            if not bool(torch.isfinite(out.detach().sum() + u.sum() + g.sum())):
                raise ValueError("non-finite output or gradient")
            h64 = h.detach().to(torch.float64)
            stopped |= torch.linalg.vector_norm(h64 - rho64, dim=1) <= tol * (
                torch.linalg.vector_norm(h64, dim=1) + rho_norm)
            scale = (eta / torch.linalg.vector_norm(u.reshape(n, -1), dim=1).clamp_min(eps)).masked_fill(stopped, 0.0)
            new = point - u * scale.view(view)
            if bounds is not None:
                new = new.clamp(bounds[0], bounds[1])
            if bool(stopped.any()):
                new = torch.where(stopped.view(view), point, new)
            acc += g * (point - new)
            point = new
        with torch.no_grad():
            f_end = model(point)[:, target]
    finally:
        handle.remove()
    attr = acc.view(b, r, *x.shape[1:]).mean(1)
    return attr, attr.flatten(1).sum(1) - (f_x - f_end.view(b, r).mean(1))


def minimal_causal_curve(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target: int, n_steps: int,
                         mode: str = "deletion", chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion or insertion (RISE) with pixel units and the zeros substrate, as ``pathattr.metrics`` defines
    them: pixels ranked by ``attributions`` ``[B, 1, H, W]`` (stable, ties by lower index), ``n_steps + 1`` rows per
    example (``i * N // n_steps`` pixels changed in row ``i``), forward calls of ``chunk`` rows (default: one call),
    the softmax probability of
    ``target`` in float64, the trapezoid AUC on the uniform grid. Returns the AUC ``[B]`` and the curve
    ``[B, n_steps + 1]``."""
    b, n = x.shape[0], n_steps
    saliency = attributions.reshape(b, -1)
    n_units = saliency.shape[1]
    order = torch.sort(saliency, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_units).expand(b, n_units))
    counts = torch.tensor([i * n_units // n for i in range(n + 1)])
    changed = rank.unsqueeze(1) < counts.view(1, -1, 1)  # [B, n + 1, N]: the units deleted / inserted in row i
    keep = ~changed if mode == "deletion" else changed  # the units that show x (the others are zeros)
    rows = x.repeat_interleave(n + 1, 0) * keep.view(b * (n + 1), 1, *x.shape[2:])
    with torch.no_grad():
        logits = [model(part) for part in rows.split(chunk or rows.shape[0])]
    logits = logits[0] if len(logits) == 1 else torch.cat(logits)
    curve = torch.softmax(logits, dim=1, dtype=torch.float64)[:, target].view(b, n + 1)
    return (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / n, curve
