"""Guided Integrated Gradients on the shared engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..baselines import BaselinesType, resolve_baselines
from ..engine import integrate_sequential_path
from ..forward import TargetType, TensorOrTuple
from ..paths.guided import GuidedPath, check_guided_arguments, flatten_features
from ..randomness import as_generator
from ..result import Explanation
from .base import PathMethod
from .integrated_gradients import _describe
from .registry import register


@register("guided_integrated_gradients", paper="Kapishnikov et al., CVPR 2021", sequential=True)
class GuidedIntegratedGradients(PathMethod):
    """Guided Integrated Gradients (Kapishnikov, Venugopalan, Avci, Wedin, Terry & Bolukbasi, "Guided Integrated
    Gradients: An Adaptive Path Method for Removing Noise", CVPR 2021, arXiv 2106.09788).

    An adaptive path from the baseline to the input: at each of ``n_steps`` steps one gradient is evaluated
    and the features with the smallest ``|gradient|`` move first, inside a band of half-width ``max_dist``
    (in alpha units) around the straight line. Same semantics as PAIR-code/saliency's ``GuidedIG`` (see
    :mod:`pathattr.paths.guided`), batched over examples and baselines (each path keeps its own state), any
    input shape (the features of all inputs of a tuple are ranked together), and a non-finite gradient raises
    :class:`~pathattr.errors.NonFiniteError` instead of looping.

    Limits: ``max_dist=0`` is IG with a left Riemann sum on ``n_steps`` nodes ``0, 1/m, ..., (m-1)/m``
    (so is ``fraction=1``); ``max_dist=1`` is unbounded Guided IG. Features equal to their baseline get exactly
    zero (Riemann integrator), and an input equal to its baseline costs no model call.

    Args:
        forward_func: model or callable returning ``[B]`` or ``[B, C]``.
        integrator: ``"riemann"`` (default: the left Riemann sum of the paper), ``"idgi"``, ``"left_ig"``,
            ``"split_ig"`` or an :class:`~pathattr.integrators.Integrator`; the path records the gradient,
            output and displacement of every step and the output at the input end.
        eval_mode: evaluate the model in eval mode (restored afterwards).
    """

    name = "guided_integrated_gradients"

    def explain(
        self,
        inputs: TensorOrTuple,
        baselines: BaselinesType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        internal_batch_size: int | None = None,
        generator: torch.Generator | int | None = None,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor or tuple of tensors (dim 0 = examples in each).
        baselines: as for :class:`~pathattr.IntegratedGradients` (default zeros); ``K`` baselines per example
            give ``K`` guided paths per example, averaged.
        target: int, list / 1-D tensor of B ints, callable on the output, or None (predicted class).
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors have dim 0 = B).
        n_steps: number of steps = gradient evaluations per path (PAIR's ``x_steps``).
        fraction: share in [0, 1] of **all** features (ties included) moved per inner iteration; 1 gives IG.
        max_dist: maximum deviation in [0, 1] of any feature's progress from the straight line's alpha;
            0 gives IG (left Riemann), 1 unbounded Guided IG.
        internal_batch_size: maximum rows (paths) per forward call at each step; results do not depend on it.
        generator: for random baselines (``torch.Generator`` or int seed; default seed 0).

        The path state is kept in float64 (as PAIR); the model sees the points in the inputs' dtype and the
        attributions are returned in it. ``extras["max_inner_iterations"]`` reports the longest inner loop.
        """
        check_guided_arguments(n_steps, fraction, max_dist)
        with self.session(inputs, target, additional_forward_args) as s:
            base = resolve_baselines(s.inputs, baselines, as_generator(generator))
            batch, k = s.batch_size, base[0].shape[1]
            n_paths = batch * k
            device = s.inputs[0].device
            example = torch.arange(n_paths, device=device) // k
            x = flatten_features([t.repeat_interleave(k, 0) for t in s.inputs], n_paths)
            b = flatten_features([t.expand(batch, *t.shape[1:]).reshape(n_paths, -1) for t in base], n_paths)
            path = GuidedPath(x, b, n_steps, fraction, max_dist, like=s.inputs, example=example)
            run = integrate_sequential_path(s.model, path, self.integrator, internal_batch_size, s.inputs,
                                            s.outputs.repeat_interleave(k))
            attributions, extras, start_outputs = run.attributions, run.extras, run.start_outputs
            extras["max_inner_iterations"] = path.max_inner_iterations
            hyper = {
                "n_steps": n_steps,
                "fraction": float(fraction),
                "max_dist": float(max_dist),
                "n_baselines": k,
                "baselines": _describe(baselines),
                "internal_batch_size": internal_batch_size,
                **self.integrator.describe(),
            }
            attributions = tuple(a.to(t.dtype) for a, t in zip(attributions, s.inputs))
            return s.explanation(
                attributions, hyper, baseline_outputs=start_outputs.view(batch, k).mean(1), extras=extras
            )


def guided_integrated_gradients(
    forward_func: Callable[..., Any], inputs: TensorOrTuple, **kwargs: Any
) -> TensorOrTuple:
    """Functional form of :class:`GuidedIntegratedGradients` (the constructor option ``integrator`` may be
    passed as a keyword)."""
    ctor = {k: kwargs.pop(k) for k in ("integrator",) if k in kwargs}
    return GuidedIntegratedGradients(forward_func, **ctor).attribute(inputs, **kwargs)
