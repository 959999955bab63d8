"""The speed benchmark's bounds (:mod:`pathattr_bench.speed.bounds`) compute the result pathattr returns, so
``ours / bound`` compares the same work: IG with its completeness gap, Guided IG as PAIR defines it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathattr import IntegratedGradients
from pathattr.methods.guided_ig import GuidedIntegratedGradients
from pathattr_bench.speed.bounds import minimal_guided_ig, minimal_guided_ig_numpy, minimal_ig, quadrature
from pathattr_bench.speed.common import make_inputs, make_model


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def model64(request):
    m, shape = make_model(request.param)
    return m.double(), shape, request.param


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_ig_bound_is_pathattr_ig_with_its_gap(model64, rule, chunk):
    m, shape, name = model64
    x = make_inputs(name, shape, 3).double()
    alphas, weights = quadrature(rule, 20)
    attr, gap = minimal_ig(m, x, 2, alphas.double(), weights.double(), chunk)
    ours = IntegratedGradients(m).explain(x, target=2, n_steps=20, method=rule)
    scale = float(attr.abs().max())
    assert float((ours.attributions - attr).abs().max()) <= 1e-6 * scale  # nodes / weights in float32
    out = m(x)[:, 2] - m(torch.zeros_like(x))[:, 2]
    assert torch.allclose(gap, attr.flatten(1).sum(1) - out, rtol=0, atol=1e-12)
    assert torch.allclose(ours.convergence_delta, gap, rtol=0, atol=1e-6 * scale)


def test_guided_ig_bounds_are_pathattr_guided_ig(model64):
    m, shape, name = model64
    x = make_inputs(name, shape, 1).double()
    ours = GuidedIntegratedGradients(m).attribute(x, target=0, n_steps=60)
    for bound in (minimal_guided_ig(m, x, 0, 60), torch.from_numpy(minimal_guided_ig_numpy(m, x, 0, 60))):
        assert float((ours - bound).abs().max()) <= 1e-9 * float(ours.abs().max())


def test_quadrature_rules_integrate_polynomials():
    a, w = quadrature("gausslegendre", 10)
    assert float((w.double() * a.double() ** 19).sum()) == pytest.approx(1 / 20, rel=1e-5)  # exact to degree 19
    a, w = quadrature("riemann_trapezoid", 10)  # Captum's: weights 1/m with halved ends, sum (m-1)/m
    assert float(w.sum()) == pytest.approx(0.9, rel=1e-6) and float(a[-1]) == 1.0
    with pytest.raises(ValueError, match="no bound"):
        quadrature("riemann_left", 10)
    assert np.isfinite(quadrature("gausslegendre", 3)[0].numpy()).all()
