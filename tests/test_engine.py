"""The chunk planner: fixed plans cover all rows; the automatic plan finds the fastest size and remembers it."""

from __future__ import annotations

import pytest
import torch

from pathattr import IntegratedGradients, planner


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _run_plan(monkeypatch, n_rows, cost, key=None, cap_numel=1):
    clock = FakeClock()
    monkeypatch.setattr(planner.time, "perf_counter", clock.perf_counter)
    sizes = []
    for a, b in planner.plan_chunks(None, n_rows, cap_numel, key):
        sizes.append(b - a)
        clock.now += cost(b - a)
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


def test_auto_plan_prefers_large_chunks_when_flat(monkeypatch):
    # per-row time flat within noise (+-5 %) beyond 8 rows: the largest near-best size wins
    noise = iter([1.0, 1.04, 0.97, 1.03, 1.0, 0.99, 1.02] * 50)

    def cost(size):
        return size * 0.1 * next(noise) + (0.5 if size < 8 else 0.0)

    _run_plan(monkeypatch, 4000, cost, key="model-b", cap_numel=1 << 14)
    assert planner._best_chunk["model-b"] >= 128


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


def test_auto_plan_folds_a_small_leftover(monkeypatch):
    planner._best_chunk["model-d"] = 16
    sizes = _run_plan(monkeypatch, 52, lambda s: 1.0, key="model-d", cap_numel=1 << 14)
    assert sizes == [16, 16, 20] and sum(sizes) == 52
    # never beyond the memory cap: with a cap of 16 rows the leftover gets its own call
    sizes = _run_plan(monkeypatch, 52, lambda s: 1.0, key="model-d", cap_numel=planner.AUTO_ELEMENT_BUDGET // 16)
    assert sizes == [16, 16, 16, 4]
