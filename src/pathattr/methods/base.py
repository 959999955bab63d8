"""The shared shape of every attribution method (Captum-style construction, then ``attribute``)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..engine import (
    ParametricIntegral,
    integrate_parametric_path,
    needs_no_path_ends,
    outputs_in_chunks,
    reads_path_ends,
)
from ..errors import InputValidationError
from ..forward import (
    Cost,
    ModelFunction,
    ModelsType,
    TargetType,
    TensorOrTuple,
    as_tuple,
    find_modules,
    model_guard,
    restore_structure,
    track_cost,
)
from ..integrators import Integrator, get_integrator
from ..paths.base import ParametricPath
from ..planner import AUTO_ELEMENT_BUDGET, row_numel
from ..result import Explanation, completeness
from ..validation import check_flag

#: the method whose :meth:`AttributionMethod.attribute` call without ``return_convergence_delta`` is running: its
#: sessions need no ``f(x)`` and no ``f`` at the baselines (nobody sees the completeness gap)
_ATTRIBUTIONS_ONLY: ContextVar[object | None] = ContextVar("pathattr_attributions_only", default=None)


@dataclass
class Session:
    """State of one ``explain`` call: validated inputs, the bound model and ``f_c(x)``."""

    method: AttributionMethod
    inputs: tuple[Tensor, ...]
    original: TensorOrTuple
    model: ModelFunction
    outputs: Tensor  # None until :meth:`resolve` in a session opened with ``resolve=False``
    cost: Cost
    target: TargetType = None
    #: False inside ``attribute(..., return_convergence_delta=False)``: only the attributions are returned, so a
    #: method may skip the forward calls that serve only the completeness gap (``f(x)``, ``f`` at the baselines)
    needs_outputs: bool = True

    @property
    def batch_size(self) -> int:
        return self.inputs[0].shape[0]

    def resolve(
        self, points: tuple[Tensor, ...], example_index: Tensor, internal_batch_size: int | None
    ) -> Tensor:
        """Fix the target, set :attr:`outputs` (``f_c(x)``) and return ``f_c`` at the rows ``points`` (e.g. the
        baseline end of every path; ``example_index[i]`` = example of row ``i``), shape ``[n]``.

        When the rows are at most one per example and fit one call (``internal_batch_size``, or the automatic
        memory cap), ``x`` and the rows share one forward call; otherwise the rows are evaluated in chunks. A model
        that is not in eval mode (``eval_mode=False``) always gets separate calls, so that batch statistics never
        mix the explained inputs with other rows.
        """
        b, n = self.batch_size, int(points[0].shape[0])
        limit = AUTO_ELEMENT_BUDGET // max(1, row_numel(points)) if internal_batch_size is None else internal_batch_size
        if self.method.eval_mode and n <= b and b + n <= limit:
            self.outputs, rows = self.model.resolve_target_with_rows(self.target, self.inputs, points, example_index)
            if rows is not None:
                return rows
        else:
            self.outputs = self.model.resolve_target(self.target, self.inputs)
        return outputs_in_chunks(self.model, points, example_index, internal_batch_size)

    def integrate(self, path: ParametricPath, integrator: Integrator,
                  internal_batch_size: int | None) -> ParametricIntegral:
        """Integrate a parametric path whose paths are path-major per example (``k = n_paths / B`` each) in a
        session opened with ``resolve=False``: fixes the target and sets :attr:`outputs`.

        Where :meth:`integrates_without_ends`, ``f`` at the ends comes from the path's own rows or is not computed
        (then :attr:`outputs` and the result's ``start_outputs`` stay None); otherwise ``f(x)`` and ``f`` at the
        baselines are evaluated first, in one forward call where they fit (:meth:`resolve_path_starts`).
        """
        b = self.batch_size
        k = path.n_paths // b
        if self.integrates_without_ends(path, integrator):
            r = integrate_parametric_path(self.model, path, integrator, internal_batch_size, self.inputs, None)
            if r.end_outputs is not None:
                self.outputs = r.end_outputs if k == 1 else r.end_outputs.view(b, k)[:, 0]
            return r
        start = self.resolve_path_starts(path, internal_batch_size)
        return integrate_parametric_path(
            self.model, path, integrator, internal_batch_size, self.inputs,
            self.outputs if k == 1 else self.outputs.repeat_interleave(k), start,
        )

    def integrates_without_ends(self, path: ParametricPath, integrator: Integrator) -> bool:
        """Whether the method can pass ``end_outputs=None`` to
        :func:`~pathattr.engine.integrate_parametric_path` instead of :meth:`resolve_path_starts`: the integrator
        needs no path ends, ``f`` at them is either not needed (:attr:`needs_outputs` False) or read from the path's
        own rows (both ends are nodes), and the target can be fixed without ``f(x)`` (:meth:`defer_target`, which
        this calls). The method then sets :attr:`outputs` from the result's ``end_outputs`` (None when not read).
        """
        if not needs_no_path_ends(integrator) or (self.needs_outputs and not reads_path_ends(path, integrator)):
            return False
        return self.defer_target()

    def defer_target(self) -> bool:
        """For a method whose rows include ``x`` itself: leave the target to the first model call of those rows
        (:meth:`ModelFunction.defer_target`) where it needs no ``f(x)`` (an explicit class index) and the model is
        in eval mode (so the rows it shares a call with do not change ``f(x)``). Returns whether it did; the method
        then sets :attr:`outputs` from its rows."""
        if not self.method.eval_mode or not self.model.can_defer_target(self.target):
            return False
        self.model.defer_target(self.target, self.inputs)
        return True

    def resolve_path_starts(self, path: ParametricPath, internal_batch_size: int | None) -> Tensor:
        """:meth:`resolve` at the baseline end of every path of ``path``: ``f_c`` there, ``[n_paths]``."""
        every = torch.arange(path.n_paths, device=self.inputs[0].device)
        return self.resolve(path.start_points(every), path.example_index(every), internal_batch_size)

    def explanation(
        self,
        attributions: tuple[Tensor, ...],
        hyperparameters: dict[str, Any],
        baseline_outputs: Tensor | None = None,
        extras: dict[str, Any] | None = None,
    ) -> Explanation:
        """Package attributions with their completeness gap, cost and settings."""
        delta = relative = None
        if baseline_outputs is not None:
            delta, relative = completeness(attributions, self.outputs, baseline_outputs)
        target = self.model.target if isinstance(self.model.target, Tensor) else None
        return Explanation(
            attributions=restore_structure([a.detach() for a in attributions], self.original),
            method=self.method.name,
            target=target,
            outputs=self.outputs,
            baseline_outputs=baseline_outputs,
            convergence_delta=delta,
            relative_delta=relative,
            cost=self.cost,
            hyperparameters=hyperparameters,
            extras=extras or {},
        )


class AttributionMethod(ABC):
    """Base class: ``Method(forward_func).attribute(inputs, ...)`` as in Captum, ``.explain(...)`` for the
    rich :class:`~pathattr.result.Explanation`.

    Args:
        forward_func: an ``nn.Module`` or callable ``(*inputs, *additional_forward_args) -> [B] or [B, C]``.
        eval_mode: put the model's modules in eval mode during attribution (restored afterwards). Keeps
            dropout and batch-norm from making attributions depend on batch composition.
        model: the ``nn.Module`` (or list of modules) that ``forward_func`` uses, when pathattr cannot find it
            itself (see :func:`pathattr.forward.find_modules`: modules, bound methods, ``functools.partial``,
            closures, ``__wrapped__`` and globals named by the function are searched); ``()`` declares that the
            function uses no module. Its modes, flags, hooks and buffers are guarded and restored.
    """

    name: str = "method"
    #: whether ``attribute(..., return_convergence_delta=True)`` is supported
    has_delta: bool = True

    def __init__(self, forward_func: Callable[..., Any], eval_mode: bool = True, *, model: ModelsType = None) -> None:
        if not callable(forward_func):
            raise InputValidationError(
                f"`forward_func` must be callable (an nn.Module or function), got {type(forward_func).__name__}.",
                "forward_func",
            )
        self.forward_func = forward_func
        self.eval_mode = check_flag(eval_mode, "eval_mode")
        if model is not None:
            find_modules(forward_func, model)  # validates ``model``
        self.model = model

    def has_convergence_delta(self) -> bool:
        """Captum's capability flag."""
        return self.has_delta

    def compute_convergence_delta(
        self,
        attributions: TensorOrTuple,
        start_point: TensorOrTuple,
        end_point: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> Tensor:
        """Captum's completeness check: ``sum(attributions) - (f_c(end_point) - f_c(start_point))`` per example.

        Args:
            attributions: ``[B, *S]`` tensor or tuple, as returned by :meth:`attribute`.
            start_point: the baselines (same structure; a baseline per example).
            end_point: the explained inputs.
            target: as in :meth:`attribute` (None: the class predicted at ``end_point``, used at both ends).
            additional_forward_args: extra ``forward_func`` arguments.

        Returns:
            ``[B]`` float64 tensor (the same quantity as ``Explanation.convergence_delta``).
        """
        ends = as_tuple(end_point)
        starts = as_tuple(start_point)
        attrs = as_tuple(attributions)
        if len(starts) != len(ends) or any(a.shape != b.shape for a, b in zip(starts, ends)):
            raise InputValidationError("`start_point` must have the structure and shapes of `end_point`.",
                                       "start_point")
        if len(attrs) != len(ends) or any(a.shape != b.shape for a, b in zip(attrs, ends)):
            raise InputValidationError("`attributions` must have the structure and shapes of `end_point`.",
                                       "attributions")
        b = ends[0].shape[0]
        with model_guard(self.forward_func, self.eval_mode, model=self.model):
            end_model = ModelFunction(self.forward_func, b, additional_forward_args, Cost())
            f_end = end_model.resolve_target(target, ends)
            f_start = end_model.outputs(starts, None)
        total = sum(a.reshape(b, -1).to(torch.float64).sum(1) for a in attrs)
        return total - (f_end.to(torch.float64) - f_start.to(torch.float64))

    @abstractmethod
    def explain(self, inputs: TensorOrTuple, *args: Any, **kwargs: Any) -> Explanation:
        """Compute attributions and return the rich result."""

    def attribute(
        self, inputs: TensorOrTuple, *args: Any, return_convergence_delta: bool = False, **kwargs: Any
    ) -> TensorOrTuple | tuple[TensorOrTuple, Tensor]:
        """Captum's return convention: the attributions (same structure as ``inputs``), or
        ``(attributions, convergence_delta)`` if ``return_convergence_delta``. Arguments as in :meth:`explain`.
        """
        # without the delta nobody sees f(x) or f at the baselines: the method's sessions may skip computing them
        token = _ATTRIBUTIONS_ONLY.set(None if return_convergence_delta else self)
        try:
            result = self.explain(inputs, *args, **kwargs)
        finally:
            _ATTRIBUTIONS_ONLY.reset(token)
        if return_convergence_delta:
            if result.convergence_delta is None:
                raise NotImplementedError(f"{self.name} has no convergence delta.")
            return result.attributions, result.convergence_delta
        return result.attributions

    @contextlib.contextmanager
    def session(
        self, inputs: TensorOrTuple, target: TargetType, additional_forward_args: Any, resolve: bool = True
    ) -> Iterator[Session]:
        """Validate inputs, guard the model, count cost and fix the target for one call.

        ``resolve=False`` defers the target (and ``f_c(x)``) to :meth:`Session.resolve`, which evaluates it
        together with the rows the method needs next (the far ends of its paths) in one forward call.
        """
        items = as_tuple(inputs)
        cost = Cost()
        model = ModelFunction(self.forward_func, items[0].shape[0], additional_forward_args, cost)
        with model_guard(self.forward_func, self.eval_mode, getattr(self, "model", None)), \
                track_cost(cost, items[0].device):
            outputs = model.resolve_target(target, items) if resolve else None
            yield Session(self, items, inputs, model, outputs, cost, target,  # type: ignore[arg-type]
                          needs_outputs=_ATTRIBUTIONS_ONLY.get() is not self)



class PathMethod(AttributionMethod):
    """An attribution method that integrates gradients along paths, with a choice of ``integrator``.

    Args:
        forward_func: as :class:`AttributionMethod`.
        integrator: ``"riemann"`` (default), ``"idgi"``, ``"left_ig"``, ``"split_ig"`` or an
            :class:`~pathattr.integrators.Integrator` (:func:`~pathattr.integrators.get_integrator`).
        eval_mode: as :class:`AttributionMethod`.
        model: the ``nn.Module`` (s) behind ``forward_func`` if pathattr cannot find them.
    """

    def __init__(self, forward_func: Callable[..., Any], integrator: str | Integrator | None = None,
                 eval_mode: bool = True, *, model: ModelsType = None) -> None:
        super().__init__(forward_func, eval_mode, model=model)
        self.integrator = get_integrator(integrator)
