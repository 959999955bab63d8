"""Baseline specifications resolve to [B or 1, K, *S] tensors with the documented values."""

from __future__ import annotations

import pytest
import torch

from pathattr import IntegratedGradients
from pathattr.baselines import Blur, Gaussian, Mean, Uniform, resolve_baselines
from pathattr.errors import InputValidationError
from pathattr.ops import gaussian_blur


def test_scalar_tensor_and_per_example_forms(gen):
    x = torch.randn(3, 2, 4, dtype=torch.float64, generator=gen)
    (z,) = resolve_baselines((x,), None, gen)
    assert z.shape == (1, 1, 2, 4) and torch.all(z == 0)
    (c,) = resolve_baselines((x,), 0.25, gen)
    assert torch.all(c == 0.25) and c.shape[1] == 1
    per_channel = torch.tensor([[1.0], [2.0]], dtype=torch.float64)  # [C, 1] broadcast over trailing dims
    (pc,) = resolve_baselines((x,), per_channel, gen)
    assert pc.shape == (1, 1, 2, 4) and torch.all(pc[0, 0, 1] == 2.0)
    per_example = torch.randn(3, 2, 4, dtype=torch.float64, generator=gen)
    (pe,) = resolve_baselines((x,), per_example, gen)
    assert pe.shape == (3, 1, 2, 4) and torch.equal(pe[:, 0], per_example)
    k_each = torch.randn(3, 5, 2, 4, dtype=torch.float64, generator=gen)
    (ke,) = resolve_baselines((x,), k_each, gen)
    assert ke.shape == (3, 5, 2, 4)


def test_named_baselines_values(gen):
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=gen)
    (u,) = resolve_baselines((x,), Uniform(n=4), gen)
    assert u.shape == (2, 4, 3, 16, 16)
    for i in range(2):
        assert u[i].min() >= x[i].min() and u[i].max() <= x[i].max()
    (g,) = resolve_baselines((x,), Gaussian(sigma=0.5, n=64), gen)
    assert float((g - x.unsqueeze(1)).std()) == pytest.approx(0.5, rel=0.02)
    (m,) = resolve_baselines((x,), "mean", gen)
    torch.testing.assert_close(m[:, 0, :, 0, 0], x.mean(dim=(2, 3)))
    tab = torch.randn(10, 4, dtype=torch.float64, generator=gen)
    (mt,) = resolve_baselines((tab,), Mean(), gen)
    torch.testing.assert_close(mt[0, 0], tab.mean(0))
    (bl,) = resolve_baselines((x,), Blur(sigma=3.0), gen)
    assert bl.shape == (2, 1, 3, 16, 16) and float(bl.std()) < float(x.std())


def test_random_baselines_follow_the_generator(gen):
    x = torch.rand(2, 5, dtype=torch.float64, generator=gen)
    a = resolve_baselines((x,), "uniform", torch.Generator().manual_seed(3))[0]
    b = resolve_baselines((x,), "uniform", torch.Generator().manual_seed(3))[0]
    c = resolve_baselines((x,), "uniform", torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    state = torch.random.get_rng_state()
    IntegratedGradients(lambda v: v.sum(-1), model=()).attribute(x, baselines=Uniform(n=3), generator=7, n_steps=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


def test_gaussian_blur_matches_scipy():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 2, 20, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigma in (0.7, 2.5):
        ours = gaussian_blur(x, sigma, padding="zeros")
        ref = scipy_ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="constant")
        assert abs(ours.numpy() - ref).max() < 1e-12
        ours_r = gaussian_blur(x, sigma, padding="reflect")
        ref_r = scipy_ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect")
        assert abs(ours_r.numpy() - ref_r).max() < 1e-12


def test_shape_mismatch_names_the_argument(gen):
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    with pytest.raises(InputValidationError, match="baselines") as err:
        resolve_baselines((x,), torch.zeros(3, 5, dtype=torch.float64), gen)
    assert err.value.argument == "baselines"
    with pytest.raises(InputValidationError, match="baselines"):
        resolve_baselines((x,), torch.zeros(2, 2, 4, dtype=torch.float64), gen)
    with pytest.raises(InputValidationError, match="unknown"):
        resolve_baselines((x,), "black", gen)
    with pytest.raises(InputValidationError, match="tuple"):
        resolve_baselines((x, x), (None, None, None), gen)


# ------------------------------------------------------------------------------------------- one concept
def test_metric_substrates_are_baselines():
    import pathattr.metrics as pm
    from pathattr import baselines as bl
    from pathattr.metrics import substrates

    assert pm.Substrate is bl.Baseline and substrates.Substrate is bl.Baseline
    assert pm.UniformNoise is bl.Uniform and pm.RiseBlur is bl.RiseBlur and pm.Constant is bl.Constant
    assert issubclass(pm.Mean, bl.Mean) and pm.Mean().over == "example"
    assert substrates.resolve_substrate is bl.resolve_substrate and substrates.rise_kernel is bl.rise_kernel


def test_substrate_names_keep_the_metric_defaults(gen):
    from pathattr.baselines import RiseBlur, resolve_substrate

    x = torch.rand(2, 3, 12, 12, dtype=torch.float64, generator=gen)
    blur, desc = resolve_substrate("blur", x, gen)
    torch.testing.assert_close(blur, RiseBlur()(x, gen), rtol=0, atol=0)  # RISE's blur, not the methods' Blur
    assert desc == {"name": "blur", "klen": 11, "sigma": 5.0}
    zeros, desc = resolve_substrate("zeros", x, gen)
    assert torch.equal(zeros, torch.zeros_like(x)) and desc == {"name": "constant", "value": 0.0}
    flat = torch.rand(4, 5, dtype=torch.float64, generator=gen)
    mean, _ = resolve_substrate("mean", flat, gen)  # per example for [B, F] (the methods' "mean" is per batch)
    torch.testing.assert_close(mean, flat.mean(1, keepdim=True).expand_as(flat))
    (method_mean,) = resolve_baselines((flat,), "mean", gen)
    torch.testing.assert_close(method_mean[0, 0], flat.mean(0))
    # uniform: the same draws as the former UniformNoise (one U(0, 1) per element, in order, float64)
    u, _ = resolve_substrate("uniform", x, torch.Generator().manual_seed(5))
    draws = torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    lo = x.reshape(2, -1).amin(1).view(2, 1, 1, 1)
    hi = x.reshape(2, -1).amax(1).view(2, 1, 1, 1)
    torch.testing.assert_close(u, lo + draws * (hi - lo), rtol=0, atol=0)
    # every method baseline name works as a substrate, with one baseline per example
    g, _ = resolve_substrate("gaussian", x, gen)
    assert g.shape == x.shape
    with pytest.raises(InputValidationError) as e:
        resolve_substrate(Uniform(n=3), x, gen)
    assert e.value.argument == "substrate"


def test_one_baseline_object_serves_a_method_and_a_metric(gen):
    import pathattr.metrics as pm
    from pathattr.baselines import RiseBlur

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 2))
    model = model.double().eval()
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64, generator=gen)
    blur = Blur(sigma=2.0)
    ig = IntegratedGradients(model)
    a = ig.attribute(x, baselines=blur, target=0, n_steps=8)
    a_t = ig.attribute(x, baselines=blur(x, gen)[:, 0], target=0, n_steps=8)
    torch.testing.assert_close(a, a_t, rtol=0, atol=0)
    # the same Blur object as a deletion substrate: the curve ends at the blurred image
    d = pm.deletion(model, x, a, target=0, n_steps=4, substrate=blur, output="logit")
    d_t = pm.deletion(model, x, a, target=0, n_steps=4, substrate=blur(x, gen)[:, 0], output="logit")
    torch.testing.assert_close(d.curve, d_t.curve, rtol=0, atol=0)
    assert d.hyperparameters["substrate"]["name"] == "blur" and d.hyperparameters["substrate"]["sigma"] == 2.0
    # RISE's blur (the metrics' "blur") as a method baseline, by object or by the name "rise_blur"
    r1 = ig.attribute(x, baselines=RiseBlur(), target=0, n_steps=8)
    r2 = ig.attribute(x, baselines="rise_blur", target=0, n_steps=8)
    r3 = ig.attribute(x, baselines=RiseBlur()(x, gen), target=0, n_steps=8)
    torch.testing.assert_close(r1, r2, rtol=0, atol=0)
    torch.testing.assert_close(r1, r3, rtol=0, atol=0)
    # a callable works in both places
    half = ig.attribute(x, baselines=lambda t: t * 0.5, target=0, n_steps=8)
    torch.testing.assert_close(half, ig.attribute(x, baselines=x * 0.5, target=0, n_steps=8), rtol=0, atol=0)
    dc = pm.deletion(model, x, a, target=0, n_steps=4, substrate=lambda t: t * 0.5, output="logit")
    torch.testing.assert_close(dc.curve, pm.deletion(model, x, a, target=0, n_steps=4, substrate=x * 0.5,
                                                     output="logit").curve, rtol=0, atol=0)


def test_a_user_substrate_subclass_returning_b_s_works_for_methods_too(gen):
    import pathattr.metrics as pm

    class Half(pm.Substrate):  # the pre-unification way: __call__ returns [B, *S]
        name = "half"

        def __call__(self, x, generator):
            return x * 0.5

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 2).double().eval()
    x = torch.rand(3, 6, dtype=torch.float64, generator=gen)
    (b,) = resolve_baselines((x,), Half(), gen)
    assert b.shape == (3, 1, 6) and torch.equal(b[:, 0], x * 0.5)
    ig = IntegratedGradients(model)
    torch.testing.assert_close(ig.attribute(x, baselines=Half(), target=1, n_steps=4),
                               ig.attribute(x, baselines=x * 0.5, target=1, n_steps=4), rtol=0, atol=0)
    d = pm.deletion(model, x, x, target=1, n_steps=2, substrate=Half(), output="logit")
    assert d.hyperparameters["substrate"] == {"name": "half"}
