"""Speed and memory benchmark: pathattr against its peers and against the floor, in one command.

Run ``python -m pathattr_bench.speed [--quick] [--repeats N]`` (or ``pathattr-bench speed ...``); the tables go
to ``docs/performance.md`` between the ``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers (the
hand-written analysis around them is kept).

What is compared, on an MLP (64 features), a small CNN (3x32x32) and EfficientNet-Lite0 (3x224x224, a real photo):

* IG vs Captum's ``IntegratedGradients`` (same ``n_steps``, rule and batch; Captum at its default
  ``internal_batch_size`` and at the best of a few; the note also compares ours with Captum asked for the
  convergence delta, which computes the result ours returns: attributions and completeness gap);
* Guided IG and Blur IG vs PAIR-code/saliency (NumPy, one example at a time; patched at runtime for NumPy 2, see
  :mod:`pathattr_bench.speed.guided_blur`);
* IG2 vs the straightforward two-pass implementation of the authors' algorithm
  (:func:`pathattr.testing.oracles.two_pass_ig2`, skipped with a note if that module is absent);
* deletion / insertion (:mod:`pathattr.metrics`) vs Quantus' closest metric, ``PixelFlipping``;
* every method vs the **floor**: plain batched forward+backward calls (forward only for the metrics) of the same
  number of rows at the model's fastest batch size, measured in the same run; Guided IG and IG2 are sequential
  (one call per step), so ``floor@N`` (the same rows in calls of ``N`` rows) is shown too;
* IG, Guided IG (one example), IG2 and the metrics vs their **bound**: a bare plain-torch implementation of the
  same result (:mod:`pathattr_bench.speed.bounds`: IG with its two end outputs for the completeness gap, in calls
  of the floor's batch size; PAIR's Guided IG algorithm with its selection in NumPy; IG2 fused, with its
  noise-floor stop and finiteness test; deletion / insertion rows built and scored in calls of the floor's batch
  size): ``bound/floor`` is how far above
  the floor a bare implementation of the same result is, ``ours/bound`` what pathattr's validation, planning
  and result object add;
* scaling: seconds as the batch size ``N`` and ``n_steps`` grow (1..64), and the peak memory of IG against
  ``internal_batch_size`` (peak resident-set increase of a fresh subprocess, ``ru_maxrss``).

Every timing is a median over ``--repeats`` rounds after one warm-up round; inside a round the compared functions
run in turn (:func:`interleaved_medians`), so a change of machine load hits both sides of every ratio.
pathattr always runs with its **default** settings (automatic ``internal_batch_size``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pathattr
from pathattr.integrators import quadrature

from .bounds import minimal_causal_curve, minimal_guided_ig, minimal_ig, minimal_ig2
from .common import (
    LAST_CPU,
    forward_backward,
    interleaved_medians,
    machine_description,
    make_inputs,
    make_model,
    representation_of,
)

START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"

def floor_fn(model: nn.Module, shape: tuple[int, ...], rows: int, per_call: int, backward: bool = True
             ) -> Callable[[], None]:
    """Plain torch doing ``rows`` forward(+backward) rows in calls of ``per_call`` rows."""
    per_call = max(1, min(per_call, rows))
    x = torch.rand(per_call, *shape, generator=torch.Generator().manual_seed(2))
    calls, rest = divmod(rows, per_call)
    sizes = [per_call] * calls + ([rest] if rest else [])

    def run() -> None:
        for n in sizes:
            if backward:
                forward_backward(model, x[:n])
            else:
                with torch.no_grad():
                    model(x[:n])

    return run


@dataclass
class Floor:
    """Per-row forward+backward seconds at each batch size; the floor uses the fastest."""

    per_row: dict[int, float] = field(default_factory=dict)

    @property
    def best_batch(self) -> int:
        return min(self.per_row, key=self.per_row.get)

    @property
    def best_per_row(self) -> float:
        return min(self.per_row.values())

    def seconds(self, rows: int) -> float:
        return rows * self.best_per_row


def measure_floor(model: nn.Module, shape: tuple[int, ...], sizes: list[int], repeats: int) -> Floor:
    """Seconds per forward+backward row at each batch size (interleaved medians, same rows for all sizes)."""
    rows = max(sizes)
    fns = {n: floor_fn(model, shape, rows if n * 4 > rows else 4 * n, n) for n in sizes}
    med = interleaved_medians(fns, repeats)
    return Floor({n: med[n] / (rows if n * 4 > rows else 4 * n) for n in sizes})


# ----------------------------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One benchmark line; times are seconds for the whole batch (per explanation = / batch)."""

    model: str
    method: str
    batch: int
    n_steps: int
    ours: float
    peer_name: str = ""
    peer: float | None = None
    peer_best: float | None = None
    floor: float | None = None
    floor_n: float | None = None
    note: str = ""
    cpu_ratio: float | None = None  #: ours / floor in process CPU time
    cpu_ratio_n: float | None = None  #: ours / floor@N in process CPU time
    bound: float | None = None  #: the bare plain-torch implementation of the same result (:mod:`.bounds`)

    def ratio(self, what: str) -> float | None:
        other = {"peer": self.peer, "peer_best": self.peer_best, "floor": self.floor, "floor_n": self.floor_n}[what]
        return None if other is None or other == 0 else self.ours / other

    def cells(self) -> list[str]:
        def f(v: float | None) -> str:
            return "-" if v is None else (f"{v:.4f}" if v < 1 else f"{v:.3f}")

        def r(a: float | None, b: float | None) -> str:
            return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"

        n = self.batch
        return [
            self.model, self.method, str(n), str(self.n_steps), f(self.ours / n),
            f(None if self.floor is None else self.floor / n), r(self.ours, self.floor),
            "-" if self.cpu_ratio is None else f"{self.cpu_ratio:.2f}", r(self.ours, self.floor_n),
            "-" if self.cpu_ratio_n is None else f"{self.cpu_ratio_n:.2f}",
            self.peer_name or "-", f(None if self.peer is None else self.peer / n), r(self.ours, self.peer),
            r(self.ours, self.peer_best), r(self.peer_best, self.floor),
            r(self.bound, self.floor_n if self.floor_n is not None else self.floor), r(self.ours, self.bound),
            self.note,
        ]

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


HEADER = [
    "model", "method", "N", "steps", "ours s/expl", "floor s/expl", "ours/floor", "CPU ours/floor", "ours/floor@N",
    "CPU ours/floor@N", "peer",
    "peer s/expl", "ours/peer", "ours/peer-best", "peer-best/floor", "bound/floor(@N)", "ours/bound", "note",
]


@dataclass
class Context:
    """What every case needs: the model, its floor and the run settings."""

    name: str
    model: nn.Module
    shape: tuple[int, ...]
    floor: Floor
    repeats: int
    quick: bool
    notes: list[str] = field(default_factory=list)

    @property
    def big(self) -> bool:
        return self.name == "efficientnet"

    def floors(self, rows: int, n: int | None = None, backward: bool = True) -> dict[str, Callable[[], None]]:
        fns = {"floor": floor_fn(self.model, self.shape, rows, self.floor.best_batch, backward)}
        if n is not None and n != self.floor.best_batch:
            fns["floor_n"] = floor_fn(self.model, self.shape, rows, n, backward)
        return fns


def _log(row: Row) -> Row:
    print(" | ".join(row.cells()), flush=True)
    return row


def _row(ctx: Context, method: str, n: int, steps: int, med: dict[str, float], peer_name: str = "",
         peer_keys: tuple[str, ...] = (), note: str = "", ours_key: str = "ours") -> Row:
    """A row from interleaved medians (``ours_key``: ours, ``peer_keys``: the peer's variants, ``floor``,
    ``floor_n``); the CPU-time ratio comes from :data:`LAST_CPU`."""
    peers = [med[k] for k in peer_keys if k in med]
    cpu_ours, cpu_floor = LAST_CPU.get(ours_key), LAST_CPU.get("floor")
    cpu_floor_n = LAST_CPU.get("floor_n", cpu_floor)
    return _log(Row(
        ctx.name, method, n, steps, med[ours_key], peer_name if peers else "", peers[0] if peers else None,
        min(peers) if peers else None, med.get("floor"), med.get("floor_n", med.get("floor")), note,
        cpu_ours / cpu_floor if cpu_ours is not None and cpu_floor else None,
        cpu_ours / cpu_floor_n if cpu_ours is not None and cpu_floor_n else None,
        med.get("bound"),
    ))


# ----------------------------------------------------------------------------------------------- IG vs Captum


def _captum_label(key: str) -> str:
    """``"default"`` or ``"ibs=N"`` for a Captum variant's key (``captum``, ``captum@N``, ``delta@N``)."""
    return "default" if "@" not in key else "ibs=" + key.split("@")[1]


def ig_cases(ctx: Context) -> list[Row]:
    from captum.attr import IntegratedGradients as CaptumIG

    model = ctx.model
    steps = (8 if ctx.quick else 16) if ctx.big else 50
    batches = ((1,) if ctx.quick else (1, 2)) if ctx.big else ((1, 4) if ctx.quick else (1, 16))
    rules = ("gausslegendre",) if ctx.quick else ("gausslegendre", "riemann_trapezoid")
    candidates = (4, 16) if ctx.big else (16, 64, 256)
    rows = []
    for n in batches:
        x = make_inputs(ctx.name, ctx.shape, n)
        for rule in rules:
            ibs = [c for c in candidates if 2 * n <= c < n * steps]
            # "ours" / "captum": the attributions alone; "ours_delta" / "delta": asked for the convergence delta
            # too (both evaluate f(x) and f(x') for it; ours reads them from the rows where both ends are nodes)
            fns: dict[str, Callable[[], Any]] = {
                "ours": lambda x=x, r=rule: pathattr.IntegratedGradients(model).attribute(
                    x, target=0, n_steps=steps, method=r),
                "ours_delta": lambda x=x, r=rule: pathattr.IntegratedGradients(model).attribute(
                    x, target=0, n_steps=steps, method=r, return_convergence_delta=True),
            }
            # Captum at its default and at each batch size, without and with the delta
            for c in (None, *ibs):
                for kind, delta in (("captum", False), ("delta", True)):
                    fns[kind if c is None else f"{kind}@{c}"] = lambda x=x, r=rule, c=c, d=delta: CaptumIG(
                        model).attribute(x, target=0, n_steps=steps, method=r, internal_batch_size=c,
                                         return_convergence_delta=d)
            alphas, weights = quadrature(rule, steps, torch.float32)
            fns["bound"] = lambda x=x, a=alphas, w=weights: minimal_ig(model, x, 0, a, w, ctx.floor.best_batch,
                                                                       with_gap=False)
            fns.update(ctx.floors(n * steps))
            med = interleaved_medians(fns, ctx.repeats)
            best = min((k for k in med if k.startswith("captum")), key=med.get)
            best_delta = min((k for k in med if k.startswith("delta")), key=med.get)
            note = (f"Captum best: {_captum_label(best)}; both with the convergence delta: ours / Captum's best "
                    f"{med['ours_delta'] / med[best_delta]:.2f} ({_captum_label(best_delta)})")
            rows.append(_row(ctx, f"IG {rule}", n, steps, med, "Captum IG", ("captum", *[f"captum@{c}" for c in ibs]),
                             note))
    return rows


# ----------------------------------------------------------------------------------------------- Guided / Blur IG


def guided_cases(ctx: Context) -> list[Row]:
    from pathattr.methods.guided_ig import GuidedIntegratedGradients

    from .guided_blur import pair_guided_ig

    model = ctx.model
    steps = (8 if ctx.quick else 16) if ctx.big else (50 if ctx.quick else 200)
    batches = ((1,) if ctx.quick else (1, 2)) if ctx.big else ((1, 8) if ctx.quick else (1, 4, 16))
    rows = []
    for n in batches:
        x = make_inputs(ctx.name, ctx.shape, n)
        fns: dict[str, Callable[[], Any]] = {
            "ours": lambda x=x: GuidedIntegratedGradients(model).attribute(x, target=0, n_steps=steps)}
        if n == 1:
            fns["pair"] = lambda x=x: pair_guided_ig(model, x, 0, steps)
            fns["bound"] = lambda x=x: minimal_guided_ig(model, x, 0, steps)
        fns.update(ctx.floors(n * steps, n))
        med = interleaved_medians(fns, ctx.repeats)
        rows.append(_row(ctx, "Guided IG", n, steps, med, "PAIR GuidedIG", ("pair",),
                         "fraction 0.25, max_dist 0.02; sequential: floor@N = N rows per call"))
    return rows


def blur_cases(ctx: Context) -> list[Row]:
    from pathattr.methods.blur_ig import BlurIntegratedGradients

    from .guided_blur import pair_blur_ig

    if len(ctx.shape) < 3:
        return []
    model = ctx.model
    steps = (8 if ctx.quick else 16) if ctx.big else (25 if ctx.quick else 100)
    batches = ((1,) if ctx.quick else (1, 2)) if ctx.big else ((1, 8) if ctx.quick else (1, 16))
    pair_batch = min(steps, ctx.floor.best_batch)
    rows = []
    for n in batches:
        x = make_inputs(ctx.name, ctx.shape, n)
        fns: dict[str, Callable[[], Any]] = {
            "ours": lambda x=x: BlurIntegratedGradients(model).attribute(x, target=0, n_steps=steps)}
        if n == 1:
            fns["pair"] = lambda x=x: pair_blur_ig(model, x, 0, steps)
            if pair_batch > 1:
                fns["pair_batched"] = lambda x=x: pair_blur_ig(model, x, 0, steps, batch_size=pair_batch)
        fns.update(ctx.floors(n * steps))
        med = interleaved_medians(fns, ctx.repeats)
        rows.append(_row(ctx, "Blur IG", n, steps, med, "PAIR BlurIG", ("pair", "pair_batched"),
                         f"PAIR default batch_size=1; best incl. batch_size={pair_batch}" if n == 1 else ""))
    return rows


# ----------------------------------------------------------------------------------------------- IG2


def ig2_cases(ctx: Context) -> list[Row]:
    try:
        from pathattr.methods.ig2 import IG2

        from .ig2 import equivalent_step_size, fused_floor, two_pass_ig2
    except ImportError as err:
        ctx.notes.append(f"IG2 on {ctx.name} skipped: {err}")
        return []
    model = ctx.model
    rep = representation_of(ctx.name, model)
    steps = (4 if ctx.quick else 8) if ctx.big else (16 if ctx.quick else 32)
    # (examples B, references R): one example on every model (interactive use), the batched case on the CNN and,
    # as for the other methods, 2 examples on the large model
    if ctx.big:
        from ..imagenet import load_photo

        shapes = [(1, 2)] if ctx.quick else [(1, 2), (2, 2)]
        refs = torch.stack([load_photo(p) for p in ("coffee", "china")])
        eta: float | None = equivalent_step_size(int(math.prod(ctx.shape)))
    else:
        shapes = [(1, 4)] if ctx.name == "mlp" else [(1, 4), (4, 4)]
        refs = make_inputs(ctx.name, ctx.shape, 4, seed=3)
        eta = None
    store: list[torch.Tensor] = []
    hook = rep.register_forward_pre_hook(lambda m, a: store.append(a[0]))
    try:
        with torch.no_grad():
            model(refs)
    finally:
        hook.remove()
    for p in model.parameters():
        p.requires_grad_(False)
    rows = []
    for b, r in shapes:
        x = make_inputs(ctx.name, ctx.shape, b)
        rho = store[-1][:r].repeat(b, 1)
        x_rows = x.repeat_interleave(r, 0)
        fns: dict[str, Callable[[], Any]] = {
            # the authors' algorithm (the two-pass oracle's and the fused floor's computation); the library's
            # default (the well-posed IG2) walks a different path with more model work: not this row's question
            "ours": lambda x=x, r=r: IG2(model, rep).attribute(x, refs[:r], target=0, n_steps=steps, step_size=eta,
                                                               bounds=(0.0, 1.0), preset="reference"),
            "two_pass": lambda x=x, r=r: two_pass_ig2(model, rep, x, refs[:r], target=0, n_steps=steps,
                                                      step_size=eta, bounds=(0.0, 1.0)),
            "floor": fused_floor(model, rep, x_rows, rho, steps, 2),
            "floor_1bwd": fused_floor(model, rep, x_rows, rho, steps, 1),
            # the same algorithm bare: fused, with the noise-floor stop and one finiteness test per step
            "bound": lambda x=x, r=r: minimal_ig2(model, rep, x, refs[:r], 0, steps, eta, (0.0, 1.0)),
        }
        med = interleaved_medians(fns, ctx.repeats)
        rows.append(_row(ctx, "IG2", b, steps, med, "two-pass ref.", ("two_pass",),
                         f"preset='reference', R={r} references; floor = fused (1 fwd + 2 bwd of B*R rows per step); "
                         f"1-bwd floor ratio {med['ours'] / med['floor_1bwd']:.2f}"))
    return rows


# ----------------------------------------------------------------------------------------------- metrics


def _import_quantus() -> Any:
    """Quantus 0.6 (installed --no-deps) imports pandas and cv2 at package level, only for functions not used
    here; stub them if absent (benchmark only, the installed package is not modified)."""
    import types

    for name in ("pandas", "cv2"):
        try:
            __import__(name)
        except ImportError:
            sys.modules.setdefault(name, types.ModuleType(name))
    import quantus

    return quantus


def metric_cases(ctx: Context) -> list[Row]:
    try:
        from pathattr.metrics import deletion, insertion  # noqa: F401 - availability check
    except ImportError as err:
        ctx.notes.append(f"metrics on {ctx.name} skipped: {err}")
        return []
    if len(ctx.shape) < 3:
        return []
    try:
        quantus = _import_quantus()
    except Exception as err:  # pragma: no cover - optional peer
        ctx.notes.append(f"Quantus unavailable: {err}")
        quantus = None
    steps = (8 if ctx.quick else 16) if ctx.big else 32
    out = []
    for n in ((1, 2) if ctx.big else (1, 16)):
        out += _metric_rows(ctx, quantus, n, steps)
    return out


def _metric_rows(ctx: Context, quantus: Any, n: int, steps: int) -> list[Row]:
    import numpy as np

    from pathattr.metrics import deletion, insertion

    model = ctx.model
    x = make_inputs(ctx.name, ctx.shape, n)
    pixels = math.prod(ctx.shape[1:])
    attr = torch.rand(n, 1, *ctx.shape[1:], generator=torch.Generator().manual_seed(5))
    x_np, a_np, y_np = x.numpy(), attr.numpy(), np.zeros(n, dtype=np.int64)
    fns: dict[str, Callable[[], Any]] = {
        "ours": lambda: deletion(model, x, attr, target=0, n_steps=steps, substrate="zeros"),
        "ours_insertion": lambda: insertion(model, x, attr, target=0, n_steps=steps, substrate="zeros"),
    }
    if quantus is not None:
        metric = quantus.PixelFlipping(features_in_step=pixels // steps, perturb_baseline="black", normalise=False,
                                       disable_warnings=True, display_progressbar=False)
        fns["quantus"] = lambda: metric(model=model, x_batch=x_np, y_batch=y_np, a_batch=a_np, channel_first=True,
                                        device="cpu", batch_size=n)
    rows_fwd = n * (steps + 1)
    best = ctx.floor.best_batch
    fns["bound"] = lambda: minimal_causal_curve(model, x, attr, 0, steps, "deletion", best)
    fns["bound_insertion"] = lambda: minimal_causal_curve(model, x, attr, 0, steps, "insertion", best)
    fns.update(ctx.floors(rows_fwd, backward=False))
    med = interleaved_medians(fns, ctx.repeats)
    out = [_row(ctx, "deletion", n, steps, med, "Quantus PixelFlipping", ("quantus",),
                "forward-only floor; pixel granularity, zeros substrate")]
    out.append(_row(ctx, "insertion", n, steps, {**med, "bound": med["bound_insertion"]}, "Quantus PixelFlipping",
                    ("quantus",), "forward-only floor; zeros substrate", ours_key="ours_insertion"))
    return out


# ----------------------------------------------------------------------------------------------- scaling


def scaling_cases(ctx: Context) -> list[Row]:
    """IG seconds vs batch size and n_steps; Guided IG throughput vs batch size (small CNN only)."""
    from pathattr.methods.guided_ig import GuidedIntegratedGradients

    if ctx.name != "cnn":
        return []
    model = ctx.model
    grid = (1, 4, 16, 64) if ctx.quick else (1, 2, 4, 8, 16, 32, 64)
    rows = []
    for n in grid:
        x = make_inputs(ctx.name, ctx.shape, n)
        fns = {"ours": lambda x=x: pathattr.IntegratedGradients(model).attribute(x, target=0, n_steps=16),
               **ctx.floors(16 * n)}
        rows.append(_row(ctx, "IG scaling in N", n, 16, interleaved_medians(fns, ctx.repeats)))
    x = make_inputs(ctx.name, ctx.shape, 4)
    for s in grid:
        fns = {"ours": lambda s=s: pathattr.IntegratedGradients(model).attribute(
            x, target=0, n_steps=s, method="riemann_right"), **ctx.floors(4 * s)}
        rows.append(_row(ctx, "IG scaling in steps", 4, s, interleaved_medians(fns, ctx.repeats)))
    for n in grid:
        x = make_inputs(ctx.name, ctx.shape, n)
        fns = {"ours": lambda x=x: GuidedIntegratedGradients(model).attribute(x, target=0, n_steps=50),
               **ctx.floors(50 * n, n)}
        rows.append(_row(ctx, "Guided IG scaling in N", n, 50, interleaved_medians(fns, ctx.repeats)))
    return rows


#: memory probes: the method and the call (``{steps}`` and ``{ibs}`` filled in); NoiseTunnel wraps IG with 16 noisy
#: copies per example
MEMORY_METHODS = {
    "IG": ("pathattr.IntegratedGradients(m)",
           "target=0, n_steps={steps}, internal_batch_size={ibs}"),
    "Blur IG": ("pathattr.BlurIntegratedGradients(m)",
                "target=0, n_steps={steps}, internal_batch_size={ibs}"),
    "NoiseTunnel(IG)": ("pathattr.NoiseTunnel(pathattr.IntegratedGradients(m))",
                        "target=0, n_steps={steps}, nt_samples=16, internal_batch_size={ibs}"),
}


def memory_probe(model_name: str, batch: int, n_steps: int, ibs: int | None, method: str = "IG") -> float:
    """Peak resident-set increase (MiB) during one call of ``method`` (a key of :data:`MEMORY_METHODS`), in a
    fresh subprocess: a thread samples ``/proc/self/statm`` every millisecond; the increase is over the resident
    set just before the call (after a warm-up call on one example, 2 steps, ``internal_batch_size=1``)."""
    make, args = MEMORY_METHODS[method]
    warm = args.format(steps=2, ibs=1).replace("nt_samples=16", "nt_samples=2")
    code = (
        "import json, os, threading, time, torch, pathattr\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        "from pathattr_bench.speed.common import make_model, make_inputs\n"
        f"m, shape = make_model({model_name!r}); x = make_inputs({model_name!r}, shape, {batch})\n"
        f"method = {make}; method.attribute(x[:1], {warm})\n"
        "page = os.sysconf('SC_PAGE_SIZE')\n"
        "def rss():\n"
        "    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * page\n"
        "peak = [rss()]; base = peak[0]; stop = threading.Event()\n"
        "def sample():\n"
        "    while not stop.is_set(): peak[0] = max(peak[0], rss()); time.sleep(0.001)\n"
        "t = threading.Thread(target=sample); t.start()\n"
        f"method.attribute(x, {args.format(steps=n_steps, ibs=repr(ibs))})\n"
        "stop.set(); t.join(); peak[0] = max(peak[0], rss())\n"
        "print(json.dumps({'peak_increase_mib': (peak[0] - base) / 2**20}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_increase_mib"])


def memory_rows(quick: bool, models: list[str]) -> list[tuple[str, str, int, int, str, float]]:
    out = []
    plan = [("IG", "cnn", 16, 32, (8, 32, 128, None) if quick else (8, 32, 128, 512, None)),
            ("Blur IG", "cnn", 16, 32, (8, 32, 128, None) if quick else (8, 32, 128, 512, None)),
            ("NoiseTunnel(IG)", "cnn", 4, 16, (8, 32, 128, None) if quick else (8, 32, 128, 512, None))]
    if "efficientnet" in models and not quick:
        plan.append(("IG", "efficientnet", 2, 16, (2, 8, 32, None)))
        plan.append(("Blur IG", "efficientnet", 1, 16, (2, 8, None)))
    for method, name, n, steps, sizes in plan:
        for ibs in sizes:
            try:
                mib = memory_probe(name, n, steps, ibs, method)
            except (subprocess.CalledProcessError, ValueError) as err:  # pragma: no cover
                print(f"memory probe failed: {err}", file=sys.stderr)
                continue
            out.append((method, name, n, steps, "auto (default)" if ibs is None else str(ibs), mib))
            print(f"memory {method} {name} N={n} steps={steps} ibs={ibs}: {mib:.1f} MiB", flush=True)
    return out


# ----------------------------------------------------------------------------------------------- report


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


#: further benchmark cases register here: ``fn(ctx: Context) -> list[Row]``
EXTRA_CASES: list[Callable[[Context], list[Row]]] = []

CASES: dict[str, Callable[[Context], list[Row]]] = {
    "ig": ig_cases, "guided": guided_cases, "blur": blur_cases, "ig2": ig2_cases, "metrics": metric_cases,
    "scaling": scaling_cases,
}


def write_report(path: Path, generated: str) -> None:
    """Put ``generated`` between the markers of ``path`` (creating the page if needed)."""
    block = f"{START_MARK}\n{generated}\n{END_MARK}"
    old = path.read_text() if path.exists() else ""
    if START_MARK in old and END_MARK in old:
        head, rest = old.split(START_MARK, 1)
        text = head + block + rest.split(END_MARK, 1)[1]
    else:
        text = (old.rstrip() + "\n\n" if old.strip() else "# Performance\n\n") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathattr-bench speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn,efficientnet")
    parser.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per timing (default 5, --quick 2)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes, steps and rounds (a few minutes)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's default). On an oversubscribed machine every "
                             "parallel kernel waits for a time slice of its second thread, so 1 measures compute")
    parser.add_argument("--out", default="docs/performance.md")
    parser.add_argument("--json", default=None, help="also write the raw rows as JSON here")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    load_start = os.getloadavg()
    models = args.models.split(",")
    cases = [CASES[c] for c in args.cases.split(",") if c] + EXTRA_CASES
    floors: list[str] = []
    notes: list[str] = []
    all_rows: list[Row] = []
    for name in models:
        try:
            model, shape = make_model(name)
        except ImportError as err:  # the ImageNet packages are missing
            notes.append(f"{name} skipped: {err}")
            continue
        for p in model.parameters():
            p.requires_grad_(False)
        sizes = [1, 2, 4, 8, 16, 32] if name == "efficientnet" else [1, 4, 16, 64, 256, 1024]
        model_repeats = min(repeats, 3) if name == "efficientnet" else repeats  # keeps the full run ~10 min
        floor = measure_floor(model, shape, sizes, model_repeats)
        floors.append(
            f"**{name}** ({'x'.join(map(str, shape))}): forward+backward ms/row by batch size: "
            + ", ".join(f"{b}: {v * 1e3:.2f}" for b, v in floor.per_row.items())
            + f" (floor = {floor.best_per_row * 1e3:.2f} ms/row at batch {floor.best_batch})"
        )
        print(floors[-1], flush=True)
        ctx = Context(name, model, shape, floor, model_repeats, args.quick)
        for case in cases:
            all_rows += case(ctx)
        notes += ctx.notes
    memory = [] if args.no_memory else memory_rows(args.quick, models)
    elapsed = time.time() - started
    load_end = os.getloadavg()
    command = "python -m pathattr_bench.speed " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [
        f"Machine: {machine_description()}. No GPU was available to this run.",
        f"Load average (1/5/15 min) {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f} at the start and "
        f"{load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f} at the end (shared machine: timings carry noise).",
        "",
        f"Command: `{command.strip()}` (took {elapsed / 60:.1f} min, ending "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). "
        f"Medians of {repeats} interleaved rounds (at most 3 on EfficientNet-Lite0) after a warm-up round.",
        "Seconds are per explanation (per example), float32, target class 0. *floor*: the same rows as plain batched",
        "forward+backward calls at the model's fastest batch size; *floor@N*: the same rows in calls of N rows (the",
        "inherent floor of a sequential path). pathattr runs with its defaults (automatic internal batch size).",
        "",
        *[f"- {s}" for s in floors],
        *[f"- {s}" for s in notes],
        "",
        table(all_rows),
        "",
    ]
    if memory:
        text += [
            "Peak memory against `internal_batch_size`: increase of the resident set of a fresh process during "
            "the call over its value just before (sampled every ms from /proc/self/statm after a warm-up call; CPU "
            "PyTorch has no allocator statistics and tracemalloc does not see tensor storage). NoiseTunnel wraps IG "
            "with 16 noisy copies per example:",
            "",
            "| method | model | N | steps | internal_batch_size | peak increase (MiB) |",
            "|---|---|---|---|---|---|",
            *[f"| {meth} | {m} | {n} | {s} | {i} | {v:.1f} |" for meth, m, n, s, i, v in memory],
            "",
        ]
    generated = "\n".join(text)
    write_report(Path(args.out), generated)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [r.as_dict() for r in all_rows], "memory": memory}, indent=1))
    print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
