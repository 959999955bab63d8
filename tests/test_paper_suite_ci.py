"""The CI-sized run of every family of the IG2 paper: real (small) data, real models, every method, every metric.

This is the small but real version of ``pathattr bench run --suite paper --quick`` that CI runs: each family's
quick profile on its first explicands (two per family, one 224x224 photo for ImageNet), with every registered
method that applies. It asserts that every (example, method) pair was computed, that every stored number is
finite, and that each model meets its stated accuracy. The full quick suite is ``pytest -m slow``.
"""

from __future__ import annotations

import math

import pytest

from pathattr.bench import methods_registry as mr
from pathattr.bench.runner import load_family, run
from pathattr.bench.store import Store

SMALL_FAMILIES = ["synthetic", "mnist", "text", "wafer", "faces"]


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


def test_every_family_quick_profile_small(tmp_path):
    db = str(tmp_path / "ci.sqlite")
    stats = run(SMALL_FAMILIES, None, None, quick=True, limit=2, db=db, progress=False, log=lambda s: None)
    assert not stats.unavailable, stats.unavailable
    assert stats.computed == sum(_expected_pairs(f, 2) for f in SMALL_FAMILIES)
    _check(db, SMALL_FAMILIES)
    again = run(SMALL_FAMILIES, None, None, quick=True, limit=2, db=db, progress=False, log=lambda s: None)
    assert again.computed == 0, "a re-run must skip what is stored"


def test_imagenet_quick_profile_one_photo(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    db = str(tmp_path / "imagenet.sqlite")
    stats = run(["imagenet"], None, None, quick=True, limit=1, db=db, progress=False, log=lambda s: None)
    assert not stats.unavailable, stats.unavailable
    assert stats.computed == _expected_pairs("imagenet", 1)
    _check(db, ["imagenet"])
