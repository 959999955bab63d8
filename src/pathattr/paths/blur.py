"""The Blur IG path (Xu, Venugopalan & Sundararajan, "Attribution in Scale and Space", CVPR 2020,
arXiv 2004.03383).

``gamma(sigma) = blur(x, sigma)``, a separable Gaussian blur over the spatial axes, runs from the input
(``sigma = 0``) to a blurred image (``sigma_m``); that end plays the baseline. With nodes
``sigma_i = i sigma_max / m`` (or ``sqrt(i sigma_max / m)``), the Riemann sum of PAIR-code/saliency's ``BlurIG``
is ``A = - sum_{i<m} (sigma_{i+1} - sigma_i) * d gamma / d sigma (sigma_i) * grad f(gamma(sigma_i))`` with the
finite difference ``d gamma / d sigma ~ (blur(x, sigma_i + h) - blur(x, sigma_i)) / h``. In the engine's
convention the path runs from the input end (``direction = -1``) and node ``i``'s displacement, oriented from
baseline to input, is ``-(sigma_{i+1} - sigma_i) (blur(x, sigma_i + h) - blur(x, sigma_i)) / h``, each node with
its own ``sigma`` spacing (PAIR's batched mode applies the last spacing of a batch to all of its points).

Blurs are applied as dense banded matrices along each spatial axis (batched matrix products, one matrix per
row), which equals SciPy's ``gaussian_filter1d`` with kernel radius ``int(truncate * sigma + 0.5)`` and
``mode="constant"`` (``padding="zeros"``, as PAIR) or ``mode="reflect"``. The matrices are built in float64 and
applied in the input's dtype.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputValidationError
from ..ops import spatial_dims_of
from .base import ParametricPath

PADDINGS = ("zeros", "reflect")


def blur_sigmas(max_sigma: float, n_steps: int, sqrt: bool = False) -> list[float]:
    """The ``n_steps + 1`` nodes ``sigma_0 = 0, ..., sigma_m`` of PAIR's Blur IG (Python floats, computed as PAIR
    does): ``i * max_sigma / m``, or ``sqrt(i * max_sigma / m)`` with ``sqrt=True`` (so ``sigma_m =
    sqrt(max_sigma)``)."""
    if sqrt:
        return [math.sqrt(float(i) * max_sigma / float(n_steps)) for i in range(n_steps + 1)]
    return [float(i) * max_sigma / float(n_steps) for i in range(n_steps + 1)]


def gaussian_blur_matrices(
    size: int, sigmas: Tensor, padding: str = "zeros", truncate: float = 4.0, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Matrices ``[n, size, size]`` that blur a length-``size`` axis with each of ``n`` sigmas.

    Row ``i`` of matrix ``k`` holds SciPy's normalised kernel (radius ``int(truncate * sigma_k + 0.5)``)
    centred on ``i``; taps outside the axis are dropped (``padding="zeros"``) or folded back by half-sample
    symmetric reflection (``padding="reflect"``). ``sigma = 0`` gives the identity.
    """
    sig = sigmas.to(torch.float64).reshape(-1)
    device = sig.device
    radii = [int(truncate * float(s) + 0.5) for s in sig.tolist()]
    big = max(radii) if radii else 0
    taps = torch.arange(-big, big + 1, dtype=torch.float64, device=device)
    inside = taps.abs().unsqueeze(0) <= torch.tensor(radii, dtype=torch.float64, device=device).unsqueeze(1)
    positive = sig > 0
    s2 = torch.where(positive, sig * sig, torch.ones_like(sig)).unsqueeze(1)
    weights = torch.exp(-0.5 / s2 * taps.unsqueeze(0) ** 2)
    weights = torch.where(positive.unsqueeze(1), weights, (taps == 0).to(weights).unsqueeze(0)) * inside
    weights = weights / weights.sum(1, keepdim=True)
    n = sig.shape[0]
    rows = torch.arange(size, device=device)
    if padding == "zeros":
        offset = rows.unsqueeze(0) - rows.unsqueeze(1)  # j - i
        valid = offset.abs() <= big
        index = (offset + big).clamp(0, 2 * big)
        out = weights[:, index] * valid
    elif padding == "reflect":
        source = rows.unsqueeze(1) + torch.arange(-big, big + 1, device=device).unsqueeze(0)  # [size, 2R+1]
        source = source % (2 * size)
        source = torch.where(source >= size, 2 * size - 1 - source, source)
        out = torch.zeros((n, size, size), dtype=torch.float64, device=device)
        out.scatter_add_(2, source.unsqueeze(0).expand(n, -1, -1), weights.unsqueeze(1).expand(n, size, -1))
    else:
        raise InputValidationError(f"`padding` must be one of {PADDINGS}, got {padding!r}.", "padding")
    return out.to(dtype)


def apply_along(x: Tensor, mats: Tensor, dim: int) -> Tensor:
    """Multiply axis ``dim`` of every row ``x[k]`` by ``mats[k]`` (``[n, L, L]``): ``y[k] = mats[k] @ x[k]`` along
    that axis. The last two axes need no data movement (batched, broadcast matrix products)."""
    n, length = mats.shape[0], mats.shape[-1]
    shape = (n, *([1] * (x.ndim - 3)), length, length)
    if dim == x.ndim - 1:
        return x @ mats.view(shape).transpose(-1, -2)
    if dim == x.ndim - 2:
        return mats.view(shape) @ x
    return apply_along(x.movedim(dim, -1), mats, x.ndim - 1).movedim(-1, dim)


def _matrices(x: Tensor, dims: Sequence[int], sigmas: Tensor, padding: str, truncate: float) -> list[Tensor]:
    """Blur matrices (float64) for every spatial axis of ``x``, shared between axes of equal length."""
    cache: dict[int, Tensor] = {}
    out = []
    for dim in dims:
        length = x.shape[dim]
        if length not in cache:
            cache[length] = gaussian_blur_matrices(length, sigmas, padding, truncate, torch.float64)
        out.append(cache[length])
    return out


def blur_rows(
    x: Tensor, sigmas: Tensor, spatial_dims: Sequence[int] | None = None, padding: str = "zeros",
    truncate: float = 4.0,
) -> Tensor:
    """Blur each row ``x[k]`` (``[n, C, *spatial]``) with its own ``sigmas[k]`` over the spatial axes."""
    dims = spatial_dims_of(x, spatial_dims)
    out = x
    for dim, mats in zip(dims, _matrices(x, dims, sigmas, padding, truncate)):
        out = apply_along(out, mats.to(x.dtype), dim)
    return out


def blur_with_derivative(
    x: Tensor,
    sigmas: Tensor,
    grad_step: float,
    spatial_dims: Sequence[int] | None = None,
    padding: str = "zeros",
    truncate: float = 4.0,
) -> tuple[Tensor, Tensor]:
    """``blur(x, sigma)`` and the forward difference ``(blur(x, sigma + h) - blur(x, sigma)) / h`` per row.

    The difference of two separable blurs is expanded as a telescoping sum over the axes,
    ``prod_d M'_d - prod_d M_d = sum_i (prod_{d<i} M_d) (M'_i - M_i) (prod_{d>i} M'_d)``, with the small matrices
    ``M'_i - M_i`` formed in float64, so the derivative keeps the relative precision of ``x``'s dtype (no
    cancellation between two nearly equal images, even in float32). Costs ``k (k + 3) / 2`` batched matrix
    products for ``k`` spatial axes (5 for images) instead of ``2 k``.
    """
    dims = spatial_dims_of(x, spatial_dims)
    now = _matrices(x, dims, sigmas, padding, truncate)
    later = _matrices(x, dims, sigmas + grad_step, padding, truncate)
    if len(dims) == 2 and {d % x.ndim for d in dims} == {x.ndim - 2, x.ndim - 1}:  # images: Blur IG's fast path
        hi, wi = (0, 1) if dims[0] % x.ndim == x.ndim - 2 else (1, 0)  # matrices of the H and W axes
        s_h, s_w = (torch.cat([now[i], later[i] - now[i]], 1).to(x.dtype) for i in (hi, wi))
        n = x.shape[0]
        points, y = _blur_2d(x, list(range(n)), torch.arange(n, device=x.device), s_h, s_w)
        return points, _difference_2d(x, y, s_w, later[wi].to(x.dtype), divisor=grad_step)
    prefixes = _prefixes(x, now, dims)
    return prefixes[-1], _difference(prefixes, now, later, dims) / grad_step


def _prefixes(x: Tensor, now: list[Tensor], dims: Sequence[int]) -> list[Tensor]:
    """``[x, M_1 x, M_2 M_1 x, ...]``; the last entry is the blurred ``x``."""
    out = [x]
    for mats, dim in zip(now, dims):
        out.append(apply_along(out[-1], mats.to(x.dtype), dim))
    return out


def _difference(prefixes: list[Tensor], now: list[Tensor], later: list[Tensor], dims: Sequence[int]) -> Tensor:
    """``blur(x, sigma + h) - blur(x, sigma)`` by the telescoping sum over the axes."""
    dtype = prefixes[0].dtype
    total = None
    for i, dim in enumerate(dims):
        term = apply_along(prefixes[i], (later[i] - now[i]).to(dtype), dim)
        for d in range(i + 1, len(dims)):
            term = apply_along(term, later[d].to(dtype), dims[d])
        total = term if total is None else total + term
    return total


class BlurPath(ParametricPath):
    """Blur IG paths, one per example, from the input (``sigma = 0``) to ``blur(x, sigma_m)``.

    Args:
        inputs: per input ``[B, C, *spatial]`` (channels-first; every input is blurred with the same sigma).
        sigmas: the ``m + 1`` nodes ``sigma_0 .. sigma_m`` (see :func:`blur_sigmas`).
        grad_step: finite-difference step ``h`` of ``d gamma / d sigma``.
        spatial_dims: axes to blur (default all axes after the channel axis).
        padding: ``"zeros"`` (SciPy ``mode="constant"``, PAIR) or ``"reflect"``.
        truncate: kernel radius in sigmas (SciPy's default 4).

    Nodes are ``sigma_0 .. sigma_{m-1}`` (``direction = -1``: listed from the input end); the baseline end
    ``sigma_m`` is appended by the engine as an output-only closing node (``closing_node``) so that
    output-based integrators (IDGI, Split IG) see the last segment. Blur matrices are built in float64 and
    applied in the inputs' dtype; the finite difference uses :func:`blur_with_derivative`'s telescoping form, so
    it keeps the inputs' relative precision.
    """

    direction = -1
    closing_node = True

    def __init__(
        self,
        inputs: tuple[Tensor, ...],
        sigmas: Sequence[float],
        grad_step: float,
        spatial_dims: Sequence[int] | None = None,
        padding: str = "zeros",
        truncate: float = 4.0,
    ) -> None:
        if padding not in PADDINGS:
            raise InputValidationError(f"`padding` must be one of {PADDINGS}, got {padding!r}.", "padding")
        for t in inputs:
            spatial_dims_of(t, spatial_dims)  # validates: needs [B, C, *spatial]
        self.inputs = inputs
        self.sigma_list = [float(s) for s in sigmas]
        device = inputs[0].device
        self.sigmas = torch.tensor(self.sigma_list, dtype=torch.float64, device=device)
        self.shifted = torch.tensor([s + grad_step for s in self.sigma_list], dtype=torch.float64, device=device)
        self.deltas = torch.tensor(
            [self.sigma_list[i + 1] - self.sigma_list[i] for i in range(len(self.sigma_list) - 1)],
            dtype=torch.float64, device=device,
        )
        self.grad_step = float(grad_step)
        self.spatial_dims = spatial_dims
        self.padding = padding
        self.truncate = float(truncate)
        self._cache: tuple | None = None  # (path_index, step_index, matrices, prefixes) of the last points()

    @property
    def n_paths(self) -> int:
        return self.inputs[0].shape[0]

    @property
    def n_nodes(self) -> int:
        return self.deltas.shape[0]

    def example_index(self, path_index: Tensor) -> Tensor:
        return path_index

    def _node_matrices(self, length: int, dtype: torch.dtype, steps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[n, L, L]`` blur matrices of the nodes ``steps`` (``sigma_i``), at ``sigma_i + h`` and their
        differences (formed in float64), cast to ``dtype``: only the chunk's nodes are built, so memory follows
        the chunk size, not ``n_steps`` (see :func:`_stacked_node_matrices`)."""
        stacked, later = self._stacked(length, dtype, self._row_sigmas(steps))
        return stacked[:, :length], later, stacked[:, length:]

    def _row_sigmas(self, steps: Tensor) -> tuple[float, ...]:
        return tuple(self.sigma_list[i] for i in steps.tolist())

    def _stacked(self, length: int, dtype: torch.dtype, sigmas: tuple[float, ...]) -> tuple[Tensor, Tensor]:
        return _stacked_node_matrices(length, sigmas, self.grad_step, self.padding, self.truncate, dtype,
                                      self.sigmas.device)

    def _two_trailing_axes(self, x: Tensor) -> bool:
        """Whether the blurred axes of ``x`` are exactly its last two (images ``[B, C, H, W]``): the fast path."""
        dims = spatial_dims_of(x, self.spatial_dims)
        return len(dims) == 2 and {d % x.ndim for d in dims} == {x.ndim - 2, x.ndim - 1}

    def start_points(self, path_index: Tensor) -> tuple[Tensor, ...]:
        last = torch.full((path_index.shape[0],), len(self.sigma_list) - 1)
        out = []
        for x in self.inputs:  # blur(x, sigma_m) with one copy of the last node's matrices per row (= blur_rows)
            rows = x[path_index]
            for dim in spatial_dims_of(rows, self.spatial_dims):
                rows = apply_along(rows, self._node_matrices(rows.shape[dim], rows.dtype, last)[0], dim)
            out.append(rows)
        return tuple(out)

    def _geometry(self, path_index: Tensor, step_index: Tensor) -> list[tuple]:
        """Per input: ``("2d", points, products)`` (fast path, see :func:`_blur_2d`) or ``("any", points,
        per-axis matrices, prefixes)``."""
        sigmas = self._row_sigmas(step_index)
        paths = path_index.tolist()
        out: list[tuple] = []
        for x in self.inputs:
            if self._two_trailing_axes(x):
                h, w = x.shape[-2:]
                s_h, later_h = self._stacked(h, x.dtype, sigmas)
                s_w, later_w = (s_h, later_h) if w == h else self._stacked(w, x.dtype, sigmas)
                points, y = _blur_2d(x, paths, path_index, s_h, s_w)
                out.append(("2d", points, y, s_w, later_w))
                continue
            rows = x[path_index]
            dims = spatial_dims_of(rows, self.spatial_dims)
            per_dim = []
            for dim in dims:
                stacked, later = self._stacked(rows.shape[dim], rows.dtype, sigmas)
                length = rows.shape[dim]
                per_dim.append((stacked[:, :length], later, stacked[:, length:]))
            prefixes = [rows]
            for (now_rows, _, _), dim in zip(per_dim, dims):
                prefixes.append(apply_along(prefixes[-1], now_rows, dim))
            out.append(("any", prefixes[-1], per_dim, prefixes))
        return out

    def points(self, path_index: Tensor, step_index: Tensor) -> tuple[Tensor, ...]:
        geometry = self._geometry(path_index, step_index)
        self._cache = (path_index, step_index, geometry)
        return tuple(g[1] for g in geometry)

    def displacements(
        self, path_index: Tensor, step_index: Tensor, points: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        cache = self._cache
        self._cache = None
        if cache is not None and torch.equal(cache[0], path_index) and torch.equal(cache[1], step_index):
            geometry = cache[2]
        else:
            geometry = self._geometry(path_index, step_index)
        scale = -(self.deltas[step_index] / self.grad_step)  # PAIR: -(delta_sigma * (difference / h))
        out = []
        for g, x in zip(geometry, self.inputs):
            if g[0] == "2d":
                out.append(_difference_2d(x, g[2], g[3], g[4], scale))
                continue
            per_dim, pre = g[2], g[3]
            dims = spatial_dims_of(pre[0], self.spatial_dims)
            total = None  # blur(x, sigma + h) - blur(x, sigma), telescoping over the axes (see _difference)
            for i, dim in enumerate(dims):
                term = apply_along(pre[i], per_dim[i][2], dim)
                for d in range(i + 1, len(dims)):
                    term = apply_along(term, per_dim[d][1], dims[d])
                total = term if total is None else total + term
            out.append(total * scale.to(x.dtype).view(-1, *([1] * (x.ndim - 1))))
        return tuple(out)


def _blur_2d(x: Tensor, paths: list[int], path_index: Tensor, s_h: Tensor, s_w: Tensor) -> tuple[Tensor, Tensor]:
    """Points ``M_W M_H x_p`` of the rows (path ``paths[r]``) of an input ``[B, *rest, H, W]`` blurred over its last
    two axes, and ``y = [M_H; M'_H - M_H] x_p`` (rows ``[R, 2H, C*W]``, ``C = prod(rest)``) for the displacements.

    ``s_h = [M_H; M'_H - M_H]`` per row ``[R, 2H, H]`` (``s_w`` likewise over W). The H axis is applied first, with
    the channels side by side as the columns of one product (``x_p`` laid out ``[H, C*W]``): one matrix product
    per run of rows of one path (rows are path-major), which reads that path's input once instead of a copy per
    row, and gives ``M_H x`` and ``(M'_H - M_H) x`` together. The W axis is then one batched product over rows
    on the ``[H*C, W]`` view. Three batched products per row in all (five before, each per channel), the same
    sums of the same products (each entry is one dot product along one axis)."""
    r = len(paths)
    h, w = x.shape[-2:]
    c = x[0].numel() // (h * w)
    src = x.detach()
    y = torch.empty((r, 2 * h, c * w), dtype=x.dtype, device=x.device)
    runs: list[tuple[int, int, int]] = []
    for i, p in enumerate(paths):
        if runs and runs[-1][2] == p:
            runs[-1] = (runs[-1][0], i + 1, p)
        else:
            runs.append((i, i + 1, p))
    if 2 * len(runs) > r:  # mostly one row per path: one batched product on the gathered rows
        rows = src.index_select(0, path_index).reshape(r, c, h, w).transpose(1, 2).reshape(r, h, c * w)
        torch.bmm(s_h, rows, out=y)
    else:
        for lo, hi, p in runs:
            image = src[p].reshape(c, h, w).transpose(0, 1).reshape(h, c * w)
            torch.mm(s_h[lo:hi].reshape((hi - lo) * 2 * h, h), image, out=y[lo:hi].view((hi - lo) * 2 * h, c * w))
    blurred = torch.bmm(y[:, :h].reshape(r, h * c, w), s_w[:, :w].transpose(1, 2))  # [R, H*C, W]
    points = blurred.view(r, h, c, w).transpose(1, 2).contiguous().view(r, *x.shape[1:])
    return points, y


def _difference_2d(x: Tensor, y: Tensor, s_w: Tensor, later_w: Tensor, scale: Tensor | None = None,
                   divisor: float | None = None) -> Tensor:
    """``blur(x, sigma + h) - blur(x, sigma)`` per row from :func:`_blur_2d`'s ``y``, by the telescoping sum
    ``M'_W (M'_H - M_H) x + (M'_W - M_W) M_H x`` (see :func:`_difference`): one product and one fused multiply-add
    per row; multiplied by ``scale`` ``[R]`` or divided by ``divisor``, as a contiguous ``[R, *x.shape[1:]]``."""
    r, h2, cw = y.shape
    h, w = h2 // 2, later_w.shape[-1]
    c = cw // w
    total = torch.bmm(y[:, h:].reshape(r, h * c, w), later_w.transpose(1, 2))
    total = torch.baddbmm(total, y[:, :h].reshape(r, h * c, w), s_w[:, w:].transpose(1, 2))
    total = total.view(r, h, c, w).transpose(1, 2)
    out = torch.empty((r, *x.shape[1:]), dtype=x.dtype, device=x.device)
    if scale is not None:
        torch.mul(total, scale.to(x.dtype).view(-1, 1, 1, 1), out=out.view(r, c, h, w))
    else:
        torch.div(total, divisor, out=out.view(r, c, h, w))
    return out


#: node matrices kept between chunks and calls (per node and axis length, sigma, dtype, ..., and the stacked
#: matrices of the last chunks' rows), at most this many bytes in all (a fixed bound: it does not grow with
#: ``n_steps``)
NODE_MATRIX_CACHE_BYTES = 1 << 25
_node_matrix_cache: OrderedDict[tuple, tuple[Tensor, ...]] = OrderedDict()
_node_matrix_cache_bytes = 0


def _cache_get(key: tuple) -> tuple[Tensor, ...] | None:
    hit = _node_matrix_cache.get(key)
    if hit is not None:
        _node_matrix_cache.move_to_end(key)
    return hit


def _cache_put(key: tuple, entry: tuple[Tensor, ...]) -> None:
    global _node_matrix_cache_bytes
    size = sum(t.numel() * t.element_size() for t in entry)
    if size > NODE_MATRIX_CACHE_BYTES or key in _node_matrix_cache:
        return
    _node_matrix_cache[key] = entry
    _node_matrix_cache_bytes += size
    while _node_matrix_cache_bytes > NODE_MATRIX_CACHE_BYTES and _node_matrix_cache:
        _, old = _node_matrix_cache.popitem(last=False)
        _node_matrix_cache_bytes -= sum(t.numel() * t.element_size() for t in old)


def _stacked_node_matrices(
    length: int, sigmas: tuple[float, ...], grad_step: float, padding: str, truncate: float, dtype: torch.dtype,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Per row ``k``: ``[M; M' - M]`` ``[n, 2L, L]`` and ``M'`` ``[n, L, L]``, where ``M`` blurs with
    ``sigmas[k]`` and ``M'`` with ``sigmas[k] + h``, built in float64 (the difference too) and cast to ``dtype``.

    Each node's matrices are built on their own (nodes of equal kernel radius together, which gives the same
    values), so they do not depend on which other nodes share a chunk; they are kept per node in a small LRU
    cache bounded by :data:`NODE_MATRIX_CACHE_BYTES`, since building costs an exp and a gather per row and rows
    of different examples, chunks and calls share nodes. The stacked matrices of a chunk's rows are kept too
    (repeated calls with the same chunks skip the stacking). Only the requested nodes are built: memory is
    bounded by the chunk, not by the number of nodes on the path."""
    tag = (grad_step, padding, truncate, dtype, str(device))
    rows_key = ("rows", length, sigmas, *tag)
    hit = _cache_get(rows_key)
    if hit is not None:
        return hit  # type: ignore[return-value]
    entries: dict[float, tuple[Tensor, ...]] = {}
    missing: dict[tuple[int, int], list[float]] = {}  # kernel radii at sigma and sigma + h -> nodes to build
    for sigma in dict.fromkeys(sigmas):
        node = _cache_get((length, float(sigma), *tag))
        if node is not None:
            entries[sigma] = node
        else:
            radii = (int(truncate * float(sigma) + 0.5), int(truncate * (float(sigma) + grad_step) + 0.5))
            missing.setdefault(radii, []).append(sigma)
    for group in missing.values():
        sig = torch.tensor(group, dtype=torch.float64, device=device)
        now64 = gaussian_blur_matrices(length, sig, padding, truncate, torch.float64)
        later64 = gaussian_blur_matrices(length, sig + grad_step, padding, truncate, torch.float64)
        stacked = torch.cat([now64, later64 - now64], 1).to(dtype)
        later = later64.to(dtype)
        for k, sigma in enumerate(group):
            entries[sigma] = (stacked[k].clone(), later[k].clone())
            _cache_put((length, float(sigma), *tag), entries[sigma])
    out = (torch.stack([entries[s][0] for s in sigmas]), torch.stack([entries[s][1] for s in sigmas]))
    _cache_put(rows_key, out)
    return out


def _cached_node_matrices(
    length: int, sigmas: tuple[float, ...], grad_step: float, padding: str, truncate: float, dtype: torch.dtype,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor]:
    """Blur matrices ``[n, L, L]`` of the nodes ``sigmas``, of ``sigma + h`` and their float64 differences, cast
    to ``dtype`` (views of :func:`_stacked_node_matrices`)."""
    stacked, later = _stacked_node_matrices(length, sigmas, grad_step, padding, truncate, dtype, device)
    return stacked[:, :length], later, stacked[:, length:]


__all__ = ["PADDINGS", "BlurPath", "apply_along", "blur_rows", "blur_sigmas", "blur_with_derivative",
           "gaussian_blur_matrices"]
