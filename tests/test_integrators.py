"""IDGI and Left/Split IG on the straight line; chunked streaming equals one-shot integration."""

from __future__ import annotations

import pytest
import torch

from pathattr import IntegratedGradients
from pathattr.integrators import (
    Evaluation,
    IDGIIntegrator,
    PathInfo,
    SplitIntegrator,
    get_integrator,
)


def _brute_force_idgi(f, x, b, n):
    alphas = torch.linspace(0, 1, n, dtype=torch.float64)
    pts = b + alphas[:, None] * (x - b)
    pts.requires_grad_(True)
    out = f(pts)
    (g,) = torch.autograd.grad(out.sum(), pts)
    out = out.detach()
    attr = torch.zeros_like(x)
    for j in range(n - 1):
        attr += g[j] ** 2 / (g[j] ** 2).sum() * (out[j + 1] - out[j])
    return attr


def test_idgi_matches_definition_and_is_complete(gen):
    w = torch.randn(5, dtype=torch.float64, generator=gen)

    def f(v):
        return torch.sin(v @ w) + (v**2).sum(-1) * 0.1

    x = torch.randn(1, 5, dtype=torch.float64, generator=gen)
    b = torch.randn(1, 5, dtype=torch.float64, generator=gen)
    expected = _brute_force_idgi(f, x[0], b[0], 12)
    for size in (1, 5, None):
        r = IntegratedGradients(f, integrator="idgi").explain(x, baselines=b, n_steps=12, internal_batch_size=size)
        torch.testing.assert_close(r.attributions[0], expected, rtol=1e-12, atol=1e-12)
        assert abs(float(r.convergence_delta[0])) < 1e-12  # exact by construction


def test_idgi_zero_gradient_steps_are_skipped_and_reported():
    # f is flat (zero gradient) for v < 0 and jumps nowhere: relu(v) summed; path from -1 to 1.
    def f(v):
        return torch.relu(v).sum(-1)

    x = torch.ones(1, 3, dtype=torch.float64)
    r = IntegratedGradients(f, integrator="idgi").explain(x, baselines=-1.0, n_steps=5)
    assert torch.isfinite(r.attributions).all()
    skipped = r.extras["skipped_output_change"]
    # nodes -1, -0.5, 0, 0.5, 1: steps starting at -1 and -0.5 have zero gradient, output change 0 there,
    # step starting at 0 has relu'(0) = 0 in torch and output change 1.5 -> skipped and reported
    assert float(skipped.sum()) == pytest.approx(1.5)
    assert float(r.attributions.sum()) == pytest.approx(1.5)


def test_split_left_plus_right_equals_riemann(cnn, gen):
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    ig = IntegratedGradients(cnn).explain(x, target=[1, 2], n_steps=20, method="riemann_right")
    for size in (1, 7, None):
        both = IntegratedGradients(cnn, integrator=SplitIntegrator(0.9, part="both")).explain(
            x, target=[1, 2], n_steps=20, method="riemann_right", internal_batch_size=size
        )
        torch.testing.assert_close(both.attributions, ig.attributions, rtol=1e-10, atol=1e-12)
        left, right = both.extras["left"][0], both.extras["right"][0]
        torch.testing.assert_close(left + right, ig.attributions, rtol=1e-10, atol=1e-12)


def test_split_point_is_first_crossing():
    # f(v) = sum(v)^3 from 0 to 1 (per feature 1/d): outputs at right-Riemann nodes a_j are a_j^3 * s^3.
    def f(v):
        return v.sum(-1) ** 3

    x = torch.full((1, 2), 0.5, dtype=torch.float64)
    r = IntegratedGradients(f, integrator=SplitIntegrator(0.5, part="left")).explain(
        x, baselines=0.0, n_steps=10, method="riemann_right"
    )
    # f(a) = a^3 > 0.5 first at a = 0.8 (0.512), node index 7 (a_j = (j+1)/10)
    assert r.extras["split_step"].tolist() == [7]
    # left part integrates gradients at a = 0.1..0.7 with weight 0.1: sum 3 a^2 * 0.1 over those nodes
    expected = sum(3 * (k / 10) ** 2 * 0.1 for k in range(1, 8))
    assert float(r.attributions.sum()) == pytest.approx(expected, rel=1e-12)


def test_split_direction_from_input_end_matches_forward_order():
    # Feed the same rows in both orders directly to the accumulator: results must agree.
    n_paths, n_nodes = 3, 8
    g = torch.randn(n_paths * n_nodes, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    d = torch.rand(n_paths * n_nodes, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = torch.rand(n_paths, n_nodes, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).cumsum(1)
    start, end = torch.zeros(n_paths, dtype=torch.float64), f[:, -1] + 0.1
    like = (torch.zeros(n_paths, 4, dtype=torch.float64),)
    index = torch.arange(n_paths)

    def run(direction, chunk):
        info = PathInfo(n_paths, index, n_paths, like, start, end, direction)
        acc = SplitIntegrator(0.5, part="left").accumulator(info)
        order = torch.arange(n_nodes) if direction > 0 else torch.arange(n_nodes - 1, -1, -1)
        rows_p = index.repeat_interleave(n_nodes)
        rows_j = order.repeat(n_paths)
        flat = rows_p * n_nodes + rows_j
        for a in range(0, flat.numel(), chunk):
            sl = slice(a, a + chunk)
            acc.update(Evaluation(rows_p[sl], torch.arange(flat.numel())[sl] % n_nodes, (g[flat[sl]],),
                                  f.reshape(-1)[flat[sl]], (d[flat[sl]],)))
        return acc.result()[0], acc.extras["right"][0]

    for chunk in (1, 3, 24):
        lf, rf = run(+1, chunk)
        lb, rb = run(-1, chunk)
        torch.testing.assert_close(lf, lb, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rf, rb, rtol=1e-12, atol=1e-12)


def test_integrator_registry_and_errors():
    assert isinstance(get_integrator("idgi"), IDGIIntegrator)
    assert get_integrator("left_ig").part == "left"
    with pytest.raises(ValueError, match="integrator"):
        get_integrator("simpson")
    with pytest.raises(ValueError, match="ratio"):
        SplitIntegrator(ratio=1.5)
    with pytest.raises(ValueError):
        IntegratedGradients(lambda v: v.sum(-1), multiply_by_inputs=False, integrator="idgi")
