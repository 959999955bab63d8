"""Expected Gradients (Erion et al., Nature Machine Intelligence 2021, arXiv 1906.10670)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..engine import integrate_parametric_path
from ..errors import InputValidationError, check_finite
from ..forward import ModelsType, TargetType, TensorOrTuple
from ..integrators import RiemannIntegrator
from ..paths.straight import StraightLinePath
from ..randomness import as_generator, rand, randint
from ..result import Explanation
from ..validation import check_count, check_flag, check_optional_count
from .base import AttributionMethod
from .registry import register


@register("expected_gradients", paper="Erion et al., Nature Machine Intelligence 2021")
class ExpectedGradients(AttributionMethod):
    """Expected Gradients: IG's integral as an expectation over baselines from a reference set.

    ``EG(x) = E_{x'~D, a~U(0,1)} [(x - x') * grad f_c(x' + a (x - x'))]``, estimated with ``n_samples``
    draws of (reference, alpha) per example. Completeness holds in expectation only:
    ``E[sum EG] = f_c(x) - E_{x'} f_c(x')``; the reported delta uses the drawn references. Equivalent to
    Captum's ``GradientShap`` with ``stdevs=0``, but seeded and chunked under ``internal_batch_size``.

    Args:
        forward_func: model or callable returning ``[B]`` or ``[B, C]``.
        multiply_by_inputs: False returns the mean gradient without ``(x - x')``.
    """

    name = "expected_gradients"

    #: ``baselines`` is a reference set drawn from, never one baseline per example (NoiseTunnel does not tile it)
    baselines_are_reference_set = True

    def __init__(
        self, forward_func: Callable[..., Any], multiply_by_inputs: bool = True, eval_mode: bool = True, *,
        model: ModelsType = None,
    ) -> None:
        super().__init__(forward_func, eval_mode, model=model)
        self.multiply_by_inputs = check_flag(multiply_by_inputs, "multiply_by_inputs")

    def explain(
        self,
        inputs: TensorOrTuple,
        baselines: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_samples: int = 50,
        stratified: bool = False,
        internal_batch_size: int | None = None,
        generator: torch.Generator | int | None = None,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor or tuple of tensors.
        baselines: the reference set, ``[N, *S]`` per input (same ``N`` for all inputs).
        target: int, list / 1-D tensor of B ints, callable, or None (predicted class).
        additional_forward_args: extra ``forward_func`` arguments.
        n_samples: draws of (reference, alpha) per example.
        stratified: draw the ``s``-th alpha from ``[s/n, (s+1)/n)`` (lower variance) instead of ``U(0, 1)``.
        internal_batch_size: maximum rows per forward call.
        generator: ``torch.Generator`` or int seed for the draws (default seed 0).
        """
        n_samples = check_count(n_samples, "n_samples")
        stratified = check_flag(stratified, "stratified")
        check_optional_count(internal_batch_size, "internal_batch_size")
        with self.session(inputs, target, additional_forward_args) as s:
            pools = _reference_set(s.inputs, baselines)
            gen = as_generator(generator)
            b, x = s.batch_size, s.inputs[0]
            index = randint(pools[0].shape[0], (b * n_samples,), gen, x.device)
            u = rand((b, n_samples), gen, x)
            if stratified:
                u = (torch.arange(n_samples, dtype=x.dtype, device=x.device) + u) / n_samples
            path = StraightLinePath(
                s.inputs, pools, index, n_samples, u.reshape(-1, 1), torch.ones_like(u).reshape(-1, 1),
                self.multiply_by_inputs,
            )
            attributions, _, start_out, _ = integrate_parametric_path(
                s.model, path, RiemannIntegrator(), internal_batch_size, s.inputs,
                s.outputs.repeat_interleave(n_samples),
            )
            hyper = {
                "n_samples": n_samples,
                "stratified": stratified,
                "n_references": pools[0].shape[0],
                "multiply_by_inputs": self.multiply_by_inputs,
                "internal_batch_size": internal_batch_size,
            }
            baseline_out = start_out.view(b, n_samples).mean(1)
            return s.explanation(
                attributions, hyper, baseline_outputs=baseline_out if self.multiply_by_inputs else None,
                extras={"reference_index": index.view(b, n_samples)},
            )


def _reference_set(inputs: tuple[Tensor, ...], baselines: TensorOrTuple) -> tuple[Tensor, ...]:
    refs = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(refs) != len(inputs) or not all(isinstance(r, Tensor) for r in refs):
        raise InputValidationError(
            "`baselines` must be the reference set: a tensor [N, *S] per input.", "baselines"
        )
    out = []
    for i, (x, r) in enumerate(zip(inputs, refs)):
        if r.ndim != x.ndim or tuple(r.shape[1:]) != tuple(x.shape[1:]) or r.shape[0] < 1:
            raise InputValidationError(
                f"`baselines` entry {i} has shape {tuple(r.shape)}; expected a reference set [N, "
                f"{', '.join(map(str, x.shape[1:]))}].",
                "baselines",
            )
        r = r.to(device=x.device, dtype=x.dtype)
        check_finite(r, "baselines")
        out.append(r)
    if len({r.shape[0] for r in out}) != 1:
        raise InputValidationError("`baselines` entries must have the same number of references.", "baselines")
    return tuple(out)


def expected_gradients(
    forward_func: Callable[..., Any], inputs: TensorOrTuple, baselines: TensorOrTuple, **kwargs: Any
) -> TensorOrTuple:
    """Functional form of :class:`ExpectedGradients` (constructor options ``multiply_by_inputs``, ``eval_mode``
    and ``model`` may be passed as keywords)."""
    ctor = {k: kwargs.pop(k) for k in ("multiply_by_inputs", "eval_mode", "model") if k in kwargs}
    return ExpectedGradients(forward_func, **ctor).attribute(inputs, baselines, **kwargs)
