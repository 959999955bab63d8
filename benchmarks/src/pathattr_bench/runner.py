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

from .families._fit import predict
from .families.base import Family
from .methods_registry import (
    METHODS,
    PAPER_METHODS,
    MethodSpec,
    MethodUnavailable,
    _mix,
    applicable,
    get_method,
    reference_settings,
    select_references,
)
from .metrics_registry import COST_METRICS, GROUPS, MetricContext, resolve_groups
from .store import Store, hp_hash, to_blob

FAMILIES = ("synthetic", "mnist", "imagenet", "text", "wafer", "faces")
#: families of the paper suite, in order
PAPER_SUITE = FAMILIES
#: chunk sizes (explicands per attribution call) per family
DEFAULT_BATCH = {"synthetic": 32, "mnist": 8, "imagenet": 1, "text": 8, "wafer": 8, "faces": 8}
FIGURE_EXAMPLES = 2
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


class InjectedFailure(RuntimeError):
    """Raised by the runner after ``fail_after`` computed examples (to test resuming)."""


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


def _as_tensor(attributions: Any) -> Tensor:
    if isinstance(attributions, tuple):
        if len(attributions) != 1:
            raise ValueError("the benchmark families have a single input tensor")
        attributions = attributions[0]
    return attributions.detach()


def series_key(spec: MethodSpec, family: Family, quick: bool,
               profile: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(hp_hash, hyperparameters)`` of a method on a family: its settings, the profile and every metric
    group's settings."""
    hyper = {
        "method": spec.defaults(family, quick),
        "profile": profile or ("quick" if quick else "full"),
        "metrics": {k: g.settings(family, quick) for k, g in GROUPS.items()},
    }
    return hp_hash(spec.name, hyper), hyper


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
) -> None:
    """Evaluate ``methods`` with ``metrics`` on a loaded ``family``, writing to ``store`` chunk by chunk."""
    groups = resolve_groups(metrics)
    n = int(family.inputs.shape[0])
    bs = batch_size or (getattr(family, "budget", None) or {}).get("batch_size") or DEFAULT_BATCH.get(family.name, 8)
    targets = predict(family.model, family.inputs, batch_size=64)
    pool_classes = predict(family.model, family.reference_pool, batch_size=64)
    ref_cache: dict[tuple, Tensor] = {}
    profile = profile or ("quick" if quick else "full")
    for name in methods:
        try:
            spec = get_method(name)
        except MethodUnavailable as err:
            stats.unavailable.append(f"{family.name}/{name}: {err}")
            log(f"  {name}: not available ({err})")
            continue
        if not applicable(spec, family):
            log(f"  {name}: not applicable to {family.name}")
            continue
        key, hyper = series_key(spec, family, quick, profile)
        store.record_hyperparameters(key, spec.name, profile, hyper)
        applying = {g: names for g, names in groups.items() if GROUPS[g].applies(family, spec)}
        needed = {m for names in applying.values() for m in names} | set(COST_METRICS)
        done = store.done_examples(family.name, family.model_name, spec.name, key, seed, needed)
        pending = [i for i in range(n) if i not in done]
        stats.skipped += n - len(pending)
        chunks = [[i for i in range(lo, min(lo + bs, n)) if i not in done] for lo in range(0, n, bs)]
        chunks = [c for c in chunks if c]
        start = time.perf_counter()
        for chunk in _progress(chunks, len(chunks), f"{family.name}/{name}", progress):
            _run_chunk(store, family, spec, key, chunk, targets, pool_classes, ref_cache, applying, quick, seed,
                       run_id, stats, bs)
            if fail_after is not None and stats.computed >= fail_after:
                raise InjectedFailure(f"injected failure after {stats.computed} computed examples")
        if pending:
            log(f"  {name}: {len(pending)} examples in {time.perf_counter() - start:.1f} s "
                f"({n - len(pending)} already stored)")
        else:
            log(f"  {name}: all {n} examples already stored")


def _references(family: Family, spec: MethodSpec, chunk: list[int], targets: Tensor, pool_classes: Tensor,
                cache: dict[tuple, Tensor], seed: int) -> Tensor:
    settings = reference_settings(family)
    key = tuple(sorted(settings.items()))
    refs = []
    for i in chunk:
        ck = (key, i)
        if ck not in cache:
            cache[ck] = select_references(family, i, family.inputs[i], int(targets[i]), pool_classes, settings, seed)
        refs.append(cache[ck])
    return torch.stack(refs)


def _run_chunk(store: Store, family: Family, spec: MethodSpec, key: str, chunk: list[int], targets: Tensor,
               pool_classes: Tensor, ref_cache: dict, groups: dict[str, tuple[str, ...]], quick: bool, seed: int,
               run_id: int, stats: RunStats, bs: int) -> None:
    idx = torch.tensor(chunk)
    x = family.inputs[idx]
    target = targets[idx]
    refs = _references(family, spec, chunk, targets, pool_classes, ref_cache, seed) if spec.needs_references else None
    gen = torch.Generator().manual_seed(_mix(seed, sum(map(ord, spec.name)), chunk[0] // bs))
    hp = spec.defaults(family, quick)
    t0 = time.perf_counter()
    expl = spec.run(family, x, target, refs, hp, gen)
    seconds = time.perf_counter() - t0
    attr = _as_tensor(expl.attributions)
    if not bool(torch.isfinite(attr).all()):
        raise FloatingPointError(f"{family.name}/{spec.name}: non-finite attributions for examples {chunk}")
    b = len(chunk)
    cost = expl.cost
    values: dict[str, Tensor] = {
        "cost_seconds": torch.full((b,), seconds / b, dtype=torch.float64),
        "cost_passes": torch.full((b,), (cost.forward_rows + cost.backward_rows) / b, dtype=torch.float64),
    }
    curves: dict[str, Tensor] = {}
    mgen = torch.Generator().manual_seed(_mix(seed, 104729, chunk[0] // bs))
    ctx = MetricContext(family, spec, x, attr, target, expl, idx, mgen, quick)
    for gkey, wanted in groups.items():
        vals, crv = GROUPS[gkey].compute(ctx)
        values.update({k: v for k, v in vals.items() if k in wanted})
        curves.update({k: v for k, v in crv.items() if k in wanted})
    rows = []
    for name, v in values.items():
        v = v.detach().to(torch.float64).cpu()
        if v.shape != (b,):
            raise ValueError(f"metric {name} returned shape {tuple(v.shape)}, expected ({b},)")
        if not bool(torch.isfinite(v).all()) and name not in ("completeness_rel",):
            raise FloatingPointError(f"{family.name}/{spec.name}: metric {name} is not finite for {chunk}: {v}")
        rows += [(family.name, family.model_name, spec.name, key, i, name, seed, float(v[j]), run_id)
                 for j, i in enumerate(chunk)]
    arts = []
    for j, i in enumerate(chunk):
        for name, c in curves.items():
            arts.append((family.name, family.model_name, spec.name, key, i, seed, f"curve:{name}", to_blob(c[j])))
        if i < FIGURE_EXAMPLES:
            # figures only need |A| summed over channels; stored in float16 to keep the store small
            a = attr[j].abs().sum(0, keepdim=True) if family.spatial else attr[j]
            arts.append((family.name, family.model_name, spec.name, key, i, seed, "attribution",
                         to_blob(a.to(torch.float16 if family.spatial else torch.float32))))
            arts.append((family.name, family.model_name, "", "", i, seed, "input", to_blob(x[j].to(torch.float16))))
            arts.append((family.name, family.model_name, "", "", i, seed, "target", to_blob(target[j : j + 1])))
    stats.rows += store.write_chunk(rows, arts)
    stats.computed += b


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
    stats = RunStats()
    store = Store(db)
    run_id = store.start_run(command or f"run {families}", families)
    started = time.perf_counter()
    status = "failed"
    try:
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
            family.check_accuracy()
            if profile == "paper":
                family = _select(family, paper_order(family.labels, PAPER_EXPLICANDS))
            if limit is not None:
                family = _limited(family, limit)
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
                           fail_after, log, profile)
            finally:
                stats.seconds[name] = time.perf_counter() - t0
                store.record_family_run(run_id, family.name, family.model_name, profile,
                                        stats.seconds[name], load_s, stats.computed - before[0],
                                        stats.skipped - before[1], time.process_time() - c0)
            log(f"[{name}] done in {stats.seconds[name]:.1f} s")
        status = "finished"
    except InjectedFailure:
        status = "interrupted"
        raise
    finally:
        store.finish_run(run_id, status, stats.computed, stats.skipped, stats.rows, time.perf_counter() - started)
        store.close()
    return stats


def _limited(family: Family, limit: int) -> Family:
    return _select(family, list(range(min(max(1, int(limit)), int(family.inputs.shape[0])))))


def paper_order(labels: Tensor, n: int) -> list[int]:
    """Up to ``n`` explicand positions taken class by class in turn (each class in its original order), so that
    any prefix (a ``--limit`` piece) is as balanced over the classes as the data allows."""
    queues: dict[int, list[int]] = {}
    for i, c in enumerate(labels.tolist()):
        queues.setdefault(int(c), []).append(i)
    order: list[int] = []
    while len(order) < n and any(queues.values()):
        for c in sorted(queues):
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
