"""IG2 benchmark: speed against the floor and the two-pass reference algorithm, and the completeness study.

Run ``python -m pathattr_bench.speed.ig2 [--quick]``; results go to ``docs/ig2.md`` (between the
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
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pathattr.paths.gradpath import equivalent_step_size
from pathattr.testing.oracles import two_pass_ig2

from .common import SmallCNN, interleaved_medians, machine_description

#: completeness cases (steps/substeps/rule; rule "adaptive:<tol>" = adaptive bisection) of docs/ig2.md
EFF_CASES = "16/1/left,201/1/left,16/1/trapezoid,201/1/trapezoid,16/4/trapezoid,16/1/adaptive:0.02"
CNN_CASES = "16/1/left,201/1/left,16/1/trapezoid,201/1/trapezoid,16/4/trapezoid,16/1/adaptive:0.05,201/1/adaptive:0.05"
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


# ----------------------------------------------------------------------------------------------- cases
def _efficientnet() -> tuple[nn.Module, nn.Module, Tensor, Tensor]:
    from ..imagenet import load_efficientnet_lite0, load_photo

    model = load_efficientnet_lite0()
    x = load_photo("chelsea").unsqueeze(0)
    refs = torch.stack([load_photo(p) for p in ("coffee", "china", "flower", "rocket")])
    return model, model.classifier, x, refs


def _small_cnn(batch: int = 4, n_refs: int = 4) -> tuple[nn.Module, nn.Module, Tensor, Tensor]:

    torch.manual_seed(0)
    model = SmallCNN().eval()
    g = torch.Generator().manual_seed(3)
    return model, model.fc, torch.rand(batch, 3, 32, 32, generator=g), torch.rand(n_refs, 3, 32, 32, generator=g)


def speed_case(name: str, model, rep, x, refs, n_steps: int, repeats: int) -> dict[str, Any]:
    from pathattr.methods.ig2 import IG2

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
    from pathattr.methods.ig2 import IG2

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

    parser = argparse.ArgumentParser(prog="python -m pathattr_bench.speed.ig2", description=__doc__)
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
    command = "python -m pathattr_bench.speed.ig2 " + " ".join(argv if argv is not None else sys.argv[1:])
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
