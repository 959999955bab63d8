"""Guided IG's path step alone (no model): a previous version of the library against the working tree, interleaved
in one process, on random gradients, for several shapes ``P`` paths x ``N`` features::

    python -m pathattr_bench.speed.guided_step --shapes 4x150528,8x50176,16x3072 --before-tree DIR

``DIR`` holds ``pathattr_before/`` (see :mod:`pathattr_bench.speed.before_after`). Each line gives the median time
per step of both versions and whether their points agree (they should to rounding, 1e-12: the step's arithmetic
per path is the same in both). ``--share-with-baseline F`` makes the first ``F`` of each path's features equal to
the baseline (features that the step marks at every step).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from typing import Any

import torch


def time_steps(modules: dict[str, Any], n_paths: int, n_features: int, steps: int = 16, repeats: int = 5,
               share: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Median seconds per step of ``GuidedPath.advance`` for each module (``pathattr.paths.guided`` of a version),
    run in turn ``repeats`` times, and the largest difference between the versions' last points."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_paths, n_features, dtype=torch.float64, generator=g)
    b = torch.zeros_like(x)
    b[:, : int(n_features * share)] = x[:, : int(n_features * share)]
    grads = [torch.randn(n_paths, n_features, generator=g) for _ in range(steps)]

    def run(module: Any) -> torch.Tensor:
        path = module.GuidedPath(x, b, steps, 0.25, 0.02)
        for grad in grads:
            path.advance(grad, None, check_finite=False)
        return path.point

    points = {name: run(m) for name, m in modules.items()}  # also the warm-up
    first = next(iter(points.values()))
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(repeats):
        for name, m in modules.items():
            start = time.perf_counter()
            run(m)
            times[name].append(time.perf_counter() - start)
    return {"per_step": {name: statistics.median(t) / steps for name, t in times.items()},
            "max_difference": max(float((p - first).abs().max()) for p in points.values())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pathattr_bench.speed.guided_step")
    ap.add_argument("--shapes", default="4x150528,8x50176,1x150528,16x12288,16x3072,4x64", help="comma-separated PxN")
    ap.add_argument("--before-tree", default=None, help="directory holding pathattr_before/ (else: after only)")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--share-with-baseline", type=float, default=0.0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    modules = {}
    if a.before_tree:
        sys.path.insert(0, a.before_tree)
        modules["before"] = importlib.import_module("pathattr_before.paths.guided")
    modules["after"] = importlib.import_module("pathattr.paths.guided")
    for shape in a.shapes.split(","):
        p, n = (int(v) for v in shape.lower().split("x"))
        r = time_steps(modules, p, n, a.steps, a.repeats, a.share_with_baseline)
        times = ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in r["per_step"].items())
        ratio = (f", after/before {r['per_step']['after'] / r['per_step']['before']:.3f}"
                 if "before" in r["per_step"] else "")
        print(f"{p} paths x {n} features: {times} per step{ratio}; points differ by {r['max_difference']:.1e}",
              flush=True)


if __name__ == "__main__":
    main()
