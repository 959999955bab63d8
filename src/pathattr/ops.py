"""Small tensor operations shared by baselines, paths and metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputValidationError
from .validation import check_spatial_dims


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype=torch.float64, device=None) -> Tensor:
    """Normalised 1-D Gaussian kernel with radius ``int(truncate * sigma + 0.5)`` (SciPy's convention)."""
    radius = int(truncate * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    kernel = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return (kernel / kernel.sum()).to(dtype)


def spatial_dims_of(x: Tensor, spatial_dims: Sequence[int] | None) -> tuple[int, ...]:
    """Spatial axes of a channels-first batch ``[B, C, *spatial]`` (all axes after 1 unless given); given axes
    are checked by :func:`pathattr.validation.check_spatial_dims` (in range, not the batch axis, no duplicates)."""
    return check_spatial_dims(spatial_dims, x.ndim)


def gaussian_blur(
    x: Tensor,
    sigma: float | Tensor,
    spatial_dims: Sequence[int] | None = None,
    padding: str = "zeros",
    truncate: float = 4.0,
) -> Tensor:
    """Separable Gaussian blur of ``x`` over its spatial axes.

    Args:
        x: ``[B, ...]`` batch, channels-first (axes after the channel axis are spatial by default).
        sigma: standard deviation in pixels; a float for all rows or a ``[B]`` tensor (one sigma per row,
            rows with equal sigma are blurred together). ``0`` returns ``x`` unchanged.
        spatial_dims: axes to blur; default all axes after 1.
        padding: ``"zeros"`` (SciPy ``mode="constant"``, as PAIR's Blur IG) or ``"reflect"`` (SciPy's
            half-sample symmetric ``mode="reflect"``: ``d c b a | a b c d``).
        truncate: kernel radius in sigmas (SciPy default 4).
    """
    if isinstance(sigma, Tensor) and sigma.ndim > 0:
        sigma = sigma.to(torch.float64).cpu()
        out = torch.empty_like(x)
        for value in torch.unique(sigma).tolist():
            rows = (sigma == value).nonzero().squeeze(1).to(x.device)
            out[rows] = gaussian_blur(x[rows], float(value), spatial_dims, padding, truncate)
        return out
    sigma = float(sigma)
    if sigma < 0 or not math.isfinite(sigma):
        raise InputValidationError(f"`sigma` must be finite and >= 0, got {sigma}.", "sigma")
    if sigma == 0:
        return x.clone()
    if padding not in ("zeros", "reflect"):
        raise InputValidationError(f"`padding` must be 'zeros' or 'reflect', got {padding!r}.", "padding")
    kernel = gaussian_kernel1d(sigma, truncate, dtype=x.dtype, device=x.device)
    radius = (kernel.numel() - 1) // 2
    out = x
    for dim in spatial_dims_of(x, spatial_dims):
        moved = out.movedim(dim, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        if padding == "reflect":
            flat = flat.index_select(-1, _symmetric_index(shape[-1], radius, x.device))
        else:
            flat = F.pad(flat, (radius, radius))
        flat = F.conv1d(flat, kernel.view(1, 1, -1))
        out = flat.reshape(shape).movedim(-1, dim)
    return out


def _symmetric_index(n: int, radius: int, device) -> Tensor:
    """Indices of a length-``n`` axis padded by ``radius`` on both sides with SciPy's ``reflect`` rule."""
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)
