"""The chunk planner (fixed plans cover all rows; the automatic plan finds the fastest size and remembers it) and
the sequential-path engine on a toy path integrated by hand."""

from __future__ import annotations

import itertools

import pytest
import torch

from pathattr import IntegratedGradients, planner
from pathattr.engine import integrate_sequential_path
from pathattr.errors import InputValidationError
from pathattr.forward import ModelFunction
from pathattr.integrators import SegmentRule, SplitIntegrator, get_integrator, segment_nodes
from pathattr.paths.base import SequentialPath


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _run_plan(monkeypatch, n_rows, cost, key=None, cap_numel=1, unit=1e-3):
    """The sizes of an automatic plan when a chunk of ``s`` rows takes ``cost(s) * unit`` seconds (milliseconds by
    default: real-sized chunks, below the planner's long-chunk stop)."""
    clock = FakeClock()
    monkeypatch.setattr(planner.time, "perf_counter", clock.perf_counter)
    sizes = []
    for a, b in planner.plan_chunks(None, n_rows, cap_numel, key):
        sizes.append(b - a)
        clock.now += cost(b - a) * unit
    return sizes


def test_fixed_plan_covers_rows_exactly():
    assert list(planner.plan_chunks(3, 8)) == [(0, 3), (3, 6), (6, 8)]
    with pytest.raises(ValueError, match="internal_batch_size"):
        list(planner.plan_chunks(-1, 8))


def test_auto_plan_doubles_then_locks_at_fastest(monkeypatch):
    # per-call overhead 1.0, per-row 0.1, rows beyond 16 per call cost 4x (cache spill): best size is 16
    def cost(size):
        return 1.0 + 0.1 * size + 0.4 * max(0, size - 16)

    sizes = _run_plan(monkeypatch, 400, cost, key="model-a", cap_numel=1 << 14)  # starts at 4 rows
    assert sizes[:8] == [4, 4, 8, 8, 16, 16, 32, 32]  # each size measured twice (the first call at a shape is slow)
    assert set(sizes[8:-1]) == {16} and sum(sizes) == 400
    assert planner._best_chunk["model-a"] == 16
    # a later call with the same key starts at the remembered size without exploring
    again = _run_plan(monkeypatch, 64, cost, key="model-a", cap_numel=1 << 14)
    assert again == [16, 16, 16, 16]


def test_auto_plan_prefers_small_chunks_when_flat(monkeypatch):
    # per-row time flat within noise (+-4 %) from 8 rows on, a per-call overhead below: the smallest size within
    # AUTO_SETTLE_TOLERANCE of the best wins (larger chunks would only add memory and risk, e.g. page faults)
    noise = itertools.cycle([1.0, 1.04, 0.97, 1.03, 1.0, 0.99, 1.02])

    def cost(size):
        return size * 0.1 * next(noise) + (0.5 if size < 8 else 0.0)

    planner._best_chunk.pop("model-b", None)
    planner._exploration.pop("model-b", None)
    sizes = _run_plan(monkeypatch, 4000, cost, key="model-b", cap_numel=1 << 14)
    assert max(sizes) >= 256  # the exploration went on doubling within AUTO_TOLERANCE
    assert 8 <= planner._best_chunk["model-b"] <= 16


def test_auto_plan_still_picks_large_chunks_where_they_are_faster(monkeypatch):
    # a per-call overhead of 10 row-times: the time per row falls with the size, and only sizes >= 256 rows are
    # within 5 % of the best
    planner._best_chunk.pop("model-h", None)
    planner._exploration.pop("model-h", None)
    _run_plan(monkeypatch, 20000, lambda s: 1.0 + 0.1 * s, key="model-h", cap_numel=1 << 12)
    assert planner._best_chunk["model-h"] == 256


def test_auto_plan_starts_larger_for_small_rows(monkeypatch):
    sizes = _run_plan(monkeypatch, 100, lambda s: 1.0, cap_numel=64)
    assert sizes == [100]  # 2**16 elements per chunk covers all 100 rows of 64 features


def test_auto_plan_respects_memory_cap(monkeypatch):
    sizes = _run_plan(monkeypatch, 1000, lambda s: 1.0 + 0.01 * s, cap_numel=planner.AUTO_ELEMENT_BUDGET // 50)
    assert max(sizes) == 50 and sum(sizes) == 1000


def test_auto_and_fixed_plans_give_the_same_attributions(cnn, gen):
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64, generator=gen)
    ig = IntegratedGradients(cnn)
    auto = ig.attribute(x, target=1, n_steps=40)
    fixed = ig.attribute(x, target=1, n_steps=40, internal_batch_size=7)
    torch.testing.assert_close(auto, fixed, rtol=1e-10, atol=1e-12)


def test_auto_plan_exploration_continues_across_short_calls(monkeypatch):
    # each call has only 12 rows: the exploration (4, 4, 8, 8, 16, 16, ...) spans several calls and then locks
    def cost(size):
        return 1.0 + 0.1 * size + 0.4 * max(0, size - 16)

    planner._best_chunk.pop("model-c", None)
    planner._exploration.pop("model-c", None)
    first = _run_plan(monkeypatch, 12, cost, key="model-c", cap_numel=1 << 14)
    assert first == [4, 4, 4]
    assert planner._exploration["model-c"][0] == 8
    for _ in range(4):
        _run_plan(monkeypatch, 40, cost, key="model-c", cap_numel=1 << 14)
    assert planner._best_chunk["model-c"] == 16 and "model-c" not in planner._exploration


def test_auto_plan_measures_calls_shorter_than_the_size_it_explores(monkeypatch):
    # every call has 50 rows (one example, 50 steps): 16 and 32 rows are measured, then 64 is next and each call is
    # one 50-row chunk. Where 50 rows per call cost 1.4x per row of 32 (fresh pages for their activations), two such
    # calls end the exploration at 32, and later calls run 32 + 18 rows
    def cost(size, above=32):  # a per-call overhead and a per-row time 1.4x above `above` rows
        return 0.5 + 0.15 * size * (1.4 if size > above else 1.0)

    planner._best_chunk.pop("model-s", None)
    planner._exploration.pop("model-s", None)
    calls = [_run_plan(monkeypatch, 50, cost, key="model-s", cap_numel=3072) for _ in range(6)]
    assert calls[:5] == [[16, 16, 18], [32, 18], [32, 18], [50], [50]]
    assert planner._best_chunk["model-s"] == 32 and "model-s" not in planner._exploration
    assert calls[5] == [32, 18]
    # where one 50-row chunk is as fast per row, the calls stay one chunk and the exploration of 64 rows waits for a
    # longer call; after two measurements the 50-row call is no longer timed (the one-chunk shortcut applies)
    planner._best_chunk.pop("model-s", None)
    planner._exploration.pop("model-s", None)
    calls = [_run_plan(monkeypatch, 50, lambda s: cost(s, 50), key="model-s", cap_numel=3072) for _ in range(6)]
    assert calls[3:] == [[50]] * 3 and "model-s" not in planner._best_chunk
    assert planner._exploration["model-s"][0] == 64 and planner._exploration["model-s"][2][50] == 2
    assert planner.plan_is_one_chunk(None, 50, 3072, "model-s")
    assert not planner.plan_is_one_chunk(None, 60, 3072, "model-s")  # a longer call is measured again
    longer = _run_plan(monkeypatch, 200, lambda s: cost(s, 50), key="model-s", cap_numel=3072)
    assert longer == [64, 64, 32, 40] and planner._best_chunk["model-s"] == 32  # 32 is within 5 % of 50 per row


def test_auto_plan_measures_a_long_call_below_the_size_it_explores(monkeypatch):
    # seen in a benchmark process: the small CNN's exploration reached 1024 rows (16-512 within AUTO_TOLERANCE), and
    # every 800-row call (16 examples, 50 steps) ran as one unmeasured chunk at 2.3x the time per row (fresh pages
    # for activations above glibc's mmap ceiling). Its first call loses far more than a one-off cost: judged at once
    monkeypatch.setattr(planner, "_exploration", {"cnn": (1024, {s: 1.6e-4 for s in (16, 32, 64, 128, 256, 512)},
                                                          {s: 2 for s in (16, 32, 64, 128, 256, 512)})})
    monkeypatch.setattr(planner, "_best_chunk", {})
    calls = [_run_plan(monkeypatch, 800, lambda s: 0.16 * s * (2.3 if s > 512 else 1.0), key="cnn", cap_numel=3072)
             for _ in range(2)]
    assert calls == [[800], [16] * 50] and planner._best_chunk["cnn"] == 16


def test_auto_plan_judges_a_size_by_its_fastest_sample(monkeypatch):
    # the first chunk at each new size >= 16 pays a one-off 2x (new kernels, allocations); 16 is truly fastest,
    # but judged by its first chunk alone it would look slower than 8
    seen = set()

    def cost(size):
        first = size not in seen
        seen.add(size)
        return (1.0 + 0.05 * size + 0.4 * max(0, size - 16)) * (2.0 if first and size >= 16 else 1.0)

    planner._best_chunk.pop("model-e", None)
    planner._exploration.pop("model-e", None)
    _run_plan(monkeypatch, 400, cost, key="model-e", cap_numel=1 << 14)
    assert planner._best_chunk["model-e"] == 16
    monkeypatch.setattr(planner, "AUTO_SAMPLES", 1)
    seen.clear()
    planner._best_chunk.pop("model-e", None)
    _run_plan(monkeypatch, 400, cost, key="model-e", cap_numel=1 << 14)
    assert planner._best_chunk["model-e"] == 8  # what a single sample per size would pick


def test_auto_plan_judges_a_clearly_slow_size_at_once(monkeypatch):
    # 32 rows cost 2x per row of 16 and lose more than AUTO_ONE_OFF_SECONDS in their first chunk: more than a one-off
    # cost of a new shape, so they are not measured a second time
    def cost(size):
        return 1.0 + 0.1 * size + 0.4 * max(0, size - 16)

    planner._best_chunk.pop("model-f", None)
    planner._exploration.pop("model-f", None)
    sizes = _run_plan(monkeypatch, 400, cost, key="model-f", cap_numel=1 << 14, unit=0.02)
    assert sizes[:7] == [4, 4, 8, 8, 16, 16, 32] and set(sizes[7:-1]) == {16}
    assert planner._best_chunk["model-f"] == 16


def test_auto_plan_stops_growing_at_long_chunks(monkeypatch):
    # flat time per row (60 ms, a 224x224 CNN on CPU): 4-row chunks take 0.24 s, 8-row chunks 0.48 s >=
    # AUTO_LONG_CHUNK_SECONDS: larger chunks could only save the per-call overhead, so the planner stops at 8 and
    # settles on the smaller of the two, as fast per row
    planner._best_chunk.pop("model-g", None)
    planner._exploration.pop("model-g", None)
    sizes = _run_plan(monkeypatch, 64, lambda s: 0.06 * s, key="model-g", cap_numel=1 << 16, unit=1.0)
    assert sizes[:4] == [4, 4, 8, 8] and set(sizes[4:]) == {4}
    assert planner._best_chunk["model-g"] == 4


def test_auto_plan_folds_a_small_leftover(monkeypatch):
    planner._best_chunk["model-d"] = 16
    sizes = _run_plan(monkeypatch, 52, lambda s: 1.0, key="model-d", cap_numel=1 << 14)
    assert sizes == [16, 16, 20] and sum(sizes) == 52
    # never beyond the memory cap: with a cap of 16 rows the leftover gets its own call
    sizes = _run_plan(monkeypatch, 52, lambda s: 1.0, key="model-d", cap_numel=planner.AUTO_ELEMENT_BUDGET // 16)
    assert sizes == [16, 16, 16, 4]


def test_one_chunk_shortcut_agrees_with_the_plan(monkeypatch):
    """Where ``plan_is_one_chunk`` says True, ``plan_chunks`` yields the single range ``(0, n)`` and measures nothing
    (fixed sizes, an exploration at its start or resumed, a remembered size with a folded leftover, the memory cap);
    the sequential walk then skips the planner."""
    monkeypatch.setattr(planner, "_best_chunk", {"known-16": 16})
    monkeypatch.setattr(planner, "_exploration", {"resumed": (8, {4: 1e-3}, {4: 2}),
                                                  "short-done": (8, {4: 1e-3, 7: 1e-3}, {4: 2, 7: 2})})

    def state():  # an exploration entry without measurements is the same as none
        return dict(planner._best_chunk), {k: v for k, v in planner._exploration.items() if v[1]}

    answers = {}
    for ibs, n, numel, key in [(None, n, numel, key) for key in (None, "known-16", "resumed", "short-done", "fresh")
                               for numel in (1, 1 << 14, planner.AUTO_ELEMENT_BUDGET // 16)
                               for n in (1, 3, 4, 7, 8, 9, 12, 16, 24, 25, 40)] + [
                               (ibs, n, 1, None) for ibs in (1, 4, 16) for n in (1, 4, 5, 16, 17)]:
        one = planner.plan_is_one_chunk(ibs, n, numel, key)
        before = state()
        if ibs is None:
            chunks = _run_plan(monkeypatch, n, lambda s: 1.0, key=key, cap_numel=numel)
        else:
            chunks = [b - a for a, b in planner.plan_chunks(ibs, n, numel, key)]
        if one:
            assert chunks == [n] and state() == before, (ibs, n, numel, key, chunks)
        planner._best_chunk.clear(), planner._best_chunk.update(before[0])
        planner._exploration.clear(), planner._exploration.update(before[1])
        answers[(ibs, n, numel, key)] = one
    # rows below the first size, a remembered size (and a leftover of at most half of it), a fixed size: one call
    assert answers[(None, 40, 1, "fresh")] and answers[(None, 16, 1 << 14, "known-16")]
    assert answers[(None, 24, 1 << 14, "known-16")] and answers[(16, 16, 1, None)]
    assert answers[(None, 3, 1 << 14, "resumed")] and answers[(None, 7, 1 << 14, "short-done")]
    # a chunk the exploration measures (a full size, or a whole call shorter than the size explored but longer than
    # every size measured), more rows than one call takes, a leftover beyond the memory cap: not
    assert not answers[(None, 4, 1 << 14, "fresh")] and not answers[(None, 9, 1 << 14, "resumed")]
    assert not answers[(None, 7, 1 << 14, "resumed")] and answers[(None, 4, 1 << 14, "resumed")]
    assert not answers[(4, 5, 1, None)] and not answers[(None, 25, 1 << 14, "known-16")]
    assert not answers[(None, 24, planner.AUTO_ELEMENT_BUDGET // 16, "known-16")]


# ----------------------------------------------------------------------------------------------- sequential paths
class SignPath(SequentialPath):
    """Toy sequential path: from the input, steps of ``-eps * sign(grad)`` (the docstring's example)."""

    direction = -1

    def __init__(self, x_rows, example, n_steps, eps=0.05):
        self.z, self.example, self.n_steps, self.eps = x_rows.detach().clone(), example, n_steps, eps
        self.dtype = x_rows.dtype
        self.trace = [self.z]

    n_paths = property(lambda self: self.z.shape[0])

    def example_index(self, path_index):
        return self.example[path_index]

    def points(self, rows):
        return (self.z,)

    def advance(self, ev, rows):
        new = self.z - self.eps * ev.gradients[0].sign()
        disp, self.z = self.z - new, new
        self.trace.append(new)
        return (disp,)


def _quadratic(v):
    return (v**2).sum(1) + v[:, 0] * v[:, 1]


def _grad_quadratic(v):
    g = 2 * v
    g[:, 0] += v[:, 1]
    g[:, 1] += v[:, 0]
    return g


def _sign_path_by_hand(x, n_steps, eps, nodes=((0.0, 1.0),)):
    """Left Riemann sum (or a segment rule's nodes) along the SignPath, one path per row."""
    z, attr = x.clone(), torch.zeros_like(x)
    for _ in range(n_steps):
        new = z - eps * _grad_quadratic(z).sign()
        for t, w in nodes:
            attr += w * _grad_quadratic(torch.lerp(z, new, t)) * (z - new)
        z = new
    return attr, z


def _run(x, integrator, k=1, **kw):
    rows = x.repeat_interleave(k, 0)
    model = ModelFunction(_quadratic, x.shape[0])
    model.resolve_target(None, (x,))
    path = SignPath(rows, torch.arange(rows.shape[0]) // k, 8)
    end = _quadratic(x).repeat_interleave(k)
    ibs = kw.pop("ibs", None)
    return integrate_sequential_path(model, path, get_integrator(integrator), ibs, (x,), end, **kw), path


def test_sequential_engine_left_riemann_matches_the_walk_by_hand():
    x = torch.tensor([[1.0, -0.5, 0.25], [0.3, 0.7, -1.2]], dtype=torch.float64)
    expected, end = _sign_path_by_hand(x, 8, 0.05)
    for ibs in (None, 1):
        r, path = _run(x, "riemann", ibs=ibs)
        torch.testing.assert_close(r.attributions[0], expected, rtol=0, atol=1e-15)
        torch.testing.assert_close(r.start_outputs, _quadratic(end), rtol=0, atol=1e-15)  # f at the far end
        assert torch.equal(path.z, end)
    r2, _ = _run(x, "riemann", k=2)  # two identical paths per example average to the same
    torch.testing.assert_close(r2.attributions[0], expected, rtol=0, atol=1e-15)


def test_sequential_engine_segment_rules_and_integrators():
    x = torch.tensor([[1.0, -0.5, 0.25], [0.3, 0.7, -1.2]], dtype=torch.float64)
    t, w = segment_nodes("trapezoid", 2)
    expected, end = _sign_path_by_hand(x, 8, 0.05, tuple(zip(t, w)))
    r, _ = _run(x, "riemann", segments=SegmentRule("trapezoid", 2), ibs=3)
    torch.testing.assert_close(r.attributions[0], expected, rtol=0, atol=1e-14)
    # on a quadratic the trapezoid rule is exact on every straight segment: complete
    torch.testing.assert_close(r.attributions[0].sum(1), _quadratic(x) - _quadratic(end), rtol=0, atol=1e-13)
    adaptive, _ = _run(x, "riemann", segments=SegmentRule(adaptive=1e-6, depth=3))
    torch.testing.assert_close(adaptive.attributions[0], r.attributions[0], rtol=0, atol=1e-14)
    assert int(adaptive.extras["refined_pieces"].sum()) == 0  # trapezoid already exact: nothing to bisect
    assert int(adaptive.extras["stalled_pieces"].sum()) == 0
    idgi, _ = _run(x, "idgi")  # streams from the input end; complete by construction
    torch.testing.assert_close(idgi.attributions[0].sum(1), _quadratic(x) - _quadratic(end), rtol=0, atol=1e-13)
    split, _ = _run(x, SplitIntegrator(0.5, part="both"))  # needs both ends: replayed at the end
    torch.testing.assert_close(split.attributions[0], _sign_path_by_hand(x, 8, 0.05)[0], rtol=0, atol=1e-14)
    with pytest.raises(InputValidationError) as info:
        _run(x, "idgi", segments=SegmentRule("trapezoid", 2))
    assert info.value.argument == "substeps"


def test_sequential_engine_skips_inactive_paths():
    x = torch.tensor([[1.0, -0.5, 0.25], [0.3, 0.7, -1.2]], dtype=torch.float64)

    class Half(SignPath):
        active = torch.tensor([False, True])

        def points(self, rows):
            return (self.z[rows],)

        def advance(self, ev, rows):
            new = self.z[rows] - self.eps * ev.gradients[0].sign()
            disp = self.z[rows] - new
            self.z = self.z.index_copy(0, rows, new)
            return (disp,)

    model = ModelFunction(_quadratic, 2)
    model.resolve_target(None, (x,))
    rows_before = model.cost.forward_rows
    r = integrate_sequential_path(model, Half(x, torch.arange(2), 8), get_integrator(None), None, (x,),
                                  _quadratic(x))
    assert model.cost.forward_rows - rows_before == 8 + 1  # 8 steps and the far end, of the active path only
    assert bool((r.attributions[0][0] == 0).all())
    torch.testing.assert_close(r.attributions[0][1], _sign_path_by_hand(x[1:], 8, 0.05)[0][0], rtol=0, atol=1e-15)
    assert float(r.start_outputs[0]) == float(_quadratic(x[:1])[0])


def test_select_follows_a_reassigned_target():
    from pathattr.forward import ModelFunction

    out = torch.arange(12.0).view(3, 4)
    model = ModelFunction(lambda v: v, 3)
    model.target = torch.tensor([2, 2, 2])
    assert model.select(out, None).tolist() == [2.0, 6.0, 10.0]  # one class: the column
    model.target = torch.tensor([0, 3, 1])  # assigned from outside (as the metrics do): a gather again
    assert model.select(out, None).tolist() == [0.0, 7.0, 9.0]
    assert model.select(out[[2, 0]], torch.tensor([2, 0])).tolist() == [9.0, 0.0]
    model.target = torch.tensor([3, 3, 3])
    assert model.select(out, torch.tensor([1, 1, 1])).tolist() == [3.0, 7.0, 11.0]
