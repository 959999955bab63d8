"""The batching engine: one planner for every method.

Work is a list of *rows* (examples x baselines x steps, or examples x references at one step of a sequential
path). :mod:`pathattr.planner` splits rows into chunks of at most ``internal_batch_size``; results are
accumulated as running sums, so memory is bounded by the chunk size and results do not depend on it.

How to build a new method on the engine: docs/engine.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .forward import ModelFunction
from .integrators import Evaluation, Integrator, PathInfo, RiemannIntegrator
from .paths.base import ParametricPath
from .planner import (  # noqa: F401 - re-exported: the engine's public planning API
    AUTO_ELEMENT_BUDGET,
    AUTO_SAMPLES,
    AUTO_START_ELEMENTS,
    AUTO_TOLERANCE,
    chunk_ranges,
    plan_chunks,
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


def integrate_parametric_path(
    model: ModelFunction,
    path: ParametricPath,
    integrator: Integrator,
    internal_batch_size: int | None,
    inputs: tuple[Tensor, ...],
    end_outputs: Tensor,
) -> tuple[tuple[Tensor, ...], dict, Tensor]:
    """Evaluate every node of every path and integrate; attributions are averaged over each example's paths.

    Rows are ordered path-major (all nodes of path 0, then path 1, ...) and cut into chunks of at most
    ``internal_batch_size`` rows, so chunks may split examples, baselines and steps alike.

    Args:
        model: the bound forward function.
        path: the paths to integrate along (``n_paths = B * k``, path ``p`` explains example ``p // k``).
        integrator: how gradients become attributions.
        internal_batch_size: rows per forward call (None: automatic).
        inputs: the explained inputs ``[B, *S]`` (shape, dtype and device of the attributions).
        end_outputs: ``f`` at the input end of every path, ``[n_paths]``.

    Returns:
        attributions (one ``[B, *S]`` tensor per input, mean over each example's paths), the integrator's
        extras, and ``f`` at the baseline end of every path (``[n_paths]``).
    """
    n_paths, n_nodes = path.n_paths, path.n_nodes
    batch = inputs[0].shape[0]
    all_paths = torch.arange(n_paths, device=end_outputs.device)
    example = path.example_index(all_paths)
    numel = row_numel(inputs)
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
    closing = bool(getattr(path, "closing_node", False)) and type(integrator) is not RiemannIntegrator
    per_path = n_nodes + int(closing)
    plan = plan_chunks(internal_batch_size, n_paths * per_path, numel, planner_key(model, inputs, "gradients"))
    for a, b in plan:
        flat = torch.arange(a, b, device=end_outputs.device)
        p, j = flat // per_path, flat % per_path
        if closing and bool((j == n_nodes).any()):
            far = start_outputs if path.direction < 0 else end_outputs
            acc.update(_with_closing_rows(model, path, integrator, inputs, p, j, far))
            continue
        points = path.points(p, j)
        grads, outs = model.gradients(points, path.example_index(p))
        disp = path.displacements(p, j, points) if integrator.uses_displacements else None
        acc.update(Evaluation(p, j, grads, outs, disp))
    result = acc.result()
    return result, acc.extras, start_outputs


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
