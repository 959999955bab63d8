"""Integrated Gradients: closed-form oracles, completeness, Captum parity and batching invariance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import pathattr
from conftest import RowCounter
from pathattr import IntegratedGradients
from pathattr.integrators import QUADRATURE_RULES, quadrature

CAPTUM_RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("method", QUADRATURE_RULES)
def test_linear_model_gives_w_times_difference(method, gen):
    w = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    x = torch.randn(5, 3, 4, dtype=torch.float64, generator=gen)
    b = torch.randn(5, 3, 4, dtype=torch.float64, generator=gen)
    attr = IntegratedGradients(Linear(w)).attribute(x, baselines=b, n_steps=7, method=method)
    scale = 6 / 7 if method == "riemann_trapezoid" else 1.0  # Captum's trapezoid weights sum to (m-1)/m
    torch.testing.assert_close(attr, scale * w * (x - b), rtol=1e-12, atol=1e-12)


def test_quadrature_matches_captum_definitions():
    from captum.attr._utils.approximation_methods import approximation_parameters

    for method in CAPTUM_RULES:
        step_sizes, alphas = approximation_parameters(method)
        a, w = quadrature(method, 13)
        assert torch.allclose(a, torch.tensor(alphas(13), dtype=torch.float64), atol=1e-7)
        assert torch.allclose(w, torch.tensor(step_sizes(13), dtype=torch.float64), atol=1e-7)
    a, w = quadrature("trapezoid", 5)
    assert w.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]


def test_ig_paper_toy_functions():
    # PAIR's oracle: F = 5x + y^2 + sin z, baseline (0.5, 1, 1): IG_i = F_i(x_i) - F_i(b_i) (separable).
    def f(v):
        return 5 * v[:, 0] + v[:, 1] ** 2 + torch.sin(v[:, 2])

    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([[0.5, 1.0, 1.0]], dtype=torch.float64)
    attr = IntegratedGradients(f).attribute(x, baselines=b, n_steps=64, method="gausslegendre")
    expected = torch.tensor([[2.5, 3.0, math.sin(3.0) - math.sin(1.0)]], dtype=torch.float64)
    torch.testing.assert_close(attr, expected, rtol=1e-10, atol=1e-10)

    # The IG paper's saturating ReLU network: f(x1, x2) = 1 - relu(1 - x1) - ... (Captum's BasicModel2 analogue):
    # f = relu(relu(x1) - 1 - relu(x2)) at x = (3, 1), baseline 0 -> IG = [1.5, -0.5].
    def g(a, c):
        return torch.relu(torch.relu(a) - 1 - torch.relu(c)).squeeze(1)

    a, c = IntegratedGradients(g).attribute(
        (torch.tensor([[3.0]]), torch.tensor([[1.0]])), n_steps=500, method="riemann_middle"
    )
    assert a.item() == pytest.approx(1.5, abs=0.01)
    assert c.item() == pytest.approx(-0.5, abs=0.01)


@pytest.mark.parametrize("fixture", ["mlp", "cnn"])
def test_completeness_at_200_gausslegendre(fixture, request, gen):
    model = request.getfixturevalue(fixture)
    shape = (4, 6) if fixture == "mlp" else (3, 2, 8, 8)
    x = torch.randn(*shape, dtype=torch.float64, generator=gen)
    result = IntegratedGradients(model).explain(x, baselines="zeros", n_steps=200, method="gausslegendre")
    assert float(result.relative_delta.max()) < 1e-3
    total = result.attributions.flatten(1).sum(1)
    torch.testing.assert_close(total, result.outputs - result.baseline_outputs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", CAPTUM_RULES)
def test_captum_parity_multi_input_args_targets(method, two_input_model, gen):
    from captum.attr import IntegratedGradients as CaptumIG

    a = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    b = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    base = (torch.randn(4, 5, dtype=torch.float64, generator=gen), 0.5)
    scale = torch.rand(4, dtype=torch.float64, generator=gen) + 0.5
    target = [0, 1, 1, 0]
    ours, delta = IntegratedGradients(two_input_model).attribute(
        (a, b), baselines=base, target=target, additional_forward_args=(scale,), n_steps=17, method=method,
        internal_batch_size=5, return_convergence_delta=True,
    )
    theirs, their_delta = CaptumIG(two_input_model).attribute(
        (a, b), baselines=base, target=target, additional_forward_args=(scale,), n_steps=17, method=method,
        return_convergence_delta=True,
    )
    for o, t in zip(ours, theirs):
        assert (o - t).abs().max().item() <= 1e-5
    assert (delta - their_delta).abs().max().item() <= 1e-5


def test_captum_parity_local_variant(mlp, gen):
    from captum.attr import IntegratedGradients as CaptumIG

    x = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    ours = IntegratedGradients(mlp, multiply_by_inputs=False).attribute(x, target=2, n_steps=9)
    theirs = CaptumIG(mlp, multiply_by_inputs=False).attribute(x, target=2, n_steps=9)
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("integrator", ["riemann", "idgi", "left_ig", "split_ig"])
def test_batching_invariance(integrator, cnn, gen):
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=gen)
    base = torch.randn(3, 2, 2, 8, 8, dtype=torch.float64, generator=gen)  # K = 2 baselines per example
    method = IntegratedGradients(cnn, integrator=integrator)
    results = [
        method.explain(x, baselines=base, target=[0, 1, 3], n_steps=9, method="riemann_right", internal_batch_size=s)
        for s in (1, 3, 7, None)
    ]
    for r in results[1:]:
        assert (r.attributions - results[0].attributions).abs().max().item() <= 1e-6
        assert (r.convergence_delta - results[0].convergence_delta).abs().max().item() <= 1e-6


def test_multi_baseline_is_mean_of_single_runs(mlp, gen):
    x = torch.randn(2, 6, dtype=torch.float64, generator=gen)
    base = torch.randn(2, 3, 6, dtype=torch.float64, generator=gen)
    ig = IntegratedGradients(mlp)
    together = ig.explain(x, baselines=base, target=1, n_steps=11)
    singles = [ig.explain(x, baselines=base[:, k], target=1, n_steps=11) for k in range(3)]
    torch.testing.assert_close(together.attributions, sum(s.attributions for s in singles) / 3, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        together.baseline_outputs, sum(s.baseline_outputs for s in singles) / 3, rtol=0, atol=1e-12
    )
    # shared baselines [1, K, *S] give the same as the same baselines repeated per example
    shared = base[:1]
    a = ig.attribute(x, baselines=shared, target=1, n_steps=11)
    b = ig.attribute(x, baselines=shared.expand(2, -1, -1), target=1, n_steps=11)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_dummy_and_linearity_axioms(gen):
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen)

    def f1(v):
        return torch.tanh(v[:, 0] * v[:, 1])  # features 2, 3 are dummies

    def f2(v):
        return v[:, 2] ** 3 - v[:, 0]

    ig = IntegratedGradients
    a1 = ig(f1).attribute(x, n_steps=30)
    a2 = ig(f2).attribute(x, n_steps=30)
    a12 = ig(lambda v: 2 * f1(v) + 3 * f2(v)).attribute(x, n_steps=30)
    assert torch.all(a1[:, 2:] == 0)
    torch.testing.assert_close(a12, 2 * a1 + 3 * a2, rtol=1e-10, atol=1e-12)


def test_explanation_records_cost_and_hyperparameters(mlp, gen):
    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    r = IntegratedGradients(mlp).explain(x, target=0, n_steps=10, internal_batch_size=16)
    assert r.cost.backward_rows == 40 and r.cost.backward_calls == 3  # 40 rows in chunks of 16
    assert r.cost.forward_rows == 4 + 4 + 40  # target resolution at x, baselines, path
    assert r.cost.wall_seconds > 0
    assert r.hyperparameters["n_steps"] == 10 and r.hyperparameters["method"] == "gausslegendre"
    assert r.target.tolist() == [0, 0, 0, 0]
    assert "convergence delta" in r.summary()


def test_default_target_is_predicted_class(mlp, gen):
    x = torch.randn(5, 6, dtype=torch.float64, generator=gen)
    pred = mlp(x).argmax(1)
    r = IntegratedGradients(mlp).explain(x, n_steps=5)
    assert r.target.tolist() == pred.tolist()
    explicit = IntegratedGradients(mlp).attribute(x, target=pred, n_steps=5)
    torch.testing.assert_close(r.attributions, explicit, rtol=0, atol=0)


def test_callable_target_and_single_output(gen):
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    net = nn.Linear(4, 2).double()
    by_callable = IntegratedGradients(net).attribute(x, target=lambda out: out[:, 1] - out[:, 0], n_steps=4)
    w = net.weight.detach()
    torch.testing.assert_close(by_callable, (w[1] - w[0]) * x, rtol=1e-12, atol=1e-12)
    single = IntegratedGradients(lambda v: net(v)[:, 1]).attribute(x, n_steps=4)
    torch.testing.assert_close(single, w[1] * x, rtol=1e-12, atol=1e-12)


def test_float32_and_shapes_preserved(cnn, gen):
    x = torch.randn(2, 2, 8, 8, generator=gen)
    attr = IntegratedGradients(cnn.float()).attribute(x, n_steps=4)
    assert attr.dtype == torch.float32 and attr.shape == x.shape


def test_public_functional_form(mlp, gen):
    x = torch.randn(2, 6, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(
        pathattr.integrated_gradients(mlp, x, target=1, n_steps=8),
        IntegratedGradients(mlp).attribute(x, target=1, n_steps=8),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_baseline_or_input_that_requires_grad_on_the_path_major_fast_path(dtype):
    # the straight path builds long runs of one path with ``out=`` kernels, which refuse inputs that require
    # grad: such inputs and baselines are read as values (same attributions as their detached copies)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(dtype)
    x = torch.rand(3, 4).to(dtype)
    base = torch.zeros(3, 4, dtype=dtype)
    plain = IntegratedGradients(model).explain(x, baselines=base, n_steps=16, target=1)
    graded = IntegratedGradients(model).explain(x.clone().requires_grad_(True), target=1, n_steps=16,
                                                baselines=base.clone().requires_grad_(True))
    torch.testing.assert_close(graded.attributions, plain.attributions, rtol=0, atol=0)


# ------------------------------------------------------------------ one forward call for f(x) and f(x')
def test_inputs_and_baselines_share_one_forward_call(mlp, gen):
    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    base = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    r = IntegratedGradients(mlp).explain(x, baselines=base, target=2, n_steps=10)
    assert r.cost.forward_calls == 2 and r.cost.forward_rows == 4 + 4 + 40  # [x; x'] together, then the path
    with torch.no_grad():
        torch.testing.assert_close(r.outputs, mlp(x)[:, 2], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r.baseline_outputs, mlp(base)[:, 2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r.convergence_delta, r.attributions.sum(1) - (r.outputs - r.baseline_outputs),
                               rtol=0, atol=1e-12)


def test_separate_calls_when_rows_do_not_fit_or_model_is_not_in_eval_mode(mlp, gen):
    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    small = IntegratedGradients(mlp).explain(x, target=2, n_steps=10, internal_batch_size=4)
    assert small.cost.forward_rows == 4 + 4 + 40 and small.cost.forward_calls == 1 + 1 + 10
    k3 = IntegratedGradients(mlp).explain(x, baselines=torch.zeros(1, 3, 6, dtype=torch.float64), target=2, n_steps=10)
    assert k3.cost.forward_rows == 4 + 12 + 120 and k3.cost.forward_calls == 3  # 3 baselines per example
    train = IntegratedGradients(mlp, eval_mode=False).explain(x, target=2, n_steps=10)
    assert train.cost.forward_calls == 3
    joint = IntegratedGradients(mlp).explain(x, target=2, n_steps=10)
    for r in (small, k3, train):
        torch.testing.assert_close(r.outputs, joint.outputs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(small.attributions, joint.attributions, rtol=1e-10, atol=1e-12)


def test_a_model_that_fails_on_the_joint_batch_gets_separate_calls(mlp, gen):
    x = torch.randn(3, 6, dtype=torch.float64, generator=gen)

    def fixed_batch(v):
        if v.shape[0] != 3:
            raise RuntimeError("this model takes batches of 3")
        return mlp(v)

    r = IntegratedGradients(fixed_batch, model=mlp).explain(x, target=1, n_steps=4, internal_batch_size=3)
    ref = IntegratedGradients(mlp).explain(x, target=1, n_steps=4)
    assert r.cost.forward_calls == 1 + 1 + 4 and r.cost.forward_rows == 3 + 3 + 12  # the failed call is not counted
    torch.testing.assert_close(r.attributions, ref.attributions, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r.baseline_outputs, ref.baseline_outputs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("target", [None, [0, 2, 2], lambda out: out[:, 1] - out[:, 0]])
def test_joint_call_resolves_every_kind_of_target_as_the_inputs_alone(mlp, gen, target):
    x = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    r = IntegratedGradients(mlp).explain(x, target=target, n_steps=6)
    assert r.cost.forward_calls == 2
    with torch.no_grad():
        out = mlp(x)
        zero = mlp(torch.zeros_like(x))
    if target is None:
        assert r.target.tolist() == out.argmax(1).tolist()
        idx = out.argmax(1)
    elif callable(target):
        idx = None
    else:
        idx = torch.tensor(target)
    want = target(out) if idx is None else out.gather(1, idx.view(-1, 1)).squeeze(1)
    want0 = target(zero) if idx is None else zero.gather(1, idx.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(r.outputs, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r.baseline_outputs, want0, rtol=1e-12, atol=1e-12)


def test_quadrature_tables_are_copies(gen):
    a, w = quadrature("gausslegendre", 7, torch.float64)
    a.zero_()
    w.fill_(3.0)
    a2, w2 = quadrature("gausslegendre", 7, torch.float64)
    assert float(a2.min()) > 0 and abs(float(w2.sum()) - 1.0) < 1e-12


def test_relative_gap_of_a_zero_output_difference():
    from pathattr.result import completeness

    attr = (torch.tensor([[1.0, -1.0], [0.5, 0.0], [0.25, 0.25]], dtype=torch.float64),)
    out = torch.tensor([2.0, 2.0, 3.0], dtype=torch.float64)
    base = torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)
    delta, relative = completeness(attr, out, base)
    assert delta.tolist() == [0.0, 0.5, -0.5]
    assert relative.tolist() == [0.0, math.inf, 0.5]  # 0/0 -> 0, gap over a zero difference -> inf


# ------------------------------------------------------------------ f(x) and f(x') read from the path's own rows
@pytest.mark.parametrize("method", ["riemann_trapezoid", "trapezoid"])
@pytest.mark.parametrize("internal_batch_size", [None, 1, 7, 10, 31])
def test_rules_with_both_ends_read_f_at_the_ends_from_their_rows(method, internal_batch_size, mlp, gen):
    # the nodes include alpha = 0 and alpha = 1: no forward call of its own for x and x', in any chunking (7 and 31
    # cut paths at other nodes than their ends, 1 puts every row in its own call)
    x = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    base = torch.randn(3, 2, 6, dtype=torch.float64, generator=gen)  # two baselines per example
    r = IntegratedGradients(mlp).explain(x, baselines=base, target=[2, 0, 1], n_steps=10, method=method,
                                         internal_batch_size=internal_batch_size)
    assert r.cost.forward_rows == 3 * 2 * 10 and r.cost.forward_calls == r.cost.backward_calls
    target = torch.tensor([2, 0, 1])
    with torch.no_grad():
        fx = mlp(x).gather(1, target.view(-1, 1)).squeeze(1)
        fb = mlp(base.reshape(6, 6)).view(3, 2, 3).gather(2, target.view(3, 1, 1).expand(3, 2, 1)).squeeze(2)
    torch.testing.assert_close(r.outputs, fx, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(r.baseline_outputs, fb.mean(1), rtol=1e-13, atol=1e-13)
    assert r.target.tolist() == [2, 0, 1]
    sums = r.attributions.sum(1)
    torch.testing.assert_close(r.convergence_delta, sums - (fx - fb.mean(1)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("target", [None, lambda out: out[:, 1]])
def test_rules_with_both_ends_resolve_a_target_that_needs_f_at_x_first(target, mlp, gen):
    # the predicted class and a callable need f(x) before the path: one forward call of [x; x'] first, as for
    # every other rule, and the same attributions
    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    r = IntegratedGradients(mlp).explain(x, target=target, n_steps=8, method="riemann_trapezoid")
    assert r.cost.forward_rows == 4 + 4 + 32 and r.cost.forward_calls == 2
    column = mlp(x).argmax(1) if target is None else torch.ones(4, dtype=torch.long)
    deferred = IntegratedGradients(mlp).explain(x, target=column, n_steps=8, method="riemann_trapezoid")
    assert deferred.cost.forward_rows == 32
    torch.testing.assert_close(deferred.attributions, r.attributions, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(deferred.outputs, r.outputs, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(deferred.baseline_outputs, r.baseline_outputs, rtol=1e-13, atol=1e-13)


def test_rules_with_both_ends_evaluate_x_alone_for_a_model_not_in_eval_mode(gen):
    # eval_mode=False: batch statistics must never mix x with the path's rows, so f(x) gets its own call
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)).double().train()
    x = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    r = IntegratedGradients(model, eval_mode=False).explain(x, target=1, n_steps=6, method="riemann_trapezoid")
    assert r.cost.forward_rows == 4 + 4 + 24  # x, then x' (separately), then the path
    assert model.training


@pytest.mark.parametrize(("method", "call"), [("riemann_trapezoid", "explain"), ("riemann_trapezoid", "attribute"),
                                            ("gausslegendre", "attribute"), ("gausslegendre", "explain")])
def test_deferred_target_raises_what_an_eager_resolution_raises(method, call, mlp):
    # the first three fix an explicit target at the path's first model call (the rows include x, or attribute()
    # needs no f(x)); explain with gausslegendre fixes it at x first: the same errors, naming the same argument
    def run(model, inputs, **kwargs):
        ig = IntegratedGradients(model, model=mlp if not isinstance(model, nn.Module) else None)
        return getattr(ig, call)(inputs, n_steps=5, method=method, **kwargs)

    x = torch.randn(3, 6, dtype=torch.float64)
    cases = [
        (dict(target=3), "out of range for 3 output classes"),
        (dict(target=[0, 1]), "2 entries; expected one per example"),
        (dict(target=[0, 5, 1]), "out of range"),
        (dict(target=torch.tensor([0.0, 1.0, 2.0])), "integer class indices"),
    ]
    for kwargs, message in cases:
        with pytest.raises(pathattr.errors.TargetError, match=message) as err:
            run(mlp, x, **kwargs)
        assert err.value.argument == "target"
    scalar = nn.Sequential(nn.Linear(6, 1), nn.Flatten(0)).double()
    with pytest.raises(pathattr.errors.TargetError, match="one output per example"):
        run(scalar, x, target=1)
    ok = run(scalar, x, target=0)  # target 0 on a one-output model is allowed by both
    torch.testing.assert_close(getattr(ok, "attributions", ok), IntegratedGradients(scalar).attribute(
        x, n_steps=5, method=method), rtol=1e-13, atol=1e-13)
    with pytest.raises(pathattr.errors.InputValidationError, match="batch dimension") as err:
        run(mlp, torch.randn(6, dtype=torch.float64), target=0)
    assert err.value.argument == "inputs"
    conv = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    with pytest.raises(pathattr.errors.InputValidationError) as err:  # [C, H, W] without the batch axis
        run(conv, torch.randn(3, 6, 6, dtype=torch.float64), target=0)
    assert err.value.argument == "inputs"

    def nan_at_x(v: torch.Tensor) -> torch.Tensor:  # not finite at x = (1, ..., 1) only
        out = mlp(v)
        return torch.where(v.sum(1, keepdim=True) >= 6.0, torch.full_like(out, math.nan), out)

    far = torch.full((1, 6), 1.0, dtype=torch.float64)
    if method == "gausslegendre" and call == "attribute":  # x is not a row and f(x) is not needed: no error
        assert torch.isfinite(run(nan_at_x, far, target=0)).all()
        return
    with pytest.raises(pathattr.errors.NonFiniteError, match="outputs") as err:
        run(nan_at_x, far, target=0)
    assert err.value.argument == "forward_func"


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_trapezoid"])
def test_attribute_without_the_delta_skips_the_forward_call_of_the_ends(method, mlp, gen):
    # attribute() returns only attributions: with an explicit target nothing evaluates f(x) or f(x') on its own;
    # with the delta (or explain) they are evaluated as before, and the attributions are the same
    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    model = RowCounter(mlp)
    ig = IntegratedGradients(model)
    plain = ig.attribute(x, target=[0, 1, 2, 0], n_steps=8, method=method, internal_batch_size=12)
    assert sum(model.rows) == 32 and len(model.rows) == 3
    model.rows.clear()
    with_delta, delta = ig.attribute(x, target=[0, 1, 2, 0], n_steps=8, method=method, internal_batch_size=12,
                                     return_convergence_delta=True)
    both_ends = method == "riemann_trapezoid"  # x and x' are rows: read from them
    assert sum(model.rows) == 32 + (0 if both_ends else 8)
    torch.testing.assert_close(plain, with_delta, rtol=1e-14, atol=1e-14)
    explained = ig.explain(x, target=[0, 1, 2, 0], n_steps=8, method=method, internal_batch_size=12)
    torch.testing.assert_close(explained.convergence_delta, delta, rtol=0, atol=1e-14)
    assert explained.outputs is not None and explained.baseline_outputs is not None
    model.rows.clear()
    ig.attribute(x, n_steps=8, method=method, internal_batch_size=12)  # the predicted class needs f(x) first
    assert model.rows[0] == 8 and sum(model.rows) == 32 + 8  # x and x' in one call, as explain does


def test_attribute_mode_ends_with_the_call_also_after_an_error(mlp, gen):
    x = torch.randn(2, 6, dtype=torch.float64, generator=gen)
    ig = IntegratedGradients(mlp)
    with pytest.raises(pathattr.errors.TargetError):
        ig.attribute(x, target=7, n_steps=4)
    r = ig.explain(x, target=1, n_steps=4)  # a later explain evaluates f(x) and f(x') again
    assert r.outputs is not None and r.convergence_delta is not None
    inner = IntegratedGradients(mlp)  # a method called inside another's attribute() keeps its own mode
    tunnel = pathattr.NoiseTunnel(inner)
    tunnel.attribute(x, target=1, n_steps=4, nt_samples=2, generator=0)
    assert inner.explain(x, target=1, n_steps=4).convergence_delta is not None


def test_straight_path_points_are_exactly_the_ends_at_alpha_0_and_1(gen):
    from pathattr.paths.straight import StraightLinePath

    x = torch.rand(2, 3, 64, generator=gen) * 7 - 3
    base = torch.rand(2, 1, 3, 64, generator=gen) * 0.3
    assert not torch.equal(base[:, 0] + (x - base[:, 0]), x)  # the textbook form rounds at alpha = 1
    alphas, weights = quadrature("riemann_trapezoid", 9, torch.float32)
    path = StraightLinePath.from_baselines((x,), (base,), alphas, weights)
    assert path.end_nodes() == (0, 8)
    for p, j in ((torch.arange(18) // 9, torch.arange(18) % 9), (torch.tensor([1, 0, 1]), torch.tensor([8, 8, 0]))):
        (pts,) = path.points(p, j)  # path-major runs and scattered rows take different branches
        for i in range(p.numel()):
            end = x[p[i]] if j[i] == 8 else base[p[i], 0] if j[i] == 0 else None
            if end is not None:
                assert torch.equal(pts[i], end)
            else:
                a = alphas[j[i]]
                torch.testing.assert_close(pts[i], base[p[i], 0] + a * (x[p[i]] - base[p[i], 0]))
    gl = StraightLinePath.from_baselines((x,), (base,), *quadrature("gausslegendre", 9, torch.float32))
    assert gl.end_nodes() == (None, None)


@pytest.mark.parametrize("baselines", ["zeros", "shared3", "per_example3"])
@pytest.mark.parametrize(("ibs", "n_steps"), [(None, 10), (5, 10), (7, 10), (30, 10), (60, 10), (7, 3), (11, 2)])
def test_chunks_as_row_ranges_give_the_row_by_row_attributions(mlp, gen, monkeypatch, baselines, ibs, n_steps):
    # the factored Riemann sum reads each chunk as a range of path-major rows (slices of the ends and the node
    # table); row by row (no ranges, no runs) must give the same sums for one shared baseline, K shared baselines
    # and K baselines per example, with chunks of whole paths, of part of one path and across paths
    from pathattr.paths.straight import StraightLinePath

    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    base = {"zeros": None, "shared3": torch.randn(1, 3, 6, dtype=torch.float64, generator=gen),
            "per_example3": torch.randn(4, 3, 6, dtype=torch.float64, generator=gen)}[baselines]
    ranged = []
    original = StraightLinePath._range_points
    monkeypatch.setattr(StraightLinePath, "_range_points",
                        lambda self, *a: ranged.append(a[1:]) or original(self, *a))
    fast = IntegratedGradients(mlp).explain(x, baselines=base, target=[0, 1, 2, 1], n_steps=n_steps,
                                            internal_batch_size=ibs)
    assert ranged  # the engine passed the chunks as ranges
    monkeypatch.setattr(StraightLinePath, "takes_row_range", False)
    monkeypatch.setattr(StraightLinePath, "_runs", lambda self, p: None)
    slow = IntegratedGradients(mlp).explain(x, baselines=base, target=[0, 1, 2, 1], n_steps=n_steps,
                                            internal_batch_size=ibs)
    torch.testing.assert_close(fast.attributions, slow.attributions, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fast.convergence_delta, slow.convergence_delta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("integrator", ["riemann", "left_ig"])
def test_equal_runs_in_one_chunk_give_the_row_by_row_attributions(integrator, mlp, gen, monkeypatch):
    # several whole paths in one chunk are evaluated with one batched lerp and one batched product (runs of one
    # length; the factored Riemann sum, or the displacements of another integrator), chunks that cut paths with a
    # product per run, and without runs row by row: the same attributions
    from pathattr.paths.straight import StraightLinePath

    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    base = torch.randn(4, 3, 6, dtype=torch.float64, generator=gen)  # 12 paths of 10 nodes
    calls = []  # (form, rows per run, runs) of each batched evaluation

    def counting(name):
        original = getattr(StraightLinePath, name)

        def wrapped(self, *args):
            out = original(self, *args)
            if out is not None:
                runs = self._last[1]
                calls.append((name, runs[0][2] - runs[0][1], len(runs)))
            return out
        return wrapped

    # the factored Riemann sum gets its rows as a range (_range_points: whole paths or a part of one path), other
    # integrators as index tensors (_equal_runs: runs of one length)
    for name in ("_equal_runs", "_range_points"):
        monkeypatch.setattr(StraightLinePath, name, counting(name))
    runs = {ibs: IntegratedGradients(mlp, integrator=integrator).explain(
        x, baselines=base, target=1, n_steps=10, internal_batch_size=ibs) for ibs in (120, 40, 7, 13)}
    # the batched form ran for the chunks of whole paths (120 and 40 rows), and for other chunks only on one path
    assert {(length, r) for _, length, r in calls if r > 1} == {(10, 12), (10, 4)}
    assert {name for name, _, _ in calls} == {"_range_points" if integrator == "riemann" else "_equal_runs"}
    # row by row: gathers and displacements
    monkeypatch.setattr(StraightLinePath, "takes_row_range", False)
    monkeypatch.setattr(StraightLinePath, "_runs", lambda self, p: None)
    rows = IntegratedGradients(mlp, integrator=integrator).explain(x, baselines=base, target=1, n_steps=10,
                                                                   internal_batch_size=40)
    for r in runs.values():
        torch.testing.assert_close(r.attributions, rows.attributions, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(r.convergence_delta, rows.convergence_delta, rtol=0, atol=1e-12)
