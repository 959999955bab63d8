"""The resumable benchmark runner: families x methods x metrics into the SQLite store.

For each family it loads the data and model (:func:`load_family`; below its stated accuracy is an
:class:`~pathattr_bench.families.base.AccuracyError`, not a result), records the model, then for each method
splits the explicands into fixed chunks of ``batch_size`` examples, computes the attributions of the examples
not yet stored, evaluates every applicable metric group and **commits the chunk in one transaction** (values,
cost, curves, the first examples' attributions for figures). A killed run therefore loses at most the chunk in
flight; running the same command again skips every stored example and computes only the rest, and because the
chunking, the references (drawn per example) and the random streams (per chunk) do not depend on what was
already done, the final table is the same as for an uninterrupted run.

The result key is ``(family, model, method, hp_hash, example, metric, seed)``; ``hp_hash`` covers the method's
hyperparameters, the profile (quick/full/paper) and the settings of every metric group, so changing any of them
starts a new series instead of mixing numbers.

Profiles (:data:`PROFILES`): ``quick`` (CI-sized), ``full`` (each family's full settings and explicands) and
``paper`` (issue 13: the full settings, :data:`PAPER_EXPLICANDS` explicands per family chosen class by class in
turn, so that every ``--limit`` piece is balanced, and the method list :data:`PAPER_PROFILE_METHODS`).

Executors: the work of a family is a list of **units**, one chunk of examples of one method (:func:`plan_series`,
:func:`work_units`), each computed by :func:`compute_chunk` into result and artifact rows. The ``local``
executor (default) computes them in this process; ``executor="ray"`` (:mod:`pathattr_bench.ray_executor`,
imported only then) sends them to Ray actors that each load the family once, while this process stays the only
writer to the store. Both claim a unit's examples in the store before computing them (two concurrent runs never
compute the same example twice) and record a unit that raises in the ``failures`` table instead of stopping
(``on_error="raise"`` stops instead); the failed examples stay missing, so the next run retries them.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .families.base import Family
from .methods_registry import METHODS, PAPER_METHODS
from .metrics_registry import resolve_groups
from .store import Store
from .units import (  # noqa: F401 - re-exported: the runner's public names before the split into units
    DEFAULT_BATCH,
    FIGURE_EXAMPLES,
    ChunkComputer,
    InjectedFailure,
    LoadSettings,
    Series,
    compute_chunk,
    family_batch_size,
    plan_series,
    series_key,
    work_units,
)

FAMILIES = ("synthetic", "mnist", "imagenet", "text", "wafer", "faces")
#: families of the paper suite, in order
PAPER_SUITE = FAMILIES
PROFILES = ("quick", "full", "paper")
#: explicands per family in the paper profile (fewer where the family's full profile has fewer)
PAPER_EXPLICANDS = 50
#: the paper profile's comparison (issue 13 point 5). Names not registered yet are skipped with a log line:
#: ``ig2_paper`` (IG2 at the authors' preset) and ``agi`` / ``mfaba`` are being added to the registry.
PAPER_PROFILE_METHODS = ("ig", "ig_refs", "eg", "smoothgrad", "guided_ig", "blur_ig", "ig2_paper", "ig2",
                         "gradpath_ig", "gradcf_ig", "ig2_idgi", "agi", "mfaba")


def profile_methods(profile: str) -> list[str]:
    """The default method list of a profile (registered methods only)."""
    if profile == "paper":
        return [m for m in PAPER_PROFILE_METHODS if m in METHODS]
    return list(PAPER_METHODS)


@dataclass
class RunStats:
    """What one :func:`run` did.

    Attributes:
        computed: (example, method) attributions computed now.
        skipped: (example, method) pairs found in the store and skipped.
        rows: result rows inserted.
        seconds: wall seconds per family (load + attribution + metrics).
        load_seconds: seconds to load each family (data, training or cache, accuracy).
        accuracy: held-out accuracy per family.
        unavailable: ``family/method: reason`` for methods not run.
        failed: ``family: error`` for families that could not be loaded.
    """

    computed: int = 0
    skipped: int = 0
    rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: ``family/method examples [..]: error`` for work units that raised (recorded in the store's ``failures``)
    task_failures: list[str] = field(default_factory=list)
    #: examples skipped because another live run had claimed (or meanwhile stored) them
    elsewhere: int = 0
    #: executor used, work units computed, seconds spent inside :func:`compute_chunk` (summed over workers)
    executor: str = "local"
    tasks: int = 0
    compute_seconds: float = 0.0
    #: wall seconds of the whole run
    wall_seconds: float = 0.0
    #: Ray only: seconds until every worker had loaded its family, then seconds of the dispatch loop
    startup_seconds: float = 0.0
    dispatch_seconds: float = 0.0


def load_family(name: str, quick: bool = True, seed: int = 0, data_path: str | None = None,
                cache_dir: str | None = None, **options: Any) -> Family:
    """Import ``pathattr_bench.families.<name>`` and call its ``load_family``."""
    if name not in FAMILIES and not name.isidentifier():
        raise KeyError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}")
    try:
        module = importlib.import_module(f"pathattr_bench.families.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"pathattr_bench.families.{name}":
            raise KeyError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}") from err
        raise
    return module.load_family(quick=quick, seed=seed, data_path=data_path, cache_dir=cache_dir, **options)


@torch.no_grad()
def _progress(iterable: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


def run_family(
    store: Store,
    family: Family,
    methods: Sequence[str],
    metrics: Sequence[str] | None,
    quick: bool,
    seed: int,
    run_id: int,
    stats: RunStats,
    batch_size: int | None = None,
    progress: bool = True,
    fail_after: int | None = None,
    log: Callable[[str], None] = print,
    profile: str | None = None,
    on_error: str = "record",
) -> None:
    """Evaluate ``methods`` with ``metrics`` on a loaded ``family`` in this process, claiming and writing to
    ``store`` chunk by chunk; a chunk that raises is recorded as failed (``on_error="record"``) or re-raised."""
    n = int(family.inputs.shape[0])
    bs = family_batch_size(family, batch_size)
    profile = profile or ("quick" if quick else "full")
    computer = ChunkComputer(family, quick, seed, bs)
    plan, notes = plan_series(family, methods, metrics, quick, profile)
    for kind, message in notes:
        (stats.unavailable.append if kind == "unavailable" else log)(message)
    for series in plan:
        name = series.method
        store.record_hyperparameters(series.key, name, profile, series.hyper)
        ident = (family.name, family.model_name, name, series.key, seed)
        done = store.done_examples(*ident, series.needed)
        pending = [i for i in range(n) if i not in done]
        stats.skipped += n - len(pending)
        chunks = work_units(n, bs, done)
        start = time.perf_counter()
        for chunk in _progress(chunks, len(chunks), f"{family.name}/{name}", progress):
            mine = store.claim(ident, chunk, series.needed, run_id)
            stats.elsewhere += len(chunk) - len(mine)
            if not mine:
                continue
            t0 = time.perf_counter()
            try:
                rows, arts = computer.compute(series, mine, run_id)
            except Exception as err:
                store.record_failure(run_id, ident, mine, err)
                stats.task_failures.append(f"{family.name}/{name} examples {mine}: {type(err).__name__}: {err}")
                log(f"  {name}: examples {mine} failed: {type(err).__name__}: {err}")
                if on_error == "raise":
                    raise
                continue
            stats.compute_seconds += time.perf_counter() - t0
            stats.tasks += 1
            stats.rows += store.write_chunk(rows, arts, release=(ident, mine, run_id))
            stats.computed += len(mine)
            if fail_after is not None and stats.computed >= fail_after:
                raise InjectedFailure(f"injected failure after {stats.computed} computed examples")
        if pending:
            log(f"  {name}: {len(pending)} examples in {time.perf_counter() - start:.1f} s "
                f"({n - len(pending)} already stored)")
        else:
            log(f"  {name}: all {n} examples already stored")


def prepare_family(name: str, settings: LoadSettings) -> Family:
    """Load a family (raising :class:`~pathattr_bench.families.base.AccuracyError` below its bar) and cut it to
    the profile's explicands and ``limit``."""
    family = load_family(name, quick=settings.quick, seed=settings.seed, data_path=settings.data_path,
                         cache_dir=settings.cache_dir, **dict(settings.options))
    return _cut(family, settings)


def _cut(family: Family, settings: LoadSettings) -> Family:
    family.check_accuracy()
    if settings.profile == "paper":
        family = _select(family, paper_order(family.labels, PAPER_EXPLICANDS))
    if settings.limit is not None:
        family = _limited(family, settings.limit)
    return family


def run(
    families: Sequence[str],
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    *,
    quick: bool = True,
    seed: int = 0,
    db: str = "out/bench.sqlite",
    data_path: str | None = None,
    cache_dir: str | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = True,
    fail_after: int | None = None,
    skip_failed_families: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
    profile: str | None = None,
    executor: str = "local",
    address: str | None = None,
    num_workers: int | None = None,
    on_error: str = "record",
    executor_options: dict[str, Any] | None = None,
) -> RunStats:
    """Run the benchmark and store everything in ``db``.

    Args:
        families: family names (see :data:`FAMILIES`).
        methods: method names (default :data:`~pathattr_bench.methods_registry.PAPER_METHODS`).
        metrics: metric names or groups (default: every metric that applies).
        quick: the CI-sized profile (few explicands, short paths).
        seed: data split / training / reference-draw seed (part of the result key).
        db: SQLite file.
        data_path, cache_dir, options: passed to every family's ``load_family`` (options as keyword arguments).
        batch_size: explicands per attribution call (default per family, :data:`DEFAULT_BATCH`).
        limit: evaluate only the first ``limit`` explicands of each family.
        progress: tqdm progress bars (if tqdm is installed).
        fail_after: raise :class:`InjectedFailure` once this many examples were computed (tests).
        skip_failed_families: record a family that fails to load (e.g. missing optional data) and go on,
            instead of raising.
        command: the command line, for the run record.
        profile: ``quick``, ``full`` or ``paper`` (see the module docstring); overrides ``quick``.
        executor: ``"local"`` (this process) or ``"ray"`` (Ray actors, one per worker, each loading the family
            once; this process stays the only writer; see :mod:`pathattr_bench.ray_executor`).
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``; default: ``RAY_ADDRESS`` or a new
            local cluster); only with ``executor="ray"``.
        num_workers: Ray workers (default: the cluster's CPUs / threads per worker).
        on_error: ``"record"`` (a work unit that raises is stored in ``failures`` and the run goes on) or
            ``"raise"``.
        executor_options: further keywords of :func:`pathattr_bench.ray_executor.run_ray` (``threads_per_worker``,
            ``max_worker_restarts``, ...).

    Raises:
        pathattr_bench.store.StoreError: ``db`` is not a usable results store (damaged, read-only, ...).
    """
    if profile is not None and profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    profile = profile or ("quick" if quick else "full")
    quick = profile == "quick"
    if profile == "paper" and not methods:
        missing = [m for m in PAPER_PROFILE_METHODS if m not in METHODS]
        if missing:
            log(f"paper profile: {', '.join(missing)} not registered yet, skipped")
    methods = list(methods or profile_methods(profile))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise KeyError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    resolve_groups(metrics)
    if executor not in ("local", "ray"):
        raise KeyError(f"unknown executor {executor!r}; choose from local, ray")
    if on_error not in ("record", "raise"):
        raise KeyError(f"unknown on_error {on_error!r}; choose from record, raise")
    stats = RunStats(executor=executor)
    store = Store(db)
    run_id = store.start_run(command or f"run {families}", families, executor)
    started = time.perf_counter()
    status = "failed"
    settings = LoadSettings(profile, seed, data_path, cache_dir, tuple(sorted((options or {}).items())), limit)
    try:
        if executor == "ray":
            from .ray_executor import run_ray

            run_ray(store, run_id, stats, families, methods, metrics, settings, prepare=prepare_family,
                    batch_size=batch_size,
                    address=address, num_workers=num_workers, progress=progress, fail_after=fail_after,
                    skip_failed_families=skip_failed_families, on_error=on_error, log=log,
                    **(executor_options or {}))
            families = []
        for name in families:
            t0 = time.perf_counter()
            c0 = time.process_time()
            log(f"[{name}] loading ({profile})")
            try:
                family = load_family(name, quick=quick, seed=seed, data_path=data_path, cache_dir=cache_dir,
                                     **(options or {}))
            except Exception as err:
                if not skip_failed_families:
                    raise
                stats.failed.append(f"{name}: {type(err).__name__}: {err}")
                log(f"[{name}] could not be loaded: {type(err).__name__}: {err}")
                continue
            family = _cut(family, settings)
            load_s = time.perf_counter() - t0
            stats.load_seconds[name] = load_s
            stats.accuracy[name] = family.accuracy
            store.record_model(family.name, family.model_name, seed, profile, family.accuracy,
                               family.min_accuracy, int(family.inputs.shape[0]), load_s, family.info)
            log(f"[{name}] {family.model_name}: accuracy {family.accuracy:.4f} (bar {family.min_accuracy:.2f}), "
                f"{family.inputs.shape[0]} explicands, loaded in {load_s:.1f} s")
            before = (stats.computed, stats.skipped)
            try:
                run_family(store, family, methods, metrics, quick, seed, run_id, stats, batch_size, progress,
                           fail_after, log, profile, on_error)
            finally:
                stats.seconds[name] = time.perf_counter() - t0
                store.record_family_run(run_id, family.name, family.model_name, profile,
                                        stats.seconds[name], load_s, stats.computed - before[0],
                                        stats.skipped - before[1], time.process_time() - c0)
            log(f"[{name}] done in {stats.seconds[name]:.1f} s")
        status = "finished"
    except (InjectedFailure, KeyboardInterrupt):
        status = "interrupted"
        raise
    finally:
        stats.wall_seconds = time.perf_counter() - started
        store.finish_run(run_id, status, stats.computed, stats.skipped, stats.rows, stats.wall_seconds,
                         len(stats.task_failures))
        store.close()
    return stats


def _limited(family: Family, limit: int) -> Family:
    return _select(family, list(range(min(max(1, int(limit)), int(family.inputs.shape[0])))))


def paper_order(labels: Tensor, n: int) -> list[int]:
    """Up to ``n`` explicand positions taken class by class in turn (classes in order of first appearance, each
    class's explicands in their original order), so that any prefix (a ``--limit`` piece) is as balanced over
    the classes as the data allows, and a family with one explicand per class keeps its own order."""
    queues: dict[int, list[int]] = {}
    for i, c in enumerate(labels.tolist()):
        queues.setdefault(int(c), []).append(i)
    order: list[int] = []
    while len(order) < n and any(queues.values()):
        for c in queues:
            if queues[c] and len(order) < n:
                order.append(queues[c].pop(0))
    return order


def _select(family: Family, positions: list[int]) -> Family:
    """The family restricted to the explicands at ``positions`` (in that order); per-explicand lists in
    ``info`` (names, tokens) follow, and ``info["explicand_positions"]`` records the choice."""
    from dataclasses import replace

    n = int(family.inputs.shape[0])
    idx = torch.tensor(positions, dtype=torch.long)
    info = {k: ([v[i] for i in positions] if isinstance(v, list) and len(v) == n else v)
            for k, v in family.info.items()}
    if positions != list(range(len(positions))):
        info["explicand_positions"] = list(positions)
    return replace(
        family,
        inputs=family.inputs[idx],
        labels=family.labels[idx],
        ground_truth=family.ground_truth[idx] if family.ground_truth is not None else None,
        token_mask=family.token_mask[idx] if family.token_mask is not None else None,
        info=info,
    )
