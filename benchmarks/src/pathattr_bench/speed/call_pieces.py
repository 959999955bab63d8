"""Where an Integrated Gradients call spends its time outside the model: the call's stages timed in place,
interleaved in one process with the floor (the same rows' plain forward + backward in one call)::

    python -m pathattr_bench.speed.call_pieces --models mlp,linear --examples 1,4,16 --repeats 100

Each stage of :meth:`pathattr.IntegratedGradients.attribute` (baselines, path points, the model call, the weighted
sums, the result) is wrapped with a time stamp at its entry and exit, for the measured calls only (the wrappers are
removed afterwards; the stamps themselves add about 1 us each). A line per model and number of examples gives the
median floor, the median time of the model calls inside pathattr (:meth:`ModelFunction.gradients`) and the median of
the rest of the call. With ``--stages`` it also prints the median time between consecutive stamps. The floor is one
call of all rows unless ``--floor-batch`` says otherwise (on the small CNN pathattr runs smaller chunks).

``linear`` is ``nn.Linear(64, 10)`` on the MLP's inputs: the same pathattr work on rows of the same size next to
almost no model work. Comparing it with ``mlp`` shows how much of the time outside the model comes from the rows'
size and how much from running after a larger model call (ninth and tenth rounds of issue 16,
``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .common import make_inputs, make_model
from .suite import floor_fn

#: the stages of an IG call: (module, attribute path, label); the model call is labelled ``gradients``
STAGES = (
    ("pathattr.methods.integrated_gradients", "resolve_baselines", "baselines"),
    ("pathattr.methods.base", "Session.integrate", "integrate"),
    ("pathattr.methods.base", "integrate_parametric_path", "engine"),
    ("pathattr.paths.straight", "StraightLinePath.points", "points"),
    ("pathattr.forward", "ModelFunction.gradients", "gradients"),
    ("pathattr.paths.straight", "StraightLinePath.summed_products", "summed_products"),
    ("pathattr.integrators", "_RiemannAccumulator.add_summed", "add_summed"),
    ("pathattr.methods.base", "Session.explanation", "explanation"),
)


@contextlib.contextmanager
def stamped(marks: list[tuple[str, float]]) -> Iterator[None]:
    """Wrap every stage of :data:`STAGES` so that it appends ``(label>, t)`` at entry and ``(label<, t)`` at exit
    to ``marks``; the original functions are put back on exit."""
    import importlib

    saved = []
    try:
        for module_name, attr, label in STAGES:
            owner: Any = importlib.import_module(module_name)
            *parents, name = attr.split(".")
            for p in parents:
                owner = getattr(owner, p)
            fn = owner.__dict__[name]
            saved.append((owner, name, fn))
            setattr(owner, name, _stamp(fn, label, marks))
        yield
    finally:
        for owner, name, fn in reversed(saved):
            setattr(owner, name, fn)


def _stamp(fn: Any, label: str, marks: list[tuple[str, float]]) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        marks.append((label + ">", time.perf_counter()))
        try:
            return fn(*args, **kwargs)
        finally:
            marks.append((label + "<", time.perf_counter()))
    return wrapper


def bench_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """``mlp`` / ``cnn`` (:func:`make_model`), or ``linear``: ``nn.Linear(64, 10)`` on the MLP's inputs; frozen."""
    if name == "linear":
        model, shape = nn.Linear(64, 10), (64,)
    else:
        model, shape = make_model(name)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), shape


def time_pieces(name: str, n: int, steps: int = 50, repeats: int = 100, floor_batch: int | None = None
                ) -> dict[str, Any]:
    """Median seconds of the floor (the ``n * steps`` rows in calls of ``floor_batch`` rows, default all in one
    call), of pathattr's model calls and of the rest of its IG call (per call: the whole call minus its model
    calls), and the median time between consecutive stage stamps, for ``n`` examples of model ``name`` at
    ``steps`` Gauss-Legendre nodes (target 0, zero baseline, automatic plan)."""
    from pathattr import IntegratedGradients

    model, shape = bench_model(name)
    x = make_inputs("cnn" if name == "cnn" else "mlp", shape, n)
    floor = floor_fn(model, shape, n * steps, floor_batch or n * steps)
    marks: list[tuple[str, float]] = []

    def ours() -> None:
        marks.append(("start", time.perf_counter()))
        IntegratedGradients(model).attribute(x, target=0, n_steps=steps)
        marks.append(("end", time.perf_counter()))

    for _ in range(5):  # settles the automatic plan
        ours()
        floor()
    totals: dict[str, list[float]] = defaultdict(list)
    gaps: dict[str, list[float]] = defaultdict(list)
    with stamped(marks):
        for _ in range(repeats):
            marks.clear()
            ours()
            t = time.perf_counter()
            floor()
            totals["floor"].append(time.perf_counter() - t)
            call = marks[-1][1] - marks[0][1]
            model_time = sum(b[1] - a[1] for a, b in zip(marks, marks[1:]) if a[0] == "gradients>")
            totals["call"].append(call)
            totals["gradients"].append(model_time)
            totals["outside"].append(call - model_time)
            for (a, ta), (b, tb) in zip(marks, marks[1:]):
                gaps[f"{a} {b}"].append(tb - ta)
    return {"median": {k: statistics.median(v) for k, v in totals.items()},
            "stages": {k: statistics.median(v) for k, v in gaps.items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pathattr_bench.speed.call_pieces")
    ap.add_argument("--models", default="mlp,linear", help="comma-separated: mlp, cnn, linear")
    ap.add_argument("--examples", default="1,4,16", help="comma-separated numbers of examples")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--floor-batch", type=int, default=None,
                    help="rows per floor call (default: all rows in one call; give the model's best batch for the cnn)")
    ap.add_argument("--stages", action="store_true", help="also print the time between consecutive stamps")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in a.models.split(","):
        for n in (int(v) for v in a.examples.split(",")):
            r = time_pieces(name, n, a.steps, a.repeats, a.floor_batch)
            md = r["median"]
            print(f"{name}, {n} example(s): floor {md['floor'] * 1e3:.3f} ms, pathattr's model call "
                  f"{md['gradients'] * 1e3:.3f} ms, outside it {md['outside'] * 1e6:.0f} us, "
                  f"call/floor {md['call'] / md['floor']:.3f}", flush=True)
            if a.stages:
                for k, v in r["stages"].items():
                    print(f"    {k:40s} {v * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
