"""Blur IG: blur operator vs SciPy, PAIR's completeness oracle, PAIR parity, batching invariance, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SmallCNN
from pathattr.errors import InputValidationError
from pathattr.methods.blur_ig import BlurIntegratedGradients, blur_integrated_gradients
from pathattr.ops import gaussian_blur
from pathattr.paths.blur import blur_rows, blur_sigmas, blur_with_derivative, gaussian_blur_matrices

ndimage = pytest.importorskip("scipy.ndimage")


class ConvNet(nn.Module):
    """Smooth CNN for any channel count and image size (adaptive pooling)."""

    def __init__(self, channels: int, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 5, 3, padding=1)
        self.head = nn.Linear(5 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.adaptive_avg_pool2d(nn.functional.softplus(self.conv(x)), (2, 2))
        return self.head(torch.tanh(h.flatten(1)))


def sin_model(v: torch.Tensor) -> torch.Tensor:
    return torch.sin(v).flatten(1).sum(1)


def scipy_blur(x: torch.Tensor, sigma: float, mode: str = "constant") -> torch.Tensor:
    """SciPy's blur of channels-first ``[B, C, H, W]`` over H and W (PAIR's ``gaussian_blur`` on HWC)."""
    if sigma == 0:
        return x.clone()
    out = [ndimage.gaussian_filter(xi.permute(1, 2, 0).numpy(), sigma=[sigma, sigma, 0], mode=mode) for xi in x]
    return torch.as_tensor(np.stack(out)).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------- blur operator
@pytest.mark.parametrize(("padding", "mode"), [("zeros", "constant"), ("reflect", "reflect")])
def test_blur_matrices_equal_scipy(gen, padding, mode):
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64, generator=gen)
    sigmas = [0.0, 0.01, 0.3, 1.0, 2.5, 10.0, 50.0]  # radius 0 up to far beyond the image
    for s in sigmas:
        ours = blur_rows(x, torch.full((2,), s, dtype=torch.float64), padding=padding)
        torch.testing.assert_close(ours, scipy_blur(x, s, mode), rtol=0, atol=1e-14)
        torch.testing.assert_close(ours, gaussian_blur(x, s, padding=padding), rtol=0, atol=1e-14)
    # one sigma per row in one call
    per_row = blur_rows(x, torch.tensor([1.0, 3.0], dtype=torch.float64), padding=padding)
    torch.testing.assert_close(per_row[1:], scipy_blur(x[1:], 3.0, mode), rtol=0, atol=1e-14)
    m = gaussian_blur_matrices(7, torch.tensor([0.0, 2.0]), padding)
    torch.testing.assert_close(m[0], torch.eye(7, dtype=torch.float64))
    if padding == "reflect":  # reflection keeps the mass of every row
        torch.testing.assert_close(m[1].sum(1), torch.ones(7, dtype=torch.float64))


def test_finite_difference_is_exact_in_float64_and_precise_in_float32(gen):
    x = torch.rand(3, 2, 16, 12, dtype=torch.float64, generator=gen)
    sigmas = torch.tensor([0.0, 1.0, 7.0], dtype=torch.float64)
    blurred, derivative = blur_with_derivative(x, sigmas, 0.01)
    for k, s in enumerate(sigmas.tolist()):
        naive = (scipy_blur(x[k : k + 1], s + 0.01) - scipy_blur(x[k : k + 1], s)) / 0.01  # PAIR's formula
        torch.testing.assert_close(derivative[k : k + 1], naive, rtol=0, atol=1e-11)
        torch.testing.assert_close(blurred[k : k + 1], scipy_blur(x[k : k + 1], s), rtol=0, atol=1e-14)
    _, d32 = blur_with_derivative(x.float(), sigmas, 0.01)
    naive32 = (blur_rows(x.float(), sigmas + 0.01) - blur_rows(x.float(), sigmas)) / 0.01
    scale = float(derivative.abs().max())
    assert float((d32.double() - derivative).abs().max()) / scale < 2e-6  # no cancellation
    assert float((naive32.double() - derivative).abs().max()) / scale > 1e-5  # what the naive difference loses


def test_sigma_schedules_match_pair():
    assert blur_sigmas(50, 4) == [0.0, 12.5, 25.0, 37.5, 50.0]
    s = blur_sigmas(50, 4, sqrt=True)
    assert s[-1] == pytest.approx(50**0.5) and s[1] == pytest.approx(12.5**0.5)


# ----------------------------------------------------------------------------------------------- oracles
def test_pair_completeness_oracle_sin_model():
    # PAIR's blur_ig_test: all black except two pixels; each pixel is independent, so A = sin(x) - sin(blur(x))
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 1, 1], x[0, 0, 2, 2] = 0.7, 1.0
    r = BlurIntegratedGradients(sin_model).explain(x, max_sigma=10, n_steps=2000)
    expected = torch.sin(x) - torch.sin(scipy_blur(x, 10.0))
    torch.testing.assert_close(r.attributions, expected, rtol=0, atol=5e-3)
    assert bool((r.attributions != 0).all())  # blurring spreads attribution to every pixel
    torch.testing.assert_close(r.baseline_outputs, sin_model(scipy_blur(x, 10.0)), rtol=1e-12, atol=1e-12)
    assert r.cost.backward_rows == 2000


def test_completeness_gap_shrinks_with_steps(gen):
    torch.manual_seed(0)
    model = ConvNet(3).double().eval()
    x = torch.rand(3, 3, 10, 12, dtype=torch.float64, generator=gen)
    gaps = [
        BlurIntegratedGradients(model).explain(x, target=1, max_sigma=4, n_steps=m, grad_step=1e-4).relative_delta
        for m in (10, 80)
    ]
    assert float(gaps[1].max()) < 0.02
    assert float(gaps[1].mean()) < float(gaps[0].mean()) / 4


# ----------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize(
    ("channels", "size", "kw"),
    [
        (2, (8, 8), dict(max_sigma=5.0, n_steps=20)),
        (2, (8, 8), dict(max_sigma=50.0, n_steps=12, sqrt=True, grad_step=0.05)),
        (3, (9, 11), dict(max_sigma=8.0, n_steps=15)),
        (1, (12, 7), dict(max_sigma=3.0, n_steps=10, sqrt=True)),
    ],
)
def test_parity_with_pair(gen, channels, size, kw):
    from pair_adapter import max_relative_difference, pair_blur_ig

    torch.manual_seed(channels)
    model = SmallCNN().double().eval() if size == (8, 8) else ConvNet(channels).double().eval()
    x = torch.rand(3, channels, *size, dtype=torch.float64, generator=gen)
    ours = BlurIntegratedGradients(model).attribute(x, target=1, **kw)
    pair_kw = dict(kw)
    pair_kw["steps"] = pair_kw.pop("n_steps")
    ref = torch.stack([pair_blur_ig(model, xi, 1, **pair_kw) for xi in x])
    assert max_relative_difference(ours, ref) < 1e-10


def test_pair_batched_sqrt_bug_is_not_reproduced(gen):
    # PAIR weights every point of a batch with the last spacing of that batch: wrong for sqrt spacing
    from pair_adapter import max_relative_difference, pair_blur_ig

    torch.manual_seed(2)
    model = SmallCNN().double().eval()
    x = torch.rand(2, 8, 8, dtype=torch.float64, generator=gen)
    kw = dict(max_sigma=20.0, steps=20, sqrt=True)
    unbatched = pair_blur_ig(model, x, 0, batch_size=1, **kw)
    batched = pair_blur_ig(model, x, 0, batch_size=10, **kw)
    assert max_relative_difference(batched, unbatched) > 0.05
    for ibs in (1, 7, None):
        ours = BlurIntegratedGradients(model).attribute(
            x[None], target=0, max_sigma=20.0, n_steps=20, sqrt=True, internal_batch_size=ibs
        )[0]
        assert max_relative_difference(ours, unbatched) < 1e-10


# ----------------------------------------------------------------------------------------------- batching
def test_batch_equals_single_example_runs(cnn, gen):
    x = torch.rand(8, 2, 8, 8, dtype=torch.float64, generator=gen)
    target = [0, 1, 2, 3, 3, 2, 1, 0]
    method = BlurIntegratedGradients(cnn)
    kw = dict(max_sigma=10.0, n_steps=16, sqrt=True)
    batched = method.attribute(x, target=target, **kw)
    single = torch.cat([method.attribute(x[i : i + 1], target=target[i], **kw) for i in range(8)])
    torch.testing.assert_close(batched, single, rtol=1e-6, atol=1e-9)
    for ibs in (1, 5, 17):  # chunks that split examples and nodes
        torch.testing.assert_close(method.attribute(x, target=target, internal_batch_size=ibs, **kw), batched,
                                   rtol=1e-12, atol=1e-12)


def test_tuple_inputs_and_reflect_padding(gen):
    torch.manual_seed(4)
    net_a, net_b = ConvNet(1).double().eval(), ConvNet(2).double().eval()

    def model(a, b):
        return net_a(a) + net_b(b)

    a = torch.rand(2, 1, 6, 6, dtype=torch.float64, generator=gen)
    b = torch.rand(2, 2, 6, 6, dtype=torch.float64, generator=gen)
    kw = dict(target=0, max_sigma=3.0, n_steps=10)
    ra, rb = BlurIntegratedGradients(model).attribute((a, b), **kw)
    # the inputs do not interact, so each part equals Blur IG of its own sub-model
    torch.testing.assert_close(ra, BlurIntegratedGradients(net_a).attribute(a, **kw), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(rb, BlurIntegratedGradients(net_b).attribute(b, **kw), rtol=1e-12, atol=1e-14)
    r = BlurIntegratedGradients(net_a).explain(a, padding="reflect", **kw)
    blurred = torch.as_tensor(np.stack([ndimage.gaussian_filter(ai[0].numpy(), 3.0, mode="reflect") for ai in a]))
    torch.testing.assert_close(r.baseline_outputs, net_a(blurred[:, None])[:, 0].detach(), rtol=1e-12, atol=1e-12)


def test_float32_inputs(gen):
    torch.manual_seed(6)
    model = ConvNet(3).eval()
    x = torch.rand(2, 3, 10, 10, generator=gen)
    a32 = BlurIntegratedGradients(model).attribute(x, target=2, max_sigma=6, n_steps=20)
    a64 = BlurIntegratedGradients(model.double()).attribute(x.double(), target=2, max_sigma=6, n_steps=20)
    assert a32.dtype == torch.float32
    assert float((a32.double() - a64).abs().max() / a64.abs().max()) < 1e-4


def test_functional_form_and_record(cnn, gen):
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    a = blur_integrated_gradients(cnn, x, target=1, max_sigma=4.0, n_steps=8)
    r = BlurIntegratedGradients(cnn).explain(x, target=1, max_sigma=4.0, n_steps=8)
    torch.testing.assert_close(a, r.attributions)
    assert r.hyperparameters["max_sigma"] == 4.0 and r.hyperparameters["padding"] == "zeros"
    assert r.cost.backward_rows == 16 and r.method == "blur_integrated_gradients"
    _, delta = BlurIntegratedGradients(cnn).attribute(x, target=1, max_sigma=4.0, n_steps=8,
                                                      return_convergence_delta=True)
    torch.testing.assert_close(delta, a.flatten(1).sum(1) - (r.outputs - r.baseline_outputs))


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kw", "argument"),
    [
        (dict(max_sigma=0), "max_sigma"),
        (dict(max_sigma=float("inf")), "max_sigma"),
        (dict(n_steps=0), "n_steps"),
        (dict(grad_step=-0.1), "grad_step"),
        (dict(padding="wrap"), "padding"),
    ],
)
def test_bad_arguments_are_rejected(cnn, kw, argument):
    with pytest.raises(InputValidationError) as err:
        BlurIntegratedGradients(cnn).attribute(torch.rand(1, 2, 8, 8, dtype=torch.float64), **kw)
    assert err.value.argument == argument


def test_inputs_without_spatial_axes_are_rejected(mlp):
    with pytest.raises(InputValidationError) as err:
        BlurIntegratedGradients(mlp).attribute(torch.rand(2, 6, dtype=torch.float64))
    assert err.value.argument == "inputs"


def test_attribute_without_the_delta_skips_the_forward_call_of_the_ends():
    # attribute() returns only attributions: f(x) and f(blurred x) serve only the completeness gap
    torch.manual_seed(0)
    inner = SmallCNN().double().eval()
    calls: list[int] = []
    inner.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64)
    blur = BlurIntegratedGradients(inner)
    plain = blur.attribute(x, target=[1, 3], n_steps=10, max_sigma=3.0, internal_batch_size=8)
    assert sum(calls) == 2 * 10
    calls.clear()
    attr, delta = blur.attribute(x, target=[1, 3], n_steps=10, max_sigma=3.0, internal_batch_size=8,
                                 return_convergence_delta=True)
    assert sum(calls) == 2 * 10 + 4 and calls[0] == 4  # [x; blurred x] in one call first
    torch.testing.assert_close(plain, attr, rtol=1e-14, atol=1e-14)
    assert delta.shape == (2,) and torch.isfinite(delta).all()
