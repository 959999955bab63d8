"""The Ray executor (issue 17) on a local two-CPU Ray cluster started inside the test module.

Same rows as the local executor (equal up to the round-off of a different automatic chunking: deterministic
methods, and the seeded stochastic ones draw from the same per-chunk streams), a worker killed mid-task or a
driver killed mid-run
loses and duplicates nothing, a unit failing inside a worker is recorded and the run goes on. About a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from pathattr_bench.runner import run
from pathattr_bench.store import Store, from_blob

ray = pytest.importorskip("ray")

METHODS = ["ig", "saliency", "eg", "ig2"]  # eg draws baselines at random: seeded per chunk, so identical too
N = 6
KW = {"methods": METHODS, "metrics": None, "quick": True, "limit": N, "batch_size": 2, "progress": False,
      "log": lambda s: None}
COST = ("cost_seconds",)  # wall time differs between runs; everything else must be identical
TOTAL = N * len(METHODS)


@pytest.fixture(scope="module")
def cluster():
    started = not ray.is_initialized()
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning") \
        if started else None
    yield ctx
    if started:
        ray.shutdown()


def _snapshot(db) -> tuple[list, list]:
    with Store(db) as s:
        return (s.table(exclude_metrics=COST),
                s.query("SELECT family, model, method, hp_hash, example, seed, kind, data FROM artifacts "
                        "ORDER BY family, model, method, hp_hash, example, seed, kind"))


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    db = tmp_path_factory.mktemp("local") / "local.sqlite"
    stats = run(["synthetic"], db=str(db), **KW)
    assert stats.computed == TOTAL
    return _snapshot(db)


def _assert_clean(db, expected) -> None:
    # the same rows and keys; values equal up to float round-off: with the automatic internal_batch_size the
    # planner picks chunk sizes by measured time, so a worker may chunk rows (e.g. IG2's refinement rows)
    # differently from the local run, and a different chunking rounds differently
    table, artifacts = _snapshot(db)
    assert [r[:-1] for r in table] == [r[:-1] for r in expected[0]]
    got, want = np.array([r[-1] for r in table], dtype=float), np.array([r[-1] for r in expected[0]], dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)  # float32 metrics of O(1)
    assert [a[:-1] for a in artifacts] == [a[:-1] for a in expected[1]]
    for a, b in zip(artifacts, expected[1]):
        np.testing.assert_allclose(from_blob(a[-1]), from_blob(b[-1]), rtol=1e-4, atol=1e-6)
    with Store(db) as s:
        keys = s.query("SELECT family, model, method, hp_hash, example, metric, seed FROM results")
        assert len(keys) == len(set(keys))
        assert s.count("claims") == 0


def test_ray_run_stores_exactly_the_local_rows(cluster, local, tmp_path):
    db = tmp_path / "ray.sqlite"
    stats = run(["synthetic"], db=str(db), executor="ray", num_workers=2, **KW)
    assert stats.computed == TOTAL and stats.tasks == TOTAL // 2 and not stats.task_failures
    assert stats.executor == "ray" and stats.rows > 0 and stats.compute_seconds > 0
    _assert_clean(db, local)
    with Store(db) as s:
        (status, executor, computed, rows), = s.query("SELECT status, executor, computed, rows FROM runs")
        assert (status, executor, computed) == ("finished", "ray", TOTAL) and rows == s.count("results")
        assert s.query("SELECT cpu_seconds FROM family_runs")[0][0] > 0


def test_killed_worker_loses_and_duplicates_nothing(cluster, local, tmp_path, capsys):
    db = tmp_path / "kill.sqlite"
    logs: list[str] = []
    stats = run(["synthetic"], db=str(db), executor="ray", num_workers=2,
                executor_options={"kill_worker_after": 2}, **{**KW, "log": logs.append, "progress": True})
    assert any("killing ray worker" in line for line in logs), logs
    assert any("died" in line and "replacement" in line for line in logs), logs
    assert stats.computed == TOTAL and not stats.task_failures  # the lost units were sent again, once
    _assert_clean(db, local)
    err = capsys.readouterr().err
    assert "ray" in err and "rows/s" in err  # the driver's progress bar


def test_failing_unit_is_recorded_and_the_run_goes_on(cluster, local, tmp_path):
    db = tmp_path / "fail.sqlite"
    stats = run(["synthetic"], db=str(db), executor="ray", num_workers=2,
                executor_options={"inject_error": ("ig", 3)}, **KW)
    assert stats.computed == TOTAL - 2 and len(stats.task_failures) == 1
    with Store(db) as s:
        (method, examples, error, tb), = s.query("SELECT method, examples, error, traceback FROM failures")
        assert method == "ig" and json.loads(examples) == [2, 3]
        assert error == "ValueError: injected failure on example 3 (test)" and "Traceback" in tb
        assert s.query("SELECT status, failed FROM runs")[0] == ("finished", 1)
    again = run(["synthetic"], db=str(db), **KW)  # the next run (any executor) computes only the failed unit
    assert again.computed == 2 and again.skipped == TOTAL - 2
    _assert_clean(db, local)


def test_killed_driver_then_resume(cluster, local, tmp_path):
    db = tmp_path / "driver.sqlite"
    address = cluster.address_info["address"] if cluster is not None else "auto"
    cmd = [sys.executable, "-m", "pathattr_bench.cli", "run", "--family", "synthetic", "--quick", "--limit", str(N),
           "--batch-size", "2", "--methods", ",".join(METHODS), "--db", str(db), "--no-progress",
           "--executor", "ray", "--address", address, "--num-workers", "2", "--ray-option", "kill_driver_after=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    with Store(db) as s:  # opening as a writer marks the dead driver's run
        assert s.query("SELECT status FROM runs")[0][0] == "interrupted"
        stored = s.query("SELECT COUNT(DISTINCT method || ':' || example) FROM results")[0][0]
        assert s.count("claims") == 0
    assert stored == 6  # the three units written before the kill; none half-written
    stats = run(["synthetic"], db=str(db), executor="ray", num_workers=2, **KW)
    assert stats.computed == TOTAL - stored and stats.skipped == stored
    _assert_clean(db, local)
