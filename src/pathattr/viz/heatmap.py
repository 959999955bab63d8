"""Image pictures of attributions: signed (diverging) and absolute maps with colour bars, overlays on the input,
class names in titles, and the percentile clipping stated in a caption.

matplotlib (extra ``pathattr[viz]``) is imported lazily and no backend is chosen here: figures follow the
user's backend (inline in notebooks; matplotlib falls back to a non-interactive backend where there is no
display). Figures written to ``path`` are closed after saving.

Conventions: ``kind="abs"`` maps sum ``|attribution|`` over channels into [0, 1] (colour map ``inferno``);
``kind="signed"`` keeps the sign of the channel sum in [-1, 1] (diverging ``RdBu_r``: red raises the explained
class's score, blue lowers it, white = no effect). Each map is divided by a percentile (default 99.5) of its
magnitudes and clipped, so a few extreme pixels do not wash it out; the caption says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["caption", "heatmap", "overlay", "plot_attribution", "plot_curves", "plot_explanations"]

SIGNED_CMAP = "RdBu_r"
ABS_CMAP = "inferno"
_KINDS = {"abs": "abs_sum", "abs_sum": "abs_sum", "sum": "sum", "signed": "signed"}


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().double().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)


def heatmap(attribution: Tensor | np.ndarray, reduce: str = "abs_sum", percentile: float = 99.5) -> np.ndarray:
    """A 2-D map in [0, 1] (``abs_sum``/``abs``, ``sum``) or [-1, 1] (``signed``) from ``[C, H, W]`` or ``[H, W]``.

    Channels are reduced by the sum of absolute values (``abs_sum``, as PAIR's grayscale visualisation), the
    plain sum (``sum``, then absolute value), or the plain sum kept signed (``signed``). Values are divided by
    the given percentile of the magnitudes and clipped, so a few extreme pixels do not wash the map out.
    """
    if reduce not in _KINDS:
        raise ValueError(f"`reduce` must be one of {sorted(_KINDS)}, got {reduce!r}")
    reduce = _KINDS[reduce]
    a = _numpy(attribution)
    if a.ndim == 3:
        a = np.abs(a).sum(0) if reduce == "abs_sum" else a.sum(0)
    elif a.ndim != 2:
        raise ValueError(f"expected [C, H, W] or [H, W], got shape {a.shape}")
    if reduce == "signed":
        scale = np.percentile(np.abs(a), percentile)
        return np.clip(a / scale, -1, 1) if scale > 0 else np.zeros_like(a)
    a = np.abs(a)
    scale = np.percentile(a, percentile)
    return np.clip(a / scale, 0, 1) if scale > 0 else np.zeros_like(a)


def _image_hwc(image: Tensor | np.ndarray) -> np.ndarray:
    img = _numpy(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 1:  # e.g. [-1, 1] or [0, 255] inputs: show them stretched to [0, 1]
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return img


def overlay(image: Tensor | np.ndarray, heat: np.ndarray, alpha: float = 0.75, cmap: str | None = None) -> np.ndarray:
    """Blend a heatmap over an image (``[3, H, W]``, ``[H, W, 3]`` or grayscale; returns ``[H, W, 3]`` in [0, 1]).

    A [0, 1] map uses ``inferno``, a map with negative values the diverging ``RdBu_r`` (or ``cmap``). The
    colour's weight grows with ``|heat|`` (up to ``alpha``), so unimportant pixels show the (greyed) photo.
    """
    import matplotlib

    img = _image_hwc(image)
    heat = np.asarray(heat, dtype=float)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"heatmap {heat.shape} and image {img.shape[:2]} differ in size")
    signed = bool((heat < 0).any()) or cmap == SIGNED_CMAP
    cmap = cmap or (SIGNED_CMAP if signed else ABS_CMAP)
    colours = matplotlib.colormaps[cmap]((heat + 1) / 2 if signed else heat)[..., :3]
    grey = img.mean(-1, keepdims=True) * 0.8 + 0.1
    weight = alpha * np.abs(heat)[..., None]
    return np.clip((1 - weight) * grey + weight * colours, 0, 1)


def caption(reduce: str = "abs_sum", percentile: float = 99.5) -> str:
    """The sentence that says how a map was made (channel reduction, percentile clipping, colours)."""
    kind = _KINDS.get(reduce, reduce)
    how = {"abs_sum": "sum of |attribution| over channels", "sum": "|sum of attribution over channels|",
           "signed": "sum of attribution over channels, signed (red raises the class score, blue lowers it)"}[kind]
    return f"Maps: {how}; each divided by its {percentile:g}th percentile of |value| and clipped."


def _colorbar(fig: Any, ax: Any, signed: bool) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(Normalize(-1 if signed else 0, 1), SIGNED_CMAP if signed else ABS_CMAP)
    cb = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.03)
    cb.ax.tick_params(labelsize=7)
    cb.set_ticks([-1, 0, 1] if signed else [0, 0.5, 1])
    cb.set_ticklabels(["-p", "0", "+p"] if signed else ["0", "p/2", "p"])


def plot_attribution(
    image: Tensor | np.ndarray,
    attribution: Tensor | np.ndarray,
    kind: str = "signed",
    class_name: str | None = None,
    probability: float | None = None,
    method: str | None = None,
    percentile: float = 99.5,
    note: str | None = None,
    path: str | Path | None = None,
    alpha: float = 0.75,
):
    """One explained image: the input, the map with its colour bar, and the map over the input.

    Args:
        image: ``[3, H, W]`` (or ``[H, W, 3]``, grayscale) in [0, 1].
        attribution: ``[C, H, W]`` or ``[H, W]``.
        kind: ``"signed"`` (diverging, the default) or ``"abs"``.
        class_name: the explained class's name (title); ``probability``: its probability.
        method: the method's name (title).
        percentile: clipping percentile (stated in the caption).
        note: an extra line in the caption (e.g. cost and completeness gap).
        path: where to save (PNG, PDF, ...); the figure is closed after saving.
    """
    import matplotlib.pyplot as plt

    reduce = "signed" if kind == "signed" else "abs_sum"
    signed = reduce == "signed"
    heat = heatmap(attribution, reduce, percentile)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.6))
    axes[0].imshow(_image_hwc(image))
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(heat, cmap=SIGNED_CMAP if signed else ABS_CMAP, vmin=-1 if signed else 0, vmax=1)
    axes[1].set_title("signed attribution" if signed else "|attribution|", fontsize=9)
    _colorbar(fig, axes[1], signed)
    axes[2].imshow(overlay(image, heat, alpha, SIGNED_CMAP if signed else ABS_CMAP))
    axes[2].set_title("overlay on the input", fontsize=9)
    _colorbar(fig, axes[2], signed)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    head = [method] if method else []
    if class_name is not None:
        head.append(f"class '{class_name}'" + (f" (p = {probability:.2f})" if probability is not None else ""))
    if head:
        fig.suptitle(": ".join(head), fontsize=11)
    text = _wrap(caption(reduce, percentile) + " p = that percentile." + ("\n" + note if note else ""), 9.6)
    fig.text(0.5, 0.02, text, ha="center", va="bottom", fontsize=7.5, color="#333")
    fig.tight_layout(rect=(0, 0.05 + 0.04 * (text.count("\n") + 1), 1, 0.95))
    return _finish(fig, path)


def _wrap(text: str, width_inches: float) -> str:
    import textwrap

    chars = max(40, int(width_inches * 17))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def _finish(fig: Any, path: str | Path | None) -> Any:
    if path is not None:
        import matplotlib.pyplot as plt

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_explanations(
    image: Tensor,
    attributions: Mapping[str, Tensor],
    title: str = "",
    path: str | Path | None = None,
    notes: Mapping[str, str] | None = None,
    reduce: str = "abs_sum",
    percentile: float = 99.5,
    overlay_input: bool = False,
):
    """Photo followed by one map per method, side by side, with a shared colour bar and a caption that states
    the reduction and the percentile clipping; written to ``path`` if given.

    Args:
        image: ``[3, H, W]`` in [0, 1].
        attributions: method name -> ``[C, H, W]`` attribution of that image.
        title: figure title (e.g. the predicted class name and probability).
        path: where to save the PNG.
        notes: method name -> a short line under the panel (e.g. seconds and completeness gap).
        reduce: ``"abs_sum"`` (default), ``"sum"`` or ``"signed"`` (diverging colours).
        percentile: clipping percentile.
        overlay_input: draw each map over the (greyed) input instead of on its own.
    """
    import matplotlib.pyplot as plt

    signed = _KINDS.get(reduce, reduce) == "signed"
    cmap = SIGNED_CMAP if signed else ABS_CMAP
    n = len(attributions) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.6, 3.4))
    axes = np.atleast_1d(axes)
    axes[0].imshow(_image_hwc(image))
    axes[0].set_title("input", fontsize=9)
    for ax, (name, attr) in zip(axes[1:], attributions.items()):
        heat = heatmap(attr, reduce=reduce, percentile=percentile)
        if overlay_input:
            ax.imshow(overlay(image, heat, cmap=cmap))
        else:
            ax.imshow(heat, cmap=cmap, vmin=-1 if signed else 0, vmax=1)
        ax.set_title(name, fontsize=9)
        if notes and name in notes:
            ax.set_xlabel(notes[name], fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    text = _wrap(caption(reduce, percentile) + " p = that percentile.", 2.6 * n + 0.6)
    fig.text(0.5, 0.01, text, ha="center", va="bottom", fontsize=7, color="#333")
    fig.tight_layout(rect=(0, 0.04 + 0.035 * text.count("\n"), 1, 1))
    if len(attributions):
        _colorbar(fig, list(axes), signed)
    return _finish(fig, path)


def plot_curves(
    curves: Mapping[str, Tensor | np.ndarray | Sequence[float]],
    xlabel: str = "fraction of features",
    ylabel: str = "score",
    title: str = "",
    path: str | Path | None = None,
):
    """Line plot of one curve per method (e.g. insertion/deletion curves on a shared x grid in [0, 1])."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, curve in curves.items():
        y = torch.as_tensor(curve).double().cpu().numpy().reshape(-1)
        ax.plot(np.linspace(0, 1, y.size), y, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _finish(fig, path)
