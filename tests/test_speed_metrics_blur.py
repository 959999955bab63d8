"""Issue 16 speed work on the metrics and Blur IG: the faster code gives the numbers of the plain reference
computations (up to float round-off of the model), whatever the chunking.

* deletion / insertion: the target is fixed from the unperturbed rows of the curve (no separate forward of the
  inputs), rows are built by bit selection instead of ``torch.where``, and the automatic planner chooses the chunks;
  compared with a direct per-row reference (``torch.where`` masks, target from a separate forward).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pathattr.metrics as pm
from conftest import SmallCNN


# ----------------------------------------------------------------------------------------------- metrics
def reference_curve(model, x, saliency_units, expand, counts, start, finish, target, output):
    """The RISE curve row by row: ``torch.where(mask, finish, start)`` for every point, target from ``f(x)``."""
    with torch.no_grad():
        fx = model(x)
        index = fx.argmax(1) if target is None else torch.full((x.shape[0],), target, dtype=torch.long)
        order = torch.sort(saliency_units, dim=1, descending=True, stable=True).indices
        curve = torch.empty(x.shape[0], counts.numel(), dtype=torch.float64)
        for e in range(x.shape[0]):
            for s, c in enumerate(counts.tolist()):
                changed = torch.zeros(saliency_units.shape[1], dtype=torch.bool)
                changed[order[e, :c]] = True
                row = torch.where(expand(changed[None]), finish[e : e + 1], start[e : e + 1])
                out = model(row)[0]
                if output == "logit":
                    curve[e, s] = out[index[e]].double()
                else:
                    curve[e, s] = torch.softmax(out.double(), 0)[index[e]]
    return curve, index


class RowRecorder(nn.Module):
    """Wraps a model and keeps every forward call's rows."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.detach().clone())
        return self.model(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("target", [None, 2])
@pytest.mark.parametrize("ibs", [None, 1, 5, 1000])
def test_curves_equal_the_per_row_reference(dtype, mode, target, ibs):
    torch.manual_seed(0)
    model = SmallCNN().to(dtype).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 8, 8, generator=g, dtype=dtype)
    attr = torch.randn(3, 2, 8, 8, generator=g, dtype=dtype)
    sub = torch.rand(3, 2, 8, 8, generator=g, dtype=dtype)
    n = 7
    for output in ("probability", "logit"):
        res = getattr(pm, mode)(model, x, attr, target=target, n_steps=n, substrate=sub, internal_batch_size=ibs,
                                output=output)
        counts = torch.div(torch.arange(n + 1) * 64, n, rounding_mode="floor")
        start, finish = (x, sub) if mode == "deletion" else (sub, x)
        ref, index = reference_curve(model, x, attr.sum(1).reshape(3, -1), lambda m: m.view(m.shape[0], 1, 8, 8),
                                     counts, start, finish, target, output)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(res.curve, ref, rtol=tol, atol=tol * float(ref.abs().max()))
        assert torch.equal(res.target, index)
        auc = (ref.sum(1) - ref[:, 0] / 2 - ref[:, -1] / 2) / n
        torch.testing.assert_close(res.scores, auc, rtol=tol, atol=tol * float(auc.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("granularity", ["pixel", "feature", "patch"])
def test_rows_are_the_exact_where_rows_and_each_point_is_evaluated_once(dtype, granularity):
    """The model sees every curve point exactly once (the unperturbed inputs first), bit-equal to
    ``torch.where(mask, finish, start)``; the same holds with the default (automatic) chunks."""
    torch.manual_seed(0)
    inner = SmallCNN().to(dtype).eval()
    g = torch.Generator().manual_seed(2)
    b, n = 3, 5
    x = torch.randn(b, 2, 8, 8, generator=g).to(dtype)
    x[0, 0, 0, 0] = -0.0  # signed zeros and the substrate's own values are kept bit for bit
    attr = torch.randn(b, 2, 8, 8, generator=g).to(dtype)
    sub = torch.randn(b, 2, 8, 8, generator=g).to(dtype)
    kw = {"patch_size": 3} if granularity == "patch" else {}
    for ibs in (None, 4):
        model = RowRecorder(inner)
        res = pm.deletion(model, x, attr, target=1, n_steps=n, substrate=sub, granularity=granularity,
                          internal_batch_size=ibs, **kw)
        rows = torch.cat(model.calls)
        assert rows.shape[0] == b * (n + 1)
        if ibs is not None:
            assert max(c.shape[0] for c in model.calls) <= ibs
        assert torch.equal(rows[:b], x)
        n_units = res.n_units
        if granularity == "feature":
            sal, expand = attr.reshape(b, -1), (lambda m: m.view(m.shape[0], 2, 8, 8))
        elif granularity == "pixel":
            sal, expand = attr.sum(1).reshape(b, -1), (lambda m: m.view(m.shape[0], 1, 8, 8))
        else:
            padded = torch.nn.functional.pad(attr.sum(1), (0, 1, 0, 1))
            sal = padded.reshape(b, 3, 3, 3, 3).sum(dim=(2, 4)).reshape(b, -1)

            def expand(m):
                grid = m.view(m.shape[0], 3, 1, 3, 1).expand(m.shape[0], 3, 3, 3, 3).reshape(m.shape[0], 9, 9)
                return grid[:, :8, :8].unsqueeze(1)

        order = torch.sort(sal, dim=1, descending=True, stable=True).indices
        counts = torch.div(torch.arange(n + 1) * n_units, n, rounding_mode="floor")
        k = b
        for e in range(b):
            for c in counts[1:].tolist():
                changed = torch.zeros(1, n_units, dtype=torch.bool)
                changed[0, order[e, :c]] = True
                expected = torch.where(expand(changed), sub[e : e + 1], x[e : e + 1])
                assert torch.equal(rows[k].view(torch.int16 if dtype == torch.float16 else rows.dtype),
                                   expected[0].view(torch.int16 if dtype == torch.float16 else rows.dtype))
                k += 1


def test_default_chunks_match_fixed_chunks_and_record_rows_per_forward(cnn):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 8, 8, generator=g, dtype=torch.float64)
    attr = torch.randn(6, 2, 8, 8, generator=g, dtype=torch.float64)
    fixed = pm.insertion(cnn, x, attr, n_steps=20, internal_batch_size=7)
    for _ in range(4):  # the automatic plan explores chunk sizes over the first calls of the process
        auto = pm.insertion(cnn, x, attr, n_steps=20)
        torch.testing.assert_close(auto.curve, fixed.curve, rtol=0, atol=1e-12)
        assert torch.equal(auto.target, fixed.target)
        assert 1 <= auto.hyperparameters["rows_per_forward"] <= 6 * 21
    assert fixed.hyperparameters["rows_per_forward"] == 7


def test_targets_given_every_way_agree_with_the_predicted_class(cnn):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 2, 8, 8, generator=g, dtype=torch.float64)
    attr = torch.randn(4, 2, 8, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        predicted = cnn(x).argmax(1)
    base = pm.deletion(cnn, x, attr, n_steps=6, internal_batch_size=3)
    assert torch.equal(base.target, predicted)
    for target in (predicted.tolist(), predicted, predicted.numpy()):
        other = pm.deletion(cnn, x, attr, target=target, n_steps=6, internal_batch_size=2)
        torch.testing.assert_close(other.curve, base.curve, rtol=0, atol=1e-12)
    logits = pm.deletion(cnn, x, attr, target=lambda out: out[:, 1], n_steps=6, output="logit")
    index1 = pm.deletion(cnn, x, attr, target=1, n_steps=6, output="logit")
    torch.testing.assert_close(logits.curve, index1.curve, rtol=0, atol=1e-12)
    assert logits.target is None


# ----------------------------------------------------------------------------------------------- Blur IG
def _blur_reference(x, sigmas, p, j, grad_step):
    """Points and displacements of the Blur IG rows ``(p, j)`` with the general per-axis code
    (:func:`blur_rows`, one axis at a time); the displacement as a plain difference in float64."""
    from pathattr.paths.blur import blur_rows

    sig = torch.tensor(sigmas, dtype=torch.float64)[j]
    rows = x[p]
    points = blur_rows(rows, sig, spatial_dims=(-2, -1))
    wide = rows.double()
    difference = blur_rows(wide, sig + grad_step, spatial_dims=(-2, -1)) - blur_rows(wide, sig, spatial_dims=(-2, -1))
    deltas = torch.tensor([sigmas[i + 1] - sigmas[i] for i in j.tolist()], dtype=torch.float64)
    disp = difference * (-(deltas / grad_step)).view(-1, *([1] * (x.ndim - 1)))
    return points, disp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 12, 12), (1, 9, 14), (2, 3, 6, 7)])
def test_blur_rows_equal_the_per_axis_reference(dtype, shape):
    """The fast image path (one product per run of rows of a path along H, batched products along W) gives the
    per-axis computation's points and displacements, for runs of several rows and for one row per path."""
    from pathattr.paths.blur import BlurPath, blur_sigmas

    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, *shape, generator=g, dtype=dtype)
    sigmas = blur_sigmas(6.0, 9, sqrt=True)
    path = BlurPath((x,), sigmas, 0.01, spatial_dims=(-2, -1))
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    layouts = [
        (torch.tensor([0] * 9 + [1] * 3), torch.tensor(list(range(9)) + [0, 1, 2])),  # long runs: per-run products
        (torch.tensor([0, 1, 2, 0, 2]), torch.tensor([8, 3, 0, 4, 4])),  # one row per path: gathered rows
        (torch.tensor([2, 2, 1]), torch.tensor([5, 5, 7])),  # repeated nodes
    ]
    for p, j in layouts:
        points = path.points(p, j)
        disp = path.displacements(p, j, points)
        ref_points, ref_disp = _blur_reference(x, sigmas, p, j, 0.01)
        assert points[0].is_contiguous() and disp[0].is_contiguous()
        torch.testing.assert_close(points[0], ref_points, rtol=tol, atol=tol)
        scale = float(ref_disp.abs().max())  # (the float64 reference difference cancels: absolute tolerance)
        torch.testing.assert_close(disp[0].double(), ref_disp, rtol=0, atol=10 * tol * scale)
        # displacements without the points' cache (another chunk in between) are the same
        path.points(p[:1], j[:1])
        again = path.displacements(p, j, points)
        assert torch.equal(again[0], disp[0])


def test_blur_ig_does_not_depend_on_internal_batch_size_or_the_matrix_cache(cnn, monkeypatch):
    from pathattr.methods.blur_ig import BlurIntegratedGradients
    from pathattr.paths import blur as blur_module

    g = torch.Generator().manual_seed(6)
    x = torch.rand(3, 2, 8, 8, generator=g, dtype=torch.float64)
    method = BlurIntegratedGradients(cnn)
    ref = method.attribute(x, target=1, n_steps=12, max_sigma=5.0, internal_batch_size=5)
    for ibs in (None, 1, 2, 12, 1000):
        out = method.attribute(x, target=1, n_steps=12, max_sigma=5.0, internal_batch_size=ibs)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    assert torch.equal(method.attribute(x, target=1, n_steps=12, max_sigma=5.0, internal_batch_size=5), ref)
    cached = sum(t.numel() * t.element_size() for e in blur_module._node_matrix_cache.values() for t in e)
    assert cached <= blur_module.NODE_MATRIX_CACHE_BYTES
    monkeypatch.setattr(blur_module, "NODE_MATRIX_CACHE_BYTES", 0)
    blur_module._node_matrix_cache.clear()
    off = method.attribute(x, target=1, n_steps=12, max_sigma=5.0, internal_batch_size=5)
    assert torch.equal(off, ref) and not blur_module._node_matrix_cache
    # an input that requires grad is read as values
    torch.testing.assert_close(method.attribute(x.clone().requires_grad_(True), target=1, n_steps=12, max_sigma=5.0,
                                                internal_batch_size=5), ref, rtol=0, atol=0)


def test_blur_ig_images_with_extra_axes_and_other_layouts_agree():
    """Inputs ``[B, C, D, H, W]`` blurred over (H, W) take the fast path; blurring over (D, H) or a channels-last
    layout takes the general path; both equal Blur IG of the same blur written per axis."""
    from pathattr.methods.blur_ig import BlurIntegratedGradients

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 6 * 7, 3)).double()
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 2, 3, 6, 7, generator=g, dtype=torch.float64)
    last_two = BlurIntegratedGradients(net).attribute(x, target=0, n_steps=8, max_sigma=4.0, spatial_dims=(3, 4))
    negative = BlurIntegratedGradients(net).attribute(x, target=0, n_steps=8, max_sigma=4.0, spatial_dims=(-2, -1))
    assert torch.equal(last_two, negative)
    # the same blur on a channels-last copy ([B, H, W, C*D], blurred over (1, 2)) runs the general per-axis code
    moved = x.permute(0, 3, 4, 1, 2).reshape(2, 6, 7, 6).contiguous()

    def net_moved(t):
        return net(t.reshape(2 if t.shape[0] == 2 else t.shape[0], 6, 7, 2, 3).permute(0, 3, 4, 1, 2))

    general = BlurIntegratedGradients(net_moved, model=net).attribute(moved, target=0, n_steps=8, max_sigma=4.0,
                                                                       spatial_dims=(1, 2))
    general = general.reshape(2, 6, 7, 2, 3).permute(0, 3, 4, 1, 2)
    torch.testing.assert_close(last_two, general, rtol=1e-12, atol=1e-14)
