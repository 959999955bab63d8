"""Integrators: how gradients recorded along a path become attributions.

A path method evaluates the model at points ``gamma_j`` of each path (one path per example x baseline).
For every evaluated point the engine hands the integrator an :class:`Evaluation` chunk: the path and step
index of each row, the gradient ``g_j``, the target output ``f_j`` and the *displacement* ``d_j`` that the
gradient is integrated against (for a straight line with quadrature weight ``s_j``: ``s_j (x - x')``; for a
discrete path: the actual step ``gamma_{j+1} - gamma_j`` oriented from baseline to input).

Integrators are streaming accumulators, so memory never grows with the number of steps:

* :class:`RiemannIntegrator` - ``A = sum_j g_j * d_j`` (every quadrature rule; left/right Riemann on
  discrete paths).
* :class:`IDGIIntegrator` - Important Direction Gradient Integration (Yang, Wang & Bilgic, CVPR 2023):
  ``A = sum_j g_j^2 / |g_j|^2 * (f_{j+1} - f_j)``; sums exactly to ``f(x) - f(x')``.
* :class:`SplitIntegrator` - Left / Split IG (Miglani et al., ICML 2020 WHI): the Riemann sum split at the
  first point where the output has covered ``ratio`` of ``f(x) - f(x')``.

Quadrature rules for straight-line paths (:func:`quadrature`) use Captum's nodes and weights. On the segments
of a sequential path, :class:`SegmentRule` adds nodes inside every segment (left with substeps, trapezoid,
Gauss-Legendre) or bisects adaptively (IG2's completeness remedies; used by
:func:`pathattr.engine.integrate_sequential_path`).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import InputValidationError

QUADRATURE_RULES = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
    "trapezoid",
)


def quadrature(method: str, n_steps: int, dtype: torch.dtype = torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """Nodes ``alpha_j`` in [0, 1] and weights ``s_j`` of a quadrature rule on [0, 1].

    ``riemann_left|right|middle|trapezoid`` and ``gausslegendre`` are exactly Captum's definitions
    (``riemann_trapezoid``'s weights are ``1/m`` with halved ends, so they sum to ``(m-1)/m`` as in Captum);
    ``trapezoid`` is the textbook trapezoid rule on ``linspace(0, 1, m)`` (weights ``1/(m-1)``, halved ends),
    whose weights sum to 1. Nodes and weights are computed in float64 and cast to ``dtype``.
    """
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise InputValidationError(f"`n_steps` must be a positive int, got {n_steps!r}.", "n_steps")
    if not isinstance(method, str):
        raise InputValidationError(f"`method` must be one of {QUADRATURE_RULES}, got {method!r}.", "method")
    dev = torch.device(device) if device is not None else None
    if n_steps > _QUADRATURE_CACHE_MAX_STEPS:
        return _quadrature_tables.__wrapped__(method, n_steps, dtype, dev)
    alphas, weights = _quadrature_tables(method, n_steps, dtype, dev)
    return alphas.clone(), weights.clone()  # copies: the cached tensors stay unchanged whatever callers do


#: rules with at most this many nodes are kept (per dtype and device) after their first use
_QUADRATURE_CACHE_MAX_STEPS = 4096


@functools.lru_cache(maxsize=256)
def _quadrature_tables(method: str, m: int, dtype: torch.dtype, device: torch.device | None) -> tuple[Tensor, Tensor]:
    if method == "riemann_left":
        alphas = np.linspace(0, 1 - 1 / m, m)
        weights = np.full(m, 1 / m)
    elif method == "riemann_right":
        alphas = np.linspace(1 / m, 1, m)
        weights = np.full(m, 1 / m)
    elif method == "riemann_middle":
        alphas = np.linspace(1 / (2 * m), 1 - 1 / (2 * m), m)
        weights = np.full(m, 1 / m)
    elif method in ("riemann_trapezoid", "trapezoid"):
        if m < 2:
            raise InputValidationError(f"`n_steps` must be >= 2 for {method}, got {m}.", "n_steps")
        alphas = np.linspace(0, 1, m)
        weights = np.full(m, 1 / m if method == "riemann_trapezoid" else 1 / (m - 1))
        weights[0] /= 2
        weights[-1] /= 2
    elif method == "gausslegendre":
        nodes, w = gauss_legendre(m)
        alphas = 0.5 * (1 + nodes)
        weights = 0.5 * w
    else:
        raise InputValidationError(f"`method` must be one of {QUADRATURE_RULES}, got {method!r}.", "method")
    return (
        torch.as_tensor(alphas, dtype=torch.float64).to(dtype=dtype, device=device),
        torch.as_tensor(weights, dtype=torch.float64).to(dtype=dtype, device=device),
    )


@functools.lru_cache(maxsize=64)
def _gauss_legendre_cached(m: int) -> tuple[np.ndarray, np.ndarray]:
    # Newton's method on the three-term recurrence of the Legendre polynomials, vectorised over the nodes:
    # elementwise NumPy only. ``numpy.polynomial.legendre.leggauss`` solves an eigenvalue problem through
    # OpenBLAS, whose worker threads then compete with PyTorch's intra-op threads for the cores (measured on
    # 2 cores: ~15-30 ms per call and slower model calls right after; docs/performance.md).
    i = np.arange(1, m + 1, dtype=np.float64)
    x = np.cos(np.pi * (i - 0.25) / (m + 0.5))  # Tricomi's initial guess, descending
    dp = np.ones_like(x)
    for _ in range(100):
        p0, p1 = np.ones_like(x), x.copy()
        for k in range(2, m + 1):
            p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
        dp = m * (x * p1 - p0) / (x * x - 1)  # P_m'(x) from P_m = p1, P_{m-1} = p0
        step = p1 / dp
        x = x - step
        if np.max(np.abs(step)) <= 1e-16:
            break
    p0, p1 = np.ones_like(x), x.copy()
    for k in range(2, m + 1):
        p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
    dp = m * (x * p1 - p0) / (x * x - 1)
    w = 2.0 / ((1 - x * x) * dp * dp)
    x, w = x[::-1], w[::-1]  # ascending, as leggauss
    x = (x - x[::-1]) / 2  # exact symmetry, as leggauss
    w = (w + w[::-1]) / 2
    w = w * (2.0 / w.sum())
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes (ascending) and weights on [-1, 1]; equals ``numpy.polynomial.legendre.leggauss(m)``
    to float64 rounding, computed without BLAS and cached per ``m`` (read-only arrays)."""
    return _gauss_legendre_cached(int(m))


@dataclass
class Evaluation:
    """Rows evaluated on paths, in increasing step order per path (baseline -> input if ``direction=+1``).

    Attributes:
        path_index: ``[n]`` long, which path each row belongs to (``0 <= p < n_paths``).
        step_index: ``[n]`` long, the position of the row on its path.
        gradients: per input ``[n, *S]``, gradient of the target output at the point.
        outputs: ``[n]`` target output at the point.
        displacements: per input ``[n, *S]``, the weighted path element the gradient multiplies.
    """

    path_index: Tensor
    step_index: Tensor
    gradients: tuple[Tensor, ...]
    outputs: Tensor
    displacements: tuple[Tensor, ...] | None = None


@dataclass
class PathInfo:
    """What an accumulator knows about the paths before the first evaluation.

    Attributes:
        n_paths: number of paths.
        output_index: ``[n_paths]`` long, the example each path explains; per-path results are summed into
            ``n_outputs`` slots with weight ``scale`` (``1/K`` averages the ``K`` paths of an example).
        n_outputs: number of examples ``B``.
        like: per input a ``[B, *S]`` tensor giving shape, dtype and device of the attributions.
        start_outputs / end_outputs: ``f`` at the baseline and input end of each path (``[n_paths]``).
        direction: ``+1`` if rows arrive from the baseline end, ``-1`` if from the input end (IG2, Blur IG).
        scale: weight of each path in its example's attribution.
    """

    n_paths: int
    output_index: Tensor
    n_outputs: int
    like: tuple[Tensor, ...]
    start_outputs: Tensor | None = None
    end_outputs: Tensor | None = None
    direction: int = 1
    scale: float = 1.0

    def zeros(self, per_path: bool = False) -> list[Tensor]:
        n = self.n_paths if per_path else self.n_outputs
        return [torch.zeros((n, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in self.like]


class Accumulator(ABC):
    """Running state of one integration."""

    extras: dict[str, Any]

    @abstractmethod
    def update(self, ev: Evaluation) -> None:
        """Consume a chunk of evaluated rows."""

    @abstractmethod
    def result(self) -> tuple[Tensor, ...]:
        """Attributions per example, one ``[B, *S]`` tensor per input."""


class Integrator(ABC):
    """Turns path evaluations into attributions; see the module docstring."""

    name: str = "integrator"
    #: whether the integrator uses the displacement (False: only gradients and outputs)
    uses_displacements: bool = True
    #: whether the accumulator needs ``start_outputs`` / ``end_outputs`` before the first update (a sequential
    #: path walking from the input end only knows the baseline-end output at the end: its rows are replayed)
    needs_path_ends: bool = True

    def nodes(self, method: str, n_steps: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
        """Nodes and weights on a straight-line path."""
        return quadrature(method, n_steps, dtype, device)

    @abstractmethod
    def accumulator(self, info: PathInfo) -> Accumulator:
        """A fresh accumulator for ``info.n_paths`` paths."""

    def describe(self) -> dict[str, Any]:
        return {"integrator": self.name}


# ----------------------------------------------------------------------------------------------- helpers
def _runs(path_index: Tensor) -> tuple[Tensor, Tensor]:
    """Masks of rows that start / end a run of equal consecutive path indices."""
    n = path_index.numel()
    change = torch.ones(n + 1, dtype=torch.bool, device=path_index.device)
    if n > 1:
        change[1:n] = path_index[1:] != path_index[:-1]
    return change[:n], change[1:]


def _flat_norm_sq(gradients: tuple[Tensor, ...]) -> Tensor:
    return sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in gradients)


def segment_add(acc: Tensor, slot: Tensor, values: Tensor, alpha: float = 1.0) -> None:
    """``acc.index_add_(0, slot, values, alpha=alpha)``, summing runs of equal consecutive slots first.

    Engine rows are grouped by example, so a chunk holds a few long runs; summing each run and adding once is
    much faster on CPU than a scatter with many repeated indices (and gives the same sums).
    """
    if slot.numel() <= 1:  # nothing to group
        if slot.numel():
            acc.index_add_(0, slot, values, alpha=alpha)
        return
    slots, counts = torch.unique_consecutive(slot, return_counts=True)
    if slots.numel() == slot.numel():
        acc.index_add_(0, slot, values, alpha=alpha)
        return
    sums = torch.stack([part.sum(0) for part in torch.split(values, counts.tolist())])
    acc.index_add_(0, slots, sums, alpha=alpha)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


# ----------------------------------------------------------------------------------------------- Riemann
class _RiemannAccumulator(Accumulator):
    def __init__(self, info: PathInfo) -> None:
        self.info = info
        self.sums = info.zeros()
        self.extras = {}

    def update(self, ev: Evaluation) -> None:
        if ev.displacements is None:
            raise ValueError("the Riemann integrator needs displacements")
        slot = self.info.output_index[ev.path_index]
        for acc, g, d in zip(self.sums, ev.gradients, ev.displacements):
            segment_add(acc, slot, g * d, self.info.scale)

    def add_summed(self, paths: Tensor, products: tuple[Tensor, ...]) -> None:
        """Add ``sum_j g_j * d_j`` already summed over runs of rows of the paths ``paths``
        (:meth:`pathattr.paths.base.ParametricPath.summed_products`)."""
        slot = self.info.output_index[paths]
        for acc, s in zip(self.sums, products):  # one row per path: few repeated slots, no grouping needed
            acc.index_add_(0, slot, s, alpha=self.info.scale)

    def result(self) -> tuple[Tensor, ...]:
        return tuple(self.sums)


class RiemannIntegrator(Integrator):
    """``A = sum_j g_j * d_j``: quadrature on straight lines, Riemann sums on discrete paths."""

    name = "riemann"
    needs_path_ends = False

    def accumulator(self, info: PathInfo) -> Accumulator:
        return _RiemannAccumulator(info)


# ----------------------------------------------------------------------------------------------- IDGI
class _IDGIAccumulator(Accumulator):
    """Pairs each row with the next row of its path; the last row of a chunk's run waits as *pending*.

    Pending rows are stored compactly (only paths that are cut by a chunk boundary), so memory stays bounded
    by the chunk size for straight-line paths.
    """

    def __init__(self, info: PathInfo, eps: float) -> None:
        self.info = info
        self.eps = eps
        self.sums = info.zeros()
        dev = info.like[0].device
        self.slot_of = torch.full((info.n_paths,), -1, dtype=torch.long, device=dev)
        self.pending_share: tuple[Tensor, ...] = ()
        self.pending_out = torch.zeros(0, dtype=info.like[0].dtype, device=dev)
        self.pending_ok = torch.zeros(0, dtype=torch.bool, device=dev)
        self.pending_paths = torch.zeros(0, dtype=torch.long, device=dev)
        self.seen = torch.zeros(info.n_paths, dtype=torch.bool, device=dev)
        self.skipped = torch.zeros(info.n_paths, dtype=info.like[0].dtype, device=dev)
        self.extras = {"skipped_output_change": self.skipped}

    def _add(self, shares, rows: Tensor, paths: Tensor, df: Tensor, ok: Tensor) -> None:
        slot = self.info.output_index[paths]
        for acc, c in zip(self.sums, shares):
            segment_add(acc, slot, c[rows] * _bcast(df, c), self.info.scale)
        self.skipped.index_add_(0, paths, torch.where(ok, torch.zeros_like(df), df))

    def update(self, ev: Evaluation) -> None:
        p, f = ev.path_index, ev.outputs.to(self.sums[0].dtype)
        d = self.info.direction
        norm = _flat_norm_sq(ev.gradients)
        ok = norm > self.eps
        safe = norm.clamp_min(self.eps)
        shares = tuple(g * g / _bcast(safe, g) * _bcast(ok, g) for g in ev.gradients)
        first, last = _runs(p)
        inner = (~first).nonzero().squeeze(1)
        if inner.numel():
            self._add(shares, inner - 1, p[inner - 1], d * (f[inner] - f[inner - 1]), ok[inner - 1])
        heads = first.nonzero().squeeze(1)
        slots = self.slot_of[p[heads]]
        has = slots >= 0
        if bool((self.seen[p[heads]] & ~has).any()):
            raise ValueError(
                "IDGI: a path resumed after skipping an update call; the rows of a path must arrive in "
                "consecutive update calls (a path may end early, but not pause)"
            )
        if bool(has.any()):
            rows, slots = heads[has], slots[has]
            df = d * (f[rows] - self.pending_out[slots])
            self._add(self.pending_share, slots, p[rows], df, self.pending_ok[slots])
        self.slot_of[self.pending_paths] = -1  # pending rows of paths absent from this chunk are final
        tails = last.nonzero().squeeze(1)
        self.pending_share = tuple(c[tails] for c in shares)
        self.pending_out = f[tails]
        self.pending_ok = ok[tails]
        self.pending_paths = p[tails]
        self.slot_of[self.pending_paths] = torch.arange(tails.numel(), device=p.device)
        self.seen[p] = True

    def result(self) -> tuple[Tensor, ...]:
        return tuple(self.sums)


class IDGIIntegrator(Integrator):
    """Important Direction Gradient Integration (Yang, Wang & Bilgic, CVPR 2023, arXiv 2303.14242).

    ``A = sum_j g_j^2 / sum_i g_{j,i}^2 * (f_{j+1} - f_j)`` over consecutive path points, so the attributions
    sum exactly to ``f(x) - f(x')``. Steps whose squared gradient norm is ``<= eps`` contribute nothing; their
    output change is reported in ``extras["skipped_output_change"]`` (the reference divides by zero).
    On a straight line the nodes are ``linspace(0, 1, n_steps)`` (both endpoints).
    """

    name = "idgi"
    uses_displacements = False
    needs_path_ends = False

    def __init__(self, eps: float = 1e-30) -> None:
        self.eps = eps

    def nodes(self, method: str, n_steps: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
        if n_steps < 2:
            raise InputValidationError(f"IDGI needs `n_steps` >= 2 (both endpoints), got {n_steps}.", "n_steps")
        alphas = torch.linspace(0, 1, n_steps, dtype=torch.float64).to(dtype=dtype, device=device)
        return alphas, torch.full_like(alphas, 1.0 / (n_steps - 1))

    def accumulator(self, info: PathInfo) -> Accumulator:
        return _IDGIAccumulator(info, self.eps)

    def describe(self) -> dict[str, Any]:
        return {"integrator": self.name, "eps": self.eps}


# ----------------------------------------------------------------------------------------------- Split IG
class _SplitAccumulator(Accumulator):
    def __init__(self, info: PathInfo, ratio: float, part: str) -> None:
        if info.start_outputs is None or info.end_outputs is None:
            raise ValueError("Split IG needs the outputs at both path ends")
        self.info = info
        self.part = part
        self.left = info.zeros()
        self.right = info.zeros()
        # rows arriving from the input end: contributions since the last crossing, per path
        self.since = info.zeros(per_path=True) if info.direction < 0 else None
        dtype = info.like[0].dtype
        self.start = info.start_outputs.to(dtype)
        self.span = info.end_outputs.to(dtype) - self.start
        self.ratio = ratio
        dev = info.like[0].device
        self.crossed = torch.zeros(info.n_paths, dtype=torch.bool, device=dev)
        self.split_step = torch.full((info.n_paths,), -1, dtype=torch.long, device=dev)
        self.extras = {}

    def update(self, ev: Evaluation) -> None:
        if ev.displacements is None:
            raise ValueError("Split IG needs displacements")
        p = ev.path_index
        span = self.span[p]
        nonzero = span != 0
        progress = (ev.outputs.to(span) - self.start[p]) / torch.where(nonzero, span, torch.ones_like(span))
        crossing = (progress > self.ratio) & nonzero
        first, _ = _runs(p)
        c = crossing.long()
        csum = torch.cumsum(c, 0)
        positions = torch.arange(p.numel(), device=p.device)
        run_start = torch.cummax(torch.where(first, positions, torch.zeros_like(positions)), 0).values
        seen = csum - (csum[run_start] - c[run_start])  # crossings in the run up to and including the row
        contrib = [g * d for g, d in zip(ev.gradients, ev.displacements)]
        slot = self.info.output_index[p]
        scale = self.info.scale
        if self.since is None:
            to_left = (~self.crossed[p]) & (seen == 0)
            for lf, rt, t in zip(self.left, self.right, contrib):
                segment_add(lf, slot[to_left], t[to_left], scale)
                segment_add(rt, slot[~to_left], t[~to_left], scale)
            hit = crossing & (~self.crossed[p]) & (seen == 1)
            self.split_step[p[hit]] = ev.step_index[hit]
            self.crossed[p[crossing]] = True
            return
        # arriving from the input end: "right" = at or after (towards the baseline) the last crossing
        run_total = torch.zeros(self.info.n_paths, dtype=torch.long, device=p.device)
        run_total.index_add_(0, p, c)
        later = run_total[p] - seen + c
        to_right = later > 0
        moved = (run_total > 0).nonzero().squeeze(1)
        for rt, sn, t in zip(self.right, self.since, contrib):
            rt.index_add_(0, self.info.output_index[moved], sn[moved], alpha=scale)
            sn[moved] = 0
            rt.index_add_(0, slot[to_right], t[to_right], alpha=scale)
            sn.index_add_(0, p[~to_right], t[~to_right])
        last_hit = crossing & (later == 1)
        self.split_step[p[last_hit]] = ev.step_index[last_hit]

    def result(self) -> tuple[Tensor, ...]:
        if self.since is not None:
            for lf, sn in zip(self.left, self.since):
                lf.index_add_(0, self.info.output_index, sn, alpha=self.info.scale)
                sn.zero_()
        self.extras = {"left": tuple(self.left), "right": tuple(self.right), "split_step": self.split_step}
        if self.part == "left":
            return tuple(self.left)
        if self.part == "right":
            return tuple(self.right)
        return tuple(a + b for a, b in zip(self.left, self.right))


class SplitIntegrator(Integrator):
    """Left / Split IG (Miglani et al., "Investigating Saturation Effects in Integrated Gradients", 2020).

    The Riemann sum is split at ``t*``, the first point (from the baseline) whose output has covered more than
    ``ratio`` of ``f(x) - f(x')``: Left-IG sums the points before ``t*``, Right-IG the rest, and
    ``Left + Right`` equals the plain Riemann sum. ``part`` picks what is returned as attributions
    (``"left"``, ``"right"`` or ``"both"`` = their sum); both parts and the step index of ``t*`` per path
    (``split_step``, -1 if never crossed) are in the extras. If ``f(x) == f(x')`` everything is "left".
    """

    name = "split"

    def __init__(self, ratio: float = 0.9, part: str = "left") -> None:
        if not 0.0 <= float(ratio) <= 1.0:
            raise InputValidationError(f"`ratio` must be in [0, 1], got {ratio}.", "ratio")
        if part not in ("left", "right", "both"):
            raise InputValidationError(f"`part` must be 'left', 'right' or 'both', got {part!r}.", "part")
        self.ratio = float(ratio)
        self.part = part

    def accumulator(self, info: PathInfo) -> Accumulator:
        return _SplitAccumulator(info, self.ratio, self.part)

    def describe(self) -> dict[str, Any]:
        return {"integrator": self.name, "ratio": self.ratio, "part": self.part}


# ----------------------------------------------------------------------------------------------- segment rules
SEGMENT_RULES = ("left", "trapezoid", "gausslegendre")
#: the most quadrature nodes per segment of a discrete path (each costs one gradient row per segment and path)
MAX_SUBSTEPS = 1024
#: the adaptive rule's relative tolerance is at least this many machine epsilons of the model's output dtype
#: (float32: 1.2e-7, float64: 2.2e-16): a smaller relative error is below what the dtype resolves
ADAPTIVE_MIN_ULPS = 1.0


def segment_nodes(rule: str, substeps: int) -> tuple[list[float], list[float]]:
    """Nodes ``t`` in [0, 1] (0 = the segment's end where the walk's step gradient is evaluated, ``gamma_j``;
    1 = the next point ``gamma_{j+1}``) and weights of the quadrature applied to every segment of a discrete path.

    ``left`` with ``m`` substeps: ``t = 0, 1/m, ..., (m-1)/m`` (``m = 1`` is the plain left Riemann sum of the
    walk); ``trapezoid``: ``t = 0, 1/m, ..., 1`` with halved end weights (both ends are free: the walk evaluates
    them anyway); ``gausslegendre``: ``m`` Gauss-Legendre nodes. ``substeps`` is at most :data:`MAX_SUBSTEPS`.
    """
    if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
        raise InputValidationError(f"`substeps` must be a positive int, got {substeps!r}.", "substeps")
    if substeps > MAX_SUBSTEPS:
        raise InputValidationError(
            f"`substeps` must be at most {MAX_SUBSTEPS}, got {substeps}: every substep costs one gradient row per "
            "path segment (use `adaptive=tol` to refine only the segments that need it).",
            "substeps",
        )
    m = substeps
    if rule == "left":
        return [k / m for k in range(m)], [1.0 / m] * m
    if rule == "trapezoid":
        w = [1.0 / m] * (m + 1)
        w[0] = w[-1] = 0.5 / m
        return [k / m for k in range(m + 1)], w
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(m)
        return [float(0.5 * (1 + t)) for t in nodes], [float(0.5 * w) for w in weights]
    raise InputValidationError(f"`segment_rule` must be one of {SEGMENT_RULES}, got {rule!r}.", "segment_rule")


@dataclass(frozen=True)
class SegmentRule:
    """How the Riemann integrator integrates each straight segment ``gamma_j -> gamma_{j+1}`` of a sequential
    path (the completeness remedies of IG2, Zhuo & Ge, TPAMI 2024; docs/ig2.md).

    Attributes:
        rule: ``"left"`` (the plain left Riemann sum for ``substeps=1``), ``"trapezoid"`` or ``"gausslegendre"``
            (see :func:`segment_nodes`); the extra nodes inside a segment are evaluated as extra gradient rows,
            the path itself does not change.
        substeps: nodes per segment, ``1 <= substeps <= MAX_SUBSTEPS``.
        adaptive: None, or a relative tolerance: every segment is integrated with the trapezoid rule and
            bisected, up to ``depth`` times, wherever its completeness error ``|df - 1/2 (g_a + g_b) . (b - a)|``
            exceeds ``max(adaptive, ADAPTIVE_MIN_ULPS * eps) * |f(x)| / n_steps`` (``eps`` of the model's dtype)
            and is smaller than the error of the piece it was cut from (a bisection that did not reduce the error
            met rounding noise or cancellation: refining further only doubles the cost).
        depth: maximum bisection depth per segment.
    """

    rule: str = "left"
    substeps: int = 1
    adaptive: float | None = None
    depth: int = 6

    def __post_init__(self) -> None:
        segment_nodes(self.rule, self.substeps)  # validates rule and substeps
        if self.adaptive is not None:
            a = self.adaptive
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0 or a == float("inf"):
                raise InputValidationError(f"`adaptive` must be a positive number or None, got {a!r}.", "adaptive")
            d = self.depth
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise InputValidationError(f"`adaptive_depth` must be an int >= 0, got {d!r}.", "adaptive_depth")
            if self.substeps != 1:
                raise InputValidationError("`adaptive` refines single segments; use it with substeps=1.", "substeps")

    @property
    def plain(self) -> bool:
        """True for the plain left Riemann sum (one gradient per step, nothing else)."""
        return self.rule == "left" and self.substeps == 1 and self.adaptive is None

    def nodes(self) -> tuple[list[float], list[float]]:
        """Nodes and weights on [0, 1] of every segment (:func:`segment_nodes`)."""
        return segment_nodes(self.rule, self.substeps)

    def check(self, integrator: Integrator) -> None:
        """Segment rules other than the plain one need the Riemann integrator."""
        if not self.plain and type(integrator) is not RiemannIntegrator:
            raise InputValidationError(
                f"`substeps`/`segment_rule`/`adaptive` other than 1/'left'/None need the Riemann integrator, not "
                f"{integrator.name!r} (IDGI is complete by construction).",
                "substeps",
            )

    def describe(self) -> dict[str, Any]:
        return {"segment_rule": "trapezoid" if self.adaptive is not None else self.rule, "substeps": self.substeps,
                "adaptive": self.adaptive, "adaptive_depth": self.depth if self.adaptive is not None else None}


INTEGRATORS: dict[str, Any] = {
    "riemann": RiemannIntegrator,
    "idgi": IDGIIntegrator,
    "left_ig": lambda: SplitIntegrator(part="left"),
    "split_ig": lambda: SplitIntegrator(part="both"),
}


def get_integrator(integrator: str | Integrator | None) -> Integrator:
    """Look up an integrator by name (``riemann``, ``idgi``, ``left_ig``, ``split_ig``) or pass one through."""
    if integrator is None:
        return RiemannIntegrator()
    if isinstance(integrator, Integrator):
        return integrator
    if isinstance(integrator, str) and integrator in INTEGRATORS:
        return INTEGRATORS[integrator]()
    raise InputValidationError(
        f"`integrator` must be one of {sorted(INTEGRATORS)} or an Integrator, got {integrator!r}.", "integrator"
    )


__all__ = [
    "QUADRATURE_RULES",
    "Accumulator",
    "Evaluation",
    "IDGIIntegrator",
    "Integrator",
    "MAX_SUBSTEPS",
    "PathInfo",
    "RiemannIntegrator",
    "SEGMENT_RULES",
    "SegmentRule",
    "SplitIntegrator",
    "get_integrator",
    "quadrature",
    "segment_nodes",
]
