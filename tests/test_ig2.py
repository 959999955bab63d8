"""IG2 / GradPath / GradCF: the spec's pinning tests (ig2.md section 10), two-pass parity, remedies, hygiene."""

from __future__ import annotations

import sys

import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIG
from torch import nn

import pathattr.methods.ig2  # noqa: F401  (the module, for the fixture)
from conftest import SmallCNN, make_mlp
from pathattr.errors import InputValidationError, NoGradientError, NonFiniteError
from pathattr.integrators import MAX_SUBSTEPS
from pathattr.methods.ig2 import IG2, GradCFIG, GradPathIG, gradcf_ig, ig2, segment_nodes
from pathattr.methods.integrated_gradients import IntegratedGradients
from pathattr.paths.gradpath import equivalent_step_size, gradpath, gradpath_step
from pathattr.testing.oracles import two_pass_ig2

D = torch.float64


@pytest.fixture(autouse=True)
def _reference_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module pins the authors' algorithm (spec tests): arguments not given take the ``"reference"`` preset's
    values. The library default (the well-posed IG2) is tested in ``test_ig2_wellposed.py``."""
    module = sys.modules["pathattr.methods.ig2"]
    monkeypatch.setattr(module, "DEFAULT_SETTINGS", module.REFERENCE_SETTINGS)


class Head(nn.Module):
    """tanh features -> linear head; ``features`` is the representation's module."""

    def __init__(self, d_in: int = 6, hidden: int = 5, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh())
        self.fc = nn.Linear(hidden, classes)
        self.double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class Linear(nn.Module):
    """f(z) = W z + b with a non-trivial representation tanh(A z) that does not feed the output."""

    def __init__(self, d: int = 5) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.out = nn.Linear(d, 3)
        self.rep = nn.Sequential(nn.Linear(d, 4), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep(x)
        return self.out(x)


def data(b=2, r=3, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, d, generator=g, dtype=D), torch.rand(r, d, generator=g, dtype=D)


# ----------------------------------------------------------------------------------------------- spec tests
def test_identity_representation_is_captum_riemann_right_ig():  # spec test 2
    model = make_mlp()
    x, refs = data()
    for r in range(refs.shape[0]):
        e = IG2(model, lambda z: z).explain(x, refs[r : r + 1], n_steps=20)
        expected = CaptumIG(model).attribute(x, refs[r : r + 1].expand_as(x), target=e.target, n_steps=20,
                                             method="riemann_right")
        torch.testing.assert_close(e.attributions, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(e.extras["gradcf"][:, 0], refs[r].expand_as(x), rtol=0, atol=1e-12)


def test_path_starts_at_x_and_unclipped_steps_have_length_eta():  # spec test 1
    model = Head()
    x, refs = data(r=4)
    for step in (None, 0.05):
        res = gradpath(model, x, refs, model.fc, n_steps=30, step_size=step, return_path=True)
        assert res.path.shape == (2, 4, 31, 6)
        torch.testing.assert_close(res.path[:, :, 0], x.unsqueeze(1).expand(2, 4, 6), rtol=0, atol=0)
        lengths = (res.path[:, :, 1:] - res.path[:, :, :-1]).norm(dim=-1)
        eta = res.step_size.unsqueeze(-1).expand_as(lengths)
        torch.testing.assert_close(lengths, eta, rtol=0, atol=1e-12)
        if step is not None:
            assert torch.all(res.step_size == step)
        torch.testing.assert_close(res.gradcf, res.path[:, :, -1], rtol=0, atol=0)
        assert bool((res.distance[..., -1] < res.distance[..., 0]).all())


@pytest.mark.parametrize("bounds", [None, (0.2, 0.8)])
def test_linear_model_is_exactly_complete(bounds):  # spec test 3 and 5
    model = Linear().double()
    x, refs = data(d=5)
    for rep in (model.rep, model.rep[0], lambda z: z ** 2):
        e = IG2(model, rep).explain(x, refs, n_steps=25, step_size=0.07, bounds=bounds)
        w = model.out.weight[e.target]
        expected = w * (x - e.extras["gradcf"].mean(1))
        torch.testing.assert_close(e.attributions, expected, rtol=0, atol=1e-12)
        assert float(e.convergence_delta.abs().max()) < 1e-12
        torch.testing.assert_close(e.convergence_delta, e.extras["completeness_gap"], rtol=0, atol=0)


def test_bounds_respected_and_clipping_used_in_completeness():
    model = Head()
    x, refs = data(r=4)
    x = 0.1 + 0.8 * x  # inside the box: every clipped step is shorter than eta
    e = IG2(model, model.fc).explain(x, refs, n_steps=40, step_size=0.2, bounds=(0.1, 0.9), return_path=True)
    path = e.extras["path"]
    assert float(path[:, :, 1:].min()) >= 0.1 and float(path[:, :, 1:].max()) <= 0.9
    lengths = (path[:, :, 1:] - path[:, :, :-1]).norm(dim=-1)
    assert float(lengths.max()) <= 0.2 + 1e-12 and float(lengths.min()) < 0.2 - 1e-3  # some steps clipped
    # sign (spec test 9): the attributions explain f(x) - f(GradCF), not its negative
    total = e.attributions.sum(1)
    diff = e.outputs - e.baseline_outputs
    assert torch.all(torch.sign(total) == torch.sign(diff))
    torch.testing.assert_close(total - diff, e.convergence_delta, rtol=0, atol=1e-12)


def test_gap_shrinks_linearly_with_step_at_fixed_length():  # spec test 4
    model = Head(seed=3)
    x, refs = data(b=1, r=2)
    gaps = []
    for k in (50, 200, 800):
        e = IG2(model, model.fc).explain(x, refs, n_steps=k, step_size=2.0 / k)
        gaps.append(float(e.convergence_delta.abs()))
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert 2.5 < gaps[0] / gaps[1] < 6 and 2.5 < gaps[1] / gaps[2] < 6


def test_multi_reference_mean_and_chunk_invariance():  # spec test 7
    model = Head()
    x, refs = data(b=3, r=4)
    kw = dict(n_steps=15, step_size=0.03, bounds=(0.0, 1.0))
    full = IG2(model, model.fc).explain(x, refs, internal_batch_size=None, **kw)
    singles = torch.stack([IG2(model, model.fc).attribute(x, refs[r : r + 1], **kw) for r in range(4)]).mean(0)
    torch.testing.assert_close(full.attributions, singles, rtol=0, atol=1e-13)
    for ibs in (1, 3, 7):
        other = IG2(model, model.fc).explain(x, refs, internal_batch_size=ibs, **kw)
        torch.testing.assert_close(other.attributions, full.attributions, rtol=0, atol=1e-14)
        torch.testing.assert_close(other.extras["gradcf"], full.extras["gradcf"], rtol=0, atol=1e-14)
    # per-example references [B, R, *S] equal shared ones when identical
    per = IG2(model, model.fc).explain(x, refs.unsqueeze(0).expand(3, 4, 6).clone(), **kw)
    torch.testing.assert_close(per.attributions, full.attributions, rtol=0, atol=1e-14)


@pytest.mark.parametrize("step_rule", ["fixed", "damped_newton"])
def test_zero_gradient_gives_finite_result_and_path_stays(step_rule):  # spec test 8, issue 14 item 3
    # the representations of x and of the equal reference come from differently shaped matrix products: they may
    # differ by ~1e-17 (machine- and MKL_CBWR-dependent); that noise must not become a step of length eta
    model = Head()
    x, refs = data(b=2, r=2)
    refs = torch.cat([x[:1], refs])  # reference 0 equals explicand 0
    kw = dict(n_steps=10, step_size=0.05, step_rule=step_rule, segment_rule="left", adaptive=None)
    for ibs in (None, 1, 5):
        e = IG2(model, model.fc).explain(x, refs, internal_batch_size=ibs, **kw)
        assert bool(torch.isfinite(e.attributions).all())
        torch.testing.assert_close(e.extras["gradcf"][0, 0], x[0], rtol=0, atol=0)  # stays at x exactly
        assert bool(e.extras["stopped"][0, 0]) and not bool(e.extras["stopped"][0, 1:].any())
        assert float(e.extras["distance_end"][0, 0]) < 1e-28  # float noise of |phi|^2 ~ 1, not a moved path
        assert bool((e.extras["distance_end"][:, 1:] > 1e-6).all())
    single = IG2(model, model.fc).explain(x[:1], refs[:1], **kw)
    assert float(single.attributions.abs().max()) == 0.0
    torch.testing.assert_close(single.extras["gradcf"][0, 0], x[0], rtol=0, atol=0)
    # the same in float32 (noise ~1e-8 relative)
    m32 = Head().float()
    e32 = IG2(m32, m32.fc).explain(x.float()[:1], refs.float()[:1], **kw)
    assert float(e32.attributions.abs().max()) == 0.0 and bool(e32.extras["stopped"].all())
    # a constant representation: no path moves, zero attributions, no NaN
    const = IG2(model, lambda z: torch.ones(z.shape[0], 3, dtype=z.dtype)).explain(x, refs, n_steps=5)
    assert float(const.attributions.abs().max()) == 0.0 and bool(torch.isfinite(const.convergence_delta).all())


def test_fused_matches_two_pass_reference():  # spec test 6
    torch.manual_seed(1)
    model = SmallCNN().double().eval()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 2, 8, 8, generator=g, dtype=D)
    refs = torch.rand(2, 3, 2, 8, 8, generator=g, dtype=D)
    for step, bounds in ((None, None), (0.4, (0.0, 1.0))):
        attr, gradcf, path = two_pass_ig2(model, model.head, x, refs, n_steps=12, step_size=step, bounds=bounds)
        e = IG2(model, model.head).explain(x, refs, n_steps=12, step_size=step, bounds=bounds, return_path=True,
                                           internal_batch_size=4)
        torch.testing.assert_close(e.extras["path"], path, rtol=1e-5, atol=1e-12)
        torch.testing.assert_close(e.extras["gradcf"], gradcf, rtol=1e-5, atol=1e-12)
        torch.testing.assert_close(e.attributions, attr, rtol=1e-5, atol=1e-10)
    # cost: K forwards and 2K backwards of B*R rows, plus the references and GradCF
    assert e.cost.forward_rows == 12 * 6 + 6 + 6 + 2
    assert e.cost.backward_rows == 2 * 12 * 6


def test_input_shapes_image_tabular_text():
    torch.manual_seed(0)
    cnn = SmallCNN().double().eval()
    x = torch.rand(2, 2, 8, 8, dtype=D)
    e = IG2(cnn, cnn.head).explain(x, torch.rand(2, 2, 8, 8, dtype=D), n_steps=8, bounds=(0.0, 1.0))
    assert e.attributions.shape == x.shape and bool(torch.isfinite(e.attributions).all())

    class Text(nn.Module):  # embeddings [B, L, E] -> mean-pooled conv features -> fc
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(4, 6, 3, padding=1)
            self.fc = nn.Linear(6, 2)

        def forward(self, emb):
            return self.fc(torch.tanh(self.conv(emb.transpose(1, 2))).mean(2))

    text = Text().double().eval()
    emb = torch.randn(3, 7, 4, dtype=D)
    e = IG2(text, text.fc).explain(emb, torch.randn(5, 7, 4, dtype=D), n_steps=30)
    tokens = e.attributions.sum(-1)  # per-token scores
    assert tokens.shape == (3, 7)
    torch.testing.assert_close(tokens.sum(1), e.outputs - e.baseline_outputs + e.convergence_delta, rtol=0,
                               atol=1e-12)


def test_integrators_on_gradpath():
    model = Head()
    x, refs = data(b=2, r=3)
    kw = dict(n_steps=30, step_size=0.03)
    base = IG2(model, model.fc).explain(x, refs, **kw)
    idgi = IG2(model, model.fc, integrator="idgi").explain(x, refs, **kw)
    assert float(idgi.convergence_delta.abs().max()) < 1e-12  # IDGI is complete by construction
    torch.testing.assert_close(idgi.extras["gradcf"], base.extras["gradcf"], rtol=0, atol=0)
    split = IG2(model, model.fc, integrator="split_ig").explain(x, refs, **kw)
    torch.testing.assert_close(split.attributions, base.attributions, rtol=0, atol=1e-12)  # left + right = IG2
    left = IG2(model, model.fc, integrator="left_ig").explain(x, refs, **kw)
    torch.testing.assert_close(left.attributions, split.extras["left"][0].to(left.attributions.dtype), rtol=0,
                               atol=1e-12)
    assert (split.extras["split_step"] >= -1).all()
    with pytest.raises(InputValidationError) as err:
        IG2(model, model.fc, integrator="idgi").explain(x, refs, substeps=2, **kw)
    assert err.value.argument == "substeps"


def test_substeps_remedy_keeps_the_path_and_shrinks_the_gap():
    torch.manual_seed(2)
    model = SmallCNN().double().eval()
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 2, 8, 8, generator=g, dtype=D)
    refs = torch.rand(3, 2, 8, 8, generator=g, dtype=D)
    kw = dict(n_steps=6, step_size=1.0, bounds=(0.0, 1.0))
    ref = IG2(model, model.head).explain(x, refs, **kw)
    gaps = {}
    for m, rule in ((4, "left"), (1, "trapezoid"), (4, "trapezoid"), (3, "gausslegendre")):
        e = IG2(model, model.head).explain(x, refs, substeps=m, segment_rule=rule, **kw)
        torch.testing.assert_close(e.extras["gradcf"], ref.extras["gradcf"], rtol=0, atol=0)  # same path
        gaps[(m, rule)] = float(e.relative_delta.max())
    assert gaps[(4, "trapezoid")] < gaps[(1, "trapezoid")] and gaps[(4, "trapezoid")] < float(ref.relative_delta.max())
    assert gaps[(4, "left")] < float(ref.relative_delta.max())
    assert gaps[(3, "gausslegendre")] < 0.1 * float(ref.relative_delta.max())
    # substeps=1 with the left rule is exactly the reference rule
    same = IG2(model, model.head).explain(x, refs, substeps=1, segment_rule="left", **kw)
    torch.testing.assert_close(same.attributions, ref.attributions, rtol=0, atol=0)
    # adaptive bisection: without refinement it is the trapezoid rule; with a tight tolerance the gap obeys the
    # bound sum of tolerances (the error of an accepted piece is exactly its share of the gap)
    trap = IG2(model, model.head).explain(x, refs, substeps=1, segment_rule="trapezoid", **kw)
    loose = IG2(model, model.head).explain(x, refs, adaptive=10.0, **kw)
    torch.testing.assert_close(loose.attributions, trap.attributions, rtol=0, atol=1e-14)
    assert int(loose.extras["refined_pieces"].sum()) == 0
    tight = IG2(model, model.head).explain(x, refs, adaptive=1e-7, adaptive_depth=8, **kw)
    torch.testing.assert_close(tight.extras["gradcf"], ref.extras["gradcf"], rtol=0, atol=0)
    pieces = tight.extras["refined_pieces"]
    assert int(pieces.sum()) > 0
    assert tight.cost.backward_rows == trap.cost.backward_rows + int(pieces.sum())
    bound = 1e-7 * tight.outputs.abs()  # n_steps segments x (1e-7 |f(x)| / n_steps), averaged over references
    assert bool((tight.convergence_delta.abs() <= bound * (1 + 1e-6)).all())
    assert float(tight.convergence_delta.abs().max()) < float(trap.convergence_delta.abs().max())
    t, w = segment_nodes("trapezoid", 2)
    assert t == [0.0, 0.5, 1.0] and w == [0.25, 0.5, 0.25]


def test_adaptive_tolerance_below_rounding_does_not_refine_to_full_depth():
    # regression: in float32 a tolerance below what the dtype resolves bisected every piece to `adaptive_depth`
    # (2^depth rows per segment; depth 12 ran for minutes) without improving the gap
    model = Head().float()
    x, refs = (t.float() for t in data(b=2, r=3))
    kw = dict(n_steps=8, adaptive=1e-9)
    shallow = IG2(model, model.fc).explain(x, refs, adaptive_depth=4, **kw)
    deep = IG2(model, model.fc).explain(x, refs, adaptive_depth=12, **kw)
    worst = 8 * (2**12 - 1) * 6  # every piece of every segment of the 6 paths bisected to depth 12
    assert int(deep.extras["refined_pieces"].sum()) < worst / 50
    assert int(deep.extras["stalled_pieces"].sum()) > 0  # accepted because cutting them no longer helped
    assert deep.cost.backward_rows < 3 * shallow.cost.backward_rows
    plain = IG2(model, model.fc).explain(x, refs, n_steps=8)
    assert float(deep.relative_delta.abs().max()) < 0.01 * float(plain.relative_delta.abs().max())
    assert float(deep.relative_delta.abs().max()) < 1e-4


def test_huge_substeps_is_rejected_before_any_work():
    model = Head()
    x, refs = data()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(InputValidationError, match="substeps") as err:
        IG2(model, model.fc).explain(x, refs, substeps=100_000, segment_rule="trapezoid")
    assert err.value.argument == "substeps" and not calls
    e = IG2(model, model.fc).explain(x, refs, n_steps=3, substeps=MAX_SUBSTEPS, segment_rule="left")
    assert e.cost.backward_rows == 3 * 6 * 2 + 3 * 6 * (MAX_SUBSTEPS - 1)  # 2 per step + the inner nodes


def test_model_without_gradients_raises_instead_of_standing_still():
    # regression: a forward run under no_grad / inference_mode reported GradCF = x ("no movement")
    model = Head()
    x, refs = data()

    def frozen(v):
        with torch.no_grad():
            return model(v)

    def inference(v):
        with torch.inference_mode():
            return model(v)

    for f in (frozen, inference):
        with pytest.raises(NoGradientError):
            gradpath(f, x, refs, model.fc, n_steps=3)
        with pytest.raises(NoGradientError):
            IG2(f, model.fc).explain(x, refs, n_steps=3)
    # the caller's own no_grad / inference_mode does not matter: the library enables gradients inside
    free = gradpath(model, x, refs, model.fc, n_steps=3)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            torch.testing.assert_close(gradpath(model, x, refs, model.fc, n_steps=3).gradcf, free.gradcf)
    assert float((free.gradcf - x[:, None]).abs().max()) > 0.1


def test_diagnostics_and_counterfactual_validity():
    model = Head(classes=3, seed=1)
    x, refs = data(b=2, r=3)
    e = IG2(model, model.fc).explain(x, refs, n_steps=40, step_size=0.05)
    ex = e.extras
    assert ex["gradcf"].shape == (2, 3, 6) and ex["distance_start"].shape == (2, 3)
    assert ex["step_outputs"].shape == (2, 3, 40) and ex["cf_gradient_norms"].shape == (2, 3, 40)
    with torch.no_grad():
        out = model(ex["gradcf"].reshape(6, 6))
        torch.testing.assert_close(ex["gradcf_outputs"], out.gather(1, e.target.repeat_interleave(3)[:, None])
                                   .view(2, 3), rtol=0, atol=1e-12)
        assert torch.equal(ex["counterfactual_valid"], out.argmax(1).view(2, 3) != e.target.view(2, 1))
        torch.testing.assert_close(ex["step_outputs"][:, :, 0], e.outputs[:, None].expand(2, 3), rtol=0, atol=1e-12)
    torch.testing.assert_close(e.baseline_outputs, ex["gradcf_outputs"].mean(1), rtol=0, atol=1e-14)
    rel = e.convergence_delta.abs() / (e.outputs - e.baseline_outputs).abs()
    torch.testing.assert_close(e.relative_delta, rel, rtol=1e-12, atol=0)
    assert e.hyperparameters["n_steps"] == 40 and e.hyperparameters["representation"] == "Linear.input"


def test_ablation_variants():
    model = Head()
    x, refs = data(b=2, r=3)
    kw = dict(n_steps=20, step_size=0.04)
    e2 = IG2(model, model.fc).explain(x, refs, **kw)
    cf = GradCFIG(model, model.fc).explain(x, refs, ig_steps=32, **kw)
    torch.testing.assert_close(cf.extras["gradcf"], e2.extras["gradcf"], rtol=0, atol=0)
    expected = IntegratedGradients(model).attribute(x, baselines=e2.extras["gradcf"], target=e2.target, n_steps=32)
    torch.testing.assert_close(cf.attributions, expected, rtol=0, atol=1e-12)
    assert cf.cost.backward_rows == 20 * 6 + 32 * 6  # path search needs only the counterfactual gradient
    gp = GradPathIG(model, model.fc).explain(x, refs, closing_steps=400, **kw)
    with torch.no_grad():
        ref_out = model(refs)[:, e2.target].T.mean(1)
    torch.testing.assert_close(gp.baseline_outputs, ref_out, rtol=0, atol=1e-12)
    assert float(gp.relative_delta.max()) < 0.05  # complete w.r.t. the reference baseline
    torch.testing.assert_close(gradcf_ig(model, x, refs, representation=model.fc, ig_steps=32, **kw),
                               cf.attributions, rtol=0, atol=0)
    a, delta = ig2(model, x, refs, representation=model.fc, return_convergence_delta=True, **kw)
    torch.testing.assert_close(a, e2.attributions, rtol=0, atol=0)
    torch.testing.assert_close(delta, e2.convergence_delta, rtol=0, atol=0)


def test_equivalent_step_size():
    assert abs(equivalent_step_size(224 * 224 * 3) - 512 / 255 * (224 / 299)) < 1e-12
    out, norm = gradpath_step(torch.zeros(2, 3, dtype=D), torch.tensor([[3.0, 4.0, 0.0], [0, 0, 0]], dtype=D), 0.5,
                              None, 1e-12)
    torch.testing.assert_close(out, torch.tensor([[-0.3, -0.4, 0.0], [0, 0, 0]], dtype=D))
    torch.testing.assert_close(norm, torch.tensor([5.0, 0.0], dtype=D))


# ----------------------------------------------------------------------------------------------- hygiene
class Flaky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 5)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(5, 3)
        self.fail_after: int | None = None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("boom inside forward")
        return self.fc(self.drop(torch.tanh(self.lin(x))))


def _state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()])


@pytest.mark.parametrize("fail_after", [None, 1, 4])
def test_model_state_restored(fail_after):
    torch.manual_seed(0)
    model = Flaky().double().train()
    model.lin.bias.requires_grad_(False)
    model.fc.register_forward_pre_hook(lambda m, a: None)
    before = _state(model)
    model.fail_after = fail_after
    x = torch.randn(3, 4, dtype=D)
    refs = torch.randn(2, 4, dtype=D)
    if fail_after is None:
        a = IG2(model, model.fc).attribute(x, refs, n_steps=5, internal_batch_size=2)
        b = IG2(model, model.fc).attribute(x, refs, n_steps=5)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)  # eval mode: dropout off
    else:
        with pytest.raises(RuntimeError, match="boom"):
            IG2(model, model.fc).attribute(x, refs, n_steps=5)
    assert _state(model) == before


def test_bad_inputs_name_the_argument():
    model = Head()
    x, refs = data()
    ig = IG2(model, model.fc)
    cases = [
        (dict(references=refs[:, :4]), "references"),
        (dict(references=refs[:0]), "references"),
        (dict(references=torch.rand(3, 2, 6, dtype=D)), "references"),
        (dict(references=refs, step_size=0.0), "step_size"),
        (dict(references=refs, step_size=-1.0), "step_size"),
        (dict(references=refs, bounds=(1.0, 0.0)), "bounds"),
        (dict(references=refs, bounds=(0.5, 0.5)), "bounds"),
        (dict(references=refs, n_steps=0), "n_steps"),
        (dict(references=refs, substeps=0), "substeps"),
        (dict(references=refs, segment_rule="simpson"), "segment_rule"),
        (dict(references=refs, eps=0.0), "eps"),
        (dict(references=refs, adaptive=-1.0), "adaptive"),
        (dict(references=refs, adaptive=0.1, adaptive_depth=-1), "adaptive_depth"),
    ]
    for kw, arg in cases:
        with pytest.raises(InputValidationError) as err:
            ig.explain(x, **kw)
        assert err.value.argument == arg, (kw, err.value)
    with pytest.raises(InputValidationError) as err:
        IG2(model, nn.Linear(5, 3))
    assert err.value.argument == "representation"
    with pytest.raises(InputValidationError) as err:
        IG2(model, "nonexistent")
    assert err.value.argument == "representation"

    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(6, 3)
            self.unused = nn.Linear(6, 3)

        def forward(self, v):
            return self.used(v)

    unused = Unused().double()
    with pytest.raises(InputValidationError) as err:
        IG2(unused, unused.unused).explain(x, refs, n_steps=3)
    assert err.value.argument == "representation"
    with pytest.raises(InputValidationError) as err:
        ig.explain((x, x), refs)
    assert err.value.argument == "inputs"
    with pytest.raises(InputValidationError) as err:
        IG2(model, model.fc, representation_side="middle")
    assert err.value.argument == "representation_side"
    with pytest.raises(InputValidationError) as err:
        ig2(model, x, refs)
    assert err.value.argument == "representation"


def test_nonfinite_gradient_raises():
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 2)

        def forward(self, v):
            return self.fc(torch.sqrt(v))  # infinite gradient at 0

    bad = Bad().double()
    x = torch.zeros(1, 6, dtype=D)
    with pytest.raises(NonFiniteError, match="step 0: the gradient of the representation distance"):
        IG2(bad, bad.fc).explain(x, torch.ones(2, 6, dtype=D), n_steps=3)


def test_nan_output_on_the_path_names_the_outputs_and_the_hook_is_gone():
    """Outputs, distance gradient and target gradient share one finiteness test per step; a NaN output alone (finite
    gradients: the NaN branch of ``where`` passes no gradient) must still be named, and the representation hook,
    attached for the whole walk, must be removed after the error."""

    class NanAway(Head):
        hooks_seen: list[int] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.hooks_seen.append(len(self.fc._forward_pre_hooks))
            out = self.fc(self.body(x))
            return torch.where(x.sum(1, keepdim=True) < 2.5, torch.full_like(out, float("nan")), out)

    model = NanAway()
    x = torch.full((1, 6), 0.5, dtype=D)  # sum 3: finite at x; the path towards zeros crosses sum 2.5 in step 1
    with pytest.raises(NonFiniteError, match="outputs") as err:
        IG2(model, model.fc).explain(x, torch.zeros(1, 6, dtype=D), n_steps=8)
    assert err.value.argument == "forward_func"
    assert max(model.hooks_seen) == 1 and len(model.fc._forward_pre_hooks) == 0
    model.hooks_seen.clear()
    e = IG2(model, model.fc).explain(torch.full((2, 6), 0.9, dtype=D), torch.full((2, 6), 0.6, dtype=D), n_steps=4)
    assert bool(torch.isfinite(e.attributions).all()) and len(model.fc._forward_pre_hooks) == 0
    # at most one hook during any call (target and reference rows are evaluated without it), one in every step
    assert set(model.hooks_seen) <= {0, 1} and model.hooks_seen.count(1) >= 4


def test_string_representation_and_output_side():
    model = Head()
    x, refs = data()
    a = IG2(model, "fc").attribute(x, refs, n_steps=6)
    b = IG2(model, model.fc).attribute(x, refs, n_steps=6)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = IG2(model, model.body, representation_side="output").attribute(x, refs, n_steps=6)
    torch.testing.assert_close(c, b, rtol=0, atol=1e-14)  # body's output is fc's input


def test_half_precision_paths_move_and_track_float64():
    """The float-noise stop is capped for half precision: 256 eps would be 0.25 (float16) or 2.0 (bfloat16)
    relative, which stopped every half-precision path at x (attributions ~0, relative error 1)."""
    from pathattr.paths.gradpath import noise_floor_tolerance

    assert noise_floor_tolerance(torch.float64) == 256 * torch.finfo(torch.float64).eps
    assert noise_floor_tolerance(torch.float16) < 0.01 and noise_floor_tolerance(torch.bfloat16) < 0.05
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).eval()
    x, refs = torch.randn(3, 6), torch.randn(2, 6)

    def run(dtype: torch.dtype) -> torch.Tensor:
        m = model.to(dtype)
        return IG2(m, m[2]).explain(x.to(dtype), refs.to(dtype), n_steps=20).attributions.double()

    exact = run(torch.float64)
    for dtype, tol in ((torch.float16, 0.01), (torch.bfloat16, 0.05)):
        assert float((run(dtype) - exact).norm() / exact.norm()) < tol, dtype
