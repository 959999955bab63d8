"""Integrated Gradients on the shared engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..baselines import BaselinesType, resolve_baselines
from ..errors import InputValidationError
from ..forward import ModelsType, TargetType, TensorOrTuple
from ..integrators import Integrator, get_integrator
from ..paths.straight import StraightLinePath
from ..randomness import as_generator
from ..result import Explanation
from ..validation import check_count, check_flag, check_optional_count
from .base import AttributionMethod
from .registry import register


@register("integrated_gradients", paper="Sundararajan, Taly & Yan, ICML 2017")
class IntegratedGradients(AttributionMethod):
    """Integrated Gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017).

    ``IG_i(x; x') = (x_i - x'_i) * integral_0^1 d f_c(x' + a (x - x')) / d x_i da``, approximated with a
    quadrature rule; with ``K`` baselines per example the result is the mean over them (multi-baseline IG).

    ``explain`` also returns ``f(x)``, ``f`` at the baselines and the completeness gap. With the plain Riemann
    integrator and an explicit class-index target, ``attribute`` without ``return_convergence_delta`` skips
    their forward call (as Captum does), and rules whose nodes include both ends (``riemann_trapezoid``,
    ``trapezoid``) read them from the path's own rows instead of a call of their own.

    Args:
        forward_func: model or callable returning ``[B]`` or ``[B, C]``.
        multiply_by_inputs: False returns the weighted mean path gradient without ``(x - x')`` (Captum's
            "local" variant).
        integrator: ``"riemann"`` (the quadrature given by ``method``), ``"idgi"``, ``"left_ig"``,
            ``"split_ig"`` or an :class:`~pathattr.integrators.Integrator`.
        eval_mode: evaluate the model in eval mode (restored afterwards).
    """

    name = "integrated_gradients"

    def __init__(
        self,
        forward_func: Callable[..., Any],
        multiply_by_inputs: bool = True,
        integrator: str | Integrator | None = None,
        eval_mode: bool = True,
        *,
        model: ModelsType = None,
    ) -> None:
        super().__init__(forward_func, eval_mode, model=model)
        self.multiply_by_inputs = check_flag(multiply_by_inputs, "multiply_by_inputs")
        self.integrator = get_integrator(integrator)
        if not multiply_by_inputs and not self.integrator.uses_displacements:
            raise InputValidationError(
                f"integrator {self.integrator.name!r} does not support multiply_by_inputs=False", "multiply_by_inputs"
            )

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.multiply_by_inputs

    def explain(
        self,
        inputs: TensorOrTuple,
        baselines: BaselinesType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        generator: torch.Generator | int | None = None,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor or tuple of tensors (dim 0 = examples in each).
        baselines: see :mod:`pathattr.baselines`: None (zeros), number, tensor ``[B or 1, *S]``, ``[B or 1,
            K, *S]`` for K baselines per example, a name (``"blur"``, ``"uniform"``, ...) or a tuple per input.
        target: int, list / 1-D tensor of B ints, callable on the output, or None (predicted class).
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors have dim 0 = B).
        n_steps: quadrature nodes per path.
        method: ``riemann_left|right|middle|trapezoid``, ``gausslegendre`` (Captum's rules) or
            ``trapezoid`` (exact trapezoid weights).
        internal_batch_size: maximum rows (examples x baselines x steps) per forward call; results are
            identical for every value.
        generator: for random baselines (``torch.Generator`` or int seed; default seed 0).
        """
        n_steps = check_count(n_steps, "n_steps")
        if not isinstance(method, str):
            raise InputValidationError(f"`method` must be a quadrature name, got {method!r}.", "method")
        check_optional_count(internal_batch_size, "internal_batch_size")
        with self.session(inputs, target, additional_forward_args, resolve=False) as s:
            gen = as_generator(generator)
            base = resolve_baselines(s.inputs, baselines, gen)
            x = s.inputs[0]
            alphas, weights = self.integrator.nodes(method, n_steps, x.dtype, x.device)
            path = StraightLinePath.from_baselines(s.inputs, base, alphas, weights, self.multiply_by_inputs)
            k = path.k
            # f(x) and f(x') come from the path's own rows where both ends are nodes (riemann_trapezoid,
            # trapezoid), and are not computed by attribute() without the convergence delta otherwise
            attributions, extras, start_out, _ = s.integrate(path, self.integrator, internal_batch_size)
            hyper = {
                "n_steps": n_steps,
                "method": method,
                "multiply_by_inputs": self.multiply_by_inputs,
                "n_baselines": k,
                "baselines": _describe(baselines),
                "internal_batch_size": internal_batch_size,
                **self.integrator.describe(),
            }
            baseline_out = None
            if start_out is not None and self.multiply_by_inputs:
                baseline_out = start_out if k == 1 else start_out.view(s.batch_size, k).mean(1)
            return s.explanation(
                attributions, hyper, baseline_outputs=baseline_out,
                extras=extras,
            )


def _describe(baselines: Any) -> Any:
    if baselines is None or isinstance(baselines, (int, float, str)):
        return baselines
    if isinstance(baselines, torch.Tensor):
        return f"tensor{tuple(baselines.shape)}"
    if isinstance(baselines, tuple):
        return tuple(_describe(b) for b in baselines)
    describe = getattr(baselines, "describe", None)
    return describe() if describe else repr(baselines)


def integrated_gradients(forward_func: Callable[..., Any], inputs: TensorOrTuple, **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`IntegratedGradients` (constructor options ``multiply_by_inputs``,
    ``integrator``, ``eval_mode`` and ``model`` may be passed as keywords)."""
    ctor = {k: kwargs.pop(k) for k in ("multiply_by_inputs", "integrator", "eval_mode", "model") if k in kwargs}
    return IntegratedGradients(forward_func, **ctor).attribute(inputs, **kwargs)
