"""IG calls shorter than the size the automatic plan is exploring: a previous pathattr and the working tree,
interleaved in one process, one torch thread.

Seen in a ``before_after`` process (issue 16, eighth round): on the small CNN the planner's exploration had measured
16-512 rows within its tolerance and would try 1024 next, so every IG call of 16 examples x 50 steps (800 rows) ran
as one chunk that the plan did not measure, at 2.3x the time of the planner's sizes (activations above glibc's mmap
ceiling get fresh pages on every call). This primes both versions' planners with that state (the measured times
per row) and times the same calls::

    python -m pathattr_bench.speed.stalled_plan --repeats 12 --before-tree /tmp/before_tree

(make the before tree as the docstring of :mod:`pathattr_bench.speed.before_after` says). Prints, per version, the
median wall time and minor page faults per call after the first calls, and the plan the version ends with.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from types import SimpleNamespace
from typing import Any

import torch

from .chunk_sizes import _usage
from .common import make_inputs, make_model

#: the exploration state seen: seconds per row at each measured size, the next size to explore
SEEN_TRIED = {16: 178.0e-6, 32: 160.8e-6, 64: 161.9e-6, 128: 154.6e-6, 256: 152.9e-6, 512: 173.5e-6}
SEEN_NEXT = 1024


def time_stalled_plan(libs: dict[str, str], n_examples: int = 16, n_steps: int = 50, repeats: int = 12,
                      tried: dict[int, float] | None = None, next_size: int = SEEN_NEXT) -> dict[str, dict[str, Any]]:
    """For each ``{label: module name}``: prime the planner's exploration for the small CNN's gradient rows with
    ``tried`` (default :data:`SEEN_TRIED`) and ``next_size``, then time ``repeats`` IG calls (target 0,
    gausslegendre) interleaved between the versions. Returns per label the wall times (s) and page faults per call
    and the plan afterwards (``settled``: the remembered size or None, ``exploring``: the next size or None)."""
    tried = SEEN_TRIED if tried is None else tried
    model, shape = make_model("cnn")
    for p in model.parameters():
        p.requires_grad_(False)
    x = make_inputs("cnn", shape, n_examples)
    mods = {label: (importlib.import_module(name), importlib.import_module(name + ".planner"))
            for label, name in libs.items()}
    # the planner's key: the model (ModelFunction.forward_func), what is computed, the row layout
    keys = {label: planner.planner_key(SimpleNamespace(forward_func=model), (x,), "gradients")
            for label, (_lib, planner) in mods.items()}
    for label, (_lib, planner) in mods.items():
        planner._best_chunk.pop(keys[label], None)
        planner._exploration[keys[label]] = (next_size, dict(tried), {s: 2 for s in tried})
    out: dict[str, dict[str, Any]] = {label: {"wall": [], "faults": []} for label in mods}
    for _ in range(repeats):
        for label, (lib, _planner) in mods.items():
            before = _usage()
            lib.IntegratedGradients(model).attribute(x, target=0, n_steps=n_steps)
            after = _usage()
            out[label]["wall"].append(after[0] - before[0])
            out[label]["faults"].append(after[3] - before[3])
    for label, (_lib, planner) in mods.items():
        out[label]["settled"] = planner._best_chunk.get(keys[label])
        exploring = planner._exploration.get(keys[label])
        out[label]["exploring"] = exploring[0] if exploring else None
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pathattr_bench.speed.stalled_plan")
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--before-tree", default="/tmp/before_tree", help="directory holding pathattr_before/")
    a = ap.parse_args(argv)
    sys.path.insert(0, a.before_tree)
    torch.set_num_threads(1)
    res = time_stalled_plan({"before": "pathattr_before", "after": "pathattr"}, repeats=a.repeats)
    skip = min(4, a.repeats - 1)
    for label, r in res.items():
        print(f"{label:>6}: median {statistics.median(r['wall'][skip:]) * 1e3:7.1f} ms"
              f"  page faults {statistics.median(r['faults'][skip:]):8.0f}  first call {r['wall'][0] * 1e3:6.1f} ms"
              f"  plan: settled {r['settled']}, exploring {r['exploring']}", flush=True)


if __name__ == "__main__":
    main()
