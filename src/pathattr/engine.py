"""The batching engine: one planner for every method.

Work is a list of *rows* (examples x baselines x steps, or examples x references at one step of a sequential
path). :mod:`pathattr.planner` splits rows into chunks of at most ``internal_batch_size``; results are
accumulated as running sums, so memory is bounded by the chunk size and results do not depend on it.

How to build a new method on the engine: docs/engine.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .forward import ModelFunction
from .integrators import (
    ADAPTIVE_MIN_ULPS,
    Evaluation,
    Integrator,
    PathInfo,
    RiemannIntegrator,
    SegmentRule,
)
from .paths.base import ParametricPath, SequentialPath, StepEvaluation
from .planner import (  # noqa: F401 - re-exported: the engine's public planning API
    AUTO_ELEMENT_BUDGET,
    AUTO_SAMPLES,
    AUTO_SETTLE_TOLERANCE,
    AUTO_START_ELEMENTS,
    AUTO_TOLERANCE,
    chunk_ranges,
    plan_chunks,
    plan_is_one_chunk,
    planner_key,
    resolve_chunk_size,
    row_numel,
)


def outputs_in_chunks(
    model: ModelFunction, points: Sequence[Tensor], example_index: Tensor, internal_batch_size: int | None
) -> Tensor:
    """Target outputs ``[n]`` of ``n`` rows, evaluated without gradients in chunks."""
    n = points[0].shape[0]
    plan = plan_chunks(internal_batch_size, n, row_numel(points), planner_key(model, points, "outputs"))
    return torch.cat([model.outputs(tuple(t[a:b] for t in points), example_index[a:b]) for a, b in plan])


def gradients_in_chunks(
    model: ModelFunction, points: Sequence[Tensor], example_index: Tensor, internal_batch_size: int | None
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Gradients (per input ``[n, *S]``) and target outputs ``[n]`` of ``n`` rows, in chunks."""
    n = points[0].shape[0]
    grads: list[list[Tensor]] = [[] for _ in points]
    outs = []
    for a, b in plan_chunks(internal_batch_size, n, row_numel(points), planner_key(model, points, "gradients")):
        g, o = model.gradients(tuple(t[a:b] for t in points), example_index[a:b])
        for acc, gi in zip(grads, g):
            acc.append(gi)
        outs.append(o)
    if len(outs) == 1:  # one chunk: no copy
        return tuple(g[0] for g in grads), outs[0]
    return tuple(torch.cat(g) for g in grads), torch.cat(outs)


class ParametricIntegral(NamedTuple):
    """What :func:`integrate_parametric_path` returns.

    Attributes:
        attributions: one ``[B, *S]`` tensor per input, the mean over each example's paths.
        extras: the integrator's extras.
        start_outputs: ``f`` at the baseline end of every path, ``[n_paths]``.
        end_outputs: ``f`` at the input end of every path, ``[n_paths]``.
    """

    attributions: tuple[Tensor, ...]
    extras: dict
    start_outputs: Tensor | None
    end_outputs: Tensor | None


def needs_no_path_ends(integrator: Integrator) -> bool:
    """Whether :func:`integrate_parametric_path` can integrate without ``f`` at the path ends
    (``end_outputs=None``): the plain Riemann sum uses gradients and displacements only; the other integrators
    use the outputs from the first row on."""
    return type(integrator) is RiemannIntegrator


def reads_path_ends(path: ParametricPath, integrator: Integrator) -> bool:
    """Whether :func:`integrate_parametric_path` with ``end_outputs=None`` reads ``f`` at both ends of every path
    from the rows it evaluates: both ends are nodes of the path (:meth:`ParametricPath.end_nodes`) and the
    integrator needs no path ends before the first row."""
    if not needs_no_path_ends(integrator):
        return False
    start, end = path.end_nodes()
    return start is not None and end is not None


def integrate_parametric_path(
    model: ModelFunction,
    path: ParametricPath,
    integrator: Integrator,
    internal_batch_size: int | None,
    inputs: tuple[Tensor, ...],
    end_outputs: Tensor | None,
    start_outputs: Tensor | None = None,
) -> ParametricIntegral:
    """Evaluate every node of every path and integrate; attributions are averaged over each example's paths.

    Rows are ordered path-major (all nodes of path 0, then path 1, ...) and cut into chunks of at most
    ``internal_batch_size`` rows, so chunks may split examples, baselines and steps alike.

    Args:
        model: the bound forward function.
        path: the paths to integrate along (``n_paths = B * k``, path ``p`` explains example ``p // k``).
        integrator: how gradients become attributions.
        internal_batch_size: rows per forward call (None: automatic).
        inputs: the explained inputs ``[B, *S]`` (shape, dtype and device of the attributions).
        end_outputs: ``f`` at the input end of every path, ``[n_paths]``; None (only where
            :func:`needs_no_path_ends`, with ``start_outputs`` None too) reads ``f`` at both ends from the path's
            own rows where :func:`reads_path_ends`, and otherwise integrates without them.
        start_outputs: ``f`` at the baseline end of every path, ``[n_paths]``, if already known (evaluated here
            otherwise).

    Returns:
        a :class:`ParametricIntegral`: attributions, the integrator's extras and ``f`` at both ends of every path
        (None for both when ``end_outputs=None`` and the ends are not nodes).
    """
    n_paths, n_nodes = path.n_paths, path.n_nodes
    batch = inputs[0].shape[0]
    device = inputs[0].device
    all_paths = torch.arange(n_paths, device=device)
    example = path.example_index(all_paths)
    numel = row_numel(inputs)
    ends: tuple[int, int] | None = None
    start_parts: list[Tensor] = []
    end_parts: list[Tensor] = []
    if end_outputs is None:
        if start_outputs is not None or not needs_no_path_ends(integrator):
            raise ValueError("end_outputs=None needs the plain Riemann integrator and start_outputs=None")
        if reads_path_ends(path, integrator):
            ends = path.end_nodes()  # type: ignore[assignment]
    elif start_outputs is None:
        start_outputs = torch.cat([
            model.outputs(path.start_points(all_paths[a:b]), example[a:b])
            for a, b in plan_chunks(internal_batch_size, n_paths, numel, planner_key(model, inputs, "outputs"))
        ])
    info = PathInfo(
        n_paths=n_paths,
        output_index=example,
        n_outputs=batch,
        like=inputs,
        start_outputs=start_outputs,
        end_outputs=end_outputs,
        direction=path.direction,
        scale=batch / n_paths,
    )
    acc = integrator.accumulator(info)
    # output-only closing rows carry zero gradient and displacement: a plain Riemann sum gains nothing from them
    plain_riemann = type(integrator) is RiemannIntegrator
    closing = bool(getattr(path, "closing_node", False)) and not plain_riemann
    per_path = n_nodes + int(closing)
    ranged = plain_riemann and bool(getattr(path, "takes_row_range", False))  # rows are start:stop, path-major
    plan = plan_chunks(internal_batch_size, n_paths * per_path, numel, planner_key(model, inputs, "gradients"))
    for a, b in plan:
        flat = torch.arange(a, b, device=device)
        p, j = flat // per_path, flat % per_path
        if closing and bool((j == n_nodes).any()):
            far = start_outputs if path.direction < 0 else end_outputs
            acc.update(_with_closing_rows(model, path, integrator, inputs, p, j, far))
            continue
        points = path.points(p, j, rows=(a, b)) if ranged else path.points(p, j)  # type: ignore[call-arg]
        grads, outs = model.gradients(points, path.example_index(p))
        if ends is not None:  # the rows at the two end nodes, one per path, in path order
            start_parts.append(_rows_at_node(outs, a, b, ends[0], per_path))
            end_parts.append(_rows_at_node(outs, a, b, ends[1], per_path))
        if plain_riemann:
            summed = (path.summed_products(p, j, grads, rows=(a, b)) if ranged  # type: ignore[call-arg]
                      else path.summed_products(p, j, grads))
            if summed is not None:
                acc.add_summed(*summed)
                continue
        disp = path.displacements(p, j, points) if integrator.uses_displacements else None
        acc.update(Evaluation(p, j, grads, outs, disp))
    if ends is not None:
        start_outputs, end_outputs = torch.cat(start_parts), torch.cat(end_parts)
    return ParametricIntegral(acc.result(), acc.extras, start_outputs, end_outputs)  # type: ignore[arg-type]


def _rows_at_node(outputs: Tensor, a: int, b: int, node: int, per_path: int) -> Tensor:
    """The entries of ``outputs`` (the rows ``a:b`` of a path-major layout of ``per_path`` rows per path) at step
    ``node``: a strided view, one per path whose row at that node lies in ``a:b``."""
    first = a + (node - a) % per_path  # the first row at or after ``a`` with ``row % per_path == node``
    return outputs[first - a :: per_path] if first < b else outputs[:0]


def _with_closing_rows(
    model: ModelFunction,
    path: ParametricPath,
    integrator: Integrator,
    inputs: tuple[Tensor, ...],
    p: Tensor,
    j: Tensor,
    far_outputs: Tensor,
) -> Evaluation:
    """An evaluation chunk in which rows with ``j == n_nodes`` are output-only closing rows (no model call)."""
    real = (j < path.n_nodes).nonzero().squeeze(1)
    n = p.shape[0]
    grads = [torch.zeros((n, *x.shape[1:]), dtype=x.dtype, device=x.device) for x in inputs]
    disp = [g.clone() for g in grads] if integrator.uses_displacements else None
    outs = far_outputs[p].clone()
    if real.numel():
        pr, jr = p[real], j[real]
        points = path.points(pr, jr)
        g, o = model.gradients(points, path.example_index(pr))
        outs[real] = o.to(outs.dtype)
        for full, part in zip(grads, g):
            full[real] = part.to(full.dtype)
        if disp is not None:
            for full, part in zip(disp, path.displacements(pr, jr, points)):
                full[real] = part.to(full.dtype)
    return Evaluation(p, j, tuple(grads), outs, tuple(disp) if disp is not None else None)


def mean_over_paths(per_path: Sequence[Tensor], batch_size: int) -> tuple[Tensor, ...]:
    """Average per-path tensors ``[B * K, ...]`` over the ``K`` paths of each example."""
    return tuple(t.reshape(batch_size, -1, *t.shape[1:]).mean(1) for t in per_path)


# ----------------------------------------------------------------------------------------------- sequential paths
@dataclass
class SequentialResult:
    """What :func:`integrate_sequential_path` returns.

    Attributes:
        attributions: per input ``[B, *S]``, the mean over each example's paths (None for a bare walk).
        per_path: Riemann integrator only: per input ``[n_paths, *S]``, each path's sum before the mean.
        extras: the integrator's extras (with an adaptive segment rule also ``refined_pieces`` ``[n_paths]``, the
            bisections, and ``stalled_pieces``, pieces accepted above the tolerance because cutting them did not
            reduce their error).
        start_outputs: ``[n_paths]`` ``f`` at the baseline end of every path (``f(x)`` for inactive paths).
        end: the evaluation at the last point of the active paths (rows in path order), if one was made.
        end_rows: ``[n]`` the path index of each row of ``end``.
    """

    attributions: tuple[Tensor, ...] | None
    per_path: tuple[Tensor, ...] | None
    extras: dict[str, Any]
    start_outputs: Tensor
    end: StepEvaluation | None = None
    end_rows: Tensor | None = None


def integrate_sequential_path(
    model: ModelFunction,
    path: SequentialPath,
    integrator: Integrator | None,
    internal_batch_size: int | None,
    inputs: tuple[Tensor, ...],
    end_outputs: Tensor,
    segments: SegmentRule | None = None,
    end_gradient: bool = False,
    evaluate_end: bool = False,
) -> SequentialResult:
    """Walk a :class:`~pathattr.paths.base.SequentialPath` step by step and integrate the target gradient along it.

    Every step evaluates the current points of the active paths (examples x baselines together, in chunks of at
    most ``internal_batch_size`` rows; the path's own ``evaluate`` or the target gradient), then lets the path
    ``advance``. The Riemann integrator sums ``g_j * d_j`` per path (in the path's dtype, float64 for half types;
    NumPy on CPU), with ``segments`` adding nodes inside each segment ``gamma_j -> gamma_{j+1}`` (extra gradient
    rows, chunked the same way) or adaptive bisection; any other integrator receives one
    :class:`~pathattr.integrators.Evaluation` per step (float64) and an output-only closing row at the far end.
    A path walking from the input end (``direction = -1``) knows its baseline-end output only at the end: the
    last point is evaluated then, and integrators that need both path ends first get the recorded steps replayed
    (memory ``n_steps x n_paths x d``; IDGI and Riemann stream).

    Args:
        model: the bound forward function.
        path: the paths (``n_paths = B * k``, path ``p`` explains example ``path.example_index(p)``).
        integrator: how gradients become attributions; None walks only (no target gradient; ``end`` reports
            the last points).
        internal_batch_size: rows per forward call (None: automatic).
        inputs: the explained inputs ``[B, *S]`` (shapes of the attributions).
        end_outputs: ``f`` at the input end of every path, ``[n_paths]``.
        segments: segment rule of the Riemann integrator (default: plain left Riemann sum).
        end_gradient: also evaluate the target gradient at the last points (``end.gradients``).
        evaluate_end: evaluate the last points even when integration does not need them.

    Returns:
        a :class:`SequentialResult`.
    """
    segments = segments or SegmentRule()
    if integrator is not None:
        segments.check(integrator)
    n_paths, batch, direction = path.n_paths, inputs[0].shape[0], path.direction
    k = n_paths // batch
    device = end_outputs.device
    active = path.active
    rows = None if active is None or bool(active.all()) else active.nonzero().squeeze(1)
    row_ids = torch.arange(n_paths, device=device) if rows is None else rows
    start_outputs = end_outputs.clone()  # f(baseline) = f(x) where a path does not move
    riemann = type(integrator) is RiemannIntegrator
    acc_dtype = path.dtype if riemann and path.dtype in (torch.float32, torch.float64) else torch.float64
    if row_ids.numel() == 0:
        per_path = tuple(torch.zeros((n_paths, *t.shape[1:]), dtype=acc_dtype, device=t.device) for t in inputs)
        attr = None if integrator is None else _mean_paths(per_path, batch, k)
        return SequentialResult(attr, per_path if riemann else None, {}, start_outputs)
    key = planner_key(model, inputs, f"sequential:{type(path).__name__}")
    walk = _Walk(model, path, internal_batch_size, path.example_index(row_ids), inputs, row_ids, acc_dtype)
    sums = _RiemannSums(walk, segments, end_outputs, direction) if riemann else None
    stream = _Streamed(integrator, walk, path, inputs, end_outputs, batch, k) if integrator and not riemann else None
    with path.walking():
        for j in range(path.n_steps):
            points = path.points(rows)
            ev = walk.evaluate(points, integrator is not None, False, key)
            disp = path.advance(ev, rows)
            if direction > 0 and j == 0 and ev.outputs is not None:
                start_outputs[row_ids] = ev.outputs.to(start_outputs.dtype)
            if sums is not None:
                sums.step(points, ev, disp, lambda: path.points(rows))
            elif stream is not None:
                stream.step(j, ev, disp, start_outputs)
        end_gradient = end_gradient or (sums is not None and sums.needs_end_gradient)
        end = None
        if direction < 0 or end_gradient or evaluate_end or integrator is None:
            end = walk.evaluate(path.points(rows), end_gradient, True, key + ("end",))
            if direction < 0:
                start_outputs[row_ids] = end.outputs.to(start_outputs.dtype)  # type: ignore[union-attr]
    if sums is not None:
        per_path, extras = sums.finish(path.points(rows), end, n_paths)
        return SequentialResult(_mean_paths(per_path, batch, k), per_path, extras, start_outputs, end, row_ids)
    if stream is not None:
        far = start_outputs if direction < 0 else end_outputs
        attr, extras = stream.finish(start_outputs, far)
        return SequentialResult(attr, None, extras, start_outputs, end, row_ids)
    return SequentialResult(None, None, {}, start_outputs, end, row_ids)


def walk_sequential_path(
    model: ModelFunction, path: SequentialPath, internal_batch_size: int | None, inputs: tuple[Tensor, ...],
    end_outputs: Tensor,
) -> SequentialResult:
    """Walk ``path`` without integrating (no target gradient); ``end`` evaluates the last points."""
    return integrate_sequential_path(model, path, None, internal_batch_size, inputs, end_outputs)


_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def _add_products(acc: Sequence[Tensor], grads: Sequence[Tensor], disps: Sequence[Tensor],
                  scratch: Sequence[Tensor] | None = None) -> None:
    """``acc += g * d`` per input in ``acc``'s dtype (multiply, then add: the same rounding on every device).

    On CPU the product and the sum run in NumPy on views of the same memory (no thread barrier per call); the
    product goes to ``scratch`` (tensors like ``acc``) when given, so that a walk allocates no memory per step.
    """
    for i, (a, g, d) in enumerate(zip(acc, grads, disps)):
        if a.device.type == "cpu" and g.device.type == "cpu" and d.device.type == "cpu" and g.dtype in _NUMPY_FLOATS \
                and d.dtype in _NUMPY_FLOATS and not g.requires_grad and not d.requires_grad:
            an = a.numpy()
            out = None if scratch is None else scratch[i].numpy()
            an += np.multiply(g.numpy(), d.numpy(), dtype=an.dtype, out=out)
        else:
            a.add_(g.to(a.dtype) * d.to(a.dtype))


def _scaled(disp: Sequence[Tensor], w: float) -> tuple[Tensor, ...]:
    return tuple(d * w for d in disp)


def _mean_paths(per_path: Sequence[Tensor], batch: int, k: int) -> tuple[Tensor, ...]:
    if k == 1:
        return tuple(per_path)
    return tuple(t.view(batch, k, *t.shape[1:]).mean(1) for t in per_path)


def _concat(parts: list[StepEvaluation]) -> StepEvaluation:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    grads = None if first.gradients is None else tuple(
        torch.cat([p.gradients[i] for p in parts]) for i in range(len(first.gradients))  # type: ignore[index]
    )
    outs = None if first.outputs is None else torch.cat([p.outputs for p in parts])
    extras = {name: torch.cat([p.extras[name] for p in parts]) for name in first.extras}
    return StepEvaluation(grads, outs, extras)  # type: ignore[arg-type]


class _RiemannSums:
    """Per-path Riemann sums along the segments of a sequential path: the plain left sum, a segment rule's nodes
    (the node at the segment's end waits, as ``pending``, for the next step's gradient) or adaptive bisection."""

    def __init__(self, walk: _Walk, segments: SegmentRule, end_outputs: Tensor, direction: int) -> None:
        self.walk, self.depth, self.direction = walk, segments.depth, direction
        self.acc = [z.clone() for z in walk.zeros]
        self.scratch = [torch.empty_like(z) for z in walk.zeros]  # the products of a step (no memory per step)
        self.adaptive = segments.adaptive is not None
        self.w0 = self.w1 = 0.0
        self.inner: list[tuple[float, float]] = []
        if not self.adaptive:
            t_nodes, w_nodes = segments.nodes()
            self.w0 = sum(w for t, w in zip(t_nodes, w_nodes) if t == 0.0)
            self.w1 = sum(w for t, w in zip(t_nodes, w_nodes) if t == 1.0)
            self.inner = [(t, w) for t, w in zip(t_nodes, w_nodes) if 0.0 < t < 1.0]
        else:
            finfo = torch.finfo(end_outputs.dtype)
            scale = end_outputs.abs().to(torch.float64).clamp_min(finfo.tiny)
            relative = max(float(segments.adaptive), ADAPTIVE_MIN_ULPS * finfo.eps)  # type: ignore[arg-type]
            self.tol = (relative / walk.path.n_steps) * scale[walk.row_ids]
            self.refined = torch.zeros(walk.row_ids.numel(), dtype=torch.long, device=end_outputs.device)
            self.stalled = torch.zeros_like(self.refined)
        self.pending: tuple[Tensor, ...] | None = None  # w1 * path element of the previous segment
        self.previous: tuple | None = None  # adaptive: (points, gradients, outputs) at the open segment's start

    @property
    def needs_end_gradient(self) -> bool:
        return self.pending is not None or self.previous is not None

    def step(self, points: tuple[Tensor, ...], ev: StepEvaluation, disp: tuple[Tensor, ...],
             next_points: Callable[[], tuple[Tensor, ...]]) -> None:
        grads = ev.gradients
        assert grads is not None
        if self.adaptive:
            if self.previous is not None:
                self.walk.adaptive_segment(self.acc, self.refined, self.stalled, *self.previous, points, grads,
                                           ev.outputs, self.tol, self.depth, self.direction)
            self.previous = (points, grads, ev.outputs)
            return
        if self.pending is not None:
            _add_products(self.acc, grads, self.pending, self.scratch)
        if self.w0:
            _add_products(self.acc, grads, disp if self.w0 == 1.0 else _scaled(disp, self.w0), self.scratch)
        if self.inner:
            self.walk.inner_nodes(self.acc, points, next_points(), disp, self.inner)
        self.pending = _scaled(disp, self.w1) if self.w1 else None

    def finish(self, end_points: tuple[Tensor, ...], end: StepEvaluation | None,
               n_paths: int) -> tuple[tuple[Tensor, ...], dict[str, Any]]:
        """Close the last segment with the gradient at the end; per-path sums ``[n_paths, *S]`` and extras."""
        extras: dict[str, Any] = {}
        rows = self.walk.row_ids
        if self.pending is not None:
            _add_products(self.acc, end.gradients, self.pending)  # type: ignore[union-attr,arg-type]
        if self.previous is not None:
            self.walk.adaptive_segment(self.acc, self.refined, self.stalled, *self.previous, end_points,
                                       end.gradients, end.outputs, self.tol, self.depth,  # type: ignore[union-attr]
                                       self.direction)
            for name, count in (("refined_pieces", self.refined), ("stalled_pieces", self.stalled)):
                extras[name] = torch.zeros(n_paths, dtype=torch.long, device=count.device).index_copy_(0, rows, count)
        if rows.numel() == n_paths:
            return tuple(self.acc), extras
        return tuple(torch.zeros((n_paths, *a.shape[1:]), dtype=a.dtype, device=a.device).index_copy_(0, rows, a)
                     for a in self.acc), extras


class _Streamed:
    """Any other integrator: one :class:`Evaluation` per step (float64), streamed when the accumulator can start
    (it needs both path ends, or the path starts at the baseline end), else kept and replayed at the end."""

    def __init__(self, integrator: Integrator, walk: _Walk, path: SequentialPath, inputs: tuple[Tensor, ...],
                 end_outputs: Tensor, batch: int, k: int) -> None:
        self.integrator, self.walk, self.direction, self.n_steps = integrator, walk, path.direction, path.n_steps
        dtype = walk.zeros[0].dtype
        like = tuple(torch.zeros((1, *t.shape[1:]), dtype=dtype, device=t.device).expand_as(t) for t in inputs)
        every = torch.arange(path.n_paths, device=end_outputs.device)
        self.info = dict(n_paths=path.n_paths, output_index=path.example_index(every), n_outputs=batch, like=like,
                         end_outputs=end_outputs, direction=path.direction, scale=1.0 / k)
        self.acc = None
        if path.direction < 0 and not integrator.needs_path_ends:
            self.acc = integrator.accumulator(PathInfo(**self.info))  # type: ignore[arg-type]
        self.kept: list[Evaluation] = []

    def step(self, j: int, ev: StepEvaluation, disp: tuple[Tensor, ...], start_outputs: Tensor) -> None:
        rows, dtype = self.walk.row_ids, self.walk.zeros[0].dtype
        grads = ev.gradients
        assert grads is not None
        row_ev = Evaluation(rows, torch.full_like(rows, j), tuple(g.to(dtype) for g in grads), ev.outputs,
                            tuple(d.to(dtype) for d in disp))
        if self.direction > 0 and j == 0:  # f at the baseline end is the first step's output
            self.acc = self.integrator.accumulator(PathInfo(**self.info, start_outputs=start_outputs))  # type: ignore
        if self.acc is not None:
            self.acc.update(row_ev)
        else:
            self.kept.append(row_ev)

    def finish(self, start_outputs: Tensor, far_outputs: Tensor) -> tuple[tuple[Tensor, ...], dict[str, Any]]:
        """Replay what was kept, add the output-only closing row at the far end and return the attributions."""
        if self.acc is None:
            self.acc = self.integrator.accumulator(PathInfo(**self.info, start_outputs=start_outputs))  # type: ignore
            for row_ev in self.kept:
                self.acc.update(row_ev)
            self.kept.clear()
        rows, zeros = self.walk.row_ids, self.walk.zeros
        self.acc.update(Evaluation(rows, torch.full_like(rows, self.n_steps), zeros, far_outputs[rows], zeros))
        return self.acc.result(), dict(self.acc.extras)


class _Walk:
    """Evaluations of one sequential integration: the chunked step evaluations and the Riemann extras."""

    def __init__(self, model: ModelFunction, path: SequentialPath, internal_batch_size: int | None, example: Tensor,
                 inputs: tuple[Tensor, ...], row_ids: Tensor, acc_dtype: torch.dtype) -> None:
        self.model, self.path, self.ibs, self.example = model, path, internal_batch_size, example
        self.numel = row_numel(inputs)
        self.row_ids = row_ids
        self._single: dict[tuple, bool] = {}  # per planner key: all rows fit one call that the plan does not time
        #: zero rows (one per active path) in the accumulation dtype, per input
        self.zeros = tuple(torch.zeros((row_ids.numel(), *t.shape[1:]), dtype=acc_dtype, device=t.device)
                           for t in inputs)

    def evaluate(self, points: tuple[Tensor, ...], gradient: bool, final: bool, key: tuple) -> StepEvaluation:
        """Evaluate the active rows in chunks (the path's ``evaluate``, else the target gradient / output)."""
        row_ids = self.row_ids
        n = row_ids.numel()
        parts = []
        cap = self.path.max_walk_rows
        ibs = self.ibs if cap is None else (cap if self.ibs is None else min(self.ibs, cap))
        single = self._single.get(key)
        if single is None:  # the row count is fixed for the walk: decided once per kind of evaluation
            single = self._single[key] = n == 1 or plan_is_one_chunk(ibs, n, self.numel, key)
        if single:  # one chunk: no planning, no slices
            return self._chunk(row_ids, points, self.example, gradient, final)
        for a, b in plan_chunks(ibs, n, self.numel, key):
            parts.append(self._chunk(row_ids[a:b], tuple(t[a:b] for t in points), self.example[a:b], gradient, final))
        return _concat(parts)

    def _chunk(self, rows: Tensor, points: tuple[Tensor, ...], example: Tensor, gradient: bool,
               final: bool) -> StepEvaluation:
        ev = self.path.evaluate(self.model, rows, points, example, gradient, final)
        if ev is not None:
            return ev
        if gradient or not final:
            g, o = self.model.gradients(points, example)
            return StepEvaluation(g, o)
        return StepEvaluation(None, self.model.outputs(points, example))

    def inner_nodes(self, acc: list[Tensor], a_pts: tuple[Tensor, ...], b_pts: tuple[Tensor, ...],
                    disp: tuple[Tensor, ...], inner: list[tuple[float, float]]) -> None:
        """``acc += w_i grad f(lerp(a, b, t_i)) * d`` for the nodes inside every segment, chunked over
        (node, row) pairs in node-major order; the points of a chunk are built when it is evaluated."""
        n = a_pts[0].shape[0]
        key = planner_key(self.model, a_pts, "gradients")
        for lo_row, hi_row in plan_chunks(self.ibs, len(inner) * n, self.numel, key):
            runs = []
            for i in range(lo_row // n, (hi_row - 1) // n + 1):
                lo, hi = max(lo_row, i * n) - i * n, min(hi_row, (i + 1) * n) - i * n
                runs.append((i, lo, hi))
            parts = [tuple(torch.lerp(x[lo:hi], y[lo:hi], inner[i][0]) for x, y in zip(a_pts, b_pts))
                     for i, lo, hi in runs]
            pts = parts[0] if len(parts) == 1 else tuple(torch.cat(c) for c in zip(*parts))
            ex = torch.cat([self.example[lo:hi] for _, lo, hi in runs])
            grads, _ = self.model.gradients(pts, ex)
            off = 0
            for i, lo, hi in runs:
                w = inner[i][1]
                _add_products([a[lo:hi] for a in acc], [g[off : off + hi - lo] for g in grads],
                              [d[lo:hi] * w for d in disp])
                off += hi - lo

    def adaptive_segment(self, acc: list[Tensor], refined: Tensor, stalled: Tensor, a: tuple[Tensor, ...],
                         ga: tuple[Tensor, ...],
                         fa: Tensor, b: tuple[Tensor, ...], gb: tuple[Tensor, ...], fb: Tensor, tol: Tensor,
                         depth: int, direction: int) -> None:
        """Integrate the segments ``a -> b`` (one per row; ``a`` is where the walk was first) with the trapezoid
        rule, bisecting every piece whose completeness error ``|df - 1/2 (g_a + g_b) . d|`` exceeds its row's
        tolerance, level by level (all pieces of a level are one batch of gradient rows), at most ``depth`` times.
        A piece whose error is not smaller than that of the piece it was cut from is accepted (rounding noise or
        cancellation: bisecting it again would not help); ``stalled`` counts those still above the tolerance.

        The error of an accepted piece is exactly its contribution to the completeness gap, so a path's gap is the
        sum of the errors of its accepted pieces.
        """
        rows = torch.arange(a[0].shape[0], device=a[0].device)
        parent = torch.full(rows.shape, float("inf"), dtype=torch.float64, device=rows.device)
        for level in range(depth + 1):
            disp = tuple(((ai - bi) if direction < 0 else (bi - ai)).to(torch.float64) for ai, bi in zip(a, b))
            trap = tuple((gai.to(torch.float64) + gbi.to(torch.float64)).mul_(d).mul_(0.5)
                         for gai, gbi, d in zip(ga, gb, disp))
            total = trap[0].reshape(trap[0].shape[0], -1).sum(1)
            for t in trap[1:]:
                total = total + t.reshape(t.shape[0], -1).sum(1)
            df = ((fa - fb) if direction < 0 else (fb - fa)).to(torch.float64)
            err = (df - total).abs()
            within = err <= tol[rows]
            no_gain = ~within & (err >= parent)
            ok = within | no_gain | (level == depth)
            stalled.index_add_(0, rows[no_gain], torch.ones_like(rows[no_gain]))
            for acc_i, t in zip(acc, trap):
                acc_i.index_add_(0, rows[ok], t[ok].to(acc_i.dtype))
            bad = (~ok).nonzero().squeeze(1)
            if bad.numel() == 0:
                return
            a, b, ga, gb = (tuple(x[bad] for x in t) for t in (a, b, ga, gb))
            fa, fb, rows = fa[bad], fb[bad], rows[bad]
            parent = err[bad].repeat(2)
            refined.index_add_(0, rows, torch.ones_like(rows))
            mid = tuple(torch.lerp(ai, bi, 0.5) for ai, bi in zip(a, b))
            gm, fm = gradients_in_chunks(self.model, mid, self.example[rows], self.ibs)
            a, b = tuple(torch.cat(p) for p in zip(a, mid)), tuple(torch.cat(p) for p in zip(mid, b))
            ga, gb = tuple(torch.cat(p) for p in zip(ga, gm)), tuple(torch.cat(p) for p in zip(gm, gb))
            fa, fb = torch.cat([fa, fm.to(fa.dtype)]), torch.cat([fm.to(fb.dtype), fb])
            rows = torch.cat([rows, rows])
