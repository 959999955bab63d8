"""Blur Integrated Gradients on the shared engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from ..errors import InputValidationError
from ..forward import TargetType, TensorOrTuple
from ..paths.blur import PADDINGS, BlurPath, blur_sigmas
from ..result import Explanation
from ..validation import check_count, check_flag, check_number, check_optional_count, check_spatial_dims
from .base import PathMethod
from .registry import register


@register("blur_integrated_gradients", paper="Xu, Venugopalan & Sundararajan, CVPR 2020")
class BlurIntegratedGradients(PathMethod):
    """Blur Integrated Gradients (Xu, Venugopalan & Sundararajan, "Attribution in Scale and Space", CVPR 2020,
    arXiv 2004.03383).

    Integrates gradients along the path of successively Gaussian-blurred copies of the input, from the input
    (``sigma = 0``) to ``blur(x, sigma_m)``: ``A = - sum_i (sigma_{i+1} - sigma_i) * d blur(x, sigma) / d sigma *
    grad f(blur(x, sigma_i))``, with the derivative taken by a forward finite difference of step ``grad_step``.
    Same semantics as PAIR-code/saliency's ``BlurIG`` with ``batch_size=1`` (its batched mode mis-weights
    non-uniform sigma spacings); here every node carries its own spacing, so results do not depend on
    ``internal_batch_size``. Completeness: ``sum(A) ~ f(x) - f(blur(x, sigma_m))`` (``baseline_outputs``).

    Args:
        forward_func: model or callable returning ``[B]`` or ``[B, C]``.
        integrator: ``"riemann"`` (default, PAIR's sum), ``"idgi"``, ``"left_ig"``, ``"split_ig"`` or an
            :class:`~pathattr.integrators.Integrator`. Output-based integrators pair each node with the next one
            toward the blurred end (that end's output closes the last segment), so they use the gradients at
            the same points as the Riemann sum.
        eval_mode: evaluate the model in eval mode (restored afterwards).
    """

    name = "blur_integrated_gradients"

    def explain(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        max_sigma: float = 50.0,
        n_steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        internal_batch_size: int | None = None,
        spatial_dims: Sequence[int] | None = None,
        padding: str = "zeros",
        truncate: float = 4.0,
    ) -> Explanation:
        """Args:
        inputs: ``[B, C, *spatial]`` channels-first tensor (any channel count and number of spatial axes), or a
            tuple of such tensors (all blurred with the same sigma).
        target: int, list / 1-D tensor of B ints, callable on the output, or None (predicted class).
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors have dim 0 = B).
        max_sigma: largest blur, in pixels (``sigma_i = i * max_sigma / n_steps``).
        n_steps: number of nodes = gradient evaluations per example.
        grad_step: finite-difference step in sigma for ``d blur / d sigma``.
        sqrt: space the sigmas as ``sqrt(i * max_sigma / n_steps)`` (PAIR's option; the largest sigma is then
            ``sqrt(max_sigma)``).
        internal_batch_size: maximum rows (examples x nodes) per forward call; results do not depend on it.
        spatial_dims: axes to blur (default: all axes after the channel axis 1); in range, not the batch axis,
            no axis twice (e.g. ``(1, 2)`` for a channels-last ``[B, H, W, C]`` input).
        padding: ``"zeros"`` (PAIR / SciPy ``mode="constant"``: borders darken) or ``"reflect"``.
        truncate: Gaussian kernel radius in sigmas (SciPy's default 4).
        """
        max_sigma, n_steps, grad_step, sqrt, truncate = _check(max_sigma, n_steps, grad_step, sqrt, padding, truncate)
        check_optional_count(internal_batch_size, "internal_batch_size")
        for x in inputs if isinstance(inputs, tuple) else (inputs,):
            if isinstance(x, Tensor):
                check_spatial_dims(spatial_dims, x.ndim)
        with self.session(inputs, target, additional_forward_args, resolve=False) as s:
            sigmas = blur_sigmas(max_sigma, n_steps, sqrt)
            path = BlurPath(s.inputs, sigmas, float(grad_step), spatial_dims, padding, truncate)
            attributions, extras, start_out, _ = s.integrate(path, self.integrator, internal_batch_size)
            hyper = {
                "max_sigma": max_sigma,
                "n_steps": n_steps,
                "grad_step": grad_step,
                "sqrt": sqrt,
                "spatial_dims": None if spatial_dims is None else tuple(spatial_dims),
                "padding": padding,
                "truncate": truncate,
                "internal_batch_size": internal_batch_size,
                **self.integrator.describe(),
            }
            return s.explanation(attributions, hyper, baseline_outputs=start_out, extras=extras)


def _check(
    max_sigma: Any, n_steps: Any, grad_step: Any, sqrt: Any, padding: Any, truncate: Any
) -> tuple[float, int, float, bool, float]:
    n_steps = check_count(n_steps, "n_steps")
    max_sigma = check_number(max_sigma, "max_sigma", positive=True)
    grad_step = check_number(grad_step, "grad_step", positive=True)
    truncate = check_number(truncate, "truncate", positive=True)
    sqrt = check_flag(sqrt, "sqrt")
    if padding not in PADDINGS:
        raise InputValidationError(f"`padding` must be one of {PADDINGS}, got {padding!r}.", "padding")
    return max_sigma, n_steps, grad_step, sqrt, truncate


def blur_integrated_gradients(
    forward_func: Callable[..., Any], inputs: TensorOrTuple, **kwargs: Any
) -> TensorOrTuple:
    """Functional form of :class:`BlurIntegratedGradients` (the constructor options ``integrator``,
    ``eval_mode`` and ``model`` may be passed as keywords)."""
    ctor = {k: kwargs.pop(k) for k in ("integrator", "eval_mode", "model") if k in kwargs}
    return BlurIntegratedGradients(forward_func, **ctor).attribute(inputs, **kwargs)
