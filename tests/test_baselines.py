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
    IntegratedGradients(lambda v: v.sum(-1)).attribute(x, baselines=Uniform(n=3), generator=7, n_steps=3)
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
