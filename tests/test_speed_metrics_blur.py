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
