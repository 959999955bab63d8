"""Sparseness (Gini), max-sensitivity, infidelity and the model-randomisation sanity check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import pathattr
import pathattr.metrics as pm
from conftest import make_mlp
from pathattr.errors import InputValidationError


# ------------------------------------------------------------------------------------------- sparseness
def test_gini_closed_form():
    n = 10
    one_hot = torch.zeros(1, n)
    one_hot[0, 3] = -2.0
    assert pm.sparseness(one_hot).scores.item() == pytest.approx((n - 1) / n)
    assert pm.sparseness(torch.ones(1, n)).scores.item() == pytest.approx(0.0, abs=1e-12)
    # a = (1, 2, 3): G = sum (2i - n - 1) a_i / (n sum a) = (-2*1 + 0*2 + 2*3) / (3 * 6) = 2/9
    assert pm.sparseness(torch.tensor([[3.0, -1.0, 2.0]])).scores.item() == pytest.approx(2 / 9)
    res = pm.sparseness(torch.rand(4, 2, 3, 3))
    assert res.scores.shape == (4,) and res.higher_is_better is True
    with pytest.raises(InputValidationError):
        pm.sparseness(torch.zeros(2, 5))


# ------------------------------------------------------------------------------------------- max-sensitivity
def test_max_sensitivity_linear_explanations():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1000, generator=gen, dtype=torch.float64)

    def constant(inputs, target):
        return torch.ones_like(inputs)

    res = pm.max_sensitivity(constant, x, radius=0.1, n_samples=5)
    assert res.scores.tolist() == [0.0, 0.0, 0.0] and res.direction == "lower"

    def scaled(inputs, target):
        return 3.0 * inputs

    # ||3 delta||_inf <= 3 r, and with 1000 uniform coordinates the max is > 0.99 * 3r (P(miss) ~ 4e-5)
    res = pm.max_sensitivity(scaled, x, radius=0.1, n_samples=5, norm="inf", generator=1)
    assert bool((res.scores <= 0.3 + 1e-12).all()) and bool((res.scores > 0.297).all())
    # Euclidean: E||delta||^2 = d r^2 / 3, so ||3 delta|| ~ 3 r sqrt(d / 3) within a few percent
    res = pm.max_sensitivity(scaled, x, radius=0.1, n_samples=5, generator=1)
    assert res.scores.tolist() == pytest.approx([0.3 * math.sqrt(1000 / 3)] * 3, rel=0.05)
    torch.testing.assert_close(res.relative, res.scores / (3 * x).norm(dim=1))
    # seeded: same generator, same numbers; chunking does not change them
    again = pm.max_sensitivity(scaled, x, radius=0.1, n_samples=5, generator=1, internal_batch_size=4)
    torch.testing.assert_close(again.per_sample, res.per_sample, rtol=0, atol=1e-12)


def test_max_sensitivity_with_a_method_keeps_the_target():
    model = make_mlp(seed=1)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sal = pathattr.Saliency(model, abs=False)
    res = pm.max_sensitivity(sal, x, radius=0.05, n_samples=4)
    predicted = model(x).argmax(1)
    assert torch.equal(res.target, predicted)
    assert bool((res.scores > 0).all())
    # a linear model's gradient does not depend on x: sensitivity 0
    lin = nn.Linear(6, 3).double()
    res = pm.max_sensitivity(pathattr.Saliency(lin, abs=False), x, radius=0.5, n_samples=4)
    assert float(res.scores.abs().max()) < 1e-12


# ------------------------------------------------------------------------------------------- infidelity
class LinearModel(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        z = x.flatten(1) @ self.w.flatten()
        return torch.stack([z, -z], 1)


def test_infidelity_linear_oracles():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, generator=gen, dtype=torch.float64)
    model = LinearModel(w).double()
    x = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    grad = w.expand(5, 8)
    # the gradient of a linear model predicts every output change exactly: infidelity 0
    for pert in ("gaussian", "baseline"):
        res = pm.infidelity(model, x, grad, target=0, perturbation=pert, n_samples=6)
        assert float(res.scores.max()) < 1e-20
    # 2w: I^T(2w) - w^T I = w^T I, so INFD = mean (w^T I)^2; normalize finds beta = 1/2 and gives 0
    res = pm.infidelity(model, x, 2 * grad, target=0, n_samples=6, generator=3)
    torch.testing.assert_close(res.scores, res.output_change.square().mean(0), rtol=1e-12, atol=1e-14)
    norm = pm.infidelity(model, x, 2 * grad, target=0, n_samples=6, generator=3, normalize=True)
    torch.testing.assert_close(norm.beta, torch.full((5,), 0.5, dtype=torch.float64))
    assert float(norm.scores.max()) < 1e-20
    # Gaussian I with std s: E (w^T I)^2 = s^2 ||w||^2
    many = pm.infidelity(model, x, 2 * grad, target=0, n_samples=4000, noise_std=0.2, generator=0)
    assert many.mean() == pytest.approx(0.04 * float(w.square().sum()), rel=0.05)
    # baseline perturbation I = x - 0 = x with A = w * x: INFD = (sum_i x_i^2 w_i - w^T x)^2 in closed form
    res = pm.infidelity(model, x, w * x, target=0, perturbation="baseline", n_samples=1)
    torch.testing.assert_close(res.scores, ((x * x * w).sum(1) - x @ w).square(), rtol=1e-12, atol=1e-12)
    assert res.direction == "lower"


def test_infidelity_matches_captum_on_a_deterministic_perturbation():
    captum_metrics = pytest.importorskip("captum.metrics")
    model = make_mlp(seed=2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    attr = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    base = torch.full_like(x, 0.3)

    def perturb(inputs):
        return inputs - 0.3, torch.full_like(inputs, 0.3)

    for normalize in (False, True):
        ref = captum_metrics.infidelity(model, perturb, x, attr, target=1, n_perturb_samples=3, normalize=normalize)
        ours = pm.infidelity(model, x, attr, target=1, perturbation="baseline", baselines=base, n_samples=3,
                             normalize=normalize)
        torch.testing.assert_close(ours.scores, ref.to(torch.float64), rtol=1e-10, atol=1e-12)


def test_infidelity_square_removal_is_seeded(cnn):
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    attr = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = pm.infidelity(cnn, x, attr, perturbation="square", square_size=3, n_samples=5, generator=4)
    b = pm.infidelity(cnn, x, attr, perturbation="square", square_size=3, n_samples=5, generator=4,
                      internal_batch_size=2)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-12, atol=1e-14)
    # each draw removes exactly one 3x3 square (all channels): I^T 1 = sum of x over the square
    ones = pm.infidelity(cnn, x, torch.ones_like(x), perturbation="square", square_size=3, n_samples=5, generator=4)
    assert bool((ones.dot > 0).all())
    with pytest.raises(InputValidationError) as e:
        pm.infidelity(cnn, x, attr, perturbation="square", square_size=9)
    assert e.value.argument == "square_size"


# ------------------------------------------------------------------------------------------- randomisation
class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(5, 4)
        self.second = nn.Linear(4, 3)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def test_randomisation_closed_form_and_model_untouched():
    model = TwoLayer().double()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # negating every parameter of a layer maps the gradient of `second` to -g: rank corr of A is -1, of |A| 1
    negate = lambda p, g: -p  # noqa: E731
    res = pm.model_parameter_randomisation(model, x, pathattr.InputXGradient, target=0, reinit=negate,
                                           layers=["second"])
    assert res.spearman.flatten().tolist() == pytest.approx([-1.0] * 3)
    assert res.spearman_abs.flatten().tolist() == pytest.approx([1.0] * 3)
    # cascading top-down order and shapes
    res = pm.model_parameter_randomisation(model, x, pathattr.InputXGradient, generator=0)
    assert res.layers == ["second", "first"] and res.spearman_abs.shape == (2, 3)
    assert res.direction == "lower" and res.higher_is_better is False
    torch.testing.assert_close(res.scores, res.spearman_abs[-1])
    assert torch.equal(res.target, model(x).argmax(1))
    again = pm.model_parameter_randomisation(model, x, pathattr.InputXGradient, generator=0)
    torch.testing.assert_close(again.spearman_abs, res.spearman_abs, rtol=0, atol=0)
    # the original model is exactly as it was
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert all(p.requires_grad for p in model.parameters())


def test_randomisation_lowers_similarity_and_accepts_quantus_style_callables():
    model = make_mlp(seed=4, d_in=20, hidden=16)
    x = torch.randn(6, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def explain(m, inputs, target):
        return pathattr.Saliency(m, abs=False).attribute(inputs, target=target)

    res = pm.model_parameter_randomisation(model, x, explain, cascading=False, generator=1)
    assert res.layers == ["2", "0"]
    # random weights: correlations well below 1 on average
    assert float(res.spearman_abs.mean()) < 0.7
    identity = pm.model_parameter_randomisation(model, x, explain, reinit=lambda p, g: p.clone())
    assert torch.allclose(identity.spearman_abs, torch.ones_like(identity.spearman_abs))
    with pytest.raises(InputValidationError) as e:
        pm.model_parameter_randomisation(model, x, explain, layers=["nope"])
    assert e.value.argument == "layers"
