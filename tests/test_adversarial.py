"""AGI and MFABA: closed-form cases, the unbatched oracles, batching invariance, errors and hygiene."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pathattr
from conftest import make_mlp
from pathattr.errors import InputValidationError
from pathattr.methods.adversarial import MFABA, AdversarialGradientIntegration
from pathattr.methods.registry import METHODS
from pathattr.paths.adversarial import (
    agi_step,
    draw_false_classes,
    mfaba_step,
    spaced_false_classes,
)
from pathattr.testing.adversarial_oracles import agi_oracle, agi_spaced_classes, mfaba_oracle

D = torch.float64


def linear(weight: list[list[float]], bias: list[float]) -> nn.Module:
    """Logits ``W x + b`` (float64)."""
    layer = nn.Linear(len(weight[0]), len(weight)).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=D))
        layer.bias.copy_(torch.tensor(bias, dtype=D))
    return layer.eval()


# Closed-form AGI case (logits of a linear model, x = 0, explained class 0, epsilon = 0.1). Along the path of false
# class t every point is z_i = i eps sign(w_t), so the logits are linear in i:
#   t = 1 (sign [-1, 1]): class 0: 0.5 + 0.1 i, class 1: 0.3 i       -> class 1 wins first at i = 3 (0.8 < 0.9)
#   t = 2 (sign [1, -1]): class 0: 0.5 - 0.1 i, class 2: 0.2 + 0.3 i -> class 2 wins first at i = 1 (0.4 < 0.5)
# A_t = -n_t eps w_0 * sign(w_t): A_1 = [0.3, -0.6], A_2 = [-0.1, 0.2]; AGI = [0.2, -0.4].
# reference_compat (every step from x): t = 1 never flips (z = [-0.1, 0.1]: 0.6 > 0.3), so with max_iter = 5
# A_1 = 5 * [0.1, -0.2]; t = 2 flips after one step (z = [0.1, -0.1]: 0.4 < 0.5): A_2 = [-0.1, 0.2].
AGI_W, AGI_B = [[1.0, 2.0], [-1.0, 2.0], [2.0, -1.0]], [0.5, 0.0, 0.2]
AGI_PATHS = {1: (3, [0.3, -0.6]), 2: (1, [-0.1, 0.2])}  # false class: (steps, attribution)
AGI_TOTAL, AGI_COMPAT_TOTAL = [0.2, -0.4], [0.4, -0.8]

# Closed-form MFABA case (logits, x = 0, class 0, w_0 = [3, -4, 0] with |w_0| = 5, class 1 constant 0):
# sharp steps move z by -0.1 w_0 / 5, lowering the logit margin 1.2 by 0.5 per step: 0.7, 0.2, -0.3 -> the
# prediction changes after 3 steps; A = 3 * 0.1 * w_0^2 / 5 = [0.54, 0.96, 0] (sum 1.5 = f(x) - f(z_3)).
MFABA_W, MFABA_B = [[3.0, -4.0, 0.0], [0.0, 0.0, 0.0]], [1.2, 0.0]
MFABA_SHARP = [0.54, 0.96, 0.0]


# ----------------------------------------------------------------------------------------------- step functions
def test_agi_step_moves_by_signed_gradient_and_clips():
    z = torch.tensor([[0.5, 0.98, 0.0]], dtype=D)
    x = torch.tensor([[0.4, 0.9, 0.1]], dtype=D)
    a = torch.tensor([[2.0, 3.0, -1.0]], dtype=D)
    new, disp = agi_step(z, x, a, 0.05, bounds=(0.0, 1.0))
    torch.testing.assert_close(new, torch.tensor([[0.55, 1.0, 0.0]], dtype=D), rtol=0, atol=1e-15)
    torch.testing.assert_close(disp, torch.tensor([[0.05, 0.02, 0.0]], dtype=D), rtol=0, atol=1e-15)
    new, disp = agi_step(z, x, a, 0.05, reference_compat=True)  # from x, not from z
    torch.testing.assert_close(new, torch.tensor([[0.45, 0.95, 0.05]], dtype=D), rtol=0, atol=1e-15)
    torch.testing.assert_close(disp, torch.tensor([[0.05, 0.05, -0.05]], dtype=D), rtol=0, atol=1e-15)


def test_mfaba_step_sharp_and_smooth():
    z = torch.tensor([[0.0, 0.0, 0.5], [1.0, 1.0, 1.0]], dtype=D)
    x = torch.zeros_like(z)
    g = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 0.0]], dtype=D)
    new = mfaba_step(z, x, g, "sharp", 0.5)
    # row 0: z - 0.5 g / 5; row 1: zero gradient -> no move (the reference would give NaN)
    torch.testing.assert_close(new, torch.tensor([[-0.3, 0.4, 0.5], [1.0, 1.0, 1.0]], dtype=D), rtol=0, atol=1e-15)
    new = mfaba_step(z, x, g, "sharp", 0.5, bounds=(0.0, 1.0))
    torch.testing.assert_close(new[0], torch.tensor([0.0, 0.4, 0.5], dtype=D), rtol=0, atol=1e-15)
    # smooth: z - 0.2 sign(g), kept within 0.3 of x (the third feature sits at 0.5 > 0.3 and is pulled back)
    new = mfaba_step(z[:1], x[:1], g[:1], "smooth", 0.2, epsilon=0.3)
    torch.testing.assert_close(new, torch.tensor([[-0.2, 0.2, 0.3]], dtype=D), rtol=0, atol=1e-15)
    assert mfaba_step(z[:1], x[:1], g[:1], "smooth")[0, 0].item() == pytest.approx(-0.001, abs=1e-15)


def test_false_classes_distinct_never_the_target_and_seeded():
    target = torch.tensor([0, 3, 3, 9])
    picks = draw_false_classes(target, 10, 9, torch.Generator().manual_seed(5))
    assert picks.shape == (4, 9)
    for row, t in zip(picks.tolist(), target.tolist()):
        assert sorted(row) == [c for c in range(10) if c != t]  # k = C - 1: every other class exactly once
    a = draw_false_classes(target, 10, 3, torch.Generator().manual_seed(5))
    b = draw_false_classes(target, 10, 3, torch.Generator().manual_seed(5))
    c = draw_false_classes(target, 10, 3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not bool((a == target[:, None]).any())
    assert spaced_false_classes(1000, 20).tolist() == list(range(0, 999, 50)) == agi_spaced_classes(1000, 20)


# ----------------------------------------------------------------------------------------------- oracles: closed form
def test_agi_oracle_closed_form():
    model = linear(AGI_W, AGI_B)
    x = torch.zeros(1, 2, dtype=D)
    for t, (steps, expected) in AGI_PATHS.items():
        attr, ends = agi_oracle(model, x, 0, [t], epsilon=0.1, max_iter=10, bounds=None, use_softmax=False)
        torch.testing.assert_close(attr[0], torch.tensor(expected, dtype=D), rtol=0, atol=1e-12)
        sign = torch.tensor(AGI_W[t], dtype=D).sign()
        torch.testing.assert_close(ends[0][0], steps * 0.1 * sign, rtol=0, atol=1e-12)
    attr, _ = agi_oracle(model, x, 0, [0, 1, 2], epsilon=0.1, max_iter=10, bounds=None, use_softmax=False)
    torch.testing.assert_close(attr[0], torch.tensor(AGI_TOTAL, dtype=D), rtol=0, atol=1e-12)  # class 0 skipped
    attr, _ = agi_oracle(model, x, 0, [1, 2], epsilon=0.1, max_iter=5, bounds=None, reference_compat=True,
                         use_softmax=False)
    torch.testing.assert_close(attr[0], torch.tensor(AGI_COMPAT_TOTAL, dtype=D), rtol=0, atol=1e-12)


def test_agi_oracle_one_softmax_step_closed_form():
    # one iteration: A = -grad p_y(x) * (clip(x + eps sign(grad p_t(x))) - x), grad p_j = p_j (w_j - sum_m p_m w_m)
    model = linear(AGI_W, AGI_B)
    x = torch.tensor([[0.98, 0.3]], dtype=D)
    w, b = torch.tensor(AGI_W, dtype=D), torch.tensor(AGI_B, dtype=D)
    p = torch.softmax(w @ x[0] + b, 0)
    mean_w = p @ w
    grad = p[:, None] * (w - mean_w)
    step = (x[0] + 0.05 * grad[2].sign()).clamp(0, 1) - x[0]
    attr, _ = agi_oracle(model, x, 0, [2], epsilon=0.05, max_iter=1)
    torch.testing.assert_close(attr[0], -grad[0] * step, rtol=0, atol=1e-15)
    torch.testing.assert_close(step, torch.tensor([0.02, -0.05], dtype=D), rtol=0, atol=1e-15)  # clipped at 1


def test_mfaba_oracle_closed_form():
    model = linear(MFABA_W, MFABA_B)
    x = torch.zeros(1, 3, dtype=D)
    attr, hats, grads = mfaba_oracle(model, x, 0, num_steps=50, use_softmax=False, bounds=None)
    torch.testing.assert_close(attr[0], torch.tensor(MFABA_SHARP, dtype=D), rtol=0, atol=1e-12)
    assert hats.shape[0] == 4 and grads.shape[0] == 4  # 3 steps + the start; the final gradient is unused
    attr, hats, _ = mfaba_oracle(model, x, 0, num_steps=2, use_softmax=False, bounds=None)
    torch.testing.assert_close(attr[0], torch.tensor(MFABA_SHARP, dtype=D) * 2 / 3, rtol=0, atol=1e-12)
    # smooth, no early stop: every moving feature travels min(n alpha, epsilon) = 0.25 against sign(w)
    attr, _, _ = mfaba_oracle(model, x, 0, num_steps=5, alpha=0.1, epsilon=0.25, use_sign=True, use_softmax=False,
                              early_stop=False, bounds=None)
    torch.testing.assert_close(attr[0], torch.tensor([0.75, 1.0, 0.0], dtype=D), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------- the methods
def _agi_model():
    return linear(AGI_W, AGI_B)


def test_agi_closed_form():
    x = torch.zeros(1, 2, dtype=D)
    e = AdversarialGradientIntegration(_agi_model()).explain(
        x, target=0, false_classes=[0, 1, 2], epsilon=0.1, n_steps=10, use_softmax=False
    )
    torch.testing.assert_close(e.attributions[0], torch.tensor(AGI_TOTAL, dtype=D), rtol=0, atol=1e-12)
    assert e.extras["steps"].tolist() == [[0, 3, 1]]  # class 0 is the target: skipped, never evaluated
    assert e.extras["success"].tolist() == [[False, True, True]]
    # linear logits: the left Riemann sum is exact; the sum over classes explains sum_t (f(x) - f(z_end^t))
    torch.testing.assert_close(e.extras["end_outputs"][0], torch.tensor([0.5, 0.8, 0.4], dtype=D), rtol=0, atol=1e-12)
    assert abs(float(e.convergence_delta[0])) < 1e-12
    torch.testing.assert_close(e.baseline_outputs, torch.tensor([0.7], dtype=D), rtol=0, atol=1e-12)  # 0.5 + 0.3 - 0.1
    torch.testing.assert_close(e.extras["end_points"][0, 1], torch.tensor([-0.3, 0.3], dtype=D), rtol=0, atol=1e-12)
    compat = AdversarialGradientIntegration(_agi_model()).explain(
        x, target=0, false_classes=[1, 2], epsilon=0.1, n_steps=5, use_softmax=False, reference_compat=True
    )
    torch.testing.assert_close(compat.attributions[0], torch.tensor(AGI_COMPAT_TOTAL, dtype=D), rtol=0, atol=1e-12)
    assert compat.convergence_delta is None and compat.extras["steps"].tolist() == [[5, 1]]


def test_agi_one_softmax_step_closed_form():
    x = torch.tensor([[0.98, 0.3]], dtype=D)
    w, b = torch.tensor(AGI_W, dtype=D), torch.tensor(AGI_B, dtype=D)
    p = torch.softmax(w @ x[0] + b, 0)
    grad = p[:, None] * (w - p @ w)
    expected = -grad[0] * ((x[0] + 0.05 * grad[2].sign()).clamp(0, 1) - x[0])
    e = AdversarialGradientIntegration(_agi_model()).explain(x, target=0, false_classes=[2], n_steps=1, bounds=(0, 1))
    torch.testing.assert_close(e.attributions[0], expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(e.outputs, p[:1], rtol=0, atol=1e-15)  # outputs are softmax probabilities


def test_mfaba_closed_form():
    x = torch.zeros(2, 3, dtype=D)
    model = linear(MFABA_W, MFABA_B)
    e = MFABA(model).explain(x, target=0, use_softmax=False)
    expected = torch.tensor(MFABA_SHARP, dtype=D)
    torch.testing.assert_close(e.attributions, expected.expand(2, 3), rtol=0, atol=1e-12)
    assert e.extras["steps"].tolist() == [3, 3] and e.extras["success"].tolist() == [True, True]
    torch.testing.assert_close(e.baseline_outputs, torch.tensor([-0.3, -0.3], dtype=D), rtol=0, atol=1e-12)
    assert float(e.convergence_delta.abs().max()) < 1e-12
    e = MFABA(model).explain(x[:1], target=0, use_softmax=False, n_steps=2)  # stops by the step budget
    torch.testing.assert_close(e.attributions[0], expected * 2 / 3, rtol=0, atol=1e-12)
    assert e.extras["success"].tolist() == [False]
    e = MFABA(model).explain(x[:1], target=0, use_softmax=False, mode="smooth", step_size=0.1, epsilon=0.25,
                             n_steps=5, early_stop=False)
    torch.testing.assert_close(e.attributions[0], torch.tensor([0.75, 1.0, 0.0], dtype=D), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------- batched == unbatched
def _cnn_inputs() -> torch.Tensor:
    return 3 * torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=D)


def _mlp_inputs() -> torch.Tensor:
    return torch.rand(5, 6, generator=torch.Generator().manual_seed(0), dtype=D)


AGI_CASES = {  # name: (model fixture, inputs, explain kwargs)
    "cnn-softmax": ("cnn", _cnn_inputs, dict(epsilon=0.3, n_steps=8, n_false_classes=3)),
    "cnn-logits-compat": ("cnn", _cnn_inputs, dict(epsilon=0.3, n_steps=6, n_false_classes=3, use_softmax=False,
                                                   reference_compat=True)),
    "mlp-bounded": ("mlp", _mlp_inputs, dict(epsilon=0.1, n_steps=12, n_false_classes=2, bounds=(0.0, 1.0))),
    "mlp-bounded-compat": ("mlp", _mlp_inputs, dict(epsilon=0.1, n_steps=12, false_classes=[0, 1, 2],
                                                    bounds=(0.0, 1.0), reference_compat=True)),
}


def _agi_vs_oracle(model, x, kwargs, ibs):
    e = AdversarialGradientIntegration(model).explain(x, internal_batch_size=ibs, generator=3, **kwargs)
    worst = 0.0
    for b in range(x.shape[0]):
        expected, ends = agi_oracle(
            model, x[b : b + 1], int(e.target[b]), e.extras["false_classes"][b].tolist(), kwargs["epsilon"],
            kwargs["n_steps"], kwargs.get("bounds"), kwargs.get("reference_compat", False),
            kwargs.get("use_softmax", True),
        )
        worst = max(worst, float((expected[0] - e.attributions[b]).abs().max()))
        active = e.extras["false_classes"][b] != e.target[b]
        oracle_ends = torch.cat(ends)
        assert torch.allclose(e.extras["end_points"][b][active], oracle_ends, rtol=0, atol=1e-12)
    return e, worst


@pytest.mark.parametrize("case", sorted(AGI_CASES))
def test_agi_matches_unbatched_oracle(case, request):
    name, make_x, kwargs = AGI_CASES[case]
    model = request.getfixturevalue(name)
    x = make_x()
    e, worst = _agi_vs_oracle(model, x, kwargs, ibs=5)
    assert worst < 1e-10, worst
    steps = e.extras["steps"]
    if case == "cnn-softmax":  # the case exercises paths that stop early and paths that run out of steps
        assert bool((steps < kwargs["n_steps"]).any()) and bool((steps == kwargs["n_steps"]).any())
    if case == "mlp-bounded-compat":  # the target class is among the given ones: skipped
        assert bool((steps == 0).any())


MFABA_CASES = {
    "cnn-sharp": ("cnn", _cnn_inputs, dict(step_size=1.0)),
    "cnn-smooth-logits": ("cnn", _cnn_inputs, dict(mode="smooth", step_size=0.05, epsilon=0.4, n_steps=20,
                                                   use_softmax=False)),
    "mlp-sharp-bounded": ("mlp", _mlp_inputs, dict(bounds=(0.0, 1.0))),
    "mlp-smooth-bounded": ("mlp", _mlp_inputs, dict(mode="smooth", step_size=0.05, epsilon=0.5, n_steps=30,
                                                    bounds=(0.0, 1.0))),
}


@pytest.mark.parametrize("case", sorted(MFABA_CASES))
def test_mfaba_matches_unbatched_oracle(case, request):
    name, make_x, kwargs = MFABA_CASES[case]
    model = request.getfixturevalue(name)
    x = make_x()
    e = MFABA(model).explain(x, internal_batch_size=3, **kwargs)
    mode = kwargs.get("mode", "sharp")
    step = kwargs.get("step_size", 0.1 if mode == "sharp" else 0.001)
    worst = 0.0
    for b in range(x.shape[0]):
        expected, hats, _ = mfaba_oracle(
            model, x[b : b + 1], int(e.target[b]), num_steps=kwargs.get("n_steps", 50),
            alpha=step / 100 if mode == "sharp" else step, epsilon=kwargs.get("epsilon", 0.3),
            use_sign=mode == "smooth", use_softmax=kwargs.get("use_softmax", True), bounds=kwargs.get("bounds"),
        )
        worst = max(worst, float((expected[0] - e.attributions[b]).abs().max()))
        assert int(e.extras["steps"][b]) == hats.shape[0] - 1
        torch.testing.assert_close(e.extras["end_points"][b], hats[-1], rtol=0, atol=1e-12)
    assert worst < 1e-10, worst
    assert bool((e.extras["steps"] < kwargs.get("n_steps", 50)).any())  # some paths stop at the boundary


def test_mfaba_explained_class_not_predicted_stops_after_one_step(cnn):
    x = _cnn_inputs()
    pred = cnn(x).argmax(1)
    target = torch.where(torch.arange(4) % 2 == 0, pred, (pred + 1) % 4)
    e = MFABA(cnn).explain(x, target=target, step_size=0.2, n_steps=10)
    assert e.extras["steps"][1::2].tolist() == [1, 1]  # already not predicted: the reference stops after one step
    for b in (0, 1):
        expected, _, _ = mfaba_oracle(cnn, x[b : b + 1], int(target[b]), 10, alpha=0.002, bounds=None)
        torch.testing.assert_close(e.attributions[b], expected[0], rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------------- engine properties
@pytest.mark.parametrize("method", ["agi", "mfaba"])
def test_batching_invariance(method, cnn):
    x = _cnn_inputs()
    if method == "agi":
        run = lambda ibs: AdversarialGradientIntegration(cnn).explain(  # noqa: E731
            x, epsilon=0.3, n_steps=6, n_false_classes=3, internal_batch_size=ibs)
    else:
        run = lambda ibs: MFABA(cnn).explain(x, step_size=1.0, internal_batch_size=ibs)  # noqa: E731
    ref = run(None)
    for ibs in (1, 5) if method == "mfaba" else (2, 5):
        e = run(ibs)
        torch.testing.assert_close(e.attributions, ref.attributions, rtol=0, atol=1e-12)
        assert torch.equal(e.extras["steps"], ref.extras["steps"])
        assert e.cost.backward_rows == ref.cost.backward_rows  # the same work, in other chunks


def test_stopped_paths_cost_nothing(cnn):
    x = _cnn_inputs()
    e = MFABA(cnn).explain(x, step_size=1.0)
    steps, t = e.extras["steps"], 50
    # every step's point gets one gradient; a path that stops before t also gets one at its stopping point; a path
    # that runs t steps gets a forward (no gradient) at its last point; plus two forwards per example at x
    assert e.cost.backward_rows == int(torch.where(steps < t, steps + 1, steps).sum())
    assert e.cost.forward_rows == int(torch.where(steps < t, steps + 1, steps + 1).sum()) + 2 * x.shape[0]
    a = AdversarialGradientIntegration(cnn).explain(x, epsilon=0.3, n_steps=6, n_false_classes=3)
    s = a.extras["steps"]
    evaluated = torch.where(a.extras["success"] & (s < 6), s + 1, s)  # with a gradient (two: o_t and o_y)
    assert a.cost.backward_rows == 2 * int(evaluated.sum())


@pytest.mark.parametrize("method", ["agi", "mfaba"])
def test_idgi_integrator_is_complete(method, cnn):
    x = _cnn_inputs()
    if method == "agi":
        e = AdversarialGradientIntegration(cnn, integrator="idgi").explain(x, epsilon=0.3, n_steps=6,
                                                                           n_false_classes=3)
    else:
        e = MFABA(cnn, integrator="idgi").explain(x, step_size=1.0)
    assert float(e.convergence_delta.abs().max()) < 1e-12
    r = MFABA(cnn).explain(x, step_size=1.0) if method == "mfaba" else None
    if r is not None:  # the left Riemann sum is not exact on this curved model, IDGI is
        assert float(r.convergence_delta.abs().max()) > 1e-6


def test_baseline_outputs_are_the_path_ends(cnn):
    x = _cnn_inputs()
    e = MFABA(cnn).explain(x, step_size=1.0)
    ends = torch.softmax(cnn(e.extras["end_points"]), 1).gather(1, e.target.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(e.baseline_outputs, ends.detach(), rtol=0, atol=1e-14)
    assert bool((cnn(e.extras["end_points"]).argmax(1) != e.target).all())  # boundary crossed: success
    a = AdversarialGradientIntegration(cnn).explain(x, epsilon=0.3, n_steps=6, n_false_classes=3)
    pts = a.extras["end_points"].reshape(-1, 2, 8, 8)
    probs = torch.softmax(cnn(pts), 1).detach()
    tgt = a.target.repeat_interleave(3)
    torch.testing.assert_close(a.extras["end_outputs"].reshape(-1), probs.gather(1, tgt.view(-1, 1)).squeeze(1),
                               rtol=0, atol=1e-14)
    reached = probs.argmax(1) == a.extras["false_classes"].reshape(-1)
    assert torch.equal(reached, a.extras["success"].reshape(-1))


# ----------------------------------------------------------------------------------------------- API
def test_tuple_inputs_equal_the_concatenated_input(two_input_model):
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(3, 5, generator=g, dtype=D), torch.rand(3, 3, generator=g, dtype=D)
    scale = torch.rand(3, generator=g, dtype=D) + 0.5
    joint = lambda z, s: two_input_model(z[:, :5], z[:, 5:], s)  # noqa: E731
    for cls, kwargs in ((MFABA, dict(step_size=0.3)), (AdversarialGradientIntegration, dict(epsilon=0.2))):
        e = cls(two_input_model).explain((a, b), additional_forward_args=scale, n_steps=8, **kwargs)
        ref = cls(joint).explain(torch.cat([a, b], 1), additional_forward_args=scale, n_steps=8, **kwargs)
        assert isinstance(e.attributions, tuple) and e.attributions[1].shape == (3, 3)
        torch.testing.assert_close(torch.cat(e.attributions, 1), ref.attributions, rtol=0, atol=1e-12)
        assert float(torch.cat(e.attributions, 1).abs().max()) > 0


def test_float32_dtype_and_functional_twins(mlp):
    model = mlp.float()
    x = _mlp_inputs().float()
    e = MFABA(model).explain(x)
    assert e.attributions.dtype == torch.float32 and e.extras["end_points"].dtype == torch.float32
    torch.testing.assert_close(pathattr.mfaba(model, x), e.attributions, rtol=0, atol=0)
    e = AdversarialGradientIntegration(model, integrator="idgi").explain(x, n_false_classes=2, generator=9)
    assert e.attributions.dtype == torch.float32
    twin = pathattr.agi(model, x, n_false_classes=2, generator=9, integrator="idgi")
    torch.testing.assert_close(twin, e.attributions, rtol=0, atol=0)
    attr, delta = MFABA(model).attribute(x, return_convergence_delta=True)
    assert attr.shape == x.shape and delta.shape == (5,)


def test_registry_and_exports():
    assert METHODS["agi"].cls is AdversarialGradientIntegration and METHODS["agi"].sequential
    assert METHODS["mfaba"].cls is MFABA and METHODS["mfaba"].sequential
    assert pathattr.AdversarialGradientIntegration is AdversarialGradientIntegration and pathattr.MFABA is MFABA
    assert AdversarialGradientIntegration.name == "agi" and MFABA.name == "mfaba"


def test_false_classes_come_from_the_generator_only(mlp):
    x = _mlp_inputs()
    state = torch.get_rng_state()
    run = lambda gen: AdversarialGradientIntegration(mlp).explain(x, n_false_classes=1, n_steps=3,  # noqa: E731
                                                                  generator=gen)
    a, b, c = run(1), run(torch.Generator().manual_seed(1)), run(2)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never touched
    assert torch.equal(a.extras["false_classes"], b.extras["false_classes"])
    torch.testing.assert_close(a.attributions, b.attributions, rtol=0, atol=0)
    assert not torch.equal(a.extras["false_classes"], c.extras["false_classes"])
    assert not bool((a.extras["false_classes"] == a.target[:, None]).any())


def test_model_state_unchanged(mlp):
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 3)).double().train()
    params = [p.detach().clone() for p in model.parameters()]
    hook = model[0].register_forward_hook(lambda *a: None)
    x = _mlp_inputs()
    e1 = MFABA(model).explain(x)
    e2 = MFABA(model).explain(x)
    torch.testing.assert_close(e1.attributions, e2.attributions, rtol=0, atol=0)  # eval mode: no dropout noise
    AdversarialGradientIntegration(model).explain(x, n_false_classes=2, n_steps=3)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert list(model[0]._forward_hooks) == [hook.id]

    class Failing(nn.Module):  # raises in the middle of a walk
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.calls = model, 0

        def forward(self, z):
            self.calls += 1
            if self.calls > 4:
                raise RuntimeError("boom")
            return self.inner(z)

    for cls in (AdversarialGradientIntegration, MFABA):
        failing = Failing().train()
        with pytest.raises(RuntimeError, match="boom"):
            cls(failing).explain(x)
        assert failing.calls == 5 and model.training and all(m.training for m in failing.modules())
        assert all(p.requires_grad and p.grad is None for p in model.parameters())
        assert list(model[0]._forward_hooks) == [hook.id]


@pytest.mark.parametrize(
    ("method", "kwargs", "argument"),
    [
        ("agi", dict(n_steps=0), "n_steps"),
        ("agi", dict(n_steps=2.5), "n_steps"),
        ("agi", dict(n_steps=True), "n_steps"),
        ("agi", dict(epsilon=-0.1), "epsilon"),
        ("agi", dict(epsilon=float("nan")), "epsilon"),
        ("agi", dict(n_false_classes=0), "n_false_classes"),
        ("agi", dict(n_false_classes=3), "n_false_classes"),  # only 2 classes besides the target
        ("agi", dict(false_classes=[0.5, 1.0]), "false_classes"),
        ("agi", dict(false_classes=[0, 3]), "false_classes"),
        ("agi", dict(false_classes=torch.zeros(2, 1, dtype=torch.long)), "false_classes"),  # B = 5
        ("agi", dict(bounds=(1.0, 0.0)), "bounds"),
        ("agi", dict(generator="seed"), "generator"),
        ("agi", dict(target=lambda out: out[:, 0]), "target"),
        ("mfaba", dict(mode="blunt"), "mode"),
        ("mfaba", dict(step_size=0.0), "step_size"),
        ("mfaba", dict(epsilon=0), "epsilon"),
        ("mfaba", dict(n_steps=-1), "n_steps"),
        ("mfaba", dict(bounds=(0.0,)), "bounds"),
        ("mfaba", dict(target=7), "target"),
    ],
)
def test_bad_arguments_name_the_argument(method, kwargs, argument, mlp):
    cls = AdversarialGradientIntegration if method == "agi" else MFABA
    with pytest.raises(InputValidationError) as err:
        cls(mlp).explain(_mlp_inputs(), **kwargs)
    assert err.value.argument == argument


def test_bad_models_and_integrators():
    x = _mlp_inputs()
    scalar = lambda z: z.sum(1)  # noqa: E731 - one output per example: no classes to attack
    for cls in (AdversarialGradientIntegration, MFABA):
        with pytest.raises(InputValidationError) as err:
            cls(scalar, model=()).explain(x)
        assert err.value.argument == "forward_func"
    with pytest.raises(InputValidationError) as err:
        AdversarialGradientIntegration(make_mlp(), integrator="idgi").explain(x, reference_compat=True)
    assert err.value.argument == "integrator"
    with pytest.raises(InputValidationError) as err:
        MFABA(make_mlp(), integrator="trapezoid")
    assert err.value.argument == "integrator"
