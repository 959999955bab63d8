"""Heatmaps from attributions, and figures (matplotlib imported lazily, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def heatmap(attribution: Tensor | np.ndarray, reduce: str = "abs_sum", percentile: float = 99.5) -> np.ndarray:
    """A 2-D map in [0, 1] (``abs_sum``/``sum``) or [-1, 1] (``signed``) from ``[C, H, W]`` or ``[H, W]``.

    Channels are reduced by the sum of absolute values (``abs_sum``, as PAIR's grayscale visualisation), the
    plain sum (``sum``, then absolute value), or kept signed (``signed``). Values are divided by the given
    percentile of the magnitudes and clipped, so a few extreme pixels do not wash the map out.
    """
    a = attribution.detach().double().cpu().numpy() if isinstance(attribution, Tensor) else np.asarray(attribution)
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


def overlay(image: Tensor | np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a [0, 1] heatmap (as the 'inferno' colours) over a ``[3, H, W]`` or ``[H, W, 3]`` image."""
    import matplotlib

    img = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if img.shape[0] == 3 and img.ndim == 3:
        img = img.transpose(1, 2, 0)
    colours = matplotlib.colormaps["inferno"](heat)[..., :3]
    return np.clip((1 - alpha) * img * 0.6 + alpha * colours, 0, 1)


def plot_explanations(
    image: Tensor,
    attributions: Mapping[str, Tensor],
    title: str = "",
    path: str | Path | None = None,
    notes: Mapping[str, str] | None = None,
    reduce: str = "abs_sum",
):
    """Photo followed by one heatmap per method, side by side; written to ``path`` (PNG) if given.

    Args:
        image: ``[3, H, W]`` in [0, 1].
        attributions: method name -> ``[C, H, W]`` attribution of that image.
        title: figure title (e.g. the predicted class and probability).
        path: where to save the PNG.
        notes: method name -> a short line under the panel (e.g. seconds and completeness gap).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(attributions) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.1))
    axes = np.atleast_1d(axes)
    axes[0].imshow(image.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
    axes[0].set_title("input", fontsize=9)
    for ax, (name, attr) in zip(axes[1:], attributions.items()):
        ax.imshow(heatmap(attr, reduce=reduce), cmap="inferno", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        if notes and name in notes:
            ax.set_xlabel(notes[name], fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_curves(
    curves: Mapping[str, Tensor | np.ndarray | Sequence[float]],
    xlabel: str = "fraction of features",
    ylabel: str = "score",
    title: str = "",
    path: str | Path | None = None,
):
    """Line plot of one curve per method (e.g. insertion/deletion curves on a shared x grid in [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
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
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
