"""Report statistics: paired bootstrap intervals, Wilcoxon signed-rank tests, Holm correction, win/tie/loss,
on synthetic stores whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pathattr_bench.stats import compare_family, holm, ig2_variants, paired_bootstrap, tally, wilcoxon_paired


def test_holm_matches_hand_computation():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06 -> monotone 0.06), 0.5 (x1 = 0.5)
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    # capped at 1, monotone step-down, NaN is not a hypothesis
    assert holm([0.4, 0.3, float("nan")])[:2] == pytest.approx([0.6, 0.6])
    assert math.isnan(holm([0.4, 0.3, float("nan")])[2])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_wilcoxon_direction_and_identical_inputs():
    a = np.linspace(1.0, 2.0, 12)
    p, fav = wilcoxon_paired(a + 0.1 * np.arange(1, 13), a, higher_is_better=True)
    assert p < 0.001 and fav == 1
    p, fav = wilcoxon_paired(a + 0.1 * np.arange(1, 13), a, higher_is_better=False)
    assert fav == -1
    assert wilcoxon_paired(a, a.copy(), True) == (1.0, 0)
    assert wilcoxon_paired(a, a + 1e-15, True) == (1.0, 0)  # round-off is no difference


def _store(n=20, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, n)
    return {
        "diffid": {  # higher is better: ig2 better on every example, ig identical to ig_copy
            "ig2": {i: base[i] + 0.05 + 0.01 * rng.random() for i in range(n)},
            "ig": {i: base[i] for i in range(n)},
            "ig_copy": {i: base[i] for i in range(n)},
        },
        "deletion": {  # lower is better: ig2 worse (higher) on every example
            "ig2": {i: base[i] + 0.2 for i in range(n)},
            "ig": {i: base[i] for i in range(n)},
            "ig_copy": {i: base[i] for i in range(n)},
        },
    }


def test_better_on_every_example_wins_identical_ties_worse_loses():
    comps = compare_family(_store(), {"diffid": "higher", "deletion": "lower"}, ["ig", "ig_copy", "ig2"])
    assert {c.variant for c in comps} == {"ig2"}
    by = {(c.other, c.metric): c for c in comps}
    assert by[("ig", "diffid")].outcome == "win" and by[("ig_copy", "diffid")].outcome == "win"
    assert by[("ig", "deletion")].outcome == "loss"
    assert by[("ig", "diffid")].p_holm <= 4 * by[("ig", "diffid")].p + 1e-15
    assert tally(comps) == (2, 0, 2)


def test_identical_variant_ties_everywhere():
    store = _store()
    for metric in store.values():
        metric["ig2"] = dict(metric["ig"])
    comps = compare_family(store, {"diffid": "higher", "deletion": "lower"}, ["ig", "ig_copy", "ig2"])
    assert comps and all(c.outcome == "tie" and c.p == 1.0 for c in comps)


def test_too_few_examples_cannot_win():
    store = _store(n=5)
    comps = compare_family(store, {"diffid": "higher"}, ["ig", "ig2"])
    assert [c.outcome for c in comps] == ["tie"]  # n = 5: smallest two-sided p is 0.0625


def test_variants_and_missing_metrics():
    assert ig2_variants(["ig", "ig2", "gradpath_ig", "ig2_idgi", "ig2_paper"]) == ["ig2", "ig2_idgi", "ig2_paper"]
    store = {"completeness_rel": {"ig2": {i: 1.0 + i for i in range(8)}}, "unknown": {}}
    assert compare_family(store, {"completeness_rel": "lower"}, ["saliency", "ig2"]) == []


def test_paired_bootstrap_interval_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(1)
    values = {"a": {i: float(v) for i, v in enumerate(rng.normal(1.0, 1.0, 60))},
              "b": {i: float(v) for i, v in enumerate(rng.normal(0.0, 1.0, 60))}}
    values["b"][3] = float("nan")
    r1 = paired_bootstrap(values, seed="fam|metric")
    r2 = paired_bootstrap(values, seed="fam|metric")
    assert r1 == r2
    mean, lo, hi, n = r1["a"]
    assert n == 60 and lo < mean < hi and 0.2 < hi - lo < 0.8  # ~ 2 x 1.96 / sqrt(60) = 0.51
    assert r1["b"][3] == 59
    # paired: a constant shift moves the interval by exactly the shift
    values["c"] = {i: v + 10.0 for i, v in values["a"].items()}
    r3 = paired_bootstrap(values, seed="fam|metric")
    assert r3["c"][1] == pytest.approx(r3["a"][1] + 10.0) and r3["c"][2] == pytest.approx(r3["a"][2] + 10.0)
    assert math.isnan(paired_bootstrap({"x": {}})["x"][0])


def test_report_has_intervals_outcomes_and_claims(tmp_path):
    from pathattr_bench.report import write_report
    from pathattr_bench.runner import run

    db = str(tmp_path / "s.sqlite")
    run(["synthetic"], ["ig", "ig2", "ig2_idgi"], ["insdel", "completeness"], profile="paper", db=db, limit=8,
        progress=False, log=lambda s: None)
    text = write_report(db, str(tmp_path / "rep"), figures=False).read_text()
    assert "## Claims: IG2 against each method on the primary metric" in text
    assert "| synthetic (paper) | IG2 (diffid) |" in text
    assert "### synthetic (paper) — statistics" in text and "**diffid** (primary) ↑" in text
    assert "**IG2** against every other method:" in text and "Holm-corrected across the" in text
    assert text.index("## Claims") < text.index("## synthetic")
