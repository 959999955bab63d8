"""IG or the deletion metric at fixed chunk sizes beside the automatic plan, interleaved in one process, with the
kernel's share.

The automatic planner (:func:`pathattr.planner.plan_chunks`) stops growing chunks at 0.25 s per chunk. On CPU the
fastest ``internal_batch_size`` for a large model moves between processes and within minutes; this measures it
and splits each call's time into user and system (kernel) CPU time, where first-touch page faults of freshly
mapped tensors show up. Run it under different allocator settings to compare, e.g.::

    python -m pathattr_bench.speed.chunk_sizes --model efficientnet --sizes 2,4,8,16
    python -m pathattr_bench.speed.chunk_sizes --model cnn --method deletion --examples 16 --steps 32 \
        --sizes 16,64,256,528
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        python -m pathattr_bench.speed.chunk_sizes --model efficientnet --sizes 2,4,8,16
    python -m pathattr_bench.speed.chunk_sizes --model cnn --method deletion --examples 16 --steps 32 \
        --sizes 16,64,256,528

(glibc: allocations above the mmap threshold get fresh pages from the kernel on every call; the variables fix the
threshold at its 64-bit maximum instead of letting it move with the history of frees). One torch thread.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import pathattr
from pathattr import metrics

from .common import make_inputs, make_model


@dataclass
class ChunkTiming:
    """Medians per call at one chunk size (``None``: the automatic plan): seconds of wall, user and system (kernel)
    time, and minor page faults."""

    size: int | None
    wall: float
    user: float
    system: float
    page_faults: float


def _usage() -> tuple[float, float, float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime, r.ru_stime, float(r.ru_minflt)


def time_chunk_sizes(model: torch.nn.Module, x: torch.Tensor, sizes: list[int | None], n_steps: int,
                     repeats: int, method: str = "ig") -> list[ChunkTiming]:
    """IG (target 0, gausslegendre, ``n_steps`` nodes) or the deletion metric (``n_steps`` steps, zeros
    substrate, a fixed random ranking) at each ``internal_batch_size`` in ``sizes``, in turn for ``repeats``
    rounds after a warm-up round."""
    if method == "ig":
        def run(c: int | None) -> Any:
            return pathattr.IntegratedGradients(model).attribute(x, target=0, n_steps=n_steps, internal_batch_size=c)
    elif method == "deletion":
        ranking = torch.rand(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(5))

        def run(c: int | None) -> Any:
            return metrics.deletion(model, x, ranking, target=0, n_steps=n_steps, substrate="zeros",
                                    internal_batch_size=c)
    else:
        raise ValueError(f"method must be 'ig' or 'deletion', got {method!r}")
    fns: dict[int | None, Callable[[], Any]] = {c: (lambda c=c: run(c)) for c in sizes}
    samples: dict[int | None, list[tuple[float, ...]]] = {c: [] for c in sizes}
    for round_ in range(repeats + 1):
        for c, fn in fns.items():
            before = _usage()
            fn()
            after = _usage()
            if round_:
                samples[c].append(tuple(b - a for a, b in zip(before, after)))
    return [ChunkTiming(c, *(statistics.median(v[i] for v in samples[c]) for i in range(4))) for c in sizes]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pathattr_bench.speed.chunk_sizes")
    ap.add_argument("--model", default="efficientnet", choices=["mlp", "cnn", "efficientnet"])
    ap.add_argument("--method", default="ig", choices=["ig", "deletion"])
    ap.add_argument("--examples", type=int, default=1)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--sizes", default="2,4,8,16", help="comma-separated chunk sizes; the automatic plan is added")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, shape = make_model(a.model)
    for p in model.parameters():
        p.requires_grad_(False)
    x = make_inputs(a.model, shape, a.examples)
    sizes: list[int | None] = [int(s) for s in a.sizes.split(",") if s]
    for t in time_chunk_sizes(model, x, [*sizes, None], a.steps, a.repeats, a.method):
        label = "auto" if t.size is None else f"ibs={t.size}"
        print(f"{label:>8}: wall {t.wall * 1e3:8.1f} ms  user {t.user * 1e3:8.1f} ms  system {t.system * 1e3:7.1f} ms"
              f"  page faults {t.page_faults:8.0f}", flush=True)


if __name__ == "__main__":
    main()
