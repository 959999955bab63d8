"""The Ray executor of the benchmark runner: ``pathattr-bench run ... --executor ray [--address A] [--num-workers N]``.

Imported only when ``executor="ray"`` is asked for (nothing else in the harness imports Ray). Per family:

* one Ray actor per worker (:class:`FamilyWorker`, ``num_cpus=threads_per_worker``) loads the family (data and
  model) **once**; the first one to load also plans the work (the series, their keys, the batch size), so the
  driver itself loads no model; the others start after it, reading any model it cached;
* the driver lists the (example chunk x method) units not yet in the store (:func:`~pathattr_bench.units.
  work_units`, the same chunks as the local executor, so deterministic methods give bit-identical rows), claims
  each unit's examples in the store just before sending it (so two concurrent runs never compute the same
  example twice), keeps ``inflight_per_worker`` units queued on every actor and **writes each finished unit as it
  arrives** in one transaction (the driver is the only writer to SQLite);
* a unit that raises inside a worker comes back as a failure: recorded in the store's ``failures`` table with
  its error and traceback, the run goes on (``on_error="raise"`` stops it) and the next run retries it;
* a worker that dies (killed, out of memory, node lost) fails its in-flight units: they are sent again to the
  other workers (at most ``max_attempts`` times each) and the dead worker is replaced (at most
  ``max_worker_restarts`` times); finished units are already in the store, so nothing is lost or duplicated;
* if the driver dies, its actors die with it; finished units are in the store, the run is marked
  "interrupted" the next time the store is opened, and the next run computes only what is missing.

One tqdm progress bar on the driver: units done / total (the total grows as each family is planned), rows/s, ETA.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .families.base import Family
from .store import Store
from .units import ChunkComputer, InjectedFailure, LoadSettings, Series, family_batch_size, plan_series, work_units


class FamilyWorker:
    """The body of one Ray actor: loads a family once (``prepare()``) and computes work units of it.

    Errors never escape as Ray errors: loading errors are returned by :meth:`plan`, unit errors by
    :meth:`compute`, so the driver can record them."""

    def __init__(self, prepare: Callable[[], Family], settings: LoadSettings, batch_size: int | None,
                 threads: int, inject_error: tuple[str, int] | None = None) -> None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.settings = settings
        self.inject_error = inject_error
        self.error: BaseException | None = None
        self.error_traceback = ""
        t0 = time.perf_counter()
        try:
            self.family = prepare()
            self.bs = family_batch_size(self.family, batch_size)
            self.computer = ChunkComputer(self.family, settings.quick, settings.seed, self.bs)
        except Exception as err:
            self.error, self.error_traceback = err, traceback.format_exc()
        self.load_seconds = time.perf_counter() - t0

    def pid(self) -> int:
        return os.getpid()

    def plan(self, methods: Sequence[str], metrics: Sequence[str] | None) -> dict[str, Any]:
        if self.error is not None:
            try:
                pickle.dumps(self.error)
                err: BaseException = self.error
            except Exception:
                err = RuntimeError(f"{type(self.error).__name__}: {self.error}")
            return {"error": err, "traceback": self.error_traceback}
        f = self.family
        series, notes = plan_series(f, methods, metrics, self.settings.quick, self.settings.profile)
        return {"name": f.name, "model_name": f.model_name, "accuracy": f.accuracy, "min_accuracy": f.min_accuracy,
                "n": int(f.inputs.shape[0]), "info": f.info, "load_seconds": self.load_seconds, "bs": self.bs,
                "series": series, "notes": notes}

    def compute(self, series: Series, chunk: list[int], run_id: int) -> dict[str, Any]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if self.error is not None:
                raise RuntimeError(f"the family could not be loaded on this worker: {self.error}")
            if self.inject_error is not None and self.inject_error[0] == series.method and \
                    self.inject_error[1] in chunk:
                raise ValueError(f"injected failure on example {self.inject_error[1]} (test)")
            rows, arts = self.computer.compute(series, chunk, run_id)
        except Exception as err:
            return {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
                    "seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}
        return {"ok": True, "rows": rows, "arts": arts, "seconds": time.perf_counter() - t0,
                "cpu": time.process_time() - c0}


class _NoBar:
    total = 0

    def update(self, n: int = 1) -> None:
        pass

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the harness
        return _NoBar()
    return tqdm(total=0, desc="ray", unit="unit", file=sys.stderr, dynamic_ncols=True)


def run_ray(store: Store, run_id: int, stats: Any, families: Sequence[str], methods: Sequence[str],
            metrics: Sequence[str] | None, settings: LoadSettings, *, prepare: Callable[..., Family],
            batch_size: int | None = None, address: str | None = None, num_workers: int | None = None,
            threads_per_worker: int = 1, progress: bool = True, fail_after: int | None = None,
            skip_failed_families: bool = False, on_error: str = "record", log: Callable[[str], None] = print,
            inflight_per_worker: int = 2, max_attempts: int = 3, max_worker_restarts: int | None = None,
            runtime_env: dict[str, Any] | None = None, kill_worker_after: int | None = None,
            kill_driver_after: int | None = None, inject_error: tuple[str, int] | None = None) -> None:
    """Evaluate ``families`` x ``methods`` x ``metrics`` on Ray actors, writing into ``store`` (called by
    :func:`pathattr_bench.runner.run` with ``executor="ray"``; ``stats`` is its ``RunStats``).

    Args:
        prepare: ``prepare(name, settings) -> Family`` (module-level, so Ray sends it by reference).
        address: cluster to join (``"auto"``, ``"ray://HOST:10001"``, ``"HOST:6379"``); default ``RAY_ADDRESS``,
            else a new local cluster (stopped at the end). An already initialised Ray is used as it is.
        num_workers: actors per family (default: the cluster's CPUs // ``threads_per_worker``; capped there).
        threads_per_worker: CPUs reserved per actor and its torch threads.
        inflight_per_worker: units queued on each actor (2 hides the driver's round trip).
        max_attempts: sends of one unit before it is recorded as failed because its workers kept dying.
        max_worker_restarts: dead actors replaced per family (default ``2 * num_workers``).
        runtime_env: Ray runtime environment for the actors (e.g. ``{"py_modules": [...]}`` on a cluster whose
            nodes lack the harness).
        kill_worker_after, kill_driver_after, inject_error: fault injection for tests (SIGKILL one busy worker,
            or this process, after that many units were written; a unit of ``(method, example)`` raises inside
            the worker).
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError("--executor ray needs Ray: pip install -e './benchmarks[ray]' (or 'ray>=2.60')") from err

    started_ray = False
    if not ray.is_initialized():
        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
        if runtime_env:
            init["runtime_env"] = runtime_env
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address, **init)
        else:
            ray.init(num_cpus=max(os.cpu_count() or 1, (num_workers or 0) * threads_per_worker), **init)
        started_ray = True
    bar = _bar(progress)
    wall0 = time.perf_counter()
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        fit = max(1, int(cpus // threads_per_worker))
        workers = min(num_workers or fit, fit)
        if num_workers and num_workers > fit:
            log(f"ray: {num_workers} workers x {threads_per_worker} CPUs do not fit the cluster's {cpus:g} CPUs; "
                f"using {workers}")
        log(f"ray: {workers} workers x {threads_per_worker} CPUs on a cluster with {cpus:g} CPUs")
        remote = ray.remote(FamilyWorker)
        for name in families:
            _family(ray, remote, store, run_id, stats, name, methods, metrics, settings, prepare, batch_size,
                    workers, threads_per_worker, bar, wall0, fail_after, skip_failed_families, on_error, log,
                    inflight_per_worker, max_attempts, max_worker_restarts, kill_worker_after, kill_driver_after,
                    inject_error)
    finally:
        bar.close()
        if started_ray:
            ray.shutdown()


def _family(ray: Any, remote: Any, store: Store, run_id: int, stats: Any, name: str, methods: Sequence[str],
            metrics: Sequence[str] | None, settings: LoadSettings, prepare: Callable[..., Family],
            batch_size: int | None, workers: int, threads: int, bar: Any, wall0: float, fail_after: int | None,
            skip_failed_families: bool, on_error: str, log: Callable[[str], None], inflight_per_worker: int,
            max_attempts: int, max_worker_restarts: int | None, kill_worker_after: int | None,
            kill_driver_after: int | None, inject_error: tuple[str, int] | None) -> None:
    t0 = time.perf_counter()
    log(f"[{name}] loading ({settings.profile}) on {workers} Ray workers")
    make = functools.partial(prepare, name, settings)
    options = {"num_cpus": threads, "max_restarts": 0, "max_task_retries": 0}

    def spawn() -> Any:
        return remote.options(**options).remote(make, settings, batch_size, threads, inject_error)

    actors: dict[int, Any] = {0: spawn()}
    try:
        plan = ray.get(actors[0].plan.remote(list(methods), list(metrics) if metrics else None))
        if "error" in plan:
            err = plan["error"]
            if not skip_failed_families:
                raise err
            stats.failed.append(f"{name}: {type(err).__name__}: {err}")
            log(f"[{name}] could not be loaded: {type(err).__name__}: {err}")
            return
        for i in range(1, workers):
            actors[i] = spawn()
        _run_plan(ray, spawn, actors, plan, store, run_id, stats, name, settings, bar, wall0, t0, fail_after,
                  on_error, log, inflight_per_worker, max_attempts,
                  2 * workers if max_worker_restarts is None else max_worker_restarts, kill_worker_after,
                  kill_driver_after)
    finally:
        for actor in actors.values():
            ray.kill(actor, no_restart=True)


def _run_plan(ray: Any, spawn: Callable[[], Any], actors: dict[int, Any], plan: dict[str, Any], store: Store,
              run_id: int, stats: Any, name: str, settings: LoadSettings, bar: Any, wall0: float, t0: float,
              fail_after: int | None, on_error: str, log: Callable[[str], None], inflight_per_worker: int,
              max_attempts: int, restarts_left: int, kill_worker_after: int | None,
              kill_driver_after: int | None) -> None:
    fam, model, n, bs, seed = plan["name"], plan["model_name"], plan["n"], plan["bs"], settings.seed
    profile = settings.profile
    load_s = plan["load_seconds"]
    stats.load_seconds[name] = load_s
    stats.accuracy[name] = plan["accuracy"]
    store.record_model(fam, model, seed, profile, plan["accuracy"], plan["min_accuracy"], n, load_s, plan["info"])
    log(f"[{name}] {model}: accuracy {plan['accuracy']:.4f} (bar {plan['min_accuracy']:.2f}), {n} explicands, "
        f"loaded in {load_s:.1f} s on a worker")
    for kind, message in plan["notes"]:
        (stats.unavailable.append if kind == "unavailable" else log)(message)
    before = (stats.computed, stats.skipped)
    queue: deque[tuple[Series, list[int], int]] = deque()
    for series in plan["series"]:
        store.record_hyperparameters(series.key, series.method, profile, series.hyper)
        done = store.done_examples(fam, model, series.method, series.key, seed, series.needed)
        stats.skipped += sum(1 for i in range(n) if i in done)
        queue.extend((series, chunk, 0) for chunk in work_units(n, bs, done))
    units = len(queue)
    bar.total += units
    bar.refresh()
    log(f"[{name}] {units} work units of up to {bs} examples to compute")
    inflight: dict[Any, tuple[int, Series, list[int], int]] = {}
    load = dict.fromkeys(actors, 0)
    # wait until every worker has loaded the family (so the loop below measures dispatch alone); the pids are
    # for the kill test, asked before any unit is queued (an actor runs one call at a time)
    pids = dict(zip(actors, ray.get([a.pid.remote() for a in actors.values()])))
    stats.startup_seconds += time.perf_counter() - t0
    loop0 = time.perf_counter()
    next_id = max(actors) + 1
    cpu = 0.0
    finished_units = 0

    def ident(series: Series) -> tuple[str, str, str, str, int]:
        return (fam, model, series.method, series.key, seed)

    def fail(series: Series, mine: list[int], error: str, tb: str | None) -> None:
        store.record_failure(run_id, ident(series), mine, error, tb)
        stats.task_failures.append(f"{fam}/{series.method} examples {mine}: {error}")
        log(f"  {series.method}: examples {mine} failed: {error}")
        bar.update(1)
        if on_error == "raise":
            raise RuntimeError(f"{fam}/{series.method} examples {mine}: {error}")

    while queue or inflight:
        for idx in list(actors):
            while load[idx] < inflight_per_worker and queue:
                series, chunk, attempts = queue.popleft()
                mine = store.claim(ident(series), chunk, series.needed, run_id)
                stats.elsewhere += len(chunk) - len(mine)
                if not mine:
                    bar.update(1)
                    continue
                ref = actors[idx].compute.remote(series, mine, run_id)
                inflight[ref] = (idx, series, mine, attempts)
                load[idx] += 1
        if not inflight:
            if queue:
                raise RuntimeError("ray: every worker died and none may be restarted")
            break
        ready, _ = ray.wait(list(inflight), num_returns=1)
        ref = ready[0]
        idx, series, mine, attempts = inflight.pop(ref)
        load[idx] = load.get(idx, 1) - 1
        try:
            out = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
            if idx in actors:  # the worker is gone: replace it once, resend its units
                del actors[idx]
                load.pop(idx, None)
                log(f"  ray worker {idx} died ({type(err).__name__}); "
                    + ("starting a replacement" if restarts_left > 0 else "not replaced"))
                if restarts_left > 0:
                    restarts_left -= 1
                    actors[next_id] = spawn()
                    load[next_id] = 0
                    next_id += 1
            if attempts + 1 >= max_attempts:
                fail(series, mine, f"WorkerDied: the unit's worker died {attempts + 1} times ({err})", None)
            else:
                queue.appendleft((series, mine, attempts + 1))
            continue
        except ray.exceptions.RayError as err:
            fail(series, mine, f"{type(err).__name__}: {err}", None)
            continue
        cpu += out["cpu"]
        if not out["ok"]:
            fail(series, mine, out["error"], out["traceback"])
            continue
        stats.rows += store.write_chunk(out["rows"], out["arts"], release=(ident(series), mine, run_id))
        stats.computed += len(mine)
        stats.tasks += 1
        stats.compute_seconds += out["seconds"]
        finished_units += 1
        bar.update(1)
        bar.set_postfix_str(f"{stats.rows / max(time.perf_counter() - wall0, 1e-9):.0f} rows/s")
        if kill_worker_after is not None and finished_units == kill_worker_after:
            busy = [i for i in actors if load.get(i) and i in pids]
            if busy:
                pid = pids[busy[0]]
                log(f"  (test) killing ray worker {busy[0]} (pid {pid}) mid-task")
                os.kill(pid, signal.SIGKILL)
        if kill_driver_after is not None and finished_units == kill_driver_after:
            os.kill(os.getpid(), signal.SIGKILL)  # (test) the driver dies with units in flight
        if fail_after is not None and stats.computed >= fail_after:
            raise InjectedFailure(f"injected failure after {stats.computed} computed examples")
    stats.dispatch_seconds += time.perf_counter() - loop0
    seconds = time.perf_counter() - t0
    stats.seconds[name] = seconds
    store.record_family_run(run_id, fam, model, profile, seconds, load_s, stats.computed - before[0],
                            stats.skipped - before[1], cpu)
    log(f"[{name}] done in {seconds:.1f} s")
