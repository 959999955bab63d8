"""Speed benchmark of Guided IG and Blur IG: pathattr vs PAIR-code/saliency vs the floor.

Run ``python -m pathattr.bench.guided_blur_speed [--quick]``; results go to ``docs/guided_blur_performance.md``.

*Floor*: plain batched forward+backward calls of the same model for the same number of rows, measured in the
same run. Two floors are reported:

* ``floor`` - every row at the model's fastest batch size (what a perfectly batched method would pay);
* ``floor@N`` - rows in calls of ``N`` rows, ``N`` = examples explained together. Guided IG is sequential (each
  step's point depends on the previous gradient), so ``n_steps`` calls of ``N`` rows is its inherent floor.

PAIR (``saliency`` 0.2.1, NumPy, one example at a time) gets the same torch model through a
``call_model_function`` adapter; its Guided IG needs ``np.quantile(..., method=)`` on NumPy 2.4, patched at
runtime here (never in library code). Every timing is the median of ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..methods.blur_ig import BlurIntegratedGradients
from ..methods.guided_ig import GuidedIntegratedGradients
from .speed import machine_description, make_inputs, make_model, median_seconds

# ----------------------------------------------------------------------------------------------- PAIR adapter


class _NumpyQuantileProxy(types.ModuleType):
    """``numpy`` with ``quantile(..., interpolation=...)`` (removed in NumPy 2.4) mapped to ``method=``."""

    def __init__(self) -> None:
        super().__init__("numpy_quantile_proxy")

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, *args, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return np.quantile(a, q, *args, **kwargs)


@contextlib.contextmanager
def _pair_guided_ig_numpy2() -> Iterator[Any]:
    import saliency.core as saliency
    import saliency.core.guided_ig as module

    original = module.np
    module.np = _NumpyQuantileProxy()
    try:
        yield saliency
    finally:
        module.np = original


def _pair_call(model: nn.Module, target: int, channels_last: bool) -> Callable[..., dict]:
    import saliency.core as saliency

    def call(x_batch, call_model_args=None, expected_keys=None):
        x = torch.as_tensor(np.asarray(x_batch), dtype=torch.float32)
        if channels_last:
            x = x.movedim(-1, 1)
        x.requires_grad_(True)
        out = model(x)[:, target].sum()
        (grad,) = torch.autograd.grad(out, x)
        if channels_last:
            grad = grad.movedim(1, -1)
        return {saliency.INPUT_OUTPUT_GRADIENTS: grad.numpy()}

    return call


def pair_guided_ig(model: nn.Module, x: torch.Tensor, target: int, n_steps: int) -> None:
    """PAIR Guided IG on each example of ``x`` in turn (default fraction and max_dist)."""
    with _pair_guided_ig_numpy2() as saliency:
        call = _pair_call(model, target, channels_last=False)
        for xi in x:
            saliency.GuidedIG().GetMask(xi.numpy(), call, x_steps=n_steps)


def pair_blur_ig(model: nn.Module, x: torch.Tensor, target: int, n_steps: int, batch_size: int = 1) -> None:
    """PAIR Blur IG on each example of ``x`` in turn (channels-last, as PAIR expects)."""
    import saliency.core as saliency

    call = _pair_call(model, target, channels_last=True)
    for xi in x:
        saliency.BlurIG().GetMask(xi.movedim(0, -1).numpy(), call, steps=n_steps, batch_size=batch_size)


# ----------------------------------------------------------------------------------------------- floors


def forward_backward_rows(model: nn.Module, shape: tuple[int, ...], rows: int, per_call: int) -> Callable[[], None]:
    """A function doing ``rows`` forward+backward rows in calls of ``per_call`` rows (plain torch)."""
    x = torch.rand(per_call, *shape, generator=torch.Generator().manual_seed(2))
    calls, rest = divmod(rows, per_call)

    def run() -> None:
        for n in [per_call] * calls + ([rest] if rest else []):
            z = x[:n].detach().requires_grad_(True)
            torch.autograd.grad(model(z)[:, 0].sum(), z)

    return run


def per_row_seconds(model: nn.Module, shape, sizes, repeats: int) -> dict[int, float]:
    """Seconds per forward+backward row at each batch size (median of ``repeats``)."""
    out = {}
    for n in sizes:
        out[n] = median_seconds(forward_backward_rows(model, shape, n, n), repeats) / n
    return out


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function; after one warm-up each, the functions run in turn in every round, so
    a change of machine load affects them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------------------------- cases


def run_cases(name: str, model: nn.Module, shape, args, repeats: int) -> tuple[list[list[str]], str]:
    big = name == "efficientnet"
    batches = ([1, 4] if args.quick else [1, 2, 4, 8]) if big else ([1, 8] if args.quick else [1, 4, 16, 32])
    gig_steps = (10 if args.quick else 50) if big else (50 if args.quick else 200)
    blur_steps = (10 if args.quick else 32) if big else (25 if args.quick else 100)
    sizes = sorted(set(batches) | ({1, 4, 8, 16, 32} if big else {1, 4, 16, 64, 256, 1024}))
    for p in model.parameters():
        p.requires_grad_(False)
    per_row = per_row_seconds(model, shape, sizes, repeats)
    best = min(per_row.values())
    best_n = min(per_row, key=per_row.get)
    floor_line = (
        f"**{name}** ({'x'.join(map(str, shape))}): forward+backward ms/row by batch size: "
        + ", ".join(f"{n}: {v * 1e3:.2f}" for n, v in per_row.items())
        + f" (best {best * 1e3:.2f} at {best_n})"
    )
    rows: list[list[str]] = []

    def add(method: str, n: int, steps: int, ours: float, floor_same: float | None, pair: float | None, note: str):
        floor_best = best * n * steps
        cells = [
            name, method, str(n), str(steps), f"{ours / n:.4f}",
            f"{floor_best / n:.4f}", f"{ours / floor_best:.2f}",
            "-" if floor_same is None else f"{ours / floor_same:.2f}",
            "-" if pair is None else f"{pair / n:.4f}", "-" if pair is None else f"{ours / pair:.2f}", note,
        ]
        rows.append(cells)
        print(" | ".join(cells), flush=True)

    for n in batches:
        x = make_inputs(name, shape, n)
        fns = {
            "ours": lambda x=x: GuidedIntegratedGradients(model).attribute(x, target=0, n_steps=gig_steps),
            "floor": forward_backward_rows(model, shape, n * gig_steps, n),
        }
        if n == 1 and not args.no_pair:
            fns["pair"] = lambda x=x: pair_guided_ig(model, x, 0, gig_steps)
        t = interleaved_medians(fns, repeats)
        add("Guided IG", n, gig_steps, t["ours"], t["floor"], t.get("pair"), "defaults fraction 0.25, max_dist 0.02")
    for n in batches:
        x = make_inputs(name, shape, n)
        fns = {"ours": lambda x=x: BlurIntegratedGradients(model).attribute(x, target=0, n_steps=blur_steps)}
        if n == 1 and not args.no_pair:
            fns["pair"] = lambda x=x: pair_blur_ig(model, x, 0, blur_steps)
            batch = min(blur_steps, 32 if big else 128)
            fns["pair_batched"] = lambda x=x, batch=batch: pair_blur_ig(model, x, 0, blur_steps, batch_size=batch)
        t = interleaved_medians(fns, repeats)
        add("Blur IG", n, blur_steps, t["ours"], None, t.get("pair"), "PAIR batch_size=1 (its default)")
        if "pair_batched" in t:
            add("Blur IG", n, blur_steps, t["ours"], None, t["pair_batched"],
                f"PAIR batch_size={min(blur_steps, 32 if big else 128)}")
    return rows, floor_line


def speed_rows(model_name: str, model: nn.Module, shape, floor, repeats: int, quick: bool) -> list:
    """Guided IG and Blur IG rows for :mod:`pathattr.bench.speed` (register in its ``EXTRA_CASES``).

    Batch 1 and 4 (2 and 4 for large models), PAIR as the peer at batch 1 (its Blur IG at its default
    ``batch_size=1``); the floor is ``speed``'s best-batch floor.
    """
    from .speed import Row

    big = model_name == "efficientnet"
    if model_name not in ("cnn", "efficientnet"):
        return []
    rows = []
    gig_steps = (10 if quick else 50) if big else (50 if quick else 200)
    blur_steps = (10 if quick else 32) if big else (25 if quick else 100)
    for n in (1, 4):
        x = make_inputs(model_name, shape, n)
        ours = median_seconds(
            lambda x=x: GuidedIntegratedGradients(model).attribute(x, target=0, n_steps=gig_steps), repeats
        )
        peer = median_seconds(lambda x=x: pair_guided_ig(model, x, 0, gig_steps), repeats) if n == 1 else None
        rows.append(Row(model_name, "Guided IG", n, gig_steps, ours, "PAIR GuidedIG" if peer else "", peer, peer,
                        floor.seconds(n * gig_steps), "sequential: steps cannot share a call"))
        ours = median_seconds(
            lambda x=x: BlurIntegratedGradients(model).attribute(x, target=0, n_steps=blur_steps), repeats
        )
        peer = median_seconds(lambda x=x: pair_blur_ig(model, x, 0, blur_steps), repeats) if n == 1 else None
        rows.append(Row(model_name, "Blur IG", n, blur_steps, ours, "PAIR BlurIG" if peer else "", peer, peer,
                        floor.seconds(n * blur_steps), ""))
    return rows


HEADER = ["model", "method", "N", "steps", "ours s/expl", "floor s/expl", "ours/floor", "ours/floor@N",
          "PAIR s/expl", "ours/PAIR", "note"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathattr.bench.guided_blur_speed", description=__doc__)
    parser.add_argument("--models", default="cnn,efficientnet")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer steps, sizes and repeats (a smoke run)")
    parser.add_argument("--no-pair", action="store_true", help="skip the PAIR reference timings")
    parser.add_argument("--out", default="docs/guided_blur_performance.md")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    started = time.time()
    load_before = os.getloadavg()[0]
    all_rows: list[list[str]] = []
    floors: list[str] = []
    notes: list[str] = []
    for name in args.models.split(","):
        try:
            model, shape = make_model(name)
        except ImportError as err:  # the ImageNet helper or its packages are missing
            notes.append(f"{name} skipped: {err}")
            continue
        rows, floor_line = run_cases(name, model.eval(), shape, args, repeats)
        all_rows += rows
        floors.append(floor_line)
    elapsed = time.time() - started
    command = "python -m pathattr.bench.guided_blur_speed " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in all_rows]
    text = [
        "# Guided IG and Blur IG: speed",
        "",
        f"Machine: {machine_description()}. Load average (1 min) {load_before:.2f} at the start and "
        f"{os.getloadavg()[0]:.2f} at the end: the machine is shared, so timings carry noise of 10-20 %.",
        "",
        f"Command: `{command.strip()}` (took {elapsed / 60:.1f} min). Medians of {repeats} run(s) after one warm-up;"
        " the functions compared in a row run in turn in each round (see `interleaved_medians`).",
        "Seconds are per explanation (per example), float32 models, target class 0. *floor* = the same number of",
        "plain forward+backward rows at the model's fastest batch size; *floor@N* = the same rows in calls of N",
        "rows (Guided IG's inherent floor: its steps are sequential, so only the N examples share a call).",
        "PAIR explains one example at a time (its Guided IG: one gradient call per step; its Blur IG: `batch_size`",
        "steps per call).",
        "",
        *[f"- {f}" for f in floors],
        *[f"- {n}" for n in notes],
        "",
        *lines,
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "pair_blur_ig", "pair_guided_ig", "speed_rows"]
