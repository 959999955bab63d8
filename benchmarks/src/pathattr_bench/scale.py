"""Throughput of the executors and the cost model of a dataset-scale run (``docs/scale.md``).

::

    python -m pathattr_bench.scale throughput --family synthetic --profile quick --workers 1,2
    python -m pathattr_bench.scale cost --db out/scale/imagenet_paper.sqlite --family imagenet --images 50000

``throughput`` runs the same work with the local executor and with the Ray executor at each worker count, each
into a fresh store, checks that the stores hold the same rows (without wall-time rows), and prints rows/s with
Ray's fixed costs (cluster start, worker start + family load) and its per-unit overhead (worker time not spent
inside :func:`~pathattr_bench.units.compute_chunk`, per unit) apart. It also times a bare actor round trip that
carries a typical unit's result, which is the scheduling + object-transfer floor of one unit.

``cost`` reads the runner's own cost accounting from a store (``cost_passes``: forward + backward rows per
example; ``cost_seconds``: attribution seconds per example; the family's wall time for the metrics and writes)
and extrapolates to ``--images`` explicands. Wall seconds measured on a shared machine are inflated by the other
processes, so they are turned into **CPU core-seconds** with the family run's own CPU / wall ratio (its process
CPU time, torch threads included, over its wall time); hours on a machine with ``--cores`` cores assume they are
all busy (the Ray executor with one single-thread worker per core does that), on N such machines the measured
per-unit Ray overhead is added, and on one GPU an assumed rate in rows/s is used (an estimate unless measured:
``--gpu-rows-per-s``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .runner import run
from .store import Store

#: rows/s of EfficientNet-Lite0-class work on one A100 (TF32): NVIDIA's published EfficientNet-B0 inference
#: throughput (5,154 img/s at batch 256, DeepLearningExamples) divided by 1.5, because half of the rows are
#: backward rows costing about two forward rows. An estimate, not a measurement.
GPU_ROWS_PER_S = 3400.0


def _quiet(_: str) -> None:
    pass


def _table(db: Path) -> list[tuple]:
    with Store(db, readonly=True) as s:
        return s.table(exclude_metrics=("cost_seconds",))


def _unit_bytes(db: Path, units: int) -> int:
    with Store(db, readonly=True) as s:
        arts = s.query("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM artifacts")[0][0]
        rows = s.count("results")
    return int((arts + 120 * rows) / max(units, 1))


def _round_trip(payload: int, calls: int = 30) -> float:
    """Mean seconds of one actor call returning ``payload`` bytes (after a warm-up call)."""
    import ray

    @ray.remote(num_cpus=1)
    class Echo:
        def echo(self, n: int) -> bytes:
            return b"x" * n

    actor = Echo.remote()
    ray.get(actor.echo.remote(payload))
    t0 = time.perf_counter()
    for _ in range(calls):
        ray.get(actor.echo.remote(payload))
    seconds = (time.perf_counter() - t0) / calls
    ray.kill(actor)
    return seconds


def throughput(family: str = "synthetic", methods: list[str] | None = None, profile: str = "quick",
               limit: int | None = None, batch_size: int | None = None, workers: tuple[int, ...] = (1, 2),
               out_dir: str | None = None, local_threads: tuple[int, ...] = (0,)) -> list[dict[str, Any]]:
    """Local vs Ray executor on the same work; one dict per configuration (see the module docstring).
    ``local_threads``: torch threads of each local run (0 = torch's default); Ray workers use one thread each."""
    import torch

    out = Path(out_dir or tempfile.mkdtemp(prefix="pathattr_scale_"))
    out.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {"methods": methods, "profile": profile, "limit": limit, "batch_size": batch_size,
                          "progress": False, "log": _quiet}
    results = []
    for p in out.glob("*.sqlite*"):
        p.unlink()
    default = torch.get_num_threads()
    reference = None
    for threads in local_threads:
        torch.set_num_threads(threads or default)
        db = out / f"local{threads}.sqlite"
        try:
            stats = run([family], db=str(db), **kw)
        finally:
            torch.set_num_threads(default)
        table = _table(db)
        reference = table if reference is None else reference
        busy = stats.wall_seconds - stats.load_seconds[family]
        results.append({"executor": f"local ({threads or default} threads)", "workers": 1, "rows": stats.rows,
                        "units": stats.tasks, "wall_s": stats.wall_seconds, "fixed_s": stats.load_seconds[family],
                        "busy_s": busy, "compute_s": stats.compute_seconds,
                        "rows_per_s": stats.rows / stats.wall_seconds, "rows_per_s_busy": stats.rows / busy,
                        "identical": table == reference})
    payload = _unit_bytes(db, stats.tasks)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=max(os.cpu_count() or 1, max(workers)), include_dashboard=False, log_to_driver=False,
             logging_level="warning")
    init_s = time.perf_counter() - t0
    try:
        trip = _round_trip(payload)
        for w in workers:
            db = out / f"ray{w}.sqlite"
            stats = run([family], db=str(db), executor="ray", num_workers=w, **kw)
            busy = stats.dispatch_seconds
            results.append({
                "executor": "ray (1 thread each)", "workers": w, "rows": stats.rows, "units": stats.tasks,
                "wall_s": stats.wall_seconds + init_s, "fixed_s": init_s + stats.startup_seconds, "busy_s": busy,
                "compute_s": stats.compute_seconds, "rows_per_s": stats.rows / (stats.wall_seconds + init_s),
                "rows_per_s_busy": stats.rows / busy,
                "overhead_per_unit_s": (w * busy - stats.compute_seconds) / max(stats.tasks, 1),
                "round_trip_s": trip, "payload_bytes": payload, "ray_init_s": init_s,
                "identical": _table(db) == reference})
    finally:
        ray.shutdown()
    return results


def throughput_markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| executor | workers | rows | units | wall [s] | fixed [s] | busy [s] | rows/s (wall) | rows/s (busy) "
             "| overhead per unit [ms] | same rows |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        over = f"{1000 * r['overhead_per_unit_s']:.1f}" if "overhead_per_unit_s" in r else "–"
        lines.append(f"| {r['executor']} | {r['workers']} | {r['rows']} | {r['units']} | {r['wall_s']:.1f} | "
                     f"{r['fixed_s']:.1f} | {r['busy_s']:.1f} | {r['rows_per_s']:.1f} | {r['rows_per_s_busy']:.1f} | "
                     f"{over} | {'yes' if r['identical'] else 'NO'} |")
    ray_rows = [r for r in results if r["executor"].startswith("ray")]
    if ray_rows:
        r = ray_rows[0]
        lines += ["", f"Ray cluster start {r['ray_init_s']:.1f} s; bare actor round trip carrying one unit's result "
                      f"({r['payload_bytes'] / 1024:.0f} KiB): {1000 * r['round_trip_s']:.1f} ms."]
    return "\n".join(lines)


def cost_model(db: str, family: str, images: int = 50_000, nodes: tuple[int, ...] = (1, 8, 32),
               overhead_per_unit_s: float = 0.0, gpu_rows_per_s: float = GPU_ROWS_PER_S,
               batch_size: int = 1, cores: int = 2, same_as: dict[str, str] | None = None,
               cpu_per_wall: float | None = None) -> dict[str, Any]:
    """Hours for ``images`` explicands x every method stored for ``family`` in ``db`` (see the module docstring)."""
    with Store(db, readonly=True) as s:
        rows = s.query("SELECT method, metric, value FROM results WHERE family = ? AND metric IN "
                       "('cost_passes', 'cost_seconds')", (family,))
        fr = s.query("SELECT seconds, load_seconds, computed, cpu_seconds, run_id FROM family_runs WHERE family = ? "
                     "AND computed > 0 ORDER BY finished DESC", (family,))
        hw = s.query("SELECT hardware FROM runs ORDER BY run_id DESC LIMIT 1")
        if not fr and rows and cpu_per_wall is not None:  # a run that was killed: no family record, ratio given
            run_id = s.query("SELECT MAX(run_id) FROM results WHERE family = ?", (family,))[0][0]
            load = s.query("SELECT load_seconds FROM models WHERE family = ? ORDER BY recorded DESC", (family,))
            fr = [(0.0, load[0][0] if load else 0.0, 0, 0.0, run_id)]
        if not rows or not fr:
            raise ValueError(f"{db} has no cost rows (or no finished family run; give cpu_per_wall) for {family}")
        # each unit is written in one transaction with one timestamp: its wall time is the gap to the previous
        # write (the first one counts from the run's start plus the family's load time)
        started = s.query("SELECT started FROM runs WHERE run_id = ?", (fr[0][4],))[0][0]
        units = s.query("SELECT created, SUM(CASE WHEN metric = 'cost_seconds' THEN value END), COUNT(DISTINCT "
                        "example) FROM results WHERE family = ? AND run_id = ? GROUP BY created ORDER BY created",
                        (family, fr[0][4]))
    per: dict[str, dict[str, list[float]]] = {}
    for method, metric, value in rows:
        per.setdefault(method, {}).setdefault(metric, []).append(float(value))
    measured = set(per)
    seconds, load_s, computed, cpu, _ = fr[0]
    # wall -> CPU core-seconds with the run's own ratio (1 on an idle machine with one thread)
    ratio = cpu_per_wall if cpu_per_wall is not None else (cpu / seconds if cpu else 1.0)
    previous, gaps, attribution, examples = started + (load_s or 0.0), 0.0, 0.0, 0
    for created, attr, count in units:
        gaps += created - previous
        attribution += attr or 0.0
        examples += count
        previous = created
    metric_s = ratio * max(0.0, (gaps - attribution) / max(examples, 1))  # metrics and writes per (example, method)
    assumed = {m: src for m, src in (same_as or {}).items() if m not in measured and src in measured}
    per.update({m: per[src] for m, src in assumed.items()})  # not measured: costed like ``src`` (stated)
    methods = []
    for method, d in sorted(per.items()):
        passes = statistics.fmean(d["cost_passes"])
        attr_s = ratio * statistics.fmean(d["cost_seconds"])
        methods.append({"method": method, "passes": passes, "attr_s": attr_s, "s_per_row": attr_s / passes,
                        "total_s": attr_s + metric_s, "assumed": assumed.get(method)})
    per_image = sum(m["total_s"] for m in methods)
    rows_per_image = sum(m["passes"] for m in methods)
    s_per_row = sum(m["attr_s"] for m in methods) / rows_per_image
    metric_rows = metric_s / s_per_row  # metric work of one (example, method) in row equivalents
    units = images * len(methods) / batch_size
    one = images * per_image / cores / 3600
    table = {n: (images * per_image / cores / n + units * overhead_per_unit_s / n) / 3600 for n in nodes}
    gpu_rows = images * (rows_per_image + metric_rows * len(methods))
    return {"family": family, "images": images, "methods": methods, "metric_s_per_unit": metric_s,
            "per_image_s": per_image, "rows_per_image": rows_per_image, "metric_rows_per_unit": metric_rows,
            "s_per_row": s_per_row, "hours_one_machine": one, "hours_nodes": table,
            "gpu_rows_per_s": gpu_rows_per_s, "hours_gpu": gpu_rows / gpu_rows_per_s / 3600,
            "cpu_seconds": cpu, "wall_seconds": seconds, "cpu_per_wall": ratio, "cores": cores,
            "hardware": hw[0][0] if hw else "{}"}


def cost_markdown(c: dict[str, Any]) -> str:
    lines = [f"CPU core-seconds (wall x the run's CPU/wall ratio {c['cpu_per_wall']:.2f}).", "",
             "| method | passes / example | attribution core-s / example | core-ms / row | with metrics core-s / "
             "example |",
             "|---|---|---|---|---|"]
    for m in c["methods"]:
        name = m["method"] + (f" (not measured: as {m['assumed']})" if m.get("assumed") else "")
        lines.append(f"| {name} | {m['passes']:.0f} | {m['attr_s']:.2f} | {1000 * m['s_per_row']:.2f} | "
                     f"{m['total_s']:.2f} |")
    lines += ["", f"Per image, all {len(c['methods'])} methods: {c['rows_per_image']:.0f} rows, "
                  f"{c['per_image_s']:.1f} s (metrics and writes {c['metric_s_per_unit']:.2f} s per "
                  "(image, method), about "
                  f"{c['metric_rows_per_unit']:.0f} rows).", "",
              f"| {c['images']:,} images | hours |", "|---|---|",
              f"| one {c['cores']}-core machine | {c['hours_one_machine']:,.0f} |"]
    for n, h in c["hours_nodes"].items():
        lines.append(f"| Ray, {n} x {c['cores']}-core machines | {h:,.1f} |")
    lines.append(f"| one GPU at {c['gpu_rows_per_s']:,.0f} rows/s (estimate) | {c['hours_gpu']:,.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pathattr_bench.scale", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput", help="local vs Ray executor on the same work")
    t.add_argument("--family", default="synthetic")
    t.add_argument("--methods", help="comma-separated (default: the profile's list)")
    t.add_argument("--profile", default="quick", choices=["quick", "full", "paper"])
    t.add_argument("--limit", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--workers", default="1,2")
    t.add_argument("--local-threads", default="0", help="torch threads of the local runs (0 = default), e.g. 0,1")
    t.add_argument("--out", help="folder for the stores (default: a new temporary folder)")
    c = sub.add_parser("cost", help="hours for a dataset from a store's cost accounting")
    c.add_argument("--db", required=True)
    c.add_argument("--family", default="imagenet")
    c.add_argument("--images", type=int, default=50_000)
    c.add_argument("--nodes", default="1,8,32")
    c.add_argument("--overhead-ms", type=float, default=0.0, help="Ray overhead per unit (from `throughput`)")
    c.add_argument("--gpu-rows-per-s", type=float, default=GPU_ROWS_PER_S)
    c.add_argument("--cores", type=int, default=2, help="CPU cores per machine")
    c.add_argument("--same-as", help="cost unmeasured methods like a measured one: m1=ig2,m2=ig2")
    c.add_argument("--cpu-per-wall", type=float, help="CPU/wall ratio of the run (default: its family record)")
    args = p.parse_args(argv)
    if args.command == "throughput":
        res = throughput(args.family, args.methods.split(",") if args.methods else None, args.profile, args.limit,
                         args.batch_size, tuple(int(w) for w in args.workers.split(",")), args.out,
                         tuple(int(t) for t in args.local_threads.split(",")))
        print(throughput_markdown(res))
    else:
        res = cost_model(args.db, args.family, args.images, tuple(int(n) for n in args.nodes.split(",")),
                         args.overhead_ms / 1000, args.gpu_rows_per_s, cores=args.cores,
                         same_as=dict(kv.split("=", 1) for kv in args.same_as.split(",")) if args.same_as else None,
                         cpu_per_wall=args.cpu_per_wall)
        print(cost_markdown(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
