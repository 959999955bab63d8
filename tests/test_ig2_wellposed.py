"""IG2 presets (the authors' notebook settings) and pathattr's well-posed IG2 (damped Newton path, adaptive
trapezoid segments): issue 13 points 1-2, issue 14 item 3. docs/ig2.md."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import SmallCNN
from pathattr.errors import InputValidationError
from pathattr.methods.ig2 import (
    DEFAULT_SETTINGS,
    IG2,
    PAPER_PRESETS,
    REFERENCE_SETTINGS,
    WELLPOSED_SETTINGS,
    paper_preset,
)
from pathattr.paths.gradpath import gradpath

D = torch.float64


def cnn(dtype=D, seed=1):
    torch.manual_seed(seed)
    return SmallCNN().to(dtype).eval()


def cnn_data(b=2, r=3, seed=5, dtype=D):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 2, 8, 8, generator=g, dtype=D).to(dtype),
            torch.rand(b, r, 2, 8, 8, generator=g, dtype=D).to(dtype))


# ----------------------------------------------------------------------------------------------- presets
def test_presets_resolve_to_the_documented_settings():
    common = {"step_rule": "fixed", "segment_rule": "left", "substeps": 1, "adaptive": None, "adaptive_depth": 6,
              "path_layout": "chunks"}
    imagenet = paper_preset("paper-imagenet", (3, 224, 224))
    assert imagenet == {"n_steps": 201, "step_size": pytest.approx(1.50420, abs=1e-5), "bounds": (0.0, 1.0), **common}
    # 512 grey levels on 299x299x3 = the same per-feature RMS move on [0, 1] inputs of any size
    assert paper_preset("paper-imagenet", (3, 299, 299))["step_size"] == pytest.approx(512 / 255)
    assert paper_preset("paper-imagenet", (2, 8, 8))["step_size"] == pytest.approx(512 / 255 * math.sqrt(128 / 268203))
    assert paper_preset("paper-trec") == {"n_steps": 501, "step_size": 0.01, "bounds": None, **common}
    assert paper_preset("paper-trec", bounds=(-2.0, 3.0))["bounds"] == (-2.0, 3.0)  # the embedding matrix's range
    assert paper_preset("paper-wafer") == {"n_steps": 1001, "step_size": 0.05, "bounds": (0.0, 1.0), **common}
    assert paper_preset("wellposed") == WELLPOSED_SETTINGS and paper_preset("reference") == REFERENCE_SETTINGS
    assert WELLPOSED_SETTINGS["step_rule"] == "damped_newton" and WELLPOSED_SETTINGS["adaptive"] == 0.03
    assert WELLPOSED_SETTINGS["path_layout"] == "auto" and REFERENCE_SETTINGS["path_layout"] == "chunks"
    assert DEFAULT_SETTINGS is WELLPOSED_SETTINGS  # the library default is the well-posed IG2
    assert set(PAPER_PRESETS) == {"paper-imagenet", "paper-trec", "paper-wafer"}
    with pytest.raises(InputValidationError) as err:
        paper_preset("paper-mnist")
    assert err.value.argument == "preset"
    with pytest.raises(InputValidationError) as err:
        paper_preset("paper-imagenet")  # the step conversion needs the input size
    assert err.value.argument == "input_shape"


def test_preset_equals_the_explicit_call_bit_for_bit_and_is_recorded():
    model = cnn()
    x, refs = cnn_data()
    ig2 = IG2(model, model.head)
    # paper-imagenet at its full 201 steps on a small CNN
    by_name = ig2.explain(x, refs, preset="paper-imagenet")
    explicit = ig2.explain(x, refs, n_steps=201, step_size=512 / 255 * math.sqrt(128 / 268203), bounds=(0.0, 1.0),
                           step_rule="fixed", segment_rule="left", substeps=1, adaptive=None)
    assert torch.equal(by_name.attributions, explicit.attributions)
    assert torch.equal(by_name.extras["gradcf"], explicit.extras["gradcf"])
    hp = by_name.hyperparameters
    assert hp["preset"] == "paper-imagenet" and explicit.hyperparameters["preset"] is None
    assert hp["n_steps"] == 201 and hp["step_size"] == pytest.approx(0.0438635, abs=1e-6) and hp["bounds"] == (0, 1)
    assert hp["step_rule"] == "fixed" and hp["segment_rule"] == "left" and hp["substeps"] == 1
    # explicit arguments override the preset (and are recorded)
    short = ig2.explain(x, refs, preset="paper-wafer", n_steps=12, bounds=None)
    same = ig2.explain(x, refs, n_steps=12, step_size=0.05, bounds=None, step_rule="fixed", segment_rule="left",
                       adaptive=None)
    assert torch.equal(short.attributions, same.attributions)
    assert short.hyperparameters["n_steps"] == 12 and short.hyperparameters["bounds"] is None
    assert short.hyperparameters["step_size"] == 0.05 and short.hyperparameters["preset"] == "paper-wafer"
    well = ig2.explain(x, refs, preset="wellposed")
    explicit_well = ig2.explain(x, refs, **WELLPOSED_SETTINGS)
    assert torch.equal(well.attributions, explicit_well.attributions)
    assert well.hyperparameters["step_rule"] == "damped_newton" and well.hyperparameters["adaptive"] == 0.03
    # no preset: DEFAULT_SETTINGS (the well-posed IG2)
    plain = ig2.explain(x, refs, n_steps=10)
    ref = ig2.explain(x, refs, **{**DEFAULT_SETTINGS, "n_steps": 10})
    assert torch.equal(plain.attributions, ref.attributions)
    with pytest.raises(InputValidationError) as err:
        ig2.explain(x, refs, step_rule="newton")
    assert err.value.argument == "step_rule"


# ----------------------------------------------------------------------------------------------- well-posed path
@pytest.mark.parametrize("bounds", [None, (0.0, 1.0)])
def test_damped_newton_path_descends_monotonically_and_converges(bounds):
    model = cnn()
    x, refs = cnn_data(b=3, r=4)
    fixed = gradpath(model, x, refs, model.head, n_steps=64, bounds=bounds, step_rule="fixed")
    res = gradpath(model, x, refs, model.head, n_steps=64, bounds=bounds, step_rule="damped_newton",
                   return_path=True)
    d = res.distance  # [B, R, K + 1]
    # the points the path keeps (a trial point that raised the distance is left at once, back to its anchor):
    # the distance of the kept points never increases
    kept = torch.cummin(d, dim=-1).values
    rejected = d > kept  # trial points (the path returns from each to the previous kept point)
    assert bool((kept[..., 1:] <= kept[..., :-1]).all())
    after = torch.zeros_like(rejected)
    after[..., 1:] = rejected[..., :-1]
    path = res.path
    back = (path[..., 1:, :, :, :] - path[..., :-1, :, :, :]).flatten(3).norm(dim=-1)
    assert bool((back[rejected[..., :-1] & ~after[..., :-1]] > 0).all()) or not bool(rejected.any())
    # every rejection is followed by the way back to the kept point (exactly)
    for b, r, j in rejected[..., :-1].nonzero().tolist():
        assert torch.equal(path[b, r, j + 1], path[b, r, j - 1])
    # converged: far below the start and below the fixed-step reference at the same number of steps
    ratio = kept[..., -1] / d[..., 0]
    assert float(ratio.max()) < 0.01
    assert float((kept[..., -1] / d[..., 0]).mean()) < float((fixed.distance[..., -1] / d[..., 0]).mean())
    # the reference oscillates: its distance rises at many steps; the well-posed path keeps every step it takes
    # except the rejected trials
    fixed_rises = int((fixed.distance[..., 1:] > fixed.distance[..., :-1]).sum())
    assert fixed_rises > int(rejected.sum())


def test_wellposed_completeness_and_cost_on_a_small_cnn():
    model = cnn()
    x, refs = cnn_data(b=3, r=4)
    ig2 = IG2(model, model.head)
    well = ig2.explain(x, refs, preset="wellposed", bounds=(0.0, 1.0))
    paper = ig2.explain(x, refs, preset="paper-imagenet")
    assert float(well.relative_delta.abs().max()) <= 0.05
    assert float(paper.relative_delta.abs().max()) > float(well.relative_delta.abs().max())
    rows = lambda e: e.cost.forward_rows + e.cost.backward_rows  # noqa: E731
    assert rows(well) <= rows(paper)
    assert bool(torch.isfinite(well.attributions).all())
    assert well.extras["rejected_steps"].shape == (3, 4)


def test_wellposed_does_not_depend_on_internal_batch_size_beyond_round_off():
    # float32: different chunkings round differently (no bit equality across layouts); the well-posed path keeps
    # the difference at the level of round-off
    model = cnn(torch.float32)
    x, refs = cnn_data(b=3, r=4, dtype=torch.float32)
    ig2 = IG2(model, model.head)
    runs = [ig2.explain(x, refs, preset="wellposed", bounds=(0.0, 1.0), internal_batch_size=ibs)
            for ibs in (None, 1, 5)]
    base = runs[0].attributions
    for other in runs[1:]:
        for i in range(3):
            a, b = base[i].flatten().double(), other.attributions[i].flatten().double()
            assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.999
            assert float((a - b).norm() / a.norm()) < 0.05
        torch.testing.assert_close(other.convergence_delta, runs[0].convergence_delta, rtol=0, atol=1e-3)
    # float64: the same layouts agree to float64 round-off
    m64 = cnn()
    x64, r64 = cnn_data(b=3, r=4)
    e1 = IG2(m64, m64.head).explain(x64, r64, preset="wellposed", internal_batch_size=1)
    e2 = IG2(m64, m64.head).explain(x64, r64, preset="wellposed", internal_batch_size=None)
    torch.testing.assert_close(e1.attributions, e2.attributions, rtol=1e-7, atol=1e-12)


def test_wellposed_zero_distance_path_stays_at_x_exactly():
    model = cnn()
    x, refs = cnn_data(b=2, r=2)
    refs = torch.cat([x[:, None], refs], 1)  # reference 0 of every example is the explicand itself
    for ibs in (None, 1, 4):
        e = IG2(model, model.head).explain(x, refs, preset="wellposed", internal_batch_size=ibs)
        assert torch.equal(e.extras["gradcf"][:, 0], x)
        assert bool(e.extras["stopped"][:, 0].all()) and not bool(e.extras["stopped"][:, 1:].any())
    single = IG2(model, model.head).explain(x[:1], x[:1], preset="wellposed")
    assert float(single.attributions.abs().max()) == 0.0 and torch.equal(single.extras["gradcf"][0, 0], x[0])


def test_row_layout_walks_the_same_path_for_every_internal_batch_size():
    # path_layout="rows": every path row has a forward call of its own, so the walk (which can amplify round-off)
    # computes exactly the same operations whatever internal_batch_size is; only the refinement rows (adaptive
    # trapezoid) are chunked by internal_batch_size, and they do not feed back into the path
    model = cnn(torch.float32)
    x, refs = cnn_data(b=3, r=4, dtype=torch.float32)
    ig2 = IG2(model, model.head)
    runs = [ig2.explain(x, refs, path_layout="rows", bounds=(0.0, 1.0), internal_batch_size=ibs)
            for ibs in (None, 1, 5, 12)]
    for other in runs[1:]:
        assert torch.equal(other.extras["gradcf"], runs[0].extras["gradcf"])
        assert torch.equal(other.extras["step_outputs"], runs[0].extras["step_outputs"])
        torch.testing.assert_close(other.attributions, runs[0].attributions, rtol=1e-4, atol=1e-6)
    assert runs[0].hyperparameters["path_layout"] == "rows"
    # the model sees one row per call while walking: the walk's forward rows come in calls of one
    calls = []
    hook = model.head.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        ig2.explain(x, refs, path_layout="rows", n_steps=3, adaptive=None, segment_rule="left",
                    internal_batch_size=12)
        rows_calls = list(calls)
        calls.clear()
        ig2.explain(x, refs, path_layout="chunks", n_steps=3, adaptive=None, segment_rule="left",
                    internal_batch_size=12)
    finally:
        hook.remove()
    assert set(rows_calls[-(3 * 12 + 12):]) == {1}  # 3 steps + the end evaluation, 12 rows each, one per call
    assert max(calls) == 12


def test_auto_layout_rows_for_large_inputs_only():
    from pathattr.methods.ig2 import ROW_LAYOUT_MIN_FEATURES, resolve_path_layout

    assert resolve_path_layout("auto", torch.zeros(2, 3, 224, 224)) == "rows"
    assert resolve_path_layout("auto", torch.zeros(2, 32, 384)) == "rows"
    assert resolve_path_layout("auto", torch.zeros(2, 1, 28, 28)) == "chunks"
    assert resolve_path_layout("auto", torch.zeros(2, ROW_LAYOUT_MIN_FEATURES)) == "rows"
    assert resolve_path_layout("auto", torch.zeros(2, ROW_LAYOUT_MIN_FEATURES - 1)) == "chunks"
    assert resolve_path_layout("chunks", torch.zeros(2, 3, 224, 224)) == "chunks"
    model = cnn()
    x, refs = cnn_data()
    assert IG2(model, model.head).explain(x, refs, n_steps=4).hyperparameters["path_layout"] == "chunks"
    with pytest.raises(InputValidationError) as err:
        IG2(model, model.head).explain(x, refs, path_layout="columns")
    assert err.value.argument == "path_layout"


def test_other_integrators_keep_the_left_rule_by_default():
    model = cnn()
    x, refs = cnn_data()
    e = IG2(model, model.head, integrator="idgi").explain(x, refs, n_steps=8)
    assert e.hyperparameters["segment_rule"] == "left" and e.hyperparameters["step_rule"] == "damped_newton"
    assert bool(torch.isfinite(e.attributions).all())
