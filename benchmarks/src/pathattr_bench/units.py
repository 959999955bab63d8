"""Work units of the benchmark runner: one chunk of examples of one method on one loaded family.

Executor-neutral: :func:`plan_series` lists a family's series (method, result key, hyperparameters, metric
groups), :func:`work_units` cuts its explicands into the fixed chunks of ``batch_size`` examples that are not
stored yet, and :class:`ChunkComputer` (built once per loaded family) turns a chunk into result and artifact
rows with :func:`compute_chunk`. The local executor (:func:`pathattr_bench.runner.run_family`) and the Ray
executor (:mod:`pathattr_bench.ray_executor`) both use these, so the same chunk gives the same rows wherever it
is computed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .families._fit import predict
from .families.base import Family
from .methods_registry import (
    MethodSpec,
    MethodUnavailable,
    _mix,
    applicable,
    get_method,
    reference_settings,
    select_references,
)
from .metrics_registry import COST_METRICS, GROUPS, MetricContext, resolve_groups
from .store import hp_hash, to_blob

#: chunk sizes (explicands per attribution call) per family
DEFAULT_BATCH = {"synthetic": 32, "mnist": 8, "imagenet": 1, "text": 8, "wafer": 8, "faces": 8}
FIGURE_EXAMPLES = 2


class InjectedFailure(RuntimeError):
    """Raised by the runner after ``fail_after`` computed examples (to test resuming)."""


@dataclass(frozen=True)
class LoadSettings:
    """How a family is loaded and cut to its explicands (the same in this process and in every Ray worker)."""

    profile: str = "quick"
    seed: int = 0
    data_path: str | None = None
    cache_dir: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    limit: int | None = None

    @property
    def quick(self) -> bool:
        return self.profile == "quick"


@dataclass(frozen=True)
class Series:
    """One method on one family: its result key, hyperparameters and the metric groups that apply."""

    method: str
    key: str
    hyper: dict[str, Any]
    groups: dict[str, tuple[str, ...]]
    needed: tuple[str, ...]


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


def family_batch_size(family: Family, batch_size: int | None = None) -> int:
    """Explicands per work unit: ``batch_size``, else the family's budget, else :data:`DEFAULT_BATCH`."""
    return batch_size or (getattr(family, "budget", None) or {}).get("batch_size") or DEFAULT_BATCH.get(family.name, 8)


def plan_series(family: Family, methods: Sequence[str], metrics: Sequence[str] | None, quick: bool,
                profile: str) -> tuple[list[Series], list[tuple[str, str]]]:
    """The series to evaluate on ``family`` (registered, available and applicable methods with their keys) and
    notes ``(kind, message)`` on the others: kind ``"unavailable"`` (``family/method: reason``) or ``"log"``."""
    groups = resolve_groups(metrics)
    out, notes = [], []
    for name in methods:
        try:
            spec = get_method(name)
        except MethodUnavailable as err:
            notes.append(("unavailable", f"{family.name}/{name}: {err}"))
            notes.append(("log", f"  {name}: not available ({err})"))
            continue
        if not applicable(spec, family):
            notes.append(("log", f"  {name}: not applicable to {family.name}"))
            continue
        key, hyper = series_key(spec, family, quick, profile)
        applying = {g: tuple(n for n in names if n in GROUPS[g].stored_names(family, quick))
                    for g, names in groups.items() if GROUPS[g].applies(family, spec)}
        needed = tuple(sorted({m for names in applying.values() for m in names} | set(COST_METRICS)))
        out.append(Series(spec.name, key, hyper, applying, needed))
    return out, notes


def work_units(n: int, bs: int, done: set[int]) -> list[list[int]]:
    """Fixed chunks ``[lo, lo + bs)`` of ``range(n)`` without the ``done`` examples (empty chunks dropped): the
    same chunking whatever was done before and whichever executor computes them."""
    chunks = [[i for i in range(lo, min(lo + bs, n)) if i not in done] for lo in range(0, n, bs)]
    return [c for c in chunks if c]


class ChunkComputer:
    """Computes work units of one loaded family (in this process, or inside a Ray worker): predicted targets,
    pool classes and the per-example reference cache are built once."""

    def __init__(self, family: Family, quick: bool, seed: int, bs: int) -> None:
        self.family, self.quick, self.seed, self.bs = family, quick, seed, bs
        self.targets = predict(family.model, family.inputs, batch_size=64)
        self.pool_classes = predict(family.model, family.reference_pool, batch_size=64)
        self.ref_cache: dict[tuple, Tensor] = {}

    def compute(self, series: Series, chunk: list[int], run_id: int) -> tuple[list[tuple], list[tuple]]:
        return compute_chunk(self.family, get_method(series.method), series.key, chunk, self.targets,
                             self.pool_classes, self.ref_cache, series.groups, self.quick, self.seed, run_id, self.bs)


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


def compute_chunk(family: Family, spec: MethodSpec, key: str, chunk: list[int], targets: Tensor,
                  pool_classes: Tensor, ref_cache: dict, groups: dict[str, tuple[str, ...]], quick: bool, seed: int,
                  run_id: int, bs: int) -> tuple[list[tuple], list[tuple]]:
    """Attributions and metrics of the examples ``chunk`` with method ``spec``: ``(result rows, artifact rows)``
    ready for :meth:`Store.write_chunk`. Raises on non-finite attributions or metrics."""
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
    ctx = MetricContext(family, spec, x, attr, target, expl, idx, mgen, quick, references=refs, hyperparameters=hp)
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
    return rows, arts
