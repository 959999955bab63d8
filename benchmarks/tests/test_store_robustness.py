"""Damaged, read-only and shared result stores (issue 14 item 5), failing work units and the executor switch.

* a damaged (integrity check fails), non-database or truncated ``--db`` is refused with a message naming the
  file and ``--db`` (CLI exit 2, no traceback) by ``run`` and ``report``;
* ``report`` opens the store read-only: no switch to WAL, no file created, a store in a read-only folder can be
  reported on; ``run`` refuses a read-only store clearly;
* a run whose process died is marked "interrupted" by the next writer;
* two runs on one store claim work: nothing is computed twice and no run overstates what it stored;
* a work unit that raises is recorded as failed and the run goes on; the next run retries only it;
* without ``--executor ray`` nothing imports Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pathattr_bench import cli
from pathattr_bench.runner import run
from pathattr_bench.store import STALE_SECONDS, Store, StoreError
from pathattr_bench.units import ChunkComputer

METHODS = ["ig", "saliency"]
KW = {"methods": METHODS, "metrics": ["insertion", "deletion", "gt_auroc"], "quick": True, "limit": 4,
      "batch_size": 2, "progress": False, "log": lambda s: None}
COST = ("cost_seconds",)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A finished small run and its table (without wall-time rows)."""
    db = tmp_path_factory.mktemp("small") / "small.sqlite"
    run(["synthetic"], db=str(db), **KW)
    with Store(db) as s:
        table = s.table(exclude_metrics=COST)
    return db, table


def _copy(db: Path, dst: Path) -> Path:
    shutil.copy(db, dst)
    return dst


def _damage(path: Path) -> None:
    """Overwrite the cell-pointer array of the results table's root page (the table still counts its rows)."""
    con = sqlite3.connect(str(path))
    root, page = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results'").fetchone()[0], \
        con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page + 12)
        fh.write(bytes([0x0F, 0xF0]) * 8)


def _truncate(path: Path, at_page: bool) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate((size // 4096 // 2) * 4096 if at_page else size // 2 + 17)


def _cli(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("kind", ["damaged", "not_a_database", "truncated_odd", "truncated_pages"])
def test_bad_store_is_refused_by_run_and_report(small_store, tmp_path, capsys, kind):
    db, _ = small_store
    bad = _copy(db, tmp_path / f"{kind}.sqlite")
    if kind == "damaged":
        _damage(bad)
        con = sqlite3.connect(str(bad))  # what made this silent before: SQLite still counts the rows
        assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] > 0
        con.close()
    elif kind == "not_a_database":
        bad.write_text("family,method,value\nsynthetic,ig,0.5\n" * 100)
    else:
        _truncate(bad, at_page=kind == "truncated_pages")
    before = bad.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="--db") as err:
            Store(bad, readonly=readonly)
        assert str(bad) in str(err.value)
    words = {"damaged": "damaged", "not_a_database": "not an SQLite database", "truncated_odd": "truncated",
             "truncated_pages": "damaged"}[kind]
    assert words in str(err.value)
    code, text = _cli(["run", "--family", "synthetic", "--quick", "--limit", "2", "--methods", "ig", "--db",
                       str(bad), "--no-progress"], capsys)
    assert code == 2 and "--db" in text and str(bad) in text and words in text and "Traceback" not in text
    code, text = _cli(["report", "--db", str(bad), "--out", str(tmp_path / "rep"), "--no-figures"], capsys)
    assert code == 2 and "--db" in text and str(bad) in text and "Traceback" not in text
    assert bad.read_bytes() == before  # nothing was written into the damaged file
    assert not (tmp_path / "rep" / "README.md").exists()


def test_report_on_missing_store_is_a_clear_error(tmp_path, capsys):
    code, text = _cli(["report", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "no such results store" in text and "--db" in text
    assert not (tmp_path / "nope.sqlite").exists()


def test_report_opens_read_only_and_keeps_the_journal_mode(small_store, tmp_path, capsys):
    db, table = small_store
    plain = _copy(db, tmp_path / "plain.sqlite")
    con = sqlite3.connect(str(plain))
    assert con.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    con.close()
    before = plain.read_bytes()
    with Store(plain, readonly=True) as s:
        assert s.table(exclude_metrics=COST) == table
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            s.conn.execute("DELETE FROM results")
    code, _ = _cli(["report", "--db", str(plain), "--out", str(tmp_path / "rep"), "--no-figures"], capsys)
    assert code == 0 and (tmp_path / "rep" / "README.md").is_file()
    assert plain.read_bytes() == before  # not switched to WAL, nothing written
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("plain")) == ["plain.sqlite"]


_AS_OTHER_USER = r"""
import json, os, sys
from pathattr_bench import cli
d = sys.argv[1]
res = {}
res["report_ro_folder"] = cli.main(["report", "--db", f"{d}/ro/store.sqlite", "--out", f"{d}/out", "--no-figures"])
res["report_written"] = os.path.isfile(f"{d}/out/README.md")
res["run_ro_folder"] = cli.main(["run", "--family", "synthetic", "--quick", "--limit", "1", "--methods", "ig",
                                 "--db", f"{d}/ro/store.sqlite", "--no-progress"])
res["run_ro_file"] = cli.main(["run", "--family", "synthetic", "--quick", "--limit", "1", "--methods", "ig",
                               "--db", f"{d}/rw/ro_file.sqlite", "--no-progress"])
res["run_new_in_ro_folder"] = cli.main(["run", "--family", "synthetic", "--quick", "--limit", "1", "--methods",
                                        "ig", "--db", f"{d}/ro/new.sqlite", "--no-progress"])
print("RESULT " + json.dumps(res))
"""


def test_read_only_folder_and_file(small_store):
    """With file modes enforced (as root, the checks run without the capabilities that bypass them)."""
    db, _ = small_store
    base = Path(tempfile.mkdtemp(prefix="pathattr_ro_"))
    try:
        os.chmod(base, 0o777)
        (base / "ro").mkdir()
        (base / "rw").mkdir(mode=0o777)
        (base / "out").mkdir(mode=0o777)
        os.chmod(base / "rw", 0o777)
        os.chmod(base / "out", 0o777)
        shutil.copy(db, base / "ro" / "store.sqlite")  # a WAL store, closed: no -wal / -shm beside it
        shutil.copy(db, base / "rw" / "ro_file.sqlite")
        os.chmod(base / "ro" / "store.sqlite", 0o444)
        os.chmod(base / "rw" / "ro_file.sqlite", 0o444)
        os.chmod(base / "ro", 0o555)
        env = {**os.environ, "HOME": str(base / "out"), "MPLCONFIGDIR": str(base / "out"), "PYTHONUNBUFFERED": "1"}
        prefix: list[str] = []
        if os.geteuid() == 0:  # root ignores file modes unless it gives up the capabilities that let it
            setpriv = shutil.which("setpriv")
            if setpriv is None:  # pragma: no cover
                pytest.skip("running as root without setpriv: file modes cannot be tested")
            caps = "-dac_override,-dac_read_search,-fowner"
            prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
        proc = subprocess.run([*prefix, sys.executable, "-c", _AS_OTHER_USER, str(base)], capture_output=True,
                              text=True, env=env, timeout=300)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, proc.stdout + proc.stderr
        res = json.loads(lines[0][7:])
        assert res == {"report_ro_folder": 0, "report_written": True, "run_ro_folder": 2, "run_ro_file": 2,
                       "run_new_in_ro_folder": 2}, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "read-only" in proc.stderr and "not writable" in proc.stderr and "--db" in proc.stderr
        assert sorted(p.name for p in (base / "ro").iterdir()) == ["store.sqlite"]
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ liveness
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_runs_whose_process_died_are_marked_interrupted(tmp_path):
    db = tmp_path / "l.sqlite"
    host = socket.gethostname()
    now = time.time()
    with Store(db) as s:
        rows = {  # run_id: (pid, host, heartbeat)
            1: (_dead_pid(), host, now),  # killed on this host
            2: (os.getpid(), host, now),  # this process: alive
            3: (12345, "other-host", now - STALE_SECONDS - 5),  # another host, silent for too long
            4: (12345, "other-host", now),  # another host, fresh heartbeat
        }
        for run_id, (pid, h, beat) in rows.items():
            s.conn.execute("INSERT INTO runs (run_id, started, status, pid, host, heartbeat) VALUES "
                           "(?, ?, 'running', ?, ?, ?)", (run_id, now - 100, pid, h, beat))
            s.conn.execute("INSERT INTO claims VALUES ('f', 'm', 'ig', 'h', 0, ?, ?, ?)", (run_id, run_id, now))
        s.conn.commit()
    with Store(db) as s:
        status = dict(s.query("SELECT run_id, status FROM runs"))
        assert status == {1: "interrupted", 2: "running", 3: "interrupted", 4: "running"}
        assert sorted(r[0] for r in s.query("SELECT run_id FROM claims")) == [2, 4]
        finished = s.query("SELECT finished FROM runs WHERE run_id = 1")[0][0]
        assert finished == pytest.approx(now)  # the last sign of life


def test_injected_interrupt_is_recorded_and_claims_released(tmp_path):
    from pathattr_bench.runner import InjectedFailure

    db = tmp_path / "i.sqlite"
    with pytest.raises(InjectedFailure):
        run(["synthetic"], db=str(db), fail_after=2, **KW)
    with Store(db) as s:
        assert s.query("SELECT status, computed, rows FROM runs")[0][0] == "interrupted"
        assert s.count("claims") == 0


# ------------------------------------------------------------------------------------------------ claims
def test_claims_keep_two_runs_from_computing_the_same_examples(tmp_path):
    db = tmp_path / "c.sqlite"
    series = ("f", "m", "ig", "h", 0)
    metrics = ["insertion"]
    a, b = Store(db), Store(db)
    try:
        ra, rb = a.start_run("a", ["f"]), b.start_run("b", ["f"])
        assert a.claim(series, [0, 1, 2, 3], metrics, ra) == [0, 1, 2, 3]
        assert b.claim(series, [2, 3, 4, 5], metrics, rb) == [4, 5]  # 2, 3 are a's while a lives
        assert a.claim(series, [0, 1], metrics, ra) == [0, 1]  # a run's own claims stay its own
        rows = [("f", "m", "ig", "h", i, "insertion", 0, 0.5, ra) for i in (0, 1)]
        assert a.write_chunk(rows, release=(series, [0, 1], ra)) == 2
        assert b.claim(series, [0, 1], metrics, rb) == []  # stored meanwhile
        # a dies (its process is gone): b takes over its claims on 2, 3
        b.conn.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (_dead_pid(), ra))
        b.conn.commit()
        assert b.claim(series, [2, 3], metrics, rb) == [2, 3]
        # a run that finished holds nothing
        b.finish_run(rb, "finished", 0, 0, 0, 0.0)
        assert a.count("claims") == 0
    finally:
        a.close()
        b.close()


def test_concurrent_runs_split_the_work_and_do_not_overstate(tmp_path):
    """Two processes run the same command on one store at the same time: every (example, method) is computed
    once over both, and each run's ``rows`` is exactly what it inserted (before claims both computed everything
    they saw missing and the store's counts overstated the work)."""
    db = tmp_path / "two.sqlite"
    n, methods = 16, ["ig", "ig2"]
    cmd = [sys.executable, "-m", "pathattr_bench.cli", "run", "--family", "synthetic", "--quick", "--limit", str(n),
           "--batch-size", "1", "--methods", ",".join(methods), "--metrics", "insertion", "--db", str(db),
           "--no-progress", "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with Store(db) as s:
        runs = s.query("SELECT run_id, status, computed, rows FROM runs ORDER BY run_id")
        per_run = dict(s.query("SELECT run_id, COUNT(*) FROM results GROUP BY run_id"))
        keys = s.query("SELECT family, model, method, hp_hash, example, metric, seed FROM results")
        assert s.count("claims") == 0
    assert [r[1] for r in runs] == ["finished", "finished"]
    assert sum(r[2] for r in runs) == n * len(methods)  # every (example, method) computed exactly once
    for run_id, _, _, rows in runs:
        assert rows == per_run.get(run_id, 0)  # what each run says it stored is what it stored
    assert len(keys) == len(set(keys)) == n * len(methods) * 3  # insertion, cost_seconds, cost_passes


OPEN_AT = """
import sys, time
from pathattr_bench.store import Store
start = float(sys.argv[1])
for i, path in enumerate(sys.argv[2:]):
    time.sleep(max(0.0, start + 0.25 * i - time.time()))
    with Store(path) as s:
        s.finish_run(s.start_run("open", ["synthetic"]), "finished", 0, 0, 0, 0.0)
"""


def test_processes_creating_one_store_at_the_same_moment_all_succeed(tmp_path):
    """Runs started together on a new store: SQLite answers "database is locked" at once (no busy timeout) to a
    journal-mode switch while another process holds the file, and two schema migrations raced to "duplicate
    column name". Three processes open each of 12 new stores at an agreed moment (before the fix most failed)."""
    paths = [str(tmp_path / f"s{i}.sqlite") for i in range(12)]
    start = time.time() + 4.0  # after every interpreter has imported the store
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, str(start), *paths], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    for path in paths:
        with Store(path) as s:
            assert s.query("SELECT status FROM runs") == [("finished",)] * 3
            assert s.query("PRAGMA journal_mode") == [("wal",)]


# ------------------------------------------------------------------------------------------------ failures
def test_failing_unit_is_recorded_and_retried(small_store, tmp_path, monkeypatch):
    db = tmp_path / "f.sqlite"
    original = ChunkComputer.compute

    def flaky(self, series, chunk, run_id):
        if series.method == "ig" and 3 in chunk:
            raise ValueError("boom on example 3")
        return original(self, series, chunk, run_id)

    monkeypatch.setattr(ChunkComputer, "compute", flaky)
    stats = run(["synthetic"], db=str(db), **KW)
    assert stats.computed == 4 * len(METHODS) - 2 and len(stats.task_failures) == 1
    assert "boom on example 3" in stats.task_failures[0]
    with Store(db) as s:
        (run_status, failed), = s.query("SELECT status, failed FROM runs")
        assert (run_status, failed) == ("finished", 1)
        (method, examples, error, tb), = s.query("SELECT method, examples, error, traceback FROM failures")
        assert method == "ig" and json.loads(examples) == [2, 3] and error == "ValueError: boom on example 3"
        assert "Traceback" in tb and "flaky" in tb
        assert s.count("claims") == 0
    monkeypatch.setattr(ChunkComputer, "compute", original)
    again = run(["synthetic"], db=str(db), **KW)
    assert again.computed == 2 and not again.task_failures
    with Store(db) as s:
        assert s.table(exclude_metrics=COST) == small_store[1]
    with pytest.raises(ValueError, match="boom"):
        monkeypatch.setattr(ChunkComputer, "compute", flaky)
        run(["synthetic"], db=str(tmp_path / "g.sqlite"), on_error="raise", **KW)


def test_cli_exits_1_when_units_failed(tmp_path, capsys, monkeypatch):
    def broken(self, series, chunk, run_id):
        raise RuntimeError("always")

    monkeypatch.setattr(ChunkComputer, "compute", broken)
    code, text = _cli(["run", "--family", "synthetic", "--quick", "--limit", "2", "--methods", "ig", "--db",
                       str(tmp_path / "b.sqlite"), "--no-progress"], capsys)
    assert code == 1 and "failed: synthetic/ig examples [0, 1]: RuntimeError: always" in text
    assert "run the same command again" in text


def test_local_executor_does_not_import_ray(tmp_path):
    code = ("import sys\nfrom pathattr_bench import cli\n"
            f"assert cli.main(['run', '--family', 'synthetic', '--quick', '--limit', '1', '--methods', 'saliency', "
            f"'--db', {str(tmp_path / 'n.sqlite')!r}, '--no-progress']) == 0\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\nprint('OK')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr


def test_executor_options_are_checked(tmp_path, capsys):
    code, text = _cli(["run", "--family", "synthetic", "--quick", "--num-workers", "2", "--db",
                       str(tmp_path / "x.sqlite")], capsys)
    assert code == 2 and "--executor ray" in text
    with pytest.raises(KeyError, match="unknown executor"):
        run(["synthetic"], db=str(tmp_path / "y.sqlite"), executor="dask", **KW)


def test_ray_executor_without_ray_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, text = _cli(["run", "--family", "synthetic", "--quick", "--limit", "1", "--methods", "saliency",
                       "--executor", "ray", "--db", str(tmp_path / "r.sqlite"), "--no-progress"], capsys)
    assert code == 2 and "pip install" in text and "Traceback" not in text
