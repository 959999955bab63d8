"""Before/after comparison for issue 16: a previous pathattr and the working tree, run interleaved in one process
with the floor and the peer (Captum IG, PAIR Guided IG / Blur IG, the two-pass IG2 reference), one torch thread.

The previous version is imported as ``pathattr_before`` from ``--before-tree``; make one with::

    mkdir -p /tmp/before_tree && git archive <commit> src/pathattr | tar -x -C /tmp/before_tree \
        && mv /tmp/before_tree/src/pathattr /tmp/before_tree/pathattr_before

(the library uses relative imports only, so the renamed copy is self-contained). Then::

    python -m pathattr_bench.speed.before_after ig_mlp_1,ig_cnn_1,gig_mlp_1 --repeats 5 [--before-tree DIR]

Rows: see :data:`ROWS`. Each line prints, for ``before`` and ``after``, the median wall time, ours/floor (and the
CPU-time ratio), ours/floor@N for the sequential Guided IG, and ours/peer (default and best-tuned).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from pathattr.integrators import quadrature

from .bounds import minimal_causal_curve, minimal_guided_ig, minimal_ig, minimal_ig2
from .common import LAST_CPU, interleaved_medians, make_inputs, make_model, representation_of
from .suite import floor_fn, measure_floor

LIBS = {"before": "pathattr_before", "after": "pathattr"}
_models: dict[str, tuple] = {}


def model(name: str) -> tuple:
    """The benchmark model (parameters frozen), its input shape and its floor (best batch size)."""
    if name not in _models:
        m, shape = make_model(name)
        for p in m.parameters():
            p.requires_grad_(False)
        sizes = [1, 2, 4, 8, 16, 32] if name == "efficientnet" else [1, 4, 16, 64, 256, 1024]
        fl = measure_floor(m, shape, sizes, 3 if name == "efficientnet" else 5)
        _models[name] = (m, shape, fl)
        print(f"floor {name}: best batch {fl.best_batch}, {fl.best_per_row * 1e3:.3f} ms/row", flush=True)
    return _models[name]


def lib(which: str, sub: str | None = None) -> Any:
    return importlib.import_module(LIBS[which] + ("." + sub if sub else ""))


def _caller(cls: Any, ctor: tuple, args: tuple, kwargs: dict) -> Callable[[], Any]:
    """``cls(*ctor).attribute(*args, **kwargs)`` as a function of no arguments (construction included)."""
    return lambda: cls(*ctor).attribute(*args, **kwargs)


def row_ig(name: str, n: int, steps: int, rule: str = "gausslegendre") -> dict[str, Callable[[], Any]]:
    from captum.attr import IntegratedGradients as CaptumIG

    m, shape, fl = model(name)
    x = make_inputs(name, shape, n)
    fns = {w: _caller(lib(w).IntegratedGradients, (m,), (x,), dict(target=0, n_steps=steps, method=rule))
           for w in LIBS}
    fns["peer"] = lambda: CaptumIG(m).attribute(x, target=0, n_steps=steps, method=rule)
    for c in (4, 16) if name == "efficientnet" else (16, 64, 256):
        if 2 * n <= c < n * steps:
            fns[f"peer@{c}"] = lambda c=c: CaptumIG(m).attribute(x, target=0, n_steps=steps, method=rule,
                                                                   internal_batch_size=c)
    alphas, weights = quadrature(rule, steps, torch.float32)
    fns["bound"] = lambda: minimal_ig(m, x, 0, alphas, weights, fl.best_batch, with_gap=False)
    fns["floor"] = floor_fn(m, shape, n * steps, fl.best_batch)
    return fns


def row_guided(name: str, n: int, steps: int) -> dict[str, Callable[[], Any]]:
    from .guided_blur import pair_guided_ig

    m, shape, fl = model(name)
    x = make_inputs(name, shape, n)
    fns = {w: _caller(lib(w, "methods.guided_ig").GuidedIntegratedGradients, (m,), (x,),
                      dict(target=0, n_steps=steps)) for w in LIBS}
    if n == 1:
        fns["peer"] = lambda: pair_guided_ig(m, x, 0, steps)
        fns["bound"] = lambda: minimal_guided_ig(m, x, 0, steps)
    fns["floor"] = floor_fn(m, shape, n * steps, fl.best_batch)
    fns["floor_n"] = floor_fn(m, shape, n * steps, n)
    return fns


def row_blur(name: str, n: int, steps: int) -> dict[str, Callable[[], Any]]:
    from .guided_blur import pair_blur_ig

    m, shape, fl = model(name)
    x = make_inputs(name, shape, n)
    fns = {w: _caller(lib(w, "methods.blur_ig").BlurIntegratedGradients, (m,), (x,),
                      dict(target=0, n_steps=steps)) for w in LIBS}
    batch = min(steps, fl.best_batch)
    if n == 1:
        fns["peer"] = lambda: pair_blur_ig(m, x, 0, steps)
        fns["peer@b"] = lambda: pair_blur_ig(m, x, 0, steps, batch_size=batch)
    fns["floor"] = floor_fn(m, shape, n * steps, fl.best_batch)
    return fns


def row_ig2(name: str, b: int, r: int, steps: int) -> dict[str, Callable[[], Any]]:
    from .ig2 import equivalent_step_size, fused_floor, two_pass_ig2

    m, shape, _ = model(name)
    rep = representation_of(name, m)
    x = make_inputs(name, shape, b)
    eta = None
    if name == "efficientnet":
        from ..imagenet import load_photo

        refs = torch.stack([load_photo(p) for p in ("coffee", "china")][:r])
        eta = equivalent_step_size(int(x[0].numel()))
    else:
        refs = make_inputs(name, shape, r, seed=3)
    store: list[torch.Tensor] = []
    hook = rep.register_forward_pre_hook(lambda mod, a: store.append(a[0]))
    with torch.no_grad():
        m(refs)
    hook.remove()
    rho, rows = store[-1].repeat(b, 1), x.repeat_interleave(r, 0)
    fns = {w: _caller(lib(w, "methods.ig2").IG2, (m, rep), (x, refs),
                      dict(target=0, n_steps=steps, step_size=eta, bounds=(0.0, 1.0), preset="reference"))
           for w in LIBS}  # the authors' algorithm: the computation of the two-pass peer and the fused floor
    fns["peer"] = lambda: two_pass_ig2(m, rep, x, refs, target=0, n_steps=steps, step_size=eta, bounds=(0.0, 1.0))
    fns["floor"] = fused_floor(m, rep, rows, rho, steps, 2)
    fns["bound"] = lambda: minimal_ig2(m, rep, x, refs, 0, steps, eta, (0.0, 1.0))
    return fns


def row_metric(name: str, n: int, steps: int, kind: str) -> dict[str, Callable[[], Any]]:
    """``deletion`` / ``insertion`` (zeros substrate, pixel granularity) against the forward-only floor of the
    same ``n * (steps + 1)`` rows; Quantus, the peer of the suite, is not part of this comparison."""
    m, shape, fl = model(name)
    x = make_inputs(name, shape, n)
    attr = torch.rand(n, 1, *shape[1:], generator=torch.Generator().manual_seed(5))
    fns = {w: (lambda w=w: getattr(lib(w, "metrics"), kind)(m, x, attr, target=0, n_steps=steps,
                                                               substrate="zeros")) for w in LIBS}
    fns["floor"] = floor_fn(m, shape, n * (steps + 1), fl.best_batch, backward=False)
    fns["bound"] = lambda: minimal_causal_curve(m, x, attr, 0, steps, kind, fl.best_batch)
    return fns


ROWS: dict[str, Callable[[], dict[str, Callable[[], Any]]]] = {
    "ig_mlp_1": lambda: row_ig("mlp", 1, 50),
    "ig_mlp_1_trap": lambda: row_ig("mlp", 1, 50, "riemann_trapezoid"),
    "ig_mlp_16": lambda: row_ig("mlp", 16, 50),
    "ig_cnn_1": lambda: row_ig("cnn", 1, 50),
    "ig_cnn_1_trap": lambda: row_ig("cnn", 1, 50, "riemann_trapezoid"),
    "ig_cnn_16": lambda: row_ig("cnn", 16, 50),
    "ig_cnn_16_trap": lambda: row_ig("cnn", 16, 50, "riemann_trapezoid"),
    "ig_eff_1": lambda: row_ig("efficientnet", 1, 16),
    "ig_eff_1_trap": lambda: row_ig("efficientnet", 1, 16, "riemann_trapezoid"),
    "ig_eff_2": lambda: row_ig("efficientnet", 2, 16),
    "ig_eff_2_trap": lambda: row_ig("efficientnet", 2, 16, "riemann_trapezoid"),
    "gig_mlp_1": lambda: row_guided("mlp", 1, 200),
    "gig_cnn_1": lambda: row_guided("cnn", 1, 200),
    "gig_cnn_16": lambda: row_guided("cnn", 16, 200),
    "gig_eff_1": lambda: row_guided("efficientnet", 1, 16),
    "gig_eff_4": lambda: row_guided("efficientnet", 4, 16),
    "blur_cnn_1": lambda: row_blur("cnn", 1, 100),
    "blur_cnn_16": lambda: row_blur("cnn", 16, 100),
    "blur_eff_1": lambda: row_blur("efficientnet", 1, 16),
    "ig2_mlp": lambda: row_ig2("mlp", 1, 4, 32),
    "ig2_cnn_1": lambda: row_ig2("cnn", 1, 4, 32),
    "ig2_cnn": lambda: row_ig2("cnn", 4, 4, 32),
    "ig2_eff": lambda: row_ig2("efficientnet", 1, 2, 8),
    "ig2_eff_2": lambda: row_ig2("efficientnet", 2, 2, 8),
    "del_cnn_1": lambda: row_metric("cnn", 1, 32, "deletion"),
    "ins_cnn_1": lambda: row_metric("cnn", 1, 32, "insertion"),
    "del_cnn_16": lambda: row_metric("cnn", 16, 32, "deletion"),
    "del_eff_1": lambda: row_metric("efficientnet", 1, 16, "deletion"),
    "del_eff_2": lambda: row_metric("efficientnet", 2, 16, "deletion"),
    "ins_eff_1": lambda: row_metric("efficientnet", 1, 16, "insertion"),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pathattr_bench.speed.before_after")
    ap.add_argument("rows", help="comma-separated: " + ",".join(ROWS))
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (at most 3 on EfficientNet)")
    ap.add_argument("--before-tree", default="/tmp/before_tree", help="directory holding pathattr_before/")
    ap.add_argument("--only", default="before,after", help="which versions to run")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, a.before_tree)
    torch.set_num_threads(1)
    for k in list(LIBS):
        if k not in a.only.split(","):
            LIBS.pop(k)
    out = []
    print(f"load {os.getloadavg()}", flush=True)
    for rid in a.rows.split(","):
        fns = ROWS[rid]()
        med = interleaved_medians(fns, a.repeats if "eff" not in rid else min(a.repeats, 3))
        cpu = dict(LAST_CPU)
        peers = [k for k in med if k.startswith("peer")]
        best = min(peers, key=med.get) if peers else None
        line = [rid]
        for w in LIBS:
            s = f"{w}: {med[w] * 1e3:.2f}ms /floor {med[w] / med['floor']:.2f} (cpu {cpu[w] / cpu['floor']:.2f})"
            if "floor_n" in med:
                s += f" /floor@N {med[w] / med['floor_n']:.2f} (cpu {cpu[w] / cpu['floor_n']:.2f})"
            if best is not None:
                s += (f" /peer {med[w] / med['peer']:.2f} /peer-best({best}) {med[w] / med[best]:.2f}"
                      f" (cpu {cpu[w] / cpu[best]:.2f})")
            if "bound" in med:
                s += f" /bound {med[w] / med['bound']:.2f} (cpu {cpu[w] / cpu['bound']:.2f})"
            line.append(s)
        if "bound" in med:
            ref = "floor_n" if "floor_n" in med else "floor"
            line.append(f"bound/{ref} {med['bound'] / med[ref]:.2f} (cpu {cpu['bound'] / cpu[ref]:.2f})")
        if best is not None:
            line.append(f"peer-best/floor {med[best] / med['floor']:.2f}")
        print(" | ".join(line), flush=True)
        out.append({"row": rid, "wall": med, "cpu": cpu})
    print(f"load {os.getloadavg()}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
