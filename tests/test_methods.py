"""Saliency, InputXGradient, ExpectedGradients and NoiseTunnel: oracles and Captum parity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathattr import ExpectedGradients, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency


def test_saliency_and_input_x_gradient_match_captum(cnn, gen):
    from captum.attr import InputXGradient as CaptumIxG
    from captum.attr import Saliency as CaptumSaliency

    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=gen)
    target = [0, 3, 1]
    torch.testing.assert_close(
        Saliency(cnn).attribute(x, target=target, internal_batch_size=2),
        CaptumSaliency(cnn).attribute(x, target=target),
        rtol=1e-12, atol=1e-12,
    )
    torch.testing.assert_close(
        Saliency(cnn, abs=False).attribute(x, target=target),
        CaptumSaliency(cnn).attribute(x, target=target, abs=False),
        rtol=1e-12, atol=1e-12,
    )
    torch.testing.assert_close(
        InputXGradient(cnn).attribute(x, target=target),
        CaptumIxG(cnn).attribute(x, target=target),
        rtol=1e-12, atol=1e-12,
    )


def test_expected_gradients_linear_oracle_and_determinism(gen):
    w = torch.randn(6, dtype=torch.float64, generator=gen)

    def f(v):
        return v @ w

    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    refs = torch.randn(10, 6, dtype=torch.float64, generator=gen)
    r = ExpectedGradients(f).explain(x, refs, n_samples=12, generator=5)
    idx = r.extras["reference_index"]
    # linear model: EG = w * (x - mean of the drawn references), for any alphas
    expected = w * (x - refs[idx].mean(1))
    torch.testing.assert_close(r.attributions, expected, rtol=1e-12, atol=1e-12)
    assert float(r.convergence_delta.abs().max()) < 1e-12
    again = ExpectedGradients(f).explain(x, refs, n_samples=12, generator=5, internal_batch_size=5)
    torch.testing.assert_close(again.attributions, r.attributions, rtol=0, atol=1e-12)


def test_expected_gradients_converges_to_multi_baseline_ig(mlp, gen):
    x = torch.randn(1, 6, dtype=torch.float64, generator=gen)
    refs = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    eg = ExpectedGradients(mlp).attribute(x, refs, target=0, n_samples=6000, stratified=True, generator=1)
    ig = IntegratedGradients(mlp).attribute(x, baselines=refs.unsqueeze(0), target=0, n_steps=64)
    assert (eg - ig).abs().max().item() < 0.02 * ig.abs().max().item()


def test_expected_gradients_matches_captum_gradient_shap_in_expectation(mlp, gen):
    from captum.attr import GradientShap

    x = torch.randn(2, 6, dtype=torch.float64, generator=gen)
    refs = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    ours = ExpectedGradients(mlp).attribute(x, refs, target=1, n_samples=3000, generator=0)
    torch.manual_seed(0)
    theirs = GradientShap(mlp).attribute(x, refs, target=1, n_samples=3000)
    assert (ours - theirs).abs().max().item() < 0.05 * theirs.abs().max().item()


def test_noise_tunnel_oracles_and_determinism(gen):
    w = torch.randn(5, dtype=torch.float64, generator=gen)

    def quad(v):
        return (v**2) @ w  # gradient 2 w v

    x = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    sal = Saliency(quad, abs=False)
    sg = NoiseTunnel(sal).explain(x, nt_type="smoothgrad", nt_samples=4000, stdevs=0.3, generator=0)
    torch.testing.assert_close(sg.attributions, 2 * w * x, rtol=0, atol=0.05)  # noise averages out
    var = NoiseTunnel(sal).attribute(x, nt_type="vargrad", nt_samples=4000, stdevs=0.3, generator=0)
    torch.testing.assert_close(var, (2 * w * 0.3) ** 2 * torch.ones_like(x), rtol=0.1, atol=1e-3)
    sq = NoiseTunnel(sal).attribute(x, nt_type="smoothgrad_sq", nt_samples=4000, stdevs=0.3, generator=0)
    torch.testing.assert_close(sq, (2 * w * x) ** 2 + (2 * w * 0.3) ** 2, rtol=0.1, atol=0.02)
    a = NoiseTunnel(sal).attribute(x, nt_samples=7, generator=3, nt_samples_batch_size=3)
    b = NoiseTunnel(sal).attribute(x, nt_samples=7, generator=3, nt_samples_batch_size=3)
    assert torch.equal(a, b)


def test_noise_tunnel_zero_noise_is_the_method_and_keeps_clean_target(cnn, gen):
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    ig = IntegratedGradients(cnn)
    plain = ig.explain(x, n_steps=6)
    r = NoiseTunnel(ig).explain(x, nt_samples=3, stdevs=0.0, n_steps=6, baselines=torch.zeros_like(x))
    torch.testing.assert_close(r.attributions, plain.attributions, rtol=1e-12, atol=1e-12)
    assert r.target.tolist() == plain.target.tolist()
    attr, delta = NoiseTunnel(ig).attribute(x, nt_samples=3, stdevs=0.0, n_steps=6, return_convergence_delta=True)
    assert delta.shape == (6,)


def test_noise_tunnel_relative_noise_scales_with_range(gen):
    x = torch.zeros(2, 1000, dtype=torch.float64)
    x[:, 0] = torch.tensor([1.0, 10.0], dtype=torch.float64)  # ranges 1 and 10

    seen = []

    def record(v):
        seen.append(v.detach().clone())
        return v.sum(-1)

    NoiseTunnel(Saliency(record)).attribute(x, nt_samples=2, stdev_spread=0.1, generator=0)
    noisy = seen[-1].reshape(2, 2, 1000)[:, :, 1:]
    stds = noisy.std(dim=(1, 2))
    assert float(stds[0]) == pytest.approx(0.1, rel=0.1) and float(stds[1]) == pytest.approx(1.0, rel=0.1)


def test_noise_tunnel_rejects_bad_arguments(mlp):
    x = torch.zeros(1, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="nt_type"):
        NoiseTunnel(Saliency(mlp)).attribute(x, nt_type="smooth")
    with pytest.raises(ValueError, match="nt_samples"):
        NoiseTunnel(Saliency(mlp)).attribute(x, nt_samples=0)
    with pytest.raises(ValueError, match="attribution_method"):
        NoiseTunnel(nn.Linear(2, 2))
