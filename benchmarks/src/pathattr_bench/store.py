"""The benchmark's result store: one SQLite file (stdlib ``sqlite3``, WAL journal).

Tables:

* ``results``: one row per (family, model, method, hyperparameter hash, example, metric, seed) -- a ``UNIQUE``
  constraint, so a value can never be stored twice; ``INSERT OR IGNORE`` makes re-running idempotent.
* ``hyperparameters``: hash -> method, profile (``quick``/``full``) and the JSON of every setting.
* ``models``: accuracy, stated bar and facts of every (family, model, seed, profile) loaded.
* ``runs``: one row per invocation (command, hardware, library versions, start/finish time, counts, status);
  ``family_runs``: wall time and counts of each family within a run.
* ``artifacts``: small arrays for the report (explicand images, attributions of the first examples,
  insertion/deletion curves), keyed like ``results`` plus a ``kind``.
* ``claims``: (series, example) -> the run computing it now. A run claims a chunk's examples in one
  ``BEGIN IMMEDIATE`` transaction before computing them (skipping examples already stored or claimed by a run
  that is still alive) and releases them in the transaction that writes their results, so two concurrent runs
  on one store never compute the same example twice.
* ``failures``: work units (a chunk of examples of one method) that raised, with the error and traceback; they
  are not in ``results``, so the next run retries them.

Every chunk of examples is written in **one transaction** as soon as it is computed, so a killed run loses at
most the chunk in flight and a re-run skips everything already stored.

Robustness: opening checks that the file is an SQLite database and passes ``PRAGMA quick_check``, and raises
:class:`StoreError` (naming the file and ``--db``) for a damaged, truncated, non-database or read-only file.
``Store(path, readonly=True)`` (reports) opens the file read-only: no schema change, no switch to WAL, and a
store in a read-only folder can still be read. Every run records its pid, host and a heartbeat; a writer that
opens the store marks "running" runs whose process is gone as "interrupted" (and drops their claims).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import socket
import sqlite3
import time
import traceback as _traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    family TEXT NOT NULL, model TEXT NOT NULL, method TEXT NOT NULL, hp_hash TEXT NOT NULL,
    example INTEGER NOT NULL, metric TEXT NOT NULL, seed INTEGER NOT NULL,
    value REAL, run_id INTEGER, created REAL NOT NULL,
    UNIQUE (family, model, method, hp_hash, example, metric, seed)
);
CREATE TABLE IF NOT EXISTS hyperparameters (
    hp_hash TEXT PRIMARY KEY, method TEXT NOT NULL, profile TEXT NOT NULL, json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    family TEXT NOT NULL, model TEXT NOT NULL, seed INTEGER NOT NULL, profile TEXT NOT NULL,
    accuracy REAL NOT NULL, min_accuracy REAL NOT NULL, n_explicands INTEGER NOT NULL,
    load_seconds REAL, info TEXT, recorded REAL NOT NULL,
    UNIQUE (family, model, seed, profile)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, command TEXT, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    hardware TEXT, versions TEXT, computed INTEGER DEFAULT 0, skipped INTEGER DEFAULT 0, rows INTEGER DEFAULT 0,
    seconds REAL, families TEXT
);
CREATE TABLE IF NOT EXISTS artifacts (
    family TEXT NOT NULL, model TEXT NOT NULL, method TEXT NOT NULL, hp_hash TEXT NOT NULL,
    example INTEGER NOT NULL, seed INTEGER NOT NULL, kind TEXT NOT NULL, data BLOB NOT NULL,
    UNIQUE (family, model, method, hp_hash, example, seed, kind)
);
CREATE TABLE IF NOT EXISTS family_runs (
    run_id INTEGER NOT NULL, family TEXT NOT NULL, model TEXT NOT NULL, profile TEXT NOT NULL,
    seconds REAL NOT NULL, load_seconds REAL, computed INTEGER NOT NULL, skipped INTEGER NOT NULL,
    finished REAL NOT NULL, cpu_seconds REAL
);
CREATE TABLE IF NOT EXISTS claims (
    family TEXT NOT NULL, model TEXT NOT NULL, method TEXT NOT NULL, hp_hash TEXT NOT NULL, seed INTEGER NOT NULL,
    example INTEGER NOT NULL, run_id INTEGER NOT NULL, claimed REAL NOT NULL,
    PRIMARY KEY (family, model, method, hp_hash, seed, example)
);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY, run_id INTEGER, family TEXT NOT NULL, model TEXT NOT NULL, method TEXT NOT NULL,
    hp_hash TEXT NOT NULL, seed INTEGER NOT NULL, examples TEXT NOT NULL, error TEXT NOT NULL, traceback TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_group ON results (family, model, method, hp_hash, seed);
"""
#: columns added to ``runs`` after the first stores were written (added on open by a writer)
RUN_COLUMNS = {"pid": "INTEGER", "host": "TEXT", "heartbeat": "REAL", "proc_start": "TEXT", "executor": "TEXT",
               "failed": "INTEGER DEFAULT 0"}
#: a "running" run on another host whose heartbeat is older than this is treated as dead (seconds)
STALE_SECONDS = 3600.0
_MAGIC = b"SQLite format 3\x00"


class StoreError(RuntimeError):
    """The results store cannot be used: not a database, damaged, missing or read-only. The message names the
    file and the ``--db`` option."""


def _proc_start(pid: int) -> str | None:
    """Start time of process ``pid`` (Linux clock ticks since boot), to tell a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_alive(pid: int | None, host: str | None, heartbeat: float | None, proc_start: str | None,
              now: float | None = None) -> bool:
    """Whether the process of a "running" run is still alive: on this host by its pid (and its start time, so a
    reused pid does not count), on another host by a heartbeat younger than :data:`STALE_SECONDS`."""
    if pid is None:  # a run recorded before pids were: alive only while its heartbeat is fresh
        return heartbeat is not None and (now or time.time()) - heartbeat < STALE_SECONDS
    if host == socket.gethostname():
        if not _pid_alive(int(pid)):
            return False
        start = _proc_start(int(pid))
        return proc_start is None or start is None or start == proc_start
    return heartbeat is not None and (now or time.time()) - heartbeat < STALE_SECONDS


def hp_hash(method: str, hyperparameters: dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of a method name and its hyperparameters (JSON, sorted keys)."""
    text = json.dumps({"name": method, "hyperparameters": hyperparameters}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_blob(array: Any) -> bytes:
    """An array (numpy or torch) as ``.npy`` bytes."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def from_blob(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def hardware() -> dict[str, Any]:
    """Facts about the machine for the run record."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    if torch.cuda.is_available():  # pragma: no cover - CPU machines here
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    """Versions of Python, torch, numpy and pathattr."""
    import torch

    import pathattr

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pathattr": getattr(pathattr, "__version__", "?")}


class Store:
    """A results database at ``path`` (created with its schema if missing). Use as a context manager or call
    :meth:`close`.

    Args:
        path: the SQLite file.
        readonly: open for reading only (reports): the file must exist; nothing is written, the journal mode is
            left as it is, and a store in a read-only folder can be read.
        check: run ``PRAGMA quick_check`` on open (linear in the file size; a few seconds per GB).

    Raises:
        StoreError: the file is not an SQLite database, fails the integrity check, is missing (``readonly``) or
            cannot be written (not ``readonly``).
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False, check: bool = True) -> None:
        self.path = Path(path)
        self.readonly = readonly
        memory = str(path) == ":memory:"
        if not memory:
            self._check_file()
        try:
            if readonly:
                self.conn = self._connect_readonly()
            else:
                if not memory:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(str(self.path), timeout=60.0)
            if check and not memory:
                self._integrity()
            if not readonly:
                self._prepare()
        except sqlite3.DatabaseError as err:
            if hasattr(self, "conn"):
                self.conn.close()
            text = str(err)
            if "malformed" in text or "corrupt" in text:
                raise self._error(f"is damaged ({text}). Restore a copy, or start a new store with another "
                                  "--db") from err
            if "not a database" in text:
                raise self._error(f"is not an SQLite database ({text})") from err
            raise self._error(f"cannot be used as a results store ({text})") from err

    # ---------------------------------------------------------------------------------------- opening
    def _error(self, what: str) -> StoreError:
        return StoreError(f"--db {self.path}: {what}")

    def _check_file(self) -> None:
        if self.path.is_dir():
            raise self._error("is a directory, not an SQLite file")
        if not self.path.exists():
            if self.readonly:
                raise self._error("no such results store (run `pathattr-bench run ... --db FILE` first)")
            parent = self._existing_parent()
            if not os.access(parent, os.W_OK):
                raise self._error(f"cannot be created: the folder {parent} is not writable")
            return
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as fh:
                head = fh.read(100)
            if not head.startswith(_MAGIC):
                raise self._error("is not an SQLite database (wrong file header); give a results file written by "
                                  "`pathattr-bench run`, or a new path")
            if len(head) < 100:
                raise self._error(f"is truncated ({size} bytes, shorter than an SQLite header)")
            page = int.from_bytes(head[16:18], "big")
            page = 65536 if page == 1 else page
            if page and size % page:
                raise self._error(f"is truncated ({size} bytes is not a whole number of {page}-byte pages)")
        elif self.readonly:
            raise self._error("is an empty file, not a results store")
        if not self.readonly:
            if not os.access(self.path, os.W_OK):
                raise self._error("is read-only; `run` needs a writable store (copy it, or read it with "
                                  "`pathattr-bench report --db ...`)")
            if not os.access(self.path.parent, os.W_OK):
                raise self._error(f"is in the read-only folder {self.path.parent}; `run` needs to write its journal "
                                  "there (move the store, or read it with `pathattr-bench report --db ...`)")

    def _existing_parent(self) -> Path:
        parent = self.path.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return parent

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.absolute().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists():  # committed data may still be in the journal: immutable=1 would not see it
                raise
        # a WAL store in a folder where the shared-memory file cannot be created: nobody can be writing it
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn

    def _integrity(self) -> None:
        rows = [r[0] for r in self.conn.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            lines = [ln for r in rows for ln in str(r).splitlines() if ln.strip() and not ln.startswith("***")]
            detail = "; ".join(lines[:3]) + (f"; +{len(lines) - 3} more" if len(lines) > 3 else "")
            self.conn.close()
            raise self._error(f"is damaged: SQLite's integrity check failed ({detail}). Restore a copy, or start "
                              "a new store with another --db")

    def _prepare(self) -> None:
        try:
            self._use_wal()
            self.conn.execute("PRAGMA synchronous=NORMAL")
            # schema and migrations in one write transaction, left open by the script and committed below: two
            # processes opening a new or old store at the same moment must not both add a column ("duplicate
            # column name")
            self.conn.executescript("BEGIN IMMEDIATE;\n" + SCHEMA)
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(family_runs)")}
            if "cpu_seconds" not in columns:  # stores written before the column existed
                self.conn.execute("ALTER TABLE family_runs ADD COLUMN cpu_seconds REAL")
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
            for name, kind in RUN_COLUMNS.items():
                if name not in columns:
                    self.conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            self.conn.commit()
        except sqlite3.OperationalError as err:
            self.conn.rollback()
            if "readonly" in str(err) or "read-only" in str(err):
                raise self._error(f"is read-only ({err}); `run` needs a writable store") from err
            raise
        self.mark_interrupted()

    def _use_wal(self, wait: float = 60.0) -> None:
        """Switch the store to write-ahead logging. SQLite answers "database is locked" at once, without its
        busy timeout, when another process holds the file while the mode changes (two runs starting on one
        new store), so retry with backoff for up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        pause = 0.005
        while True:
            try:
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.25)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # ---------------------------------------------------------------------------------------- liveness
    def mark_interrupted(self) -> list[int]:
        """Mark "running" runs whose process is gone as "interrupted" and drop claims of runs that are not
        running; returns the run ids marked."""
        rows = self.conn.execute("SELECT run_id, pid, host, heartbeat, proc_start FROM runs "
                                 "WHERE status = 'running'").fetchall()
        dead = [r[0] for r in rows if not run_alive(*r[1:])]
        with self.conn:
            for run_id in dead:
                self.conn.execute("UPDATE runs SET status = 'interrupted', finished = COALESCE(heartbeat, started) "
                                  "WHERE run_id = ? AND status = 'running'", (run_id,))
            self.conn.execute("DELETE FROM claims WHERE run_id NOT IN (SELECT run_id FROM runs WHERE "
                              "status = 'running')")
        return dead

    # ---------------------------------------------------------------------------------------- runs / models
    def start_run(self, command: str, families: Sequence[str], executor: str = "local") -> int:
        now = time.time()
        pid = os.getpid()
        cur = self.conn.execute(
            "INSERT INTO runs (command, started, status, hardware, versions, families, pid, host, heartbeat, "
            "proc_start, executor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (command, now, "running", json.dumps(hardware()), json.dumps(versions()), ",".join(families), pid,
             socket.gethostname(), now, _proc_start(pid), executor),
        )
        self.conn.commit()
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, computed: int, skipped: int, rows: int, seconds: float,
                   failed: int = 0) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET finished = ?, status = ?, computed = ?, skipped = ?, rows = ?, seconds = ?, "
                "failed = ? WHERE run_id = ?",
                (time.time(), status, computed, skipped, rows, seconds, failed, run_id),
            )
            self.conn.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))

    def heartbeat(self, run_id: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time(), run_id))

    def record_model(self, family: str, model: str, seed: int, profile: str, accuracy: float, min_accuracy: float,
                     n_explicands: int, load_seconds: float, info: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO models (family, model, seed, profile, accuracy, min_accuracy, n_explicands, load_seconds, "
            "info, recorded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (family, model, seed, profile) DO "
            "UPDATE SET accuracy = excluded.accuracy, min_accuracy = excluded.min_accuracy, n_explicands = "
            "excluded.n_explicands, load_seconds = excluded.load_seconds, info = excluded.info, "
            "recorded = excluded.recorded",
            (family, model, seed, profile, accuracy, min_accuracy, n_explicands, load_seconds,
             json.dumps(info, default=str), time.time()),
        )
        self.conn.commit()

    def record_family_run(self, run_id: int, family: str, model: str, profile: str, seconds: float,
                          load_seconds: float, computed: int, skipped: int, cpu_seconds: float | None = None) -> None:
        self.conn.execute(
            "INSERT INTO family_runs (run_id, family, model, profile, seconds, load_seconds, computed, skipped, "
            "finished, cpu_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, family, model, profile, seconds, load_seconds, computed, skipped, time.time(), cpu_seconds),
        )
        self.conn.commit()

    def record_hyperparameters(self, key: str, method: str, profile: str, hyper: dict[str, Any]) -> None:
        self.conn.execute("INSERT OR IGNORE INTO hyperparameters VALUES (?, ?, ?, ?)",
                          (key, method, profile, json.dumps(hyper, sort_keys=True, default=str)))
        self.conn.commit()

    # ---------------------------------------------------------------------------------------- results
    def done_examples(self, family: str, model: str, method: str, key: str, seed: int,
                      metrics: Iterable[str], examples: Sequence[int] | None = None) -> set[int]:
        """Examples (of ``examples``, default all) for which every metric in ``metrics`` is stored."""
        names = sorted(set(metrics))
        if not names:
            return set()
        marks = ",".join("?" * len(names))
        where, extra = "", ()
        if examples is not None:
            where = f" AND example IN ({','.join('?' * len(examples))})"
            extra = tuple(int(i) for i in examples)
        rows = self.conn.execute(
            f"SELECT example FROM results WHERE family = ? AND model = ? AND method = ? AND hp_hash = ?{where} "
            f"AND seed = ? AND metric IN ({marks}) GROUP BY example HAVING COUNT(DISTINCT metric) = ?",
            (family, model, method, key, *extra, seed, *names, len(names)),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def claim(self, series: tuple[str, str, str, str, int], examples: Sequence[int], metrics: Iterable[str],
              run_id: int) -> list[int]:
        """Claim ``examples`` of ``series = (family, model, method, hp_hash, seed)`` for ``run_id``, in one
        ``BEGIN IMMEDIATE`` transaction: returns those that are neither stored (every metric in ``metrics``) nor
        claimed by another run that is still alive (:func:`run_alive`), now claimed by ``run_id``. Release them
        with ``write_chunk(..., release=...)`` or :meth:`release`."""
        wanted = [int(i) for i in examples]
        if not wanted:
            return []
        family, model, method, key, seed = series
        if self.conn.in_transaction:
            self.conn.commit()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            done = self.done_examples(family, model, method, key, seed, metrics, wanted)
            holders = dict(self.conn.execute(
                "SELECT example, run_id FROM claims WHERE family = ? AND model = ? AND method = ? AND hp_hash = ? "
                f"AND seed = ? AND run_id != ? AND example IN ({','.join('?' * len(wanted))})",
                (*series, run_id, *wanted)).fetchall())
            alive: dict[int, bool] = {}
            for other in set(holders.values()):
                row = self.conn.execute("SELECT status, pid, host, heartbeat, proc_start FROM runs WHERE run_id = ?",
                                        (other,)).fetchone()
                alive[other] = row is not None and row[0] == "running" and run_alive(*row[1:])
            free = [i for i in wanted if i not in done and not (i in holders and alive[holders[i]])]
            now = time.time()
            self.conn.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  [(*series, i, run_id, now) for i in free])
            self.conn.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (now, run_id))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return free

    def release(self, series: tuple[str, str, str, str, int], examples: Sequence[int], run_id: int) -> None:
        """Drop ``run_id``'s claims on ``examples`` of ``series`` (e.g. after a failure)."""
        with self.conn:
            self._release(series, examples, run_id)

    def _release(self, series: tuple, examples: Sequence[int], run_id: int) -> None:
        self.conn.executemany(
            "DELETE FROM claims WHERE family = ? AND model = ? AND method = ? AND hp_hash = ? AND seed = ? AND "
            "example = ? AND run_id = ?", [(*series, int(i), run_id) for i in examples])

    def write_chunk(self, rows: Sequence[tuple], artifacts: Sequence[tuple] = (),
                    release: tuple[tuple, Sequence[int], int] | None = None) -> int:
        """Insert result rows ``(family, model, method, hp_hash, example, metric, seed, value, run_id)`` and
        artifact rows ``(family, model, method, hp_hash, example, seed, kind, blob)`` in one transaction;
        existing keys are left untouched. ``release = (series, examples, run_id)`` drops those claims in the same
        transaction (and refreshes the run's heartbeat). Returns the number of result rows inserted (only rows
        that were not there before: a store's counts are never overstated)."""
        now = time.time()
        with self.conn:
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO results (family, model, method, hp_hash, example, metric, seed, value, "
                "run_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*r, now) for r in rows],
            )
            inserted = self.conn.total_changes - before
            if artifacts:
                self.conn.executemany("INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", artifacts)
            if release is not None:
                series, examples, run_id = release
                self._release(series, examples, run_id)
                self.conn.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (now, run_id))
        return inserted

    def record_failure(self, run_id: int, series: tuple[str, str, str, str, int], examples: Sequence[int],
                       error: BaseException | str, traceback: str | None = None) -> None:
        """Record a work unit that raised (its examples stay missing, so the next run retries them) and release
        its claims."""
        if isinstance(error, BaseException):
            if traceback is None:
                traceback = "".join(_traceback.format_exception(type(error), error, error.__traceback__))
            error = f"{type(error).__name__}: {error}"
        with self.conn:
            self.conn.execute(
                "INSERT INTO failures (run_id, family, model, method, hp_hash, seed, examples, error, traceback, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, *series, json.dumps([int(i) for i in examples]), str(error), traceback, time.time()))
            self._release(series, examples, run_id)

    def results(self, family: str | None = None) -> list[sqlite3.Row]:
        self.conn.row_factory = sqlite3.Row
        try:
            query = "SELECT * FROM results" + (" WHERE family = ?" if family else "")
            return self.conn.execute(query + " ORDER BY family, model, method, hp_hash, metric, seed, example",
                                     (family,) if family else ()).fetchall()
        finally:
            self.conn.row_factory = None

    def table(self, exclude_metrics: Sequence[str] = ()) -> list[tuple]:
        """All result keys and values, sorted: ``(family, model, method, hp_hash, example, metric, seed, value)``."""
        rows = self.conn.execute(
            "SELECT family, model, method, hp_hash, example, metric, seed, value FROM results "
            "ORDER BY family, model, method, hp_hash, example, metric, seed"
        ).fetchall()
        skip = set(exclude_metrics)
        return [r for r in rows if r[5] not in skip]

    def count(self, table: str = "results") -> int:
        if table not in ("results", "artifacts", "runs", "models", "hyperparameters", "family_runs", "claims",
                         "failures"):
            raise ValueError(f"unknown table {table!r}")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, tuple(params)).fetchall()
