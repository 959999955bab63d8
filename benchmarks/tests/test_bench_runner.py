"""The resumable benchmark runner, its store, registries and report."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pathattr_bench import methods_registry as mr
from pathattr_bench import metrics_registry as gr
from pathattr_bench.report import mean_se, write_report
from pathattr_bench.runner import InjectedFailure, load_family, run
from pathattr_bench.store import Store, hp_hash

METHODS = ["ig", "saliency", "eg", "ig2"]
N = 6  # explicands
KW = {"methods": METHODS, "metrics": None, "quick": True, "limit": N, "batch_size": 2, "progress": False,
      "log": lambda s: None}
COST = ("cost_seconds",)  # wall time differs between runs; everything else must be identical


@pytest.fixture(scope="module")
def reference_table(tmp_path_factory):
    db = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    stats = run(["synthetic"], db=str(db), **KW)
    with Store(db) as s:
        table = s.table(exclude_metrics=COST)
    return stats, table, db


#: the quick profile's stability metrics (the float64 recomputation is skipped there; see metrics_registry)
QUICK_STABILITY = set(gr.STABILITY_NAMES) - {"stability_float64"}


def test_full_run_stores_every_metric_once(reference_table):
    stats, table, db = reference_table
    assert stats.computed == N * len(METHODS) and stats.skipped == 0
    assert stats.accuracy["synthetic"] >= 0.95
    keys = [r[:7] for r in table]
    assert len(keys) == len(set(keys))
    per_method = {}
    for r in table:
        per_method.setdefault(r[2], set()).add(r[5])
        assert math.isfinite(r[7]), r
    assert per_method["saliency"] == {"insertion", "deletion", "diffid", "gt_auroc", "gt_ap", "gt_topk", "cost_passes",
                                      *QUICK_STABILITY}
    assert per_method["ig2"] == per_method["saliency"] | {"completeness_abs", "completeness_rel"}
    # every (method, metric) has all N examples
    counts = {}
    for r in table:
        counts[(r[2], r[5])] = counts.get((r[2], r[5]), 0) + 1
    assert set(counts.values()) == {N}
    # IG with 16 Gauss-Legendre nodes on a ReLU MLP is nearly complete; saliency-based GT AUROC is high
    vals = {(r[2], r[5], r[4]): r[7] for r in table}
    assert max(vals[("ig", "completeness_rel", i)] for i in range(N)) < 0.05
    assert sum(vals[("saliency", "gt_auroc", i)] for i in range(N)) / N > 0.9
    with Store(db) as s:
        (acc,) = s.query("SELECT accuracy FROM models WHERE family = 'synthetic'")[0]
        assert acc == stats.accuracy["synthetic"]
        run_row = s.query("SELECT status, computed, hardware, versions FROM runs")[0]
        assert run_row[0] == "finished" and run_row[1] == N * len(METHODS)
        assert "torch" in run_row[3] and "cpu_count" in run_row[2]


def test_rerun_computes_nothing_and_adds_no_rows(reference_table, tmp_path):
    _, table, db = reference_table
    copy = tmp_path / "copy.sqlite"
    src = sqlite3.connect(str(db))
    dst = sqlite3.connect(str(copy))
    src.backup(dst)
    src.close()
    dst.close()
    stats = run(["synthetic"], db=str(copy), **KW)
    assert stats.computed == 0 and stats.rows == 0 and stats.skipped == N * len(METHODS)
    with Store(copy) as s:
        assert s.table(exclude_metrics=COST) == table


def test_injected_failure_then_resume_gives_the_same_table(reference_table, tmp_path):
    _, table, _ = reference_table
    db = tmp_path / "r.sqlite"
    with pytest.raises(InjectedFailure):
        run(["synthetic"], db=str(db), fail_after=5, **KW)
    with Store(db) as s:
        partial = s.table(exclude_metrics=COST)
        assert s.query("SELECT status FROM runs")[0][0] == "interrupted"
    done_first = len({(r[2], r[4]) for r in partial})
    assert done_first == 6  # 5 rounded up to the chunk of 2: nothing in flight is lost
    stats = run(["synthetic"], db=str(db), **KW)
    assert stats.computed == N * len(METHODS) - done_first  # finished work is not recomputed
    with Store(db) as s:
        assert s.table(exclude_metrics=COST) == table  # same final table, no duplicates


def test_sigkill_mid_run_then_resume(reference_table, tmp_path):
    _, table, _ = reference_table
    db = tmp_path / "k.sqlite"
    cmd = [sys.executable, "-m", "pathattr_bench.cli", "run", "--family", "synthetic", "--quick", "--limit",
           str(N), "--batch-size", "2", "--methods", ",".join(METHODS), "--db", str(db), "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    total = N * len(METHODS)
    rows_at_kill = 0
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    con = sqlite3.connect(str(db), timeout=5)
                    done = con.execute("SELECT COUNT(DISTINCT method || ':' || example) FROM results").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    done = 0
                if done >= 4:
                    proc.send_signal(signal.SIGKILL)
                    rows_at_kill = done
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the runner finished before it could be killed"
    con = sqlite3.connect(str(db))
    after_kill = con.execute("SELECT COUNT(DISTINCT method || ':' || example) FROM results").fetchone()[0]
    con.close()
    assert rows_at_kill <= after_kill < total
    stats = run(["synthetic"], db=str(db), **KW)
    assert stats.computed == total - after_kill
    with Store(db) as s:
        assert s.table(exclude_metrics=COST) == table
        # the killed run is marked interrupted by the next one (it used to stay "running" forever)
        assert [r[0] for r in s.query("SELECT status FROM runs ORDER BY run_id")] == ["interrupted", "finished"]


# ------------------------------------------------------------------------------------------------ store
def test_store_unique_key_and_done_examples(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        row = ("f", "m", "ig", "h", 0, "insertion", 0, 0.5, 1)
        assert s.write_chunk([row, row]) == 1
        assert s.write_chunk([(*row[:7], 0.9, 1)]) == 0  # never overwritten, never duplicated
        assert s.query("SELECT value FROM results") == [(0.5,)]
        s.write_chunk([("f", "m", "ig", "h", 0, "deletion", 0, 0.1, 1), ("f", "m", "ig", "h", 1, "insertion", 0, 1, 1)])
        assert s.done_examples("f", "m", "ig", "h", 0, ["insertion", "deletion"]) == {0}
        assert s.done_examples("f", "m", "ig", "h", 0, ["insertion"]) == {0, 1}
        assert s.done_examples("f", "m", "ig", "other", 0, ["insertion"]) == set()
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_hp_hash_is_stable_and_sensitive():
    a = hp_hash("ig", {"n_steps": 16, "method": "gausslegendre"})
    assert a == hp_hash("ig", {"method": "gausslegendre", "n_steps": 16})
    assert a != hp_hash("ig", {"n_steps": 17, "method": "gausslegendre"})
    assert a != hp_hash("eg", {"n_steps": 16, "method": "gausslegendre"})


def test_mean_se():
    m, se, n = mean_se([1.0, 2.0, 3.0, float("nan")])
    assert (m, n) == (2.0, 3) and se == pytest.approx(1.0 / math.sqrt(3))
    assert mean_se([4.0]) == (4.0, 0.0, 1)
    assert math.isnan(mean_se([])[0])


# ------------------------------------------------------------------------------------------------ registries
def test_references_are_shared_deterministic_and_other_class():
    fam = load_family("synthetic", quick=True)
    pool_classes = fam.model(fam.reference_pool).argmax(1)
    settings = mr.reference_settings(fam)
    target = int(fam.model(fam.inputs[3:4]).argmax(1))
    a = mr.select_references(fam, 3, fam.inputs[3], target, pool_classes, settings, seed=0)
    b = mr.select_references(fam, 3, fam.inputs[3], target, pool_classes, settings, seed=0)
    c = mr.select_references(fam, 4, fam.inputs[3], target, pool_classes, settings, seed=0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (settings["n_references"], fam.inputs.shape[1])
    assert bool((fam.model(a).argmax(1) != target).all())
    # ig_refs and ig2 hash the same reference recipe
    assert mr.METHODS["ig_refs"].defaults(fam, True)["recipe"] == mr.METHODS["ig2"].defaults(fam, True)["recipe"]


def test_registry_errors_are_clear():
    with pytest.raises(KeyError, match="unknown method"):
        mr.get_method("nope")
    spec = mr.MethodSpec("x", "X", lambda f, q: {}, lambda *a: None, requires=("pathattr.does_not_exist",))
    assert not spec.available()
    with pytest.raises(KeyError, match="unknown metric"):
        gr.resolve_groups(["nope"])
    assert gr.resolve_groups(["insertion", "gt_auroc"]) == {"insdel": ("insertion",), "ground_truth": ("gt_auroc",)}
    with pytest.raises(KeyError, match="unknown methods"):
        run(["synthetic"], ["nope"], db=":memory:")
    with pytest.raises(KeyError, match="unknown family"):
        load_family("nofamily")


def test_harness_methods_come_from_the_library_registry():
    from pathattr.methods.registry import METHODS as LIBRARY

    for name, spec in mr.METHODS.items():
        assert spec.method in LIBRARY, name  # every harness entry names a registered library method
        assert spec.available() and spec.entry.cls is LIBRARY[spec.method].cls
    covered = {spec.method for spec in mr.METHODS.values()}
    # every library method is benchmarked (Input x Gradient: not in the IG2 paper's comparison)
    assert set(LIBRARY) - covered <= {"input_x_gradient"}, set(LIBRARY) - covered
    # a method the installed library does not register is unavailable, with its name in the error
    ghost = mr.MethodSpec("ghost", "Ghost", lambda f, q: {}, lambda *a: None, method="ghost_method")
    assert not ghost.available()
    with pytest.raises(mr.MethodUnavailable, match="ghost_method"):
        ghost.entry  # noqa: B018
    for module in (mr, gr):  # fixed names are imported, not looked up by string
        assert "importlib" not in Path(module.__file__).read_text()


def test_stability_is_reported_for_every_method(reference_table):
    _, table, _ = reference_table
    names = {(r[2], r[5]) for r in table}
    for method in METHODS:
        for metric in QUICK_STABILITY:
            assert (method, metric) in names, (method, metric)
        assert (method, "stability_float64") not in names  # not computed in the quick profile: not stored
    assert all(gr.DIRECTIONS[m] == "higher" for m in gr.STABILITY_NAMES)
    vals = [r[7] for r in table if r[5] in gr.STABILITY_NAMES]
    assert all(-1.0 <= v <= 1.0 for v in vals)
    # IG on the synthetic MLP is a smooth, deterministic computation: stable under every perturbation
    ig = [r[7] for r in table if r[2] == "ig" and r[5] == "stability_spearman"]
    assert min(ig) > 0.99


def test_blur_ig_only_on_images():
    fam = load_family("synthetic", quick=True)
    assert not mr.applicable(mr.METHODS["blur_ig"], fam)
    assert mr.applicable(mr.METHODS["ig"], fam)


def test_report_tables_and_figures(reference_table, tmp_path):
    _, _, db = reference_table
    path = write_report(str(db), str(tmp_path / "res"), notes=["machine was shared"])
    text = path.read_text()
    assert "- note: machine was shared" in text
    timing = [line for line in text.splitlines() if line.startswith("| synthetic | mlp-64x64 | quick |")]
    assert len(timing) == 1 and float(timing[0].split("|")[6]) > 0  # CPU seconds recorded
    assert "## synthetic — mlp-64x64 (quick)" in text and "hardware:" in text
    assert "| IG2 | 6 |" in text and "±" in text and "gt_auroc ↑" in text and "deletion ↓" in text
    assert "6 explicands with results" in text and "--profile P" in text
    figs = sorted(p.name for p in (tmp_path / "res" / "figures").iterdir())
    assert any("example0" in f for f in figs) and any("insertion" in f for f in figs)
    for f in figs:
        assert Path(tmp_path / "res" / "figures" / f).stat().st_size > 1000


def test_report_counts_the_stores_explicands_not_the_last_pieces(reference_table, tmp_path):
    """A later ``--limit 2`` piece (one method, one metric) records 2 explicands for the family; the report's
    heading still counts the 6 explicands the store has results for."""
    _, _, db = reference_table
    piece = tmp_path / "piece.sqlite"
    piece.write_bytes(Path(db).read_bytes())
    run(["synthetic"], db=str(piece), **{**KW, "limit": 2, "methods": ["saliency"], "metrics": ["insertion"]})
    with Store(piece, readonly=True) as s:
        assert s.query("SELECT n_explicands FROM models WHERE family = 'synthetic'") == [(2,)]
    text = write_report(str(piece), str(tmp_path / "res"), figures=False).read_text()
    assert "6 explicands with results" in text and "2 explicands" not in text


# ------------------------------------------------------------------------------------------------ quick runs
def _assert_finite_and_accurate(db, stats, families):
    with Store(db) as s:
        rows = s.table()
        assert rows and all(math.isfinite(r[7]) for r in rows)
        for fam in families:
            acc, bar = s.query("SELECT accuracy, min_accuracy FROM models WHERE family = ?", (fam,))[0]
            assert acc >= bar and acc == stats.accuracy[fam]


def test_mnist_quick_smoke(tmp_path):
    db = tmp_path / "m.sqlite"
    stats = run(["mnist"], ["ig", "blur_ig", "ig2"], None, quick=True, limit=2, db=str(db), progress=False,
                log=lambda s: None)
    assert stats.computed == 6 and stats.accuracy["mnist"] >= 0.97
    _assert_finite_and_accurate(db, stats, ["mnist"])
    with Store(db) as s:
        metrics = {r[0] for r in s.query("SELECT DISTINCT metric FROM results WHERE method = 'blur_ig'")}
    assert {"insertion", "deletion", "diffid", "completeness_abs"} <= metrics and "gt_auroc" not in metrics


@pytest.mark.slow
def test_quick_suite_of_synthetic_mnist_imagenet(tmp_path):
    """The CI bar: the quick profile of the three families with every method, finite numbers, models at bar."""
    db = tmp_path / "q.sqlite"
    families = ["synthetic", "mnist", "imagenet"]
    stats = run(families, None, None, quick=True, db=str(db), progress=False, log=lambda s: None)
    n_methods = len(mr.PAPER_METHODS)
    assert stats.computed == 32 * (n_methods - 1) + 16 * n_methods + 2 * n_methods
    _assert_finite_and_accurate(db, stats, families)


def test_energy_pointing_scores_zero_where_undefined():
    """An example without positive attribution (MFABA on a wafer map did this in CI) scores 0, the others their
    share of positive energy inside the mask; the run no longer fails the whole chunk."""
    a = torch.tensor([[[1.0, 3.0], [0.0, 0.0]], [[-1.0, 0.0], [0.0, -2.0]]]).unsqueeze(1)
    mask = torch.tensor([[[1, 0], [0, 0]], [[1, 1], [0, 0]]], dtype=torch.bool)
    assert gr._energy_pointing(a, mask).tolist() == [0.25, 0.0]
