"""IG2 benchmark: speed against the floor and the two-pass reference algorithm, and the completeness study.

Run ``python -m pathattr.bench.ig2_speed [--quick]``; results go to ``docs/ig2.md`` (between the
``<!-- bench -->`` markers; the rest of the page is kept).

* **two-pass** (:func:`two_pass_ig2`): the reference algorithm written straightforwardly in plain torch, one
  explicand at a time as the reference code does: pass 1 walks GradPath for the ``R`` references together
  and keeps the whole path, pass 2 evaluates the target gradient at the same points and sums the left Riemann
  sum. ``2K`` forwards + ``2K`` backwards of ``R`` rows per explicand. It is also the oracle of
  ``tests/test_ig2.py``.
* **floor**: plain batched torch calls doing exactly the fused algorithm's model work, with the same rows per
  call: the no-grad forwards IG2 needs besides the steps (``B`` target rows, ``R`` reference rows, ``B*R``
  GradCF rows) and ``K`` x (one forward of ``B*R`` rows with the representation hook + two backward passes
  through the retained graph). A second, lower line, **floor-1bwd**, is ``K`` x (one forward + one backward): what any
  method with one gradient per step would pay; IG2 needs two gradients per point, so it cannot reach it.
* The completeness study runs IG2 on EfficientNet-Lite0 (photo ``chelsea``, references four other bundled
  photos, bounds (0, 1)) with the paper's step size converted to [0, 1] pixels and 224x224x3 inputs, and on
  the small CNN, for the reference rule and the ``substeps`` remedy.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..paths.gradpath import default_eps

#: completeness cases (steps/substeps/rule; rule "adaptive:<tol>" = adaptive bisection) of docs/ig2.md
EFF_CASES = "16/1/left,201/1/left,16/1/trapezoid,201/1/trapezoid,16/4/trapezoid,16/1/adaptive:0.02"
CNN_CASES = "16/1/left,201/1/left,16/1/trapezoid,201/1/trapezoid,16/4/trapezoid,16/1/adaptive:0.05,201/1/adaptive:0.05"
#: the paper's ImageNet step: eta = 512 on 0..255 pixels of 299x299x3 inputs
PAPER_ETA, PAPER_SCALE, PAPER_DIM = 512.0, 255.0, 299 * 299 * 3


def equivalent_step_size(
    dim: int, eta: float = PAPER_ETA, scale: float = PAPER_SCALE, paper_dim: int = PAPER_DIM
) -> float:
    """The step with the same per-feature RMS move ``eta / sqrt(d)`` in [0, 1] units on ``dim`` features:
    ``eta / scale * sqrt(dim / paper_dim)`` (1.504 for 224x224x3)."""
    return eta / scale * math.sqrt(dim / paper_dim)


# ----------------------------------------------------------------------------------------------- two-pass
def two_pass_ig2(
    model: nn.Module,
    representation: nn.Module,
    inputs: Tensor,
    references: Tensor,
    target: Tensor | int | None = None,
    n_steps: int = 201,
    step_size: float | None = None,
    bounds: tuple[float, float] | None = None,
    eps: float | None = None,
    side: str = "input",
) -> tuple[Tensor, Tensor, Tensor]:
    """The reference algorithm (spec ig2.md sections 2-3), straightforward: per explicand, path search for all
    ``R`` references keeping the path, then the gradients at the same points.

    Args:
        model: returns logits ``[n, C]``; ``representation``: a module of it (hooked on its ``side``).
        inputs: ``[B, *S]``; references: ``[R, *S]`` or ``[B, R, *S]``.
        target: class per example (None: predicted). Other arguments as :meth:`pathattr.IG2.explain`.

    Returns:
        attributions ``[B, *S]``, GradCF ``[B, R, *S]`` and the paths ``[B, R, K + 1, *S]``.
    """
    eps = default_eps(inputs.dtype) if eps is None else eps
    saved = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    store: list[Tensor] = []
    if side == "input":
        handle = representation.register_forward_pre_hook(lambda m, a: store.append(a[0]))
    else:
        handle = representation.register_forward_hook(lambda m, a, o: store.append(o))
    try:
        model.eval()
        for p, _ in saved:
            p.requires_grad_(False)
        with torch.no_grad():
            classes = model(inputs).argmax(1) if target is None else torch.as_tensor(target).expand(inputs.shape[0])
        attrs, gradcfs, paths = [], [], []
        for b in range(inputs.shape[0]):
            refs = references if references.ndim == inputs.ndim else references[b]
            r = refs.shape[0]
            with torch.no_grad():
                store.clear()
                model(refs)
                rho = store[-1].reshape(r, -1)
            x = inputs[b : b + 1].expand(r, *inputs.shape[1:])
            eta = (x - refs).reshape(r, -1).norm(dim=1) / n_steps if step_size is None else torch.full((r,), step_size)
            eta = eta.to(inputs.dtype).view(-1, *([1] * (inputs.ndim - 1)))
            z, path = x.clone(), [x.clone()]
            for _ in range(n_steps):  # pass 1: path search, whole path kept
                z = z.detach().requires_grad_(True)
                store.clear()
                model(z)
                dist = (store[-1].reshape(r, -1) - rho).pow(2).sum(1)
                (u,) = torch.autograd.grad(dist.sum(), z)
                w = u.reshape(r, -1).norm(dim=1).clamp_min(eps).view(eta.shape)
                z = z.detach() - eta * u / w
                if bounds is not None:
                    z = z.clamp(*bounds)
                path.append(z)
            total = torch.zeros_like(x, dtype=torch.float64)
            for j in range(n_steps):  # pass 2: target gradients at the same points
                p = path[j].detach().requires_grad_(True)
                (g,) = torch.autograd.grad(model(p)[:, classes[b]].sum(), p)
                total += (g * (path[j] - path[j + 1])).to(torch.float64)
            attrs.append(total.mean(0).to(inputs.dtype))
            gradcfs.append(path[-1])
            paths.append(torch.stack(path, 1))
        return torch.stack(attrs), torch.stack(gradcfs), torch.stack(paths)
    finally:
        handle.remove()
        model.train(training)
        for p, flag in saved:
            p.requires_grad_(flag)


# ----------------------------------------------------------------------------------------------- floors
def fused_floor(model: nn.Module, representation: nn.Module, x: Tensor, rho: Tensor, n_steps: int,
                backwards: int = 2, extra: tuple[Tensor, ...] = ()) -> Callable[[], None]:
    """Plain torch doing the fused algorithm's model work: no-grad forwards of ``extra`` (IG2's target, reference
    and GradCF rows), then ``n_steps`` x (forward of all rows + ``backwards`` backward passes)."""
    store: list[Tensor] = []

    def run() -> None:
        handle = representation.register_forward_pre_hook(lambda m, a: store.append(a[0]))
        try:
            with torch.no_grad():
                for rows in extra:
                    model(rows)
            for _ in range(n_steps):
                z = x.detach().requires_grad_(True)
                store.clear()
                out = model(z)[:, 0].sum()
                if backwards == 2:
                    d = (store[-1] - rho).pow(2).sum()
                    torch.autograd.grad(d, z, retain_graph=True)
                torch.autograd.grad(out, z)
        finally:
            handle.remove()

    return run


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function; the functions run in turn in every round (one warm-up round)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for round_ in range(repeats + 1):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if round_:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------------------------- cases
def _efficientnet() -> tuple[nn.Module, nn.Module, Tensor, Tensor]:
    from .imagenet import load_efficientnet_lite0, load_photo

    model = load_efficientnet_lite0()
    x = load_photo("chelsea").unsqueeze(0)
    refs = torch.stack([load_photo(p) for p in ("coffee", "china", "flower", "rocket")])
    return model, model.classifier, x, refs


def _small_cnn(batch: int = 4, n_refs: int = 4) -> tuple[nn.Module, nn.Module, Tensor, Tensor]:
    from .speed import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN().eval()
    g = torch.Generator().manual_seed(3)
    return model, model.fc, torch.rand(batch, 3, 32, 32, generator=g), torch.rand(n_refs, 3, 32, 32, generator=g)


def speed_case(name: str, model, rep, x, refs, n_steps: int, repeats: int) -> dict[str, Any]:
    from ..methods.ig2 import IG2

    b, r = x.shape[0], refs.shape[0]
    rows = b * r
    with torch.no_grad():
        store: list[Tensor] = []
        h = rep.register_forward_pre_hook(lambda m, a: store.append(a[0]))
        model(refs)
        h.remove()
        rho = store[-1].repeat(b, 1)
    x_rows = x.repeat_interleave(r, 0)
    eta = equivalent_step_size(x[0].numel()) if name == "efficientnet" else None
    for p in model.parameters():
        p.requires_grad_(False)
    fns = {
        "ig2": lambda: IG2(model, rep).attribute(x, refs, n_steps=n_steps, step_size=eta, bounds=(0.0, 1.0),
                                                 internal_batch_size=rows),
        "two_pass": lambda: two_pass_ig2(model, rep, x, refs, n_steps=n_steps, step_size=eta, bounds=(0.0, 1.0)),
        "floor": fused_floor(model, rep, x_rows, rho, n_steps, 2, (x, refs, x_rows)),
        "floor_1bwd": fused_floor(model, rep, x_rows, rho, n_steps, 1, (x, refs, x_rows)),
    }
    med = interleaved_medians(fns, repeats)
    per = {k: v / b for k, v in med.items()}
    return {"model": name, "B": b, "R": r, "steps": n_steps, **per}


def completeness_case(model, rep, x, refs, n_steps: int, step_size: float | None, substeps: int, rule: str,
                      internal_batch_size: int) -> dict[str, Any]:
    """One IG2 run; ``rule = "adaptive:<tol>"`` runs the adaptive bisection with that tolerance."""
    from ..methods.ig2 import IG2

    adaptive = float(rule.split(":")[1]) if rule.startswith("adaptive") else None
    t0 = time.perf_counter()
    e = IG2(model, rep).explain(x, refs, n_steps=n_steps, step_size=step_size, bounds=(0.0, 1.0),
                                substeps=substeps, segment_rule="left" if adaptive else rule, adaptive=adaptive,
                                internal_batch_size=internal_batch_size, return_gradcf=False)
    seconds = time.perf_counter() - t0
    diff = (e.outputs - e.baseline_outputs).abs()
    return {
        "steps": n_steps, "step_size": "|x-r|/K" if step_size is None else f"{step_size:.3f}",
        "rule": rule, "substeps": substeps, "f(x)-f(GradCF)": float(diff.mean()),
        "|gap|": float(e.convergence_delta.abs().mean()), "rel gap": float(e.relative_delta.mean()),
        "fwd rows": e.cost.forward_rows, "bwd rows": e.cost.backward_rows, "seconds": seconds,
        "valid": int(e.extras["counterfactual_valid"].sum()) if e.extras["counterfactual_valid"] is not None else -1,
        "D end/start": float(e.extras["distance_ratio"].mean()),
    }


def _table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
        "| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows
    ]


def main(argv: list[str] | None = None) -> int:
    from .speed import machine_description

    parser = argparse.ArgumentParser(prog="python -m pathattr.bench.ig2_speed", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few steps and repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-completeness", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--eff-steps", type=int, default=16, help="EfficientNet steps in the speed case")
    parser.add_argument("--cnn-steps", type=int, default=64, help="small-CNN steps in the speed case")
    parser.add_argument("--cases", default=EFF_CASES, help="EfficientNet completeness cases steps/substeps/rule,...")
    parser.add_argument("--cnn-cases", default=CNN_CASES, help="small-CNN completeness cases")
    parser.add_argument("--out", default="docs/ig2.md")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    started, load_before = time.time(), os.getloadavg()[0]
    speed_rows, gap_rows, notes = [], [], []
    cnn = _small_cnn()
    if not args.skip_speed:
        speed_rows.append(speed_case("small_cnn", *cnn, n_steps=8 if args.quick else args.cnn_steps, repeats=repeats))
    try:
        eff = _efficientnet()
    except ImportError as err:
        eff = None
        notes.append(f"EfficientNet-Lite0 skipped: {err}")
    if eff is not None and not args.skip_speed:
        steps = 4 if args.quick else args.eff_steps
        speed_rows.append(speed_case("efficientnet", *eff, n_steps=steps, repeats=repeats))
    if not args.skip_completeness:
        def parse(text: str) -> list[tuple[int, int, str]]:
            return [(int(k), int(m), rule) for k, m, rule in (c.split("/") for c in text.split(","))]

        eff_cases = parse("4/1/left,4/1/trapezoid,4/1/adaptive:0.05" if args.quick else args.cases)
        cnn_cases = parse("4/1/left,4/1/trapezoid,4/1/adaptive:0.05" if args.quick else args.cnn_cases)
        if eff is not None:
            eta = equivalent_step_size(eff[2][0].numel())
            for k, m, rule in eff_cases:
                gap_rows.append({"model": "efficientnet", **completeness_case(*eff, k, eta, m, rule, 16)})
                print(gap_rows[-1], flush=True)
        for k, m, rule in cnn_cases:
            gap_rows.append({"model": "small_cnn", **completeness_case(*cnn, k, None, m, rule, 64)})
            print(gap_rows[-1], flush=True)
    for r in speed_rows:
        r["ig2/floor"] = r["ig2"] / r["floor"]
        r["ig2/floor_1bwd"] = r["ig2"] / r["floor_1bwd"]
        r["two_pass/ig2"] = r["two_pass"] / r["ig2"]
    elapsed = time.time() - started
    command = "python -m pathattr.bench.ig2_speed " + " ".join(argv if argv is not None else sys.argv[1:])
    block = [
        "<!-- bench -->",
        f"Machine: {machine_description()}. Load average (1 min) {load_before:.2f} at the start and "
        f"{os.getloadavg()[0]:.2f} at the end: the machine is shared with other jobs, timings carry noise.",
        "",
        f"Command: `{command.strip()}` (took {elapsed / 60:.1f} min). Seconds per explanation (per explicand), "
        f"float32, medians of {repeats} interleaved rounds after one warm-up round.",
        "",
        *(_table(speed_rows, ["model", "B", "R", "steps", "ig2", "floor", "floor_1bwd", "two_pass", "ig2/floor",
                              "ig2/floor_1bwd", "two_pass/ig2"]) if speed_rows else ["(speed not run)"]),
        "",
        *[f"- {n}" for n in notes],
        "",
        *([
            "Completeness (bounds (0, 1); EfficientNet: photo chelsea, references coffee/china/flower/rocket, "
            f"step {equivalent_step_size(3 * 224 * 224):.3f} = the paper's 512 on 0..255 pixels at 299x299x3; "
            "small CNN: 4 random explicands x 4 random references, step |x - r| / K). Means over explicands.",
            "",
            *_table(gap_rows, ["model", "steps", "step_size", "rule", "substeps", "f(x)-f(GradCF)", "|gap|",
                               "rel gap", "fwd rows", "bwd rows", "seconds", "valid", "D end/start"]),
        ] if gap_rows else []),
        "<!-- /bench -->",
    ]
    out = Path(args.out)
    text = out.read_text() if out.exists() else "# IG2\n\n<!-- bench -->\n<!-- /bench -->\n"
    if "<!-- bench -->" in text and "<!-- /bench -->" in text:
        head, rest = text.split("<!-- bench -->", 1)
        tail = rest.split("<!-- /bench -->", 1)[1]
        text = head + "\n".join(block) + tail
    else:
        text = text.rstrip() + "\n\n" + "\n".join(block) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print("\n".join(block))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["equivalent_step_size", "fused_floor", "interleaved_medians", "main", "two_pass_ig2"]
