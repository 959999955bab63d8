"""Stability under numerical perturbation: oracles (a deterministic linear model gives exactly 1; injected noise
gives < 1; top-k overlap on a hand-built case), the model is never modified, seeds and arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pathattr
import pathattr.metrics as pm
from conftest import SmallCNN
from pathattr.errors import InputValidationError


def _linear(d: int = 12, c: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(d, c).eval()  # float32 on purpose: float64 must still agree exactly


def test_linear_model_is_exactly_stable_under_every_perturbation():
    model = _linear()
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    res = pm.stability(pathattr.Saliency(model), x, target=1)  # gradient of a linear model = its weights
    assert res.perturbations == ("chunking", "noise", "float64")
    for t in (res.spearman, res.pearson, res.top_k_overlap):
        assert t.shape == (3, 5)
        assert torch.equal(t, torch.ones_like(t))  # exactly 1.0
    assert torch.equal(res.scores, torch.ones(5, dtype=torch.float64))
    assert res.direction == "higher" and res.higher_is_better
    assert set(res.of("noise")) == {"spearman", "pearson", "top_k_overlap"}
    # Input x Gradient of a linear model in float64: chunking and float64 change nothing
    ixg = pm.stability(pathattr.InputXGradient(model.double()), x.double(), target=0,
                       perturbations=("chunking", "float64"))
    assert torch.equal(ixg.scores, torch.ones(5, dtype=torch.float64))


def test_integrated_gradients_on_a_linear_model_is_stable_to_float_precision():
    model = _linear().double()
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    res = pm.stability(pathattr.IntegratedGradients(model), x, target=2, explain_kwargs={"n_steps": 16},
                       internal_batch_size=64, chunk_size=5)
    assert float(res.pearson.min()) > 1 - 1e-12
    assert float(res.spearman[0].min()) == 1.0 and float(res.spearman[2].min()) == 1.0  # chunking, float64


def test_injected_noise_scores_below_one():
    model = _linear()
    w = model.weight.detach()
    calls = {"n": 0}

    def noisy_explain(x, target, internal_batch_size=None):
        calls["n"] += 1  # a different perturbation of the explanation on every call
        g = torch.Generator().manual_seed(calls["n"])
        return w[target] * x + 0.5 * torch.randn(x.shape, generator=g)

    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(3))
    res = pm.stability(noisy_explain, x, target=torch.zeros(6, dtype=torch.long), perturbations=("chunking", "noise"))
    assert calls["n"] == 3  # reference + two perturbations
    assert bool((res.spearman < 1).all()) and bool((res.pearson < 1).all())
    assert bool((res.scores < 1).all())
    assert torch.equal(res.scores, res.spearman.amin(0))


def test_top_k_overlap_on_a_hand_built_case():
    ref = torch.tensor([[5.0, -4.0, 3.0, 2.0, 1.0, 0.0]])
    perturbed = torch.tensor([[5.0, -4.0, 0.0, 1.0, 2.0, 3.5]])

    def explain(x, target, internal_batch_size=None):
        return perturbed.clone()

    res = pm.stability(explain, torch.zeros(1, 6), target=0, attributions=ref, perturbations=("chunking",), top_k=3)
    # top-3 by |A|: reference {0, 1, 2}, perturbed {0, 1, 5}
    assert res.k == 3 and float(res.top_k_overlap[0, 0]) == pytest.approx(2 / 3)
    two = pm.stability(explain, torch.zeros(1, 6), target=0, attributions=ref, perturbations=("chunking",), top_k=2)
    assert float(two.top_k_overlap[0, 0]) == 1.0
    half = pm.stability(explain, torch.zeros(1, 6), target=0, attributions=ref, perturbations=("chunking",),
                        top_k=0.5)
    assert half.k == 3
    # Spearman and Pearson against SciPy's definitions
    stats = pytest.importorskip("scipy.stats")
    r64, p64 = ref[0].double().numpy(), perturbed[0].double().numpy()
    assert float(res.spearman[0, 0]) == pytest.approx(stats.spearmanr(r64, p64).statistic, abs=1e-12)
    assert float(res.pearson[0, 0]) == pytest.approx(stats.pearsonr(r64, p64).statistic, abs=1e-12)
    absolute = pm.stability(explain, torch.zeros(1, 6), target=0, attributions=ref, perturbations=("chunking",),
                            absolute=True)
    r_abs = stats.spearmanr(ref[0].abs().double(), perturbed[0].abs().double()).statistic
    assert float(absolute.spearman[0, 0]) == pytest.approx(r_abs, abs=1e-12)


def test_float64_works_on_a_copy_and_leaves_the_model_alone():
    torch.manual_seed(1)
    model = SmallCNN().eval()  # float32
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    res = pm.stability(pathattr.IntegratedGradients(model), x, explain_kwargs={"n_steps": 8},
                       perturbations=("float64",), channel_reduction="sum")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert float(res.pearson.min()) > 0.999  # a smooth CNN: float32 round-off only
    assert res.target.tolist() == model(x).argmax(1).tolist()  # None = predicted class, fixed once


def test_noise_is_seeded_and_stochastic_methods_reuse_their_generator():
    torch.manual_seed(1)
    model = SmallCNN().double().eval()
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ig = pathattr.IntegratedGradients(model)
    a = pm.stability(ig, x, target=0, perturbations=("noise",), noise=1e-3, generator=5, explain_kwargs={"n_steps": 8})
    b = pm.stability(ig, x, target=0, perturbations=("noise",), noise=1e-3, generator=5, explain_kwargs={"n_steps": 8})
    c = pm.stability(ig, x, target=0, perturbations=("noise",), noise=1e-3, generator=6, explain_kwargs={"n_steps": 8})
    assert torch.equal(a.pearson, b.pearson) and not torch.equal(a.pearson, c.pearson)
    # SmoothGrad with a generator object: every recomputation draws the same noise, so chunking changes nothing
    sg = pathattr.NoiseTunnel(pathattr.Saliency(model))
    g = torch.Generator().manual_seed(3)
    res = pm.stability(lambda xx, t, **kw: sg.attribute(xx, target=t, **kw), x, target=np.array([0, 1]),
                       perturbations=("float64",), explain_kwargs={"nt_samples": 4, "generator": g})
    assert float(res.pearson.min()) > 1 - 1e-12


def test_arguments_are_validated():
    model = _linear()
    x = torch.randn(2, 12)
    sal = pathattr.Saliency(model)
    with pytest.raises(InputValidationError) as e:
        pm.stability(sal, x, perturbations=("chunking", "rounding"))
    assert e.value.argument == "perturbations"
    with pytest.raises(InputValidationError) as e:
        pm.stability(sal, x, internal_batch_size=7)  # == the default chunk_size
    assert e.value.argument == "chunk_size"
    with pytest.raises(InputValidationError) as e:
        pm.stability(sal, x, top_k=0)
    assert e.value.argument == "top_k"
    with pytest.raises(InputValidationError) as e:
        pm.stability(lambda xx, t, **kw: xx, x, target=0, perturbations=("float64",), explain_kwargs={"target": 1})
    assert e.value.argument == "explain_kwargs"
    wrapped = pathattr.Saliency(lambda xx: model(xx))
    with pytest.raises(InputValidationError) as e:  # no module to copy: float64 is refused, the model untouched
        pm.stability(wrapped, x, target=0, perturbations=("float64",))
    assert e.value.argument == "perturbations"
    assert model.weight.dtype == torch.float32
    # class form
    res = pm.Stability(perturbations=("noise",))(sal, x, target=0)
    assert res.scores.shape == (2,)


def test_values_below_the_resolution_are_ties():
    ref = torch.tensor([[3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    tiny = torch.tensor([[3.0, 2.0, 1.0, 2e-7, -1e-7, 3e-7, -2e-7, 1e-7]], dtype=torch.float64)  # round-off level

    def explain(x, target, internal_batch_size=None):
        return tiny.clone()

    kw = {"target": 0, "attributions": ref, "perturbations": ("chunking",), "top_k": 3}
    snapped = pm.stability(explain, torch.zeros(1, 8), **kw)
    assert float(snapped.spearman[0, 0]) == 1.0 and float(snapped.top_k_overlap[0, 0]) == 1.0
    raw = pm.stability(explain, torch.zeros(1, 8), resolution=0.0, **kw)
    assert float(raw.spearman[0, 0]) < 0.95  # the order of the round-off values counts without a resolution
    assert float(raw.pearson[0, 0]) > 1 - 1e-12
