"""Single-gradient methods: Saliency and Input x Gradient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..engine import gradients_in_chunks
from ..forward import ModelsType, TargetType, TensorOrTuple
from ..result import Explanation
from ..validation import check_flag
from .base import AttributionMethod
from .registry import register


@register("saliency", paper="Simonyan, Vedaldi & Zisserman, ICLR Workshop 2014")
class Saliency(AttributionMethod):
    """Gradient of the target output w.r.t. the inputs (Simonyan, Vedaldi & Zisserman, ICLR-W 2014).

    Args:
        forward_func: model or callable returning ``[B]`` or ``[B, C]``.
        abs: return ``|gradient|`` (Captum's default) instead of the signed gradient.
    """

    name = "saliency"
    has_delta = False

    def __init__(
        self, forward_func: Callable[..., Any], abs: bool = True, eval_mode: bool = True, *, model: ModelsType = None
    ) -> None:
        super().__init__(forward_func, eval_mode, model=model)
        self.abs = check_flag(abs, "abs")

    def explain(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        internal_batch_size: int | None = None,
        abs: bool | None = None,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor or tuple of such tensors.
        target: class per example: int, list / 1-D tensor of ``B`` ints, callable on the output, or None
            (predicted class).
        additional_forward_args: extra arguments for ``forward_func`` (per-example tensors have dim 0 = B).
        internal_batch_size: maximum rows per forward call.
        abs: overrides the constructor's ``abs`` for this call (Captum's ``attribute(..., abs=...)``).
        """
        use_abs = self.abs if abs is None else check_flag(abs, "abs")
        with self.session(inputs, target, additional_forward_args) as s:
            index = torch.arange(s.batch_size, device=s.inputs[0].device)
            grads, _ = gradients_in_chunks(s.model, s.inputs, index, internal_batch_size)
            attributions = tuple(g.abs() for g in grads) if use_abs else grads
            return s.explanation(attributions, {"abs": use_abs, "internal_batch_size": internal_batch_size})


@register("input_x_gradient", paper="Shrikumar et al., arXiv 1605.01713, 2016")
class InputXGradient(AttributionMethod):
    """Input times gradient (Shrikumar et al., 2016): ``x * d f_c / d x``."""

    name = "input_x_gradient"
    has_delta = False

    def explain(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        internal_batch_size: int | None = None,
    ) -> Explanation:
        """Arguments as in :meth:`Saliency.explain`."""
        with self.session(inputs, target, additional_forward_args) as s:
            index = torch.arange(s.batch_size, device=s.inputs[0].device)
            grads, _ = gradients_in_chunks(s.model, s.inputs, index, internal_batch_size)
            attributions = tuple(x * g for x, g in zip(s.inputs, grads))
            return s.explanation(attributions, {"internal_batch_size": internal_batch_size})


def saliency(forward_func: Callable[..., Any], inputs: TensorOrTuple, abs: bool = True, **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`Saliency` (the constructor options ``eval_mode`` and ``model`` may be passed as
    keywords)."""
    ctor = {k: kwargs.pop(k) for k in ("eval_mode", "model") if k in kwargs}
    return Saliency(forward_func, abs=abs, **ctor).attribute(inputs, **kwargs)


def input_x_gradient(forward_func: Callable[..., Any], inputs: TensorOrTuple, **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`InputXGradient` (constructor options ``eval_mode`` and ``model`` as keywords)."""
    ctor = {k: kwargs.pop(k) for k in ("eval_mode", "model") if k in kwargs}
    return InputXGradient(forward_func, **ctor).attribute(inputs, **kwargs)
