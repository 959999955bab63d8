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

Every chunk of examples is written in **one transaction** as soon as it is computed, so a killed run loses at
most the chunk in flight and a re-run skips everything already stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import sqlite3
import time
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
CREATE INDEX IF NOT EXISTS results_group ON results (family, model, method, hp_hash, seed);
"""


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
    :meth:`close`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=60.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        columns = {r[1] for r in self.conn.execute("PRAGMA table_info(family_runs)")}
        if "cpu_seconds" not in columns:  # stores written before the column existed
            self.conn.execute("ALTER TABLE family_runs ADD COLUMN cpu_seconds REAL")
        self.conn.commit()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # ---------------------------------------------------------------------------------------- runs / models
    def start_run(self, command: str, families: Sequence[str]) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (command, started, status, hardware, versions, families) VALUES (?, ?, ?, ?, ?, ?)",
            (command, time.time(), "running", json.dumps(hardware()), json.dumps(versions()), ",".join(families)),
        )
        self.conn.commit()
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, computed: int, skipped: int, rows: int, seconds: float) -> None:
        self.conn.execute(
            "UPDATE runs SET finished = ?, status = ?, computed = ?, skipped = ?, rows = ?, seconds = ? "
            "WHERE run_id = ?",
            (time.time(), status, computed, skipped, rows, seconds, run_id),
        )
        self.conn.commit()

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
                      metrics: Iterable[str]) -> set[int]:
        """Examples for which every metric in ``metrics`` is stored."""
        names = sorted(set(metrics))
        if not names:
            return set()
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            f"SELECT example FROM results WHERE family = ? AND model = ? AND method = ? AND hp_hash = ? AND seed = ? "
            f"AND metric IN ({marks}) GROUP BY example HAVING COUNT(DISTINCT metric) = ?",
            (family, model, method, key, seed, *names, len(names)),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def write_chunk(self, rows: Sequence[tuple], artifacts: Sequence[tuple] = ()) -> int:
        """Insert result rows ``(family, model, method, hp_hash, example, metric, seed, value, run_id)`` and
        artifact rows ``(family, model, method, hp_hash, example, seed, kind, blob)`` in one transaction;
        existing keys are left untouched. Returns the number of result rows inserted."""
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
        return inserted

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
        if table not in ("results", "artifacts", "runs", "models", "hyperparameters", "family_runs"):
            raise ValueError(f"unknown table {table!r}")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, tuple(params)).fetchall()
