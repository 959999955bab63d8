"""The speed benchmark's bounds (:mod:`pathattr_bench.speed.bounds`) compute the result pathattr returns, so
``ours / bound`` compares the same work: IG with its completeness gap, Guided IG as PAIR defines it."""

from __future__ import annotations

import pytest
import torch

from pathattr import IntegratedGradients
from pathattr.integrators import quadrature
from pathattr.methods.guided_ig import GuidedIntegratedGradients
from pathattr_bench.speed.bounds import minimal_guided_ig, minimal_ig
from pathattr_bench.speed.common import make_inputs, make_model


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def model64(request):
    m, shape = make_model(request.param)
    return m.double(), shape, request.param


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_ig_bound_is_pathattr_ig_with_its_gap(model64, rule, chunk):
    m, shape, name = model64
    x = make_inputs(name, shape, 3).double()
    alphas, weights = quadrature(rule, 20, torch.float32)  # as the benchmark times it
    attr, gap = minimal_ig(m, x, 2, alphas.double(), weights.double(), chunk)
    ours = IntegratedGradients(m).explain(x, target=2, n_steps=20, method=rule)
    scale = float(attr.abs().max())
    assert float((ours.attributions - attr).abs().max()) <= 1e-6 * scale  # nodes / weights in float32
    out = m(x)[:, 2] - m(torch.zeros_like(x))[:, 2]
    assert torch.allclose(gap, attr.flatten(1).sum(1) - out, rtol=0, atol=1e-12)
    assert torch.allclose(ours.convergence_delta, gap, rtol=0, atol=1e-6 * scale)
    bare, none = minimal_ig(m, x, 2, alphas.double(), weights.double(), chunk, with_gap=False)
    assert none is None and torch.allclose(bare, attr, rtol=0, atol=1e-12 * scale)


def test_guided_ig_bound_is_pathattr_guided_ig(model64):
    m, shape, name = model64
    x = make_inputs(name, shape, 1).double()
    ours = GuidedIntegratedGradients(m).attribute(x, target=0, n_steps=60)
    bound = torch.from_numpy(minimal_guided_ig(m, x, 0, 60))
    assert float((ours - bound).abs().max()) <= 1e-9 * float(ours.abs().max())


@pytest.mark.parametrize("step_size", [None, 0.05])
def test_ig2_bound_is_pathattr_ig2_reference(model64, step_size):
    from pathattr import IG2
    from pathattr_bench.speed.bounds import minimal_ig2
    from pathattr_bench.speed.common import representation_of

    m, shape, name = model64
    rep = representation_of(name, m)
    x, refs = make_inputs(name, shape, 2).double(), make_inputs(name, shape, 3, seed=3).double()
    attr, gap = minimal_ig2(m, rep, x, refs, 1, 12, step_size, (0.0, 1.0))
    ours = IG2(m, rep).explain(x, refs, target=1, n_steps=12, step_size=step_size, bounds=(0.0, 1.0),
                               preset="reference")
    scale = float(attr.abs().max())
    assert scale > 0
    assert float((ours.attributions - attr).abs().max()) <= 1e-9 * scale
    assert torch.allclose(ours.convergence_delta, gap, rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_causal_curve_bound_is_pathattr_metric(mode):
    from pathattr import metrics
    from pathattr_bench.speed.bounds import minimal_causal_curve

    m, shape = make_model("cnn")
    m = m.double()
    x = make_inputs("cnn", shape, 2).double()
    attr = torch.rand(2, 1, *shape[1:], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    attr[0, 0, :4, :4] = 0.5  # ties: the lower flat index goes first in both
    ours = getattr(metrics, mode)(m, x, attr, target=1, n_steps=12, substrate="zeros")
    auc, curve = minimal_causal_curve(m, x, attr, 1, 12, mode)
    assert torch.allclose(ours.curve, curve, rtol=0, atol=1e-12)
    assert torch.allclose(ours.scores, auc, rtol=0, atol=1e-12)
    assert float((curve[:, 0] - curve[:, -1]).abs().min()) > 1e-6  # the curve moves: a flipped one would differ


def test_chunk_size_timing_covers_every_size_and_the_automatic_plan():
    from pathattr_bench.speed.chunk_sizes import time_chunk_sizes

    m, shape = make_model("mlp")
    x = make_inputs("mlp", shape, 2)
    rows = time_chunk_sizes(m, x, [4, 16, None], n_steps=8, repeats=2)
    assert [r.size for r in rows] == [4, 16, None]
    assert all(r.wall > 0 and r.user >= 0 and r.system >= 0 and r.page_faults >= 0 for r in rows)
    c, cshape = make_model("cnn")
    rows = time_chunk_sizes(c, make_inputs("cnn", cshape, 2), [8, None], n_steps=4, repeats=1, method="deletion")
    assert [r.size for r in rows] == [8, None] and all(r.wall > 0 for r in rows)
    with pytest.raises(ValueError, match="method"):
        time_chunk_sizes(m, x, [4], n_steps=8, repeats=1, method="insertion")


def test_stalled_plan_timing_primes_the_planner_and_ends_measured():
    # a call below every size tried (16 examples x 2 steps = 32 rows) is one chunk that the plan does not measure:
    # the exploration state stays as primed; a call above them (20 rows, far slower per row than primed) ends it
    from pathattr_bench.speed.stalled_plan import time_stalled_plan

    res = time_stalled_plan({"after": "pathattr"}, n_examples=16, n_steps=2, repeats=2,
                            tried={64: 1e-4, 128: 1e-4}, next_size=256)
    assert res["after"]["exploring"] == 256 and res["after"]["settled"] is None
    assert len(res["after"]["wall"]) == 2 and all(w > 0 for w in res["after"]["wall"])
    res = time_stalled_plan({"after": "pathattr"}, n_examples=1, n_steps=20, repeats=2,
                            tried={4: 1e-9, 8: 1e-9}, next_size=64)
    assert res["after"]["settled"] == 4 and res["after"]["exploring"] is None  # 20 rows measured: far slower


def test_process_spread_summary_counts_the_processes_that_meet_each_goal():
    from pathattr_bench.speed.processes import format_summary, goals_of, summarize, versions_in

    def rec(row, **wall):
        return {"row": row, "wall": wall, "cpu": wall}

    runs = [  # three processes: ours 1.0x, 1.2x and 2.0x the floor; Captum's best setting at 2.0 / 1.0 / 1.0
        [rec("ig_mlp_16", after=1.0, floor=1.0, peer=2.0, **{"peer@16": 4.0}, bound=0.5),
         rec("gig_cnn_16", after=3.0, floor=1.0, floor_n=2.0)],
        [rec("ig_mlp_16", after=1.2, floor=1.0, peer=1.0, **{"peer@16": 1.5}, bound=1.0)],
        [rec("ig_mlp_16", after=2.0, floor=1.0, peer=1.0, **{"peer@16": 3.0}, bound=1.0)],
    ]
    summary = {s["row"]: s for s in summarize(runs)}
    ig = summary["ig_mlp_16"]
    assert ig["processes"] == 3
    assert ig["ratios"]["floor"]["values"] == [1.0, 1.2, 2.0]
    assert ig["ratios"]["floor"]["median"] == 1.2 and ig["ratios"]["floor"]["max"] == 2.0
    assert ig["ratios"]["peer-best"]["values"] == [0.5, 1.2, 2.0]  # the fastest of the peer's settings
    assert ig["ratios"]["peer-best/floor"]["values"] == [2.0, 1.0, 1.0]
    # 0.8x where Captum's best is above its floor (process 1: 0.5 <= 0.8), else 1x (process 2: 1.2 > 1)
    assert ig["goals_met"] == {"floor<=1.05": 1, "peer-best<=1": 1, "peer-best<=0.8 where above floor": 1}
    gig = summary["gig_cnn_16"]
    assert gig["processes"] == 1 and gig["ratios"]["floor@N"]["values"] == [1.5]
    assert gig["goals_met"] == {"floor@N<=1.15": 0}  # no peer at 16 paths: only the floor's goal
    assert goals_of("ig2_cnn")[0] == ("floor", 1.15) and goals_of("ig_cnn_1")[0] == ("floor", 1.05)
    text = format_summary(summarize(runs))
    assert "ig_mlp_16 after (3 processes) | floor 1.20 [1.00, 2.00]" in text and "floor<=1.05: 1/3" in text
    before = [[dict(rec("ig_mlp_1", after=1.0, floor=1.0, peer=1.0), wall=dict(after=1.0, before=3.0, floor=1.0,
                                                                            peer=1.0))]]
    assert summarize(before, "before")[0]["ratios"]["floor"]["values"] == [3.0]
    assert versions_in(before) == ("before", "after") and versions_in(runs) == ("after",)


def test_guided_step_timing_runs_each_version_and_compares_their_points():
    from pathattr.paths import guided
    from pathattr_bench.speed.guided_step import time_steps

    r = time_steps({"before": guided, "after": guided}, 3, 300, steps=4, repeats=2, share=0.1)
    assert set(r["per_step"]) == {"before", "after"} and all(v > 0 for v in r["per_step"].values())
    assert r["max_difference"] == 0.0  # the same module on the same gradients


def test_call_pieces_stamps_every_stage_of_an_ig_call_and_restores_them():
    import importlib

    from pathattr.forward import ModelFunction
    from pathattr_bench.speed.call_pieces import STAGES, stamped, time_pieces

    originals = {(m, a): importlib.import_module(m) for m, a, _ in STAGES}
    before = {k: _attribute(mod, k[1]) for k, mod in originals.items()}
    r = time_pieces("linear", 2, steps=4, repeats=3)
    md = r["median"]
    assert md["floor"] > 0 and md["gradients"] > 0 and md["outside"] > 0
    assert md["call"] >= md["gradients"]
    entered = {k.split()[1] for k in r["stages"]}
    assert entered >= {label + ">" for _, _, label in STAGES}  # every stage runs inside an IG call
    assert next(iter(r["stages"])).startswith("start ") and list(r["stages"])[-1].endswith(" end")
    with pytest.raises(RuntimeError), stamped([]):
        assert hasattr(ModelFunction.gradients, "__wrapped__")
        raise RuntimeError
    assert {k: _attribute(mod, k[1]) for k, mod in originals.items()} == before  # put back, also after an error


def _attribute(owner, path):
    for name in path.split("."):
        owner = getattr(owner, name)
    return owner
