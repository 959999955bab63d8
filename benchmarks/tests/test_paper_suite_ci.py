"""CI runs ``pathattr-bench run --suite paper --quick``: every family of the IG2 paper, real (small) data, real models.

Each family's whole quick profile (its explicands, every registered method that applies, every metric that
applies) runs through the resumable runner. The test asserts that every (example, method) pair was computed,
that every stored number is finite, that each model meets its stated accuracy, and that a re-run computes
nothing. About 4-7 minutes on 2 CPU cores; the interrupt-and-resume bar is in ``test_bench_runner.py``.
"""

from __future__ import annotations

import math

import pytest

from pathattr_bench import methods_registry as mr
from pathattr_bench.runner import load_family, run
from pathattr_bench.store import Store

FAMILIES = ["synthetic", "mnist", "imagenet", "text", "wafer", "faces"]


def _expected_pairs(family: str, n: int) -> int:
    fam = load_family(family, quick=True)
    return n * sum(1 for name in mr.PAPER_METHODS if mr.applicable(mr.get_method(name), fam))


def _check(db, families):
    with Store(db) as s:
        rows = s.table()
        assert rows, "nothing stored"
        bad = [r for r in rows if not math.isfinite(r[7])]
        assert not bad, f"non-finite results: {bad[:5]}"
        for fam in families:
            acc, bar = s.query("SELECT accuracy, min_accuracy FROM models WHERE family = ?", (fam,))[0]
            assert acc >= bar, (fam, acc, bar)
            methods = {r[0] for r in s.query("SELECT DISTINCT method FROM results WHERE family = ?", (fam,))}
            assert {"ig", "ig2", "gradpath_ig", "gradcf_ig", "ig_refs"} <= methods, (fam, methods)


@pytest.mark.timeout(2400)
def test_paper_suite_quick_profile(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    db = str(tmp_path / "quick_suite.sqlite")
    stats = run(FAMILIES, None, None, quick=True, db=db, progress=False, log=lambda s: None)
    assert not stats.unavailable, stats.unavailable
    sizes = {f: int(load_family(f, quick=True).inputs.shape[0]) for f in FAMILIES}
    assert stats.computed == sum(_expected_pairs(f, sizes[f]) for f in FAMILIES)
    _check(db, FAMILIES)
    again = run(FAMILIES, None, None, quick=True, db=db, progress=False, log=lambda s: None)
    assert again.computed == 0, "a re-run must skip what is stored"
