"""Guided IG: PAIR's analytic oracles and regression values, limits, PAIR parity, batching, errors."""

from __future__ import annotations

import pytest
import torch

from conftest import SmallCNN, make_mlp
from pathattr.errors import InputValidationError, NonFiniteError
from pathattr.methods.guided_ig import GuidedIntegratedGradients, guided_integrated_gradients
from pathattr.methods.integrated_gradients import IntegratedGradients
from pathattr.paths import guided as guided_path_module
from pathattr.paths.guided import GuidedPath, guided_ig_step


def quadratic(v: torch.Tensor) -> torch.Tensor:
    """f = (2 x1 + x2)^2: IG [54, 27], unbounded Guided IG [72, 9] from 0 to (3, 3)."""
    return (2 * v[:, 0] + v[:, 1]) ** 2


def linear(v: torch.Tensor) -> torch.Tensor:
    return 2 * v[:, 0] + v[:, 1]


def separable(v: torch.Tensor) -> torch.Tensor:
    return 2 * v[:, 0] ** 2 + v[:, 1] ** 2


def gig(f, x, b=None, **kw) -> torch.Tensor:
    x = torch.tensor([x], dtype=torch.float64)
    b = None if b is None else torch.tensor([b], dtype=torch.float64)
    return GuidedIntegratedGradients(f).attribute(x, baselines=b, **kw)[0]


def t64(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- oracles
def test_linear_model_is_exact_for_any_settings():
    for kw in (dict(n_steps=10, fraction=0.1, max_dist=0.5), dict(n_steps=7, fraction=0.6, max_dist=0.02)):
        torch.testing.assert_close(gig(linear, (10, 5), (-1, -3), **kw), t64(22, 8), rtol=0, atol=1e-10)
        torch.testing.assert_close(gig(linear, (10, 5), **kw), t64(20, 5), rtol=0, atol=1e-10)


def test_separable_model_gives_ig_whatever_the_path():
    kw = dict(n_steps=1000, fraction=0.1, max_dist=0.4)
    torch.testing.assert_close(gig(separable, (3, 3), **kw), t64(18, 9), rtol=0.01, atol=0)
    # input below the baseline
    torch.testing.assert_close(gig(separable, (0, 0), (3, 3), **kw), t64(-18, -9), rtol=0.01, atol=0)


def test_quadratic_limits_ig_and_unbounded_guided_ig():
    ig = t64(54, 27)
    torch.testing.assert_close(gig(quadratic, (3, 3), n_steps=1000, fraction=0.1, max_dist=0.0), ig, rtol=0.01, atol=0)
    torch.testing.assert_close(gig(quadratic, (3, 3), n_steps=1000, fraction=1.0, max_dist=0.5), ig, rtol=0.01, atol=0)
    unbounded = gig(quadratic, (3, 3), n_steps=1000, fraction=0.1, max_dist=1.0)
    torch.testing.assert_close(unbounded, t64(72, 9), rtol=0.01, atol=0)


@pytest.mark.parametrize("max_dist", [0.02, 0.1, 0.2, 0.5])
def test_quadratic_bounded_runs_lie_between_ig_and_unbounded(max_dist):
    a = gig(quadratic, (3, 3), n_steps=1000, fraction=0.1, max_dist=max_dist)
    assert 54 < float(a[0]) < 72 and 9 < float(a[1]) < 27
    assert abs(float(a.sum()) - 81) < 0.01 * 81
    if max_dist == 0.2:  # PAIR's own test bounds
        assert abs(float(a.sum()) - 81) < 0.1 and 55 < float(a[0]) < 71 and 10 < float(a[1]) < 26


@pytest.mark.parametrize(
    ("fraction", "max_dist", "expected"),
    [
        (0.25, 0.0, (53.73, 26.87)),
        (0.25, 0.02, (55.13, 25.46)),
        (0.1, 0.2, (65.14, 15.44)),
        (0.1, 1.0, (71.46, 9.09)),
        (0.5, 1.0, (71.46, 9.09)),
    ],
)
def test_regression_values_at_200_steps(fraction, max_dist, expected):
    # values measured with PAIR's reference (left-Riemann bias visible at 200 steps)
    a = gig(quadratic, (3, 3), n_steps=200, fraction=fraction, max_dist=max_dist)
    torch.testing.assert_close(a, t64(*expected), rtol=0, atol=0.02)


# ----------------------------------------------------------------------------------------------- limits
@pytest.mark.parametrize("kw", [dict(max_dist=0.0, fraction=0.25), dict(max_dist=0.3, fraction=1.0)])
def test_ig_limits_equal_left_riemann_ig(cnn, gen, kw):
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=gen)
    b = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=gen) * 0.1
    ours = GuidedIntegratedGradients(cnn).attribute(x, baselines=b, target=[0, 1, 3], n_steps=12, **kw)
    ig = IntegratedGradients(cnn).attribute(x, baselines=b, target=[0, 1, 3], n_steps=12, method="riemann_left")
    torch.testing.assert_close(ours, ig, rtol=1e-10, atol=1e-12)


def _run_path(model, x, b, n_steps, fraction, max_dist):
    """Drive GuidedPath by hand; yield (step, point after the step)."""
    path = GuidedPath(x.flatten(1), b.flatten(1), n_steps, fraction, max_dist)
    for step in range(n_steps):
        z = path.point.reshape(x.shape).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(z)[:, 0].sum(), z)
        path.advance(g.flatten(1))
        yield step, path


@pytest.mark.parametrize("max_dist", [0.05, 1.0])
def test_path_stays_in_band_and_covers_exact_l1_chunks(cnn, gen, max_dist):
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    b = torch.zeros_like(x)
    b[:, :, :2] = x[:, :, :2]  # some features equal to the baseline
    m = 20
    for step, path in _run_path(cnn, x, b, m, 0.2, max_dist):
        alpha = (step + 1) / m
        moving = path.diff != 0
        progress = (path.point - path.baselines)[moving] / path.diff[moving]
        assert float(progress.min()) >= max(alpha - max_dist, 0) - 1e-12
        assert float(progress.max()) <= min(alpha + max_dist, 1) + 1e-12
        lo, hi = torch.minimum(path.inputs, path.baselines), torch.maximum(path.inputs, path.baselines)
        assert bool(((path.point >= lo) & (path.point <= hi)).all())  # inside the baseline-input box
        torch.testing.assert_close(
            (path.point - path.inputs).abs().sum(1), path.l1_total * (1 - alpha), rtol=1e-9, atol=1e-9
        )
        assert bool((path.point[~moving] == path.baselines[~moving]).all())
    torch.testing.assert_close(path.point, path.inputs, rtol=0, atol=1e-12)  # ends at the input


def test_features_equal_to_baseline_get_exactly_zero(cnn, gen):
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    b = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    same = torch.rand(2, 2, 8, 8, generator=gen) < 0.3
    b[same] = x[same]
    a = GuidedIntegratedGradients(cnn).attribute(x, baselines=b, target=1, n_steps=30)
    assert bool((a[same] == 0).all())
    assert float(a[~same].abs().min()) > 0


def test_input_equal_to_baseline_gives_zeros_without_model_calls(cnn, gen):
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    r = GuidedIntegratedGradients(cnn).explain(x, baselines=x.clone(), target=0, n_steps=10)
    assert bool((r.attributions == 0).all())
    assert r.cost.backward_rows == 0 and r.cost.forward_rows == 2  # only the target resolution
    assert bool((r.convergence_delta == 0).all())


def test_one_gradient_per_step_per_path(cnn, gen):
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=gen)
    b = torch.randn(3, 2, 2, 8, 8, dtype=torch.float64, generator=gen)  # K = 2 baselines per example
    r = GuidedIntegratedGradients(cnn).explain(x, baselines=b, target=0, n_steps=15, internal_batch_size=4)
    assert r.cost.backward_rows == 15 * 3 * 2
    assert r.cost.forward_rows == 15 * 3 * 2 + 3


# ----------------------------------------------------------------------------------------------- completeness
def test_completeness_gap_below_one_percent_at_200_steps_and_shrinking(cnn, gen):
    x = torch.rand(4, 2, 8, 8, dtype=torch.float64, generator=gen) * 2
    target = [0, 1, 2, 3]
    gaps = {}
    for m in (25, 200):
        r = GuidedIntegratedGradients(cnn).explain(x, target=target, n_steps=m)
        gaps[m] = r.relative_delta
    assert float(gaps[200].max()) < 0.01
    assert float(gaps[200].mean()) < float(gaps[25].mean())  # left-Riemann error shrinks ~1/m


# ----------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize(
    "kw",
    [
        dict(n_steps=40, fraction=0.25, max_dist=0.02),
        dict(n_steps=25, fraction=0.1, max_dist=1.0),
        dict(n_steps=20, fraction=0.5, max_dist=0.2),
        dict(n_steps=10, fraction=0.0, max_dist=0.3),
    ],
)
@pytest.mark.parametrize("numpy_max", [0, 1 << 30], ids=["torch", "numpy"])
def test_parity_with_pair_on_cnn(gen, kw, numpy_max, monkeypatch):
    from pair_adapter import max_relative_difference, pair_guided_ig

    monkeypatch.setattr(guided_path_module, "NUMPY_MAX_ELEMENTS", numpy_max)  # pick the step's backend
    torch.manual_seed(3)
    model = SmallCNN().double().eval()
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64, generator=gen)
    ours = GuidedIntegratedGradients(model).attribute(x, target=2, **kw)
    pair_kw = dict(x_steps=kw["n_steps"], fraction=kw["fraction"], max_dist=kw["max_dist"])
    ref = torch.stack([pair_guided_ig(model, xi, None, 2, **pair_kw) for xi in x])
    assert max_relative_difference(ours, ref) < 1e-10


def test_parity_with_pair_on_tabular_mlp_with_baselines(gen):
    from pair_adapter import max_relative_difference, pair_guided_ig

    model = make_mlp(seed=4, d_in=12, hidden=16, d_out=3)
    x = torch.randn(4, 12, dtype=torch.float64, generator=gen)
    b = torch.randn(4, 12, dtype=torch.float64, generator=gen)
    b[:, 3] = x[:, 3]
    ours = GuidedIntegratedGradients(model).attribute(x, baselines=b, target=1, n_steps=50)
    ref = torch.stack([pair_guided_ig(model, xi, bi, 1, x_steps=50) for xi, bi in zip(x, b)])
    assert max_relative_difference(ours, ref) < 1e-10


@pytest.mark.parametrize("numpy_max", [0, 1 << 30], ids=["torch", "numpy"])
def test_parity_with_pair_when_gradients_tie(numpy_max, monkeypatch):
    # equal weights tie |gradient| everywhere: PAIR selects every tied feature at the threshold
    from pair_adapter import max_relative_difference, pair_guided_ig

    monkeypatch.setattr(guided_path_module, "NUMPY_MAX_ELEMENTS", numpy_max)

    w = torch.tensor([1.0, 1.0, 1.0, -1.0, 2.0, 2.0, 0.5, 0.5], dtype=torch.float64)

    def model(v):
        return torch.tanh(v @ w).unsqueeze(1) + (v[:, :4] ** 2).sum(1, keepdim=True)

    x = torch.tensor([[0.5, 1.0, -1.0, 0.3, 0.2, -0.4, 1.0, 1.0]], dtype=torch.float64)
    for kw in (dict(fraction=0.25, max_dist=1.0), dict(fraction=0.1, max_dist=0.05)):
        ours = GuidedIntegratedGradients(model).attribute(x, target=0, n_steps=30, **kw)
        ref = pair_guided_ig(model, x[0], None, 0, x_steps=30, **kw)
        assert max_relative_difference(ours[0], ref) < 1e-10


@pytest.mark.parametrize(("fraction", "max_dist"), [(0.25, 0.02), (0.1, 1.0), (0.0, 0.3), (1.0, 0.0)])
def test_numpy_and_torch_steps_agree(gen, fraction, max_dist):
    # 5 paths in different states, integer-valued gradients (many exact ties), one constant feature block
    x = torch.randn(5, 40, dtype=torch.float64, generator=gen)
    b = torch.randn(5, 40, dtype=torch.float64, generator=gen)
    b[:, :4] = x[:, :4]
    paths = {be: GuidedPath(x, b, 12, fraction, max_dist) for be in ("numpy", "torch")}
    for step in range(12):
        g = torch.randint(-3, 4, (5, 40), generator=gen).float()
        news = {}
        for be, path in paths.items():
            news[be], _ = guided_ig_step(path.point, x, b, g, path.l1_total, step, 12, fraction, max_dist,
                                         backend=be)
        torch.testing.assert_close(news["numpy"], news["torch"], rtol=0, atol=1e-12)
        for path in paths.values():
            path.point = news["numpy"]
    torch.testing.assert_close(paths["numpy"].point, x, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------- batching
def test_batch_equals_single_example_runs(cnn, gen):
    x = torch.randn(8, 2, 8, 8, dtype=torch.float64, generator=gen)
    b = torch.randn(8, 2, 8, 8, dtype=torch.float64, generator=gen) * 0.2
    target = [0, 1, 2, 3, 0, 1, 2, 3]
    method = GuidedIntegratedGradients(cnn)
    batched = method.attribute(x, baselines=b, target=target, n_steps=30)
    chunked = method.attribute(x, baselines=b, target=target, n_steps=30, internal_batch_size=3)
    single = torch.cat([
        method.attribute(x[i : i + 1], baselines=b[i : i + 1], target=target[i], n_steps=30) for i in range(8)
    ])
    torch.testing.assert_close(batched, single, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(chunked, batched, rtol=0, atol=0)


def test_multiple_baselines_average_single_baseline_runs(cnn, gen):
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=gen)
    b = torch.randn(2, 3, 2, 8, 8, dtype=torch.float64, generator=gen)
    method = GuidedIntegratedGradients(cnn)
    r = method.explain(x, baselines=b, target=1, n_steps=20)
    each = torch.stack([method.attribute(x, baselines=b[:, k], target=1, n_steps=20) for k in range(3)])
    torch.testing.assert_close(r.attributions, each.mean(0), rtol=1e-12, atol=1e-12)
    assert r.hyperparameters["n_baselines"] == 3


def test_tuple_inputs_rank_all_features_together(two_input_model, gen):
    a = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    c = torch.randn(3, 3, dtype=torch.float64, generator=gen)
    scale = torch.rand(3, dtype=torch.float64, generator=gen)

    def joined(v, s):
        return two_input_model(v[:, :5], v[:, 5:], s)

    kw = dict(target=1, additional_forward_args=(scale,), n_steps=20, fraction=0.3, max_dist=0.1)
    ra, rc = GuidedIntegratedGradients(two_input_model).attribute((a, c), **kw)
    joint = GuidedIntegratedGradients(joined).attribute(torch.cat([a, c], 1), **kw)
    torch.testing.assert_close(torch.cat([ra, rc], 1), joint, rtol=1e-12, atol=1e-14)


def test_float32_model_returns_float32_close_to_float64(gen):
    torch.manual_seed(5)
    model = SmallCNN().eval()
    x = torch.rand(2, 2, 8, 8, generator=gen)
    a32 = GuidedIntegratedGradients(model).attribute(x, target=0, n_steps=20)
    a64 = GuidedIntegratedGradients(model.double()).attribute(x.double(), target=0, n_steps=20)
    assert a32.dtype == torch.float32
    assert float((a32.double() - a64).abs().max() / a64.abs().max()) < 1e-3


def test_bfloat16_inputs_run_and_stay_close_to_float64():
    # regression: the NumPy accumulation raised TypeError (NumPy has no bfloat16)
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a64 = GuidedIntegratedGradients(make_mlp(seed=4, d_in=12, hidden=16)).attribute(x, target=1, n_steps=30)
    model16 = make_mlp(seed=4, d_in=12, hidden=16).to(torch.bfloat16)
    for integrator in (None, "idgi"):
        r = GuidedIntegratedGradients(model16, integrator=integrator).explain(x.bfloat16(), target=1, n_steps=30)
        assert r.attributions.dtype == torch.bfloat16
        if integrator is None:  # bfloat16 keeps ~3 significant digits per gradient
            assert float((r.attributions.double() - a64).abs().max() / a64.abs().max()) < 0.02


def test_baseline_that_requires_grad_is_used_as_a_constant(mlp, gen):
    # regression: NumPy refused a baseline tensor with requires_grad=True
    x = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    b = torch.randn(3, 6, dtype=torch.float64, generator=gen).requires_grad_(True)
    for integrator in (None, "idgi"):
        gig_ = GuidedIntegratedGradients(mlp, integrator=integrator)
        a = gig_.attribute(x, baselines=b, target=0, n_steps=20)
        assert torch.equal(a, gig_.attribute(x, baselines=b.detach(), target=0, n_steps=20))
    assert b.grad is None and not a.requires_grad


def test_functional_form_and_explanation_record():
    x = torch.tensor([[3.0, 3.0]], dtype=torch.float64)
    a = guided_integrated_gradients(quadratic, x, n_steps=200, fraction=0.1, max_dist=1.0)
    torch.testing.assert_close(a[0], t64(71.46, 9.09), rtol=0, atol=0.02)
    r = GuidedIntegratedGradients(quadratic, integrator="idgi").explain(x, n_steps=50)
    assert r.hyperparameters["integrator"] == "idgi" and r.hyperparameters["max_dist"] == 0.02
    assert r.method == "guided_integrated_gradients"
    assert 1 <= r.extras["max_inner_iterations"] <= 2 + 1  # bound N + 1
    a, delta = GuidedIntegratedGradients(quadratic).attribute(x, n_steps=50, return_convergence_delta=True)
    torch.testing.assert_close(delta, a.sum(1) - (quadratic(x) - quadratic(torch.zeros_like(x))))


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.timeout(60)
def test_non_finite_gradient_raises_instead_of_looping():
    def model(v):  # d sqrt(|v|) / dv is infinite at the zero baseline
        return torch.sqrt(v.abs()).sum(1)

    x = torch.ones(2, 4, dtype=torch.float64)
    with pytest.raises(NonFiniteError):
        GuidedIntegratedGradients(model).attribute(x, n_steps=10)
    z = torch.zeros(1, 3, dtype=torch.float64)
    nan = torch.tensor([[0.1, float("nan"), 0.2]], dtype=torch.float64)
    with pytest.raises(NonFiniteError):
        guided_ig_step(z, torch.ones(1, 3, dtype=torch.float64), z, nan, torch.tensor([3.0]), 0, 5)


@pytest.mark.parametrize(
    ("kw", "argument"),
    [
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=2.5), "n_steps"),
        (dict(fraction=1.5), "fraction"),
        (dict(fraction=-0.1), "fraction"),
        (dict(max_dist=-0.01), "max_dist"),
        (dict(max_dist=2.0), "max_dist"),
    ],
)
def test_bad_hyperparameters_are_rejected(kw, argument):
    with pytest.raises(InputValidationError) as err:
        GuidedIntegratedGradients(quadratic).attribute(torch.ones(1, 2, dtype=torch.float64), **kw)
    assert err.value.argument == argument
