"""Noise wrappers: SmoothGrad, SmoothGrad-squared and VarGrad around any method."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from ..errors import InputValidationError
from ..forward import (
    Cost,
    ModelFunction,
    TargetType,
    TensorOrTuple,
    as_tuple,
    model_guard,
    restore_structure,
    track_cost,
)
from ..randomness import as_generator, randn
from ..result import Explanation
from .base import AttributionMethod

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


class NoiseTunnel(AttributionMethod):
    """Average a method's attributions over noisy copies of the input.

    SmoothGrad (Smilkov et al., arXiv 1706.03825) takes the mean, SmoothGrad-squared the mean of squares, and
    VarGrad (Adebayo et al., 2018) the population variance ``mean(A^2) - mean(A)^2``. The target is fixed on
    the clean input (predicted class if None), so every noisy copy explains the same class.

    Args:
        attribution_method: any pathattr method instance, e.g. ``NoiseTunnel(IntegratedGradients(model))``.
    """

    has_delta = True

    def __init__(self, attribution_method: AttributionMethod) -> None:
        if not isinstance(attribution_method, AttributionMethod):
            raise InputValidationError(
                "`attribution_method` must be a pathattr method instance.", "attribution_method"
            )
        super().__init__(attribution_method.forward_func, attribution_method.eval_mode)
        self.inner = attribution_method
        self.name = f"noise_tunnel({attribution_method.name})"

    def explain(
        self,
        inputs: TensorOrTuple,
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | None = None,
        stdevs: float | tuple[float, ...] | None = None,
        stdev_spread: float | None = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        generator: torch.Generator | int | None = None,
        **kwargs: Any,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor or tuple of tensors.
        nt_type: ``"smoothgrad"``, ``"smoothgrad_sq"`` or ``"vargrad"``.
        nt_samples: noisy copies per example.
        nt_samples_batch_size: copies per call of the wrapped method (default all at once; the wrapped
            method still chunks its own rows by ``internal_batch_size``).
        stdevs: absolute noise standard deviation (float, or one per input), as Captum.
        stdev_spread: noise std relative to each example's value range ``max(x) - min(x)``, as PAIR
            (default 0.15 when ``stdevs`` is None).
        target: fixed on the clean input; int, list / tensor of B ints, callable, or None (predicted class).
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors are repeated).
        generator: ``torch.Generator`` or int seed for the noise (default seed 0); also passed to the wrapped
            method if it takes one.
        **kwargs: arguments of the wrapped method's ``explain`` (``baselines``, ``n_steps``, ...).
        """
        if nt_type not in NT_TYPES:
            raise InputValidationError(f"`nt_type` must be one of {NT_TYPES}, got {nt_type!r}.", "nt_type")
        if not isinstance(nt_samples, int) or isinstance(nt_samples, bool) or nt_samples < 1:
            raise InputValidationError(f"`nt_samples` must be a positive int, got {nt_samples!r}.", "nt_samples")
        if stdevs is not None and stdev_spread is not None:
            raise InputValidationError("give either `stdevs` or `stdev_spread`, not both.", "stdevs")
        items = as_tuple(inputs)
        b = items[0].shape[0]
        chunk = nt_samples if nt_samples_batch_size is None else int(nt_samples_batch_size)
        if chunk < 1:
            raise InputValidationError("`nt_samples_batch_size` must be positive.", "nt_samples_batch_size")
        sigmas = _sigmas(items, stdevs, 0.15 if stdevs is None and stdev_spread is None else stdev_spread)
        gen = as_generator(generator)
        cost = Cost()
        model = ModelFunction(self.forward_func, b, additional_forward_args, cost)
        takes_generator = "generator" in inspect.signature(self.inner.explain).parameters
        sums = [torch.zeros_like(x) for x in items]
        squares = [torch.zeros_like(x) for x in items]
        deltas: list[Tensor] = []
        with model_guard(self.forward_func, self.eval_mode), track_cost(cost, items[0].device):
            clean = model.resolve_target(target, items)
            fixed_target = model.target if model.target is not None else target
            done = 0
            while done < nt_samples:
                n = min(chunk, nt_samples - done)
                noisy = tuple(
                    x.repeat_interleave(n, 0) + s.repeat_interleave(n, 0) * randn((b * n, *x.shape[1:]), gen, x)
                    for x, s in zip(items, sigmas)
                )
                extra = dict(kwargs)
                if takes_generator:
                    extra["generator"] = gen
                if "baselines" in extra:
                    extra["baselines"] = _repeat(extra["baselines"], b, n)
                result = self.inner.explain(
                    restore_structure(noisy, inputs),
                    target=_repeat(fixed_target, b, n),
                    additional_forward_args=_repeat(additional_forward_args, b, n),
                    **extra,
                )
                cost.add(result.cost)
                for acc, sq, a in zip(sums, squares, result.attribution_tuple):
                    a = a.reshape(b, n, *a.shape[1:])
                    acc += a.sum(1)
                    sq += (a * a).sum(1)
                if result.convergence_delta is not None:
                    deltas.append(result.convergence_delta.reshape(b, n))
                done += n
        mean = [s / nt_samples for s in sums]
        mean_sq = [s / nt_samples for s in squares]
        if nt_type == "smoothgrad":
            out = mean
        elif nt_type == "smoothgrad_sq":
            out = mean_sq
        else:
            out = [(q - m * m).clamp_min(0) for q, m in zip(mean_sq, mean)]
        hyper = {
            "nt_type": nt_type,
            "nt_samples": nt_samples,
            "nt_samples_batch_size": nt_samples_batch_size,
            "stdevs": stdevs,
            "stdev_spread": stdev_spread if stdevs is not None or stdev_spread is not None else 0.15,
            "method": self.inner.name,
            **{k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, type(None)))},
        }
        extras = {"sample_convergence_delta": torch.cat(deltas, 1) if deltas else None}
        return Explanation(
            attributions=restore_structure(out, inputs),
            method=self.name,
            target=model.target if isinstance(model.target, Tensor) else None,
            outputs=clean,
            cost=cost,
            hyperparameters=hyper,
            extras=extras,
        )

    def attribute(
        self, inputs: TensorOrTuple, *args: Any, return_convergence_delta: bool = False, **kwargs: Any
    ) -> TensorOrTuple | tuple[TensorOrTuple, Tensor]:
        """Captum's convention; the delta (if asked for) has one entry per noisy sample, ``[B * nt_samples]``."""
        result = self.explain(inputs, *args, **kwargs)
        if return_convergence_delta:
            delta = result.extras.get("sample_convergence_delta")
            if delta is None:
                raise NotImplementedError(f"{self.inner.name} has no convergence delta.")
            return result.attributions, delta.reshape(-1)
        return result.attributions


def _sigmas(items: tuple[Tensor, ...], stdevs: Any, spread: float | None) -> list[Tensor]:
    out = []
    for i, x in enumerate(items):
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        if stdevs is not None:
            value = stdevs[i] if isinstance(stdevs, (tuple, list)) else stdevs
            if float(value) < 0:
                raise InputValidationError("`stdevs` must be >= 0.", "stdevs")
            out.append(torch.full(shape, float(value), dtype=x.dtype, device=x.device))
        else:
            if float(spread) < 0:
                raise InputValidationError("`stdev_spread` must be >= 0.", "stdev_spread")
            flat = x.reshape(x.shape[0], -1)
            out.append((float(spread) * (flat.max(1).values - flat.min(1).values)).view(shape))
    return out


def _repeat(value: Any, batch: int, n: int) -> Any:
    """Repeat per-example tensors (dim 0 = batch) ``n`` times each; leave everything else unchanged."""
    if isinstance(value, tuple):
        return tuple(_repeat(v, batch, n) for v in value)
    if isinstance(value, list) and len(value) == batch:
        return [v for v in value for _ in range(n)]
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch and batch > 1:
        return value.repeat_interleave(n, 0)
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch == 1:
        return value.repeat_interleave(n, 0) if value.dtype in (torch.long, torch.int) else value
    return value


def noise_tunnel(method: AttributionMethod, inputs: TensorOrTuple, **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`NoiseTunnel`."""
    return NoiseTunnel(method).attribute(inputs, **kwargs)
