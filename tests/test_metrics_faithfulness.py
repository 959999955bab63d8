"""Insertion / deletion (RISE), DiffID and the completeness gap: closed-form oracles, batching invariance,
memory bound, substrates and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import pathattr
import pathattr.metrics as pm
from conftest import RowCounter, SmallCNN, make_mlp
from pathattr.errors import InputValidationError
from pathattr.metrics.substrates import RiseBlur, rise_kernel


class LinearLogit(nn.Module):
    """Two-class model with logits ``[w^T x + b, 0]``: class 0's softmax is ``sigmoid(w^T x + b)``."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w.flatten() + self.b
        return torch.stack([z, torch.zeros_like(z)], 1)


def hand_deletion_curve(w, x, attr, counts, bias, substrate):
    """Logit curve of the deletion game, computed feature by feature in NumPy."""
    order = sorted(range(len(attr)), key=lambda j: (-attr[j], j))
    curve = []
    for c in counts:
        cur = x.copy()
        for j in order[:c]:
            cur[j] = substrate[j]
        curve.append(float(cur @ w + bias))
    return np.array(curve)


@pytest.fixture
def linear_case():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(10, generator=g, dtype=torch.float64)
    x = torch.randn(3, 10, generator=g, dtype=torch.float64)
    return LinearLogit(w, 0.3).double(), w, x


def test_deletion_logit_curve_equals_hand_computation(linear_case):
    model, w, x = linear_case
    attr = w * x  # w * (x - 0): the ideal deletion saliency for substrate zeros
    res = pm.deletion(model, x, attr, target=0, n_steps=5, output="logit")
    counts = [0, 2, 4, 6, 8, 10]
    for i in range(3):
        expected = hand_deletion_curve(w.numpy(), x[i].numpy(), attr[i].numpy(), counts, 0.3, np.zeros(10))
        np.testing.assert_allclose(res.curve[i].numpy(), expected, rtol=0, atol=1e-12)
        auc = (expected.sum() - expected[0] / 2 - expected[-1] / 2) / 5
        assert float(res.scores[i]) == pytest.approx(auc, abs=1e-12)
    np.testing.assert_allclose(res.fractions.numpy(), np.array(counts) / 10)
    assert res.higher_is_better is False and res.direction == "lower"
    assert res.hyperparameters["n_steps"] == 5 and res.hyperparameters["granularity"] == "feature"


def test_ideal_saliency_has_the_lowest_deletion_auc(linear_case):
    model, w, x = linear_case
    ideal = pm.deletion(model, x, w * x, target=0, n_steps=10)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        random_attr = torch.rand(x.shape, generator=g, dtype=torch.float64)
        other = pm.deletion(model, x, random_attr, target=0, n_steps=10)
        assert bool((ideal.curve <= other.curve + 1e-12).all())
        assert bool((ideal.scores <= other.scores + 1e-12).all())


def test_insertion_probability_curve_and_two_point_auc(linear_case):
    model, w, x = linear_case
    sub = torch.full_like(x, 0.5)
    res = pm.insertion(model, x, w * (x - sub), target=0, n_steps=1, substrate=sub)
    p_start = torch.sigmoid(sub @ w + 0.3)
    p_end = torch.sigmoid(x @ w + 0.3)
    torch.testing.assert_close(res.curve[:, 0], p_start, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.curve[:, 1], p_end, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.scores, (p_start + p_end) / 2, rtol=0, atol=1e-12)
    assert res.higher_is_better is True


def test_pixel_granularity_step_and_patch_on_images():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    model = LinearLogit(w).double()
    x = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    pixel_contrib = (w * x).sum(1)  # [B, 4, 4]
    # step = H*W: two points, AUC = (start + end) / 2 with output logit
    res = pm.deletion(model, x, w * x, target=0, step=16, output="logit")
    assert res.curve.shape == (2, 2)
    torch.testing.assert_close(res.scores, (pixel_contrib.sum((1, 2)) + 0.0) / 2, rtol=0, atol=1e-12)
    # one pixel per step: the logit falls by the pixel contributions in saliency order
    res = pm.deletion(model, x, w * x, target=0, step=1, output="logit")
    order = torch.sort(pixel_contrib.reshape(2, -1), dim=1, descending=True, stable=True)
    expected = pixel_contrib.reshape(2, -1).sum(1, keepdim=True) - torch.cat(
        [torch.zeros(2, 1, dtype=torch.float64), order.values.cumsum(1)], 1
    )
    torch.testing.assert_close(res.curve, expected, rtol=0, atol=1e-12)
    # 2x2 patches: patch saliency is the sum of its pixels'; one patch per step
    res = pm.deletion(model, x, w * x, target=0, granularity="patch", patch_size=2, step=1, output="logit")
    patch = pixel_contrib.reshape(2, 2, 2, 2, 2).sum((2, 4)).reshape(2, 4)
    order = torch.sort(patch, dim=1, descending=True, stable=True)
    expected = patch.sum(1, keepdim=True) - torch.cat([torch.zeros(2, 1, dtype=torch.float64),
                                                       order.values.cumsum(1)], 1)
    torch.testing.assert_close(res.curve, expected, rtol=0, atol=1e-12)
    assert res.n_units == 4 and res.hyperparameters["patch_size"] == (2, 2)
    # [B, H, W] saliency is accepted for pixel granularity and gives the same result as channel-summed
    a = pm.deletion(model, x, pixel_contrib, target=0, step=1, output="logit")
    torch.testing.assert_close(a.curve, pm.deletion(model, x, w * x, target=0, step=1, output="logit").curve)


def test_batch_equals_per_example_and_chunking_is_invariant(cnn):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 8, 8, generator=g, dtype=torch.float64)
    attr = torch.randn(5, 2, 8, 8, generator=g, dtype=torch.float64)
    for fn in (pm.insertion, pm.deletion):
        full = fn(cnn, x, attr, n_steps=16)
        for i in range(5):
            one = fn(cnn, x[i : i + 1], attr[i : i + 1], n_steps=16)
            torch.testing.assert_close(one.curve[0], full.curve[i], rtol=0, atol=1e-12)
            assert int(one.target[0]) == int(full.target[i])
        for bs in (1, 7, 85):
            chunked = fn(cnn, x, attr, n_steps=16, internal_batch_size=bs)
            torch.testing.assert_close(chunked.curve, full.curve, rtol=0, atol=1e-12)
            assert chunked.hyperparameters["rows_per_forward"] == bs
    # the mean curve's AUC is the mean of the AUCs (RISE reports the former)
    res = pm.deletion(cnn, x, attr, n_steps=16)
    mc = res.mean_curve
    assert float((mc.sum() - mc[0] / 2 - mc[-1] / 2) / 16) == pytest.approx(res.mean(), abs=1e-12)


def test_memory_bound_16_images_224_100_steps():
    """16 RGB images of 224x224, 100 steps = 1616 perturbed images; no forward call may see more than
    `internal_batch_size` rows (the perturbed images are built chunk by chunk)."""
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(3 * 14 * 14, 5))
    counter = RowCounter(tiny)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 224, 224, generator=g)
    attr = torch.rand(16, 224, 224, generator=g)
    res = pm.deletion(counter, x, attr, n_steps=100, internal_batch_size=64)
    assert max(counter.rows) <= 64
    # every curve point exactly once; the target is fixed from the unperturbed rows (curve point 0), which are
    # not evaluated a second time
    assert sum(counter.rows) == 16 * 101
    assert res.curve.shape == (16, 101)
    counter.rows.clear()
    small = pm.deletion(counter, x[:2], attr[:2], n_steps=100, internal_batch_size=20)
    assert max(counter.rows) <= 20
    torch.testing.assert_close(small.curve, res.curve[:2], rtol=0, atol=1e-6)


def test_rise_blur_matches_scipy_gkern():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    gkern = scipy_ndimage.gaussian_filter(delta, 5)  # RISE's gkern(11, 5)
    np.testing.assert_allclose(rise_kernel(11, 5.0).numpy(), gkern, rtol=0, atol=1e-15)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 12, 12, generator=g, dtype=torch.float64)
    kern = torch.zeros(3, 3, 11, 11, dtype=torch.float64)
    for c in range(3):
        kern[c, c] = torch.from_numpy(gkern)
    expected = torch.nn.functional.conv2d(x, kern, padding=5)
    torch.testing.assert_close(RiseBlur()(x, g), expected, rtol=0, atol=1e-14)


def test_substrates_and_their_records(linear_case):
    model, w, x = linear_case
    attr = w * x
    mean = pm.deletion(model, x, attr, target=0, n_steps=1, substrate="mean", output="logit")
    expected_end = x.mean(1, keepdim=True).expand_as(x) @ w + 0.3
    torch.testing.assert_close(mean.curve[:, -1], expected_end, rtol=0, atol=1e-12)
    assert mean.hyperparameters["substrate"]["name"] == "mean"
    u1 = pm.deletion(model, x, attr, target=0, n_steps=4, substrate="uniform", generator=7)
    u2 = pm.deletion(model, x, attr, target=0, n_steps=4, substrate="uniform", generator=7)
    u3 = pm.deletion(model, x, attr, target=0, n_steps=4, substrate="uniform", generator=8)
    torch.testing.assert_close(u1.curve, u2.curve, rtol=0, atol=0)
    assert not torch.equal(u1.curve, u3.curve)
    const = pm.deletion(model, x, attr, target=0, n_steps=1, substrate=2.0, output="logit")
    torch.testing.assert_close(const.curve[:, -1], torch.full((3,), 2.0 * float(w.sum()) + 0.3, dtype=torch.float64))
    call = pm.deletion(model, x, attr, target=0, n_steps=1, substrate=lambda t: t * 0 + 2.0, output="logit")
    torch.testing.assert_close(call.curve, const.curve)
    # numpy at the boundary
    npres = pm.deletion(model, x.numpy(), attr.numpy(), target=0, n_steps=1, substrate=2.0, output="logit")
    torch.testing.assert_close(npres.curve, const.curve)


def test_diffid_is_insertion_minus_deletion(cnn):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64)
    attr = torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64)
    d = pm.diffid(cnn, x, attr, n_steps=8)
    ins = pm.insertion(cnn, x, attr, n_steps=8)
    dele = pm.deletion(cnn, x, attr, n_steps=8)
    torch.testing.assert_close(d.scores, ins.scores - dele.scores, rtol=0, atol=1e-12)
    assert d.higher_is_better is True
    assert pm.DiffID(n_steps=8)(cnn, x, attr).scores.allclose(d.scores)


def test_class_forms_echo_hyperparameters(linear_case):
    model, w, x = linear_case
    metric = pm.Deletion(n_steps=5, output="logit")
    res = metric(model, x, w * x, target=0)
    torch.testing.assert_close(res.scores, pm.deletion(model, x, w * x, 0, 5, output="logit").scores)
    assert pm.Deletion.higher_is_better is False and pm.Insertion.higher_is_better is True
    with pytest.raises(InputValidationError) as e:
        pm.Deletion(nsteps=5)
    assert e.value.argument == "nsteps"
    assert "n_steps=5" in repr(metric)


def test_completeness_gap_oracles():
    model = make_mlp(seed=3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    ig = pathattr.IntegratedGradients(model)
    attr = ig.attribute(x, target=1, n_steps=200, method="gausslegendre")
    res = pm.completeness_gap(model, x, attr, target=1, atol=1e-6, rtol=0)
    assert bool(res.passed.all()) and res.pass_rate == 1.0
    assert float(res.scores.abs().max()) < 1e-6
    diff = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(res.output_difference, diff.detach(), rtol=0, atol=1e-12)
    # a doubled attribution: gap = F(x) - F(0) exactly, relative gap 1
    doubled = pm.completeness_gap(model, x, 2 * attr, target=1)
    torch.testing.assert_close(doubled.scores, doubled.output_difference, rtol=0, atol=1e-6)
    torch.testing.assert_close(doubled.relative, torch.sign(diff).detach(), rtol=0, atol=1e-5)
    assert not bool(doubled.passed.any())
    assert res.direction == "zero" and res.higher_is_better is None
    # reference_outputs and a K-baseline reference give the mean output over the baselines
    bases = torch.randn(1, 3, 6, generator=g, dtype=torch.float64)
    k = pm.completeness_gap(model, x, attr, baselines=bases, target=1)
    ref = model(bases[0])[:, 1].mean().detach()
    torch.testing.assert_close(k.output_difference, (model(x)[:, 1] - ref).detach(), rtol=0, atol=1e-12)
    given = pm.completeness_gap(model, x, attr, target=1, reference_outputs=ref)
    torch.testing.assert_close(given.scores, k.scores, rtol=0, atol=1e-12)


def test_errors_name_the_argument(linear_case, cnn):
    model, w, x = linear_case
    with pytest.raises(InputValidationError) as e:
        pm.deletion(model, x, w * x, n_steps=0)
    assert e.value.argument == "n_steps"
    with pytest.raises(InputValidationError) as e:
        pm.deletion(model, x, w[:5].expand(3, 5), n_steps=2)
    assert e.value.argument == "attributions"
    with pytest.raises(InputValidationError) as e:
        pm.deletion(model, x, w * x, internal_batch_size=0)
    assert e.value.argument == "internal_batch_size"
    with pytest.raises(InputValidationError) as e:
        pm.deletion(model, x, w * x, substrate="black")
    assert e.value.argument == "substrate"
    with pytest.raises(InputValidationError) as e:
        pm.deletion(model, x, w * x, granularity="voxel")
    assert e.value.argument == "granularity"
    xi = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(InputValidationError) as e:
        pm.deletion(cnn, xi, xi, granularity="patch")
    assert e.value.argument == "patch_size"
    bad = w * x
    bad[0, 0] = math.nan
    with pytest.raises(pathattr.NonFiniteError):
        pm.deletion(model, x, bad)


def test_model_state_is_restored(cnn):
    cnn.train()
    flags = [p.requires_grad for p in cnn.parameters()]
    x = torch.zeros(2, 2, 8, 8, dtype=torch.float64)
    pm.insertion(cnn, x, torch.rand(2, 8, 8, dtype=torch.float64), n_steps=2)
    assert cnn.training and [p.requires_grad for p in cnn.parameters()] == flags
    assert isinstance(SmallCNN(), nn.Module)
