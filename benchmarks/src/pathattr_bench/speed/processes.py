"""How the ratios of :mod:`pathattr_bench.speed.before_after` spread over processes.

The same library code can be 1.1x or 1.9x the floor in two processes of one machine (``docs/performance.md``,
issue 16): the heap's state (which of the model's large blocks glibc hands back to the kernel and faults in
again), the planner's measurements and the caches differ per process. One process's ratio is therefore one draw.
This runs :mod:`~pathattr_bench.speed.before_after` (the working tree, and with ``--before-tree`` a previous
version too) in ``--processes`` fresh processes, one after another, and reports per version, row and ratio the
median and the range over processes, and in how many processes each goal of issue 16 held::

    python -m pathattr_bench.speed.processes ig_mlp_1,ig_cnn_1,gig_cnn_16 --processes 8 --repeats 5 \
        [--before-tree DIR] [--malloc tuned] [--json out.json]

``--malloc tuned`` runs the processes with glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set
(see :data:`TUNED_MALLOC`; the allocator tip of ``docs/performance.md``), which shows how much of the spread is
the heap's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: glibc settings that keep freed heap memory in the process (no trim, no mmap below 32 MiB)
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}

#: goals of issue 16 per row kind (row id prefix): (ratio, largest value that meets the goal). Ratios: ``floor``
#: (ours / floor), ``floor@N`` (ours / the same rows in calls of N rows), ``peer-best`` (ours / the peer at its
#: best setting) and ``peer`` (ours / the peer's default; for IG2 the two-pass algorithm, where the goal is the
#: fused algorithm >= 1.8x faster)
GOALS: dict[str, tuple[tuple[str, float], ...]] = {
    "ig2_": (("floor", 1.15), ("peer", 1 / 1.8)),
    "ig_": (("floor", 1.05), ("peer-best", 1.0)),
    "blur_": (("floor", 1.05), ("peer-best", 1.0)),
    "del_": (("floor", 1.05),),
    "ins_": (("floor", 1.05),),
    "gig_": (("floor@N", 1.15), ("peer-best", 1.0)),
}


def ratios(record: dict[str, Any], version: str = "after") -> dict[str, float]:
    """The ratios of ``version`` in one row of one process from its wall-time medians (``before_after --json``
    records)."""
    wall = record["wall"]
    ours = wall[version]
    out = {"floor": ours / wall["floor"]}
    if "floor_n" in wall:
        out["floor@N"] = ours / wall["floor_n"]
    peers = [k for k in wall if k.startswith("peer")]
    if peers:
        best = min(wall[k] for k in peers)
        out["peer"] = ours / wall["peer"]
        out["peer-best"] = ours / best
        out["peer-best/floor"] = best / wall["floor"]
    if "bound" in wall:
        out["bound"] = ours / wall["bound"]
    return out


def goals_of(row: str) -> tuple[tuple[str, float], ...]:
    """The goals that apply to ``row`` (the longest matching prefix of :data:`GOALS`)."""
    matches = [p for p in GOALS if row.startswith(p)]
    return GOALS[max(matches, key=len)] if matches else ()


def summarize(runs: Sequence[Sequence[dict[str, Any]]], version: str = "after") -> list[dict[str, Any]]:
    """Per row: every ratio's per-process values, median, min and max, and per goal how many processes met it.

    ``runs``: one list of ``before_after --json`` records per process (a row missing from a process is skipped);
    ``version``: ``"after"`` (the working tree) or ``"before"``.
    """
    rows: dict[str, list[dict[str, float]]] = {}
    for records in runs:
        for rec in records:
            rows.setdefault(rec["row"], []).append(ratios(rec, version))
    out = []
    for row, per_process in rows.items():
        names = [k for k in per_process[0] if all(k in r for r in per_process)]
        stats = {}
        for name in names:
            values = [r[name] for r in per_process]
            stats[name] = {"values": values, "median": statistics.median(values), "min": min(values),
                           "max": max(values)}
        met = {f"{name}<={limit:.3g}": sum(r[name] <= limit for r in per_process)
               for name, limit in goals_of(row) if name in names}
        if "peer-best" in names:  # <= 0.8x the peer where the peer is above its floor (else <= 1x, above)
            met["peer-best<=0.8 where above floor"] = sum(
                r["peer-best"] <= (0.8 if r["peer-best/floor"] > 1.0 else 1.0) for r in per_process)
        out.append({"row": row, "version": version, "processes": len(per_process), "ratios": stats,
                    "goals_met": met})
    return out


def versions_in(runs: Sequence[Sequence[dict[str, Any]]]) -> tuple[str, ...]:
    """``("before", "after")`` if the runs timed a previous version too, else ``("after",)``."""
    return ("before", "after") if any("before" in rec["wall"] for records in runs for rec in records) else ("after",)


def run_processes(rows: str, processes: int, repeats: int, malloc: str = "default", before_tree: str | None = None,
                  python: str = sys.executable) -> list[list[dict[str, Any]]]:
    """Run ``before_after`` on ``rows`` in ``processes`` fresh processes, one after another: the working tree, and
    the version in ``before_tree`` (see :mod:`~pathattr_bench.speed.before_after`) too if given."""
    env = dict(os.environ)
    for key in TUNED_MALLOC:
        env.pop(key, None)
    if malloc == "tuned":
        env.update(TUNED_MALLOC)
    elif malloc != "default":
        raise ValueError(f"malloc must be 'default' or 'tuned', got {malloc!r}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(processes):
            path = Path(tmp) / f"run{i}.json"
            cmd = [python, "-m", "pathattr_bench.speed.before_after", rows, "--repeats", str(repeats),
                   "--json", str(path)]
            cmd += ["--only", "after"] if before_tree is None else ["--before-tree", before_tree]
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            runs.append(json.loads(path.read_text()))
            print(f"process {i + 1}/{processes} done", file=sys.stderr, flush=True)
    return runs


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """One line per row and ratio: median [min, max] over processes, then the goals met (k of n processes)."""
    lines = []
    for item in summary:
        parts = [f"{name} {s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}]" for name, s in item["ratios"].items()]
        goals = ", ".join(f"{goal}: {k}/{item['processes']}" for goal, k in item["goals_met"].items())
        lines.append(f"{item['row']} {item['version']} ({item['processes']} processes) | " + " | ".join(parts)
                     + (f" | goals met: {goals}" if goals else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pathattr_bench.speed.processes")
    ap.add_argument("rows", nargs="?", default="", help="comma-separated rows of pathattr_bench.speed.before_after")
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds per process")
    ap.add_argument("--malloc", choices=("default", "tuned"), default="default",
                    help="tuned: run with TUNED_MALLOC in the environment")
    ap.add_argument("--before-tree", default=None, help="also run the previous version in this directory")
    ap.add_argument("--json", default=None, help="write the per-process values and the summary here")
    ap.add_argument("--from-json", default=None, help="summarize the runs of an earlier --json instead of running")
    a = ap.parse_args(argv)
    print(f"load {os.getloadavg()}", flush=True)
    if a.from_json:
        runs = json.loads(Path(a.from_json).read_text())["runs"]
    else:
        if not a.rows:
            ap.error("give the rows to run (or --from-json)")
        runs = run_processes(a.rows, a.processes, a.repeats, a.malloc, a.before_tree)
    summary = [item for version in versions_in(runs) for item in summarize(runs, version)]
    print(format_summary(summary))
    print(f"load {os.getloadavg()}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"malloc": a.malloc, "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
