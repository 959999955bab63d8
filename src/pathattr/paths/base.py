"""The path protocols of the engine: :class:`ParametricPath` (every point known in advance, integrated by
:func:`pathattr.engine.integrate_parametric_path`) and :class:`SequentialPath` (each point depends on the gradient at
the previous one, integrated by :func:`pathattr.engine.integrate_sequential_path`). How to add one:
docs/contributing_paths.md."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


class ParametricPath(ABC):
    """``n_paths`` paths with ``n_nodes`` evaluation nodes each, all known in advance.

    Rows are addressed by ``(path_index, step_index)``; nodes are ordered from the baseline end to the input
    end when ``direction == +1`` and from the input end when ``direction == -1``.
    """

    direction: int = 1
    #: if True the far end of each path (the baseline end when ``direction == -1``, else the input end) is not
    #: one of the nodes; the engine then appends it as an output-only row (step ``n_nodes``, zero gradient and
    #: displacement, output = ``f`` at that end) so output-based integrators (IDGI, Split IG) see the last segment
    closing_node: bool = False
    #: if True :meth:`points` and :meth:`summed_products` accept a keyword ``rows=(start, stop)``, passed by the
    #: engine when the rows are ``start:stop`` of its path-major layout (``n_nodes`` rows per path: row
    #: ``p * n_nodes + j``), so that runs and nodes can come from integer arithmetic
    takes_row_range: bool = False

    @property
    @abstractmethod
    def n_paths(self) -> int:
        """Number of paths (examples x baselines)."""

    @property
    @abstractmethod
    def n_nodes(self) -> int:
        """Evaluation nodes per path."""

    @abstractmethod
    def example_index(self, path_index: Tensor) -> Tensor:
        """Index of the example each path explains."""

    @abstractmethod
    def points(self, path_index: Tensor, step_index: Tensor) -> tuple[Tensor, ...]:
        """Model inputs at the given rows, one tensor per input."""

    @abstractmethod
    def displacements(
        self, path_index: Tensor, step_index: Tensor, points: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        """Weighted path elements (baseline -> input orientation) that the gradients are integrated against."""

    @abstractmethod
    def start_points(self, path_index: Tensor) -> tuple[Tensor, ...]:
        """Baseline end of the given paths, ``[n, *S]`` per input."""

    def end_nodes(self) -> tuple[int | None, int | None]:
        """Optional: the node (step index) whose points are exactly :meth:`start_points` on every path, and the one
        whose points are exactly the explained inputs, or None for an end that is not a node (the default). When
        both are nodes, the engine can read ``f`` at the path ends from the rows it evaluates anyway."""
        return None, None

    def summed_products(
        self, path_index: Tensor, step_index: Tensor, gradients: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]] | None:
        """Optional shortcut for the plain Riemann sum: ``sum_j g_j * d_j`` over each run of consecutive rows of
        one path, as ``(paths [R], per input [R, *S])``, computed in a cheaper factored form; None (the default)
        when the path has none, and the engine multiplies gradients by :meth:`displacements` row by row."""
        return None


@dataclass
class StepEvaluation:
    """What the model gave at the current points of some rows of a sequential path.

    Attributes:
        gradients: per input ``[n, *S]``, the gradient of the target output (None when not requested).
        outputs: ``[n]`` target output at the points (None when a walk without integration did not need it).
        extras: path-specific per-row tensors (dim 0 = rows), e.g. IG2's counterfactual gradient and
            representation distance; the engine concatenates them over chunks and hands them to ``advance``.
    """

    gradients: tuple[Tensor, ...] | None
    outputs: Tensor | None
    extras: dict[str, Tensor] = field(default_factory=dict)


class SequentialPath(ABC):
    """``n_paths`` paths whose next point depends on the model's gradient at the current one.

    Used by :func:`pathattr.engine.integrate_sequential_path` (Guided IG, IG2's GradPath; AGI / MFABA style
    adversarial paths). A new path is a few lines (here: steps against the gradient's sign, from the input)::

        class SignPath(SequentialPath):
            direction = -1                                   # walks from the input (+1: from the baseline)

            def __init__(self, x_rows, example, n_steps, eps=0.01):
                self.z, self.example, self.n_steps, self.eps = x_rows.detach().clone(), example, n_steps, eps
                self.dtype = x_rows.dtype

            n_paths = property(lambda self: self.z.shape[0])

            def example_index(self, path_index):
                return self.example[path_index]

            def points(self, rows):                          # rows: None (no inactive paths here)
                return (self.z,)

            def advance(self, ev, rows):                     # ev.gradients: grad f_c at points(rows)
                new = self.z - self.eps * ev.gradients[0].sign()
                disp, self.z = self.z - new, new             # gamma_j - gamma_{j+1}: baseline -> input
                return (disp,)

        r = integrate_sequential_path(model, SignPath(x, ex, 50), RiemannIntegrator(), ibs, (x,), f_x)
        r.attributions, r.start_outputs                      # [B, *S] per input; f at each path's far end

    Rows are addressed by path index; ``active`` paths (all if None) are evaluated and advanced, the others
    never cost a model call (their attribution is zero). The engine calls, ``n_steps`` times: ``points(rows)``
    -> model (``evaluate`` per chunk, default: target gradient and output) -> ``advance(evaluation, rows)``.
    """

    #: +1 if the walk starts at the baseline end (Guided IG), -1 if at the input end (IG2, AGI, MFABA)
    direction: int = 1
    #: number of steps (one model evaluation at the current points each)
    n_steps: int
    #: ``[n_paths]`` bool, paths that move (None: all); inactive paths are never evaluated
    active: Tensor | None = None
    #: dtype of the displacements ``advance`` returns (the Riemann sum accumulates in it; half types in float64)
    dtype: torch.dtype = torch.float64
    #: most rows per model call of the walk's own steps (None: ``internal_batch_size``). 1 = every path row in a
    #: forward call of its own, so the walk does not depend on ``internal_batch_size`` or on which rows share a
    #: call (IG2's ``path_layout="rows"``); refinement rows are chunked by ``internal_batch_size`` as usual
    max_walk_rows: int | None = None

    @property
    @abstractmethod
    def n_paths(self) -> int:
        """Number of paths (examples x baselines or references)."""

    @abstractmethod
    def example_index(self, path_index: Tensor) -> Tensor:
        """Index of the example each path explains."""

    @abstractmethod
    def points(self, rows: Tensor | None) -> tuple[Tensor, ...]:
        """Current points of paths ``rows`` (all paths if None), model-ready: one ``[n, *S]`` tensor per input."""

    @contextlib.contextmanager
    def walking(self) -> Iterator[None]:
        """Context the engine holds for the whole walk (every step and the last evaluation); a path sets up what
        its steps share here, e.g. IG2 attaches its representation hook once instead of once per forward call.
        Whatever it changes on the model must be undone on exit, also on exceptions. Default: nothing."""
        yield

    def evaluate(
        self, model: Any, rows: Tensor, points: tuple[Tensor, ...], example_index: Tensor, gradient: bool,
        final: bool,
    ) -> StepEvaluation | None:
        """Custom evaluation of one chunk of rows (None: the engine's ``model.gradients`` / ``model.outputs``).

        Args:
            model: the :class:`pathattr.forward.ModelFunction` (count any extra backward in ``model.cost``).
            rows: ``[n]`` path index of each row of the chunk.
            points: the chunk's points (from :meth:`points`).
            example_index: ``[n]`` example of each row.
            gradient: whether the target gradient is needed (False: only what :meth:`advance` needs).
            final: the points are the path's last points (no step follows: report, do not prepare a step).
        """
        return None

    @abstractmethod
    def advance(self, evaluation: StepEvaluation, rows: Tensor | None) -> tuple[Tensor, ...]:
        """Move paths ``rows`` (all if None; the active paths at every step) one step.

        Returns the path element of each row, ``gamma_{j+1} - gamma_j`` oriented from baseline to input (for
        ``direction = -1``: ``gamma_j - gamma_{j+1}``), one ``[n, *S]`` tensor per input in :attr:`dtype`.
        Tensors returned earlier by :meth:`points` must not be modified in place (the engine still uses them).
        """
