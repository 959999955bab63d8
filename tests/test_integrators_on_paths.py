"""IDGI and Left/Split IG on the Guided IG and Blur IG paths.

A recording integrator captures what each path hands to integrators (step, gradient, output, displacement per
row); the tests check that trace against the model and recompute IDGI and Split IG from it by their definitions.
"""

from __future__ import annotations

import pytest
import torch

from conftest import SmallCNN
from pathattr.integrators import (
    Accumulator,
    Evaluation,
    IDGIIntegrator,
    Integrator,
    PathInfo,
    RiemannIntegrator,
    SplitIntegrator,
)
from pathattr.methods.blur_ig import BlurIntegratedGradients
from pathattr.methods.guided_ig import GuidedIntegratedGradients
from pathattr.paths.blur import blur_rows


class _Recording(Accumulator):
    def __init__(self, info: PathInfo) -> None:
        self.riemann = RiemannIntegrator().accumulator(info)
        self.rows: list[Evaluation] = []
        self.extras = {"info": info, "rows": self.rows}

    def update(self, ev: Evaluation) -> None:
        self.rows.append(Evaluation(ev.path_index.clone(), ev.step_index.clone(),
                                    tuple(g.clone() for g in ev.gradients), ev.outputs.clone(),
                                    tuple(d.clone() for d in ev.displacements)))
        self.riemann.update(ev)

    def result(self):
        return self.riemann.result()


class Recorder(Integrator):
    """Riemann sums plus a full trace in ``extras["rows"]``."""

    name = "recorder"

    def accumulator(self, info: PathInfo) -> Accumulator:
        return _Recording(info)


def trace(rows: list[Evaluation], path: int):
    """Steps, gradients [T, *S], outputs [T], displacements [T, *S] of one path, in step order."""
    steps, grads, outs, disps = [], [], [], []
    for ev in rows:
        for i in (ev.path_index == path).nonzero().squeeze(1).tolist():
            steps.append(int(ev.step_index[i]))
            grads.append(ev.gradients[0][i])
            outs.append(ev.outputs[i])
            disps.append(ev.displacements[0][i])
    order = torch.tensor(steps).argsort()
    return (torch.tensor(steps)[order], torch.stack(grads)[order], torch.stack(outs)[order],
            torch.stack(disps)[order])


def idgi_by_definition(grads: torch.Tensor, outs: torch.Tensor) -> torch.Tensor:
    """Points ordered from the baseline end: sum_j g_j^2 / |g_j|^2 (f_{j+1} - f_j), last gradient unused."""
    attr = torch.zeros_like(grads[0])
    for j in range(len(outs) - 1):
        attr += grads[j] ** 2 / (grads[j] ** 2).sum() * (outs[j + 1] - outs[j])
    return attr


def f_at(model, x, target):
    with torch.no_grad():
        return model(x)[:, target]


@pytest.fixture
def model():
    torch.manual_seed(7)
    return SmallCNN().double().eval()


@pytest.fixture
def x(gen):
    return torch.rand(3, 2, 8, 8, dtype=torch.float64, generator=gen) * 2


GUIDED = dict(target=2, n_steps=25, fraction=0.25, max_dist=0.1)
BLUR = dict(target=2, max_sigma=6.0, n_steps=20, sqrt=True)


# ----------------------------------------------------------------------------------------------- traces
def test_guided_path_records_points_gradients_and_outputs(model, x):
    r = GuidedIntegratedGradients(model, integrator=Recorder()).explain(x, **GUIDED)
    plain = GuidedIntegratedGradients(model).attribute(x, **GUIDED)
    torch.testing.assert_close(r.attributions, plain, rtol=1e-12, atol=1e-16)  # same sum, other order
    m = GUIDED["n_steps"]
    for p in range(3):
        steps, grads, outs, disps = trace(r.extras["rows"], p)
        assert steps.tolist() == list(range(m + 1))  # m gradient steps, then the input end (output only)
        points = torch.cumsum(torch.cat([torch.zeros_like(disps[:1]), disps]), 0)[: m + 1]  # baseline = 0
        torch.testing.assert_close(points[m], x[p], rtol=0, atol=1e-12)  # the path ends at the input
        z = points[:m].clone().requires_grad_(True)
        out = model(z)[:, 2]
        (g,) = torch.autograd.grad(out.sum(), z)
        torch.testing.assert_close(grads[:m], g, rtol=1e-10, atol=1e-12)  # gradient at each step's start
        torch.testing.assert_close(outs[:m], out.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(outs[m], f_at(model, x[p : p + 1], 2)[0])
        assert bool((grads[m] == 0).all()) and bool((disps[m] == 0).all())


def test_blur_path_records_nodes_from_the_input_end(model, x):
    r = BlurIntegratedGradients(model, integrator=Recorder()).explain(x, internal_batch_size=7, **BLUR)
    info = r.extras["info"]
    assert info.direction == -1
    sigmas = [(i * 6.0 / 20) ** 0.5 for i in range(21)]
    for p in range(3):
        steps, grads, outs, disps = trace(r.extras["rows"], p)
        assert steps.tolist() == list(range(21))
        nodes = blur_rows(x[p].expand(21, -1, -1, -1), torch.tensor(sigmas, dtype=torch.float64))
        torch.testing.assert_close(outs, f_at(model, nodes, 2), rtol=1e-10, atol=1e-12)  # last: blurred end
        assert bool((grads[20] == 0).all())


# ----------------------------------------------------------------------------------------------- IDGI
def test_idgi_on_guided_path_matches_definition_and_is_complete(model, x):
    rec = GuidedIntegratedGradients(model, integrator=Recorder()).explain(x, **GUIDED)
    r = GuidedIntegratedGradients(model, integrator="idgi").explain(x, **GUIDED)
    for p in range(3):
        _, grads, outs, _ = trace(rec.extras["rows"], p)
        torch.testing.assert_close(r.attributions[p], idgi_by_definition(grads, outs), rtol=1e-12, atol=1e-14)
    f_x, f_b = f_at(model, x, 2), f_at(model, torch.zeros_like(x), 2)
    torch.testing.assert_close(r.attributions.flatten(1).sum(1), f_x - f_b, rtol=1e-12, atol=1e-12)
    assert float(r.convergence_delta.abs().max()) < 1e-12
    torch.testing.assert_close(r.baseline_outputs, f_b)


def test_idgi_on_blur_path_matches_definition_and_is_complete(model, x):
    rec = BlurIntegratedGradients(model, integrator=Recorder()).explain(x, **BLUR)
    results = [BlurIntegratedGradients(model, integrator=IDGIIntegrator()).explain(x, internal_batch_size=ibs,
                                                                                  **BLUR) for ibs in (None, 4, 21)]
    r = results[0]
    for other in results[1:]:  # chunks that cut paths and the closing rows
        torch.testing.assert_close(other.attributions, r.attributions, rtol=1e-12, atol=1e-14)
    for p in range(3):
        _, grads, outs, _ = trace(rec.extras["rows"], p)
        # listed from the input end: each segment uses the gradient of its input-side node (the Riemann sum's
        # points), with the output change oriented baseline -> input
        expected = torch.zeros_like(grads[0])
        for j in range(20):
            expected += grads[j] ** 2 / (grads[j] ** 2).sum() * (outs[j] - outs[j + 1])
        torch.testing.assert_close(r.attributions[p], expected, rtol=1e-12, atol=1e-14)
    blurred = blur_rows(x, torch.full((3,), 6.0**0.5, dtype=torch.float64))
    torch.testing.assert_close(r.baseline_outputs, f_at(model, blurred, 2), rtol=1e-12, atol=1e-12)
    assert float(r.convergence_delta.abs().max()) < 1e-12


def test_idgi_batching_invariance_on_both_paths(model, x):
    for cls, kw in ((GuidedIntegratedGradients, GUIDED), (BlurIntegratedGradients, BLUR)):
        batched = cls(model, integrator="idgi").attribute(x, **kw)
        single = torch.cat([cls(model, integrator="idgi").attribute(x[i : i + 1], **kw) for i in range(3)])
        torch.testing.assert_close(batched, single, rtol=1e-9, atol=1e-12)


def test_idgi_with_several_guided_baselines_averages_paths(model, x, gen):
    b = torch.rand(3, 2, 2, 8, 8, dtype=torch.float64, generator=gen) * 0.3
    r = GuidedIntegratedGradients(model, integrator="idgi").explain(x, baselines=b, **GUIDED)
    each = [GuidedIntegratedGradients(model, integrator="idgi").attribute(x, baselines=b[:, k], **GUIDED)
            for k in range(2)]
    torch.testing.assert_close(r.attributions, (each[0] + each[1]) / 2, rtol=1e-12, atol=1e-14)
    assert float(r.convergence_delta.abs().max()) < 1e-12


# ----------------------------------------------------------------------------------------------- Split IG
def _first_crossing_from_baseline(outs: torch.Tensor, f_base: float, f_input: float, ratio: float) -> int:
    progress = (outs - f_base) / (f_input - f_base)
    return int((progress > ratio).nonzero()[0])


@pytest.mark.parametrize("ratio", [0.3, 0.9])
def test_split_ig_on_guided_path(model, x, ratio):
    rec = GuidedIntegratedGradients(model, integrator=Recorder()).explain(x, **GUIDED)
    r = GuidedIntegratedGradients(model, integrator=SplitIntegrator(ratio, part="both")).explain(x, **GUIDED)
    torch.testing.assert_close(r.attributions, rec.attributions, rtol=1e-12, atol=1e-14)  # left + right = GIG
    left_integrator = "left_ig" if ratio == 0.9 else SplitIntegrator(ratio)
    left = GuidedIntegratedGradients(model, integrator=left_integrator).attribute(x, **GUIDED)
    torch.testing.assert_close(left, r.extras["left"][0].to(left.dtype))
    f_x, f_b = f_at(model, x, 2), f_at(model, torch.zeros_like(x), 2)
    for p in range(3):
        steps, grads, outs, disps = trace(rec.extras["rows"], p)
        t = _first_crossing_from_baseline(outs, float(f_b[p]), float(f_x[p]), ratio)
        assert int(r.extras["split_step"][p]) == t
        torch.testing.assert_close(left[p], (grads[:t] * disps[:t]).sum(0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("ratio", [0.3, 0.9])
def test_split_ig_on_blur_path(model, x, ratio):
    rec = BlurIntegratedGradients(model, integrator=Recorder()).explain(x, **BLUR)
    for ibs in (None, 6):
        r = BlurIntegratedGradients(model, integrator=SplitIntegrator(ratio, part="both")).explain(
            x, internal_batch_size=ibs, **BLUR)
        torch.testing.assert_close(r.attributions, rec.attributions, rtol=1e-12, atol=1e-14)
        f_x, f_b = r.outputs, r.baseline_outputs
        for p in range(3):
            steps, grads, outs, disps = trace(rec.extras["rows"], p)
            # t* is the first node from the *baseline* end whose output covered more than `ratio`
            from_baseline = outs.flip(0)
            t = _first_crossing_from_baseline(from_baseline, float(f_b[p]), float(f_x[p]), ratio)
            node = 20 - t  # the same node counted from the input end
            assert int(r.extras["split_step"][p]) == node
            left = (grads[node + 1 :] * disps[node + 1 :]).sum(0)  # nodes nearer the baseline than t*
            torch.testing.assert_close(r.extras["left"][0][p], left, rtol=1e-12, atol=1e-14)


def test_idgi_rejects_a_path_that_pauses_instead_of_mixing_paths():
    # sequential paths feed one update per step; a path that skips a step must not be paired with another
    # path's pending row (before the fix its stale slot pointed into the next chunk's pending rows)
    like = (torch.zeros(3, 2, dtype=torch.float64),)
    acc = IDGIIntegrator().accumulator(PathInfo(n_paths=3, output_index=torch.arange(3), n_outputs=3, like=like))

    def rows(paths, step):
        p = torch.tensor(paths)
        g = torch.arange(1.0, 1.0 + 2 * len(paths), dtype=torch.float64).view(-1, 2)
        return Evaluation(p, torch.full_like(p, step), (g,), p.double() + step)

    acc.update(rows([0, 1, 2], 0))
    acc.update(rows([0, 2], 1))  # path 1 pauses (path 2 takes its pending slot)
    with pytest.raises(ValueError, match="resumed"):
        acc.update(rows([0, 1, 2], 2))
    done = IDGIIntegrator().accumulator(PathInfo(n_paths=3, output_index=torch.arange(3), n_outputs=3, like=like))
    done.update(rows([0, 1, 2], 0))
    done.update(rows([0, 2], 1))  # path 1 ends early: fine
    done.update(rows([0, 2], 2))
    out = done.result()[0]
    torch.testing.assert_close(out.sum(1), torch.tensor([2.0, 0.0, 2.0], dtype=torch.float64))


def test_gradpath_records_steps_from_the_input_end_and_closes_at_gradcf(model, x):
    # IG2's GradPath on the sequential engine: rows arrive from the input end, the baseline-end output (f at
    # GradCF) is only known at the end, so Split IG's rows are replayed and every path gets an output-only close
    from pathattr.methods.ig2 import IG2

    refs = torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    kw = dict(target=2, n_steps=6, return_path=True, internal_batch_size=4, preset="reference")
    rec = IG2(model, model.head, integrator=Recorder()).explain(x, refs, **kw)
    plain = IG2(model, model.head).explain(x, refs, **kw)
    torch.testing.assert_close(rec.attributions, plain.attributions, rtol=1e-12, atol=1e-16)  # same sum
    info = rec.extras["info"]
    assert info.direction == -1 and info.scale == 0.5
    torch.testing.assert_close(info.start_outputs, rec.extras["gradcf_outputs"].flatten())  # f(GradCF), replayed
    path = rec.extras["path"].flatten(0, 1)  # [P, K + 1, *S]
    for p in range(6):
        steps, grads, outs, disps = trace(rec.extras["rows"], p)
        assert steps.tolist() == list(range(7))
        torch.testing.assert_close(disps[:6], path[p, :6] - path[p, 1:], rtol=0, atol=0)  # gamma_j - gamma_{j+1}
        torch.testing.assert_close(outs[:6], f_at(model, path[p, :6], 2), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(outs[6], f_at(model, path[p, 6:], 2)[0], rtol=1e-12, atol=1e-12)
        assert bool((grads[6] == 0).all()) and bool((disps[6] == 0).all())
    split = IG2(model, model.head, integrator=SplitIntegrator(0.5, part="both")).explain(x, refs, **kw)
    torch.testing.assert_close(split.attributions, plain.attributions, rtol=1e-12, atol=1e-14)
