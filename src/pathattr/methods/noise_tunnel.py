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
    ModelsType,
    TargetType,
    TensorOrTuple,
    as_tuple,
    model_guard,
    restore_structure,
    track_cost,
)
from ..planner import AUTO_ELEMENT_BUDGET, row_numel
from ..randomness import as_generator, randn
from ..result import Explanation
from ..validation import check_count, check_number, check_optional_count, per_input
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

    def __init__(self, attribution_method: AttributionMethod, *, model: ModelsType = None) -> None:
        if not isinstance(attribution_method, AttributionMethod):
            raise InputValidationError(
                "`attribution_method` must be a pathattr method instance.", "attribution_method"
            )
        super().__init__(
            attribution_method.forward_func, attribution_method.eval_mode,
            model=model if model is not None else getattr(attribution_method, "model", None),
        )
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
        nt_samples_batch_size: copies per call of the wrapped method. Default: as many as fit in the
            wrapped method's ``internal_batch_size`` rows (``B x copies <= internal_batch_size``; with
            ``internal_batch_size=None``, as many as the automatic planner's memory cap allows), so the noisy
            copies are never all built at once. Results do not depend on it: the noise of copy ``s`` is drawn
            for all examples in the same order whatever the chunking.
        stdevs: absolute noise standard deviation (float, or one per input), as Captum.
        stdev_spread: noise std relative to each example's value range ``max(x) - min(x)``, as PAIR
            (default 0.15 when ``stdevs`` is None).
        target: fixed on the clean input; int, list / tensor / NumPy array of B ints, callable, or None
            (predicted class).
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors are repeated).
        generator: ``torch.Generator`` or int seed for the noise (default seed 0); the wrapped method, if it
            takes one, gets a generator seeded from it.
        **kwargs: arguments of the wrapped method's ``explain`` (``baselines``, ``n_steps``, ``references``
            for the IG2 family: ``[R, *S]`` shared or ``[B, R, *S]`` per example, tiled with the copies, ...).
        """
        if nt_type not in NT_TYPES:
            raise InputValidationError(f"`nt_type` must be one of {NT_TYPES}, got {nt_type!r}.", "nt_type")
        nt_samples = check_count(nt_samples, "nt_samples")
        nt_samples_batch_size = check_optional_count(nt_samples_batch_size, "nt_samples_batch_size")
        if stdevs is not None and stdev_spread is not None:
            raise InputValidationError("give either `stdevs` or `stdev_spread`, not both.", "stdevs")
        items = as_tuple(inputs)
        b = items[0].shape[0]
        internal = check_optional_count(kwargs.get("internal_batch_size"), "internal_batch_size")
        if nt_samples_batch_size is not None:
            chunk = nt_samples_batch_size
        elif internal is not None:
            chunk = max(1, internal // b)
        else:
            chunk = max(1, AUTO_ELEMENT_BUDGET // max(1, b * row_numel(items)))
        chunk = min(chunk, nt_samples)
        sigmas = _sigmas(items, stdevs, 0.15 if stdevs is None and stdev_spread is None else stdev_spread)
        gen = as_generator(generator)
        cost = Cost()
        model = ModelFunction(self.forward_func, b, additional_forward_args, cost)
        takes_generator = "generator" in inspect.signature(self.inner.explain).parameters
        inner_gen = None
        if takes_generator:  # one stream for the wrapped method, one for the noise: chunking changes neither
            seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
            inner_gen = torch.Generator(device=gen.device).manual_seed(seed)
        sums = [torch.zeros_like(x) for x in items]
        squares = [torch.zeros_like(x) for x in items]
        deltas: list[Tensor] = []
        with model_guard(self.forward_func, self.eval_mode, self.model), track_cost(cost, items[0].device):
            clean = model.resolve_target(target, items)
            fixed_target = model.target if model.target is not None else target
            reference_set = bool(getattr(self.inner, "baselines_are_reference_set", False))
            done = 0
            while done < nt_samples:
                n = min(chunk, nt_samples - done)
                noisy = tuple(_noisy_copies(x, s, n, gen) for x, s in zip(items, sigmas))
                extra = dict(kwargs)
                if inner_gen is not None:
                    extra["generator"] = inner_gen
                if "baselines" in extra and not reference_set:
                    extra["baselines"] = _repeat_per_example(extra["baselines"], items, n, "baselines")
                if "references" in extra:
                    extra["references"] = _repeat_per_example(extra["references"], items, n, "references")
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
    if stdevs is not None:
        values = per_input(stdevs, len(items), "stdevs")
        for x, value in zip(items, values):
            shape = (x.shape[0],) + (1,) * (x.ndim - 1)
            out.append(torch.full(shape, check_number(value, "stdevs", nonnegative=True), dtype=x.dtype,
                                  device=x.device))
        return out
    spread = check_number(spread, "stdev_spread", nonnegative=True)
    for x in items:
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        flat = x.reshape(x.shape[0], -1)
        out.append((spread * (flat.max(1).values - flat.min(1).values)).view(shape))
    return out


def _noisy_copies(x: Tensor, sigma: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` noisy copies of every example, ``[B * n, *S]`` (example-major). The noise of each copy is drawn for
    all ``B`` examples at once, copy after copy, so the stream does not depend on how copies are chunked."""
    b = x.shape[0]
    noise = torch.stack([randn(x.shape, generator, x) for _ in range(n)], 1)  # [B, n, *S]
    out = x.unsqueeze(1) + sigma.unsqueeze(1) * noise
    return out.reshape(b * n, *x.shape[1:])


def _repeat_per_example(value: Any, items: tuple[Tensor, ...], n: int, argument: str) -> Any:
    """Tile per-example baselines / references with the ``n`` noisy copies of each example.

    A tensor is per-example when it has one more axis than its input (``[B, K, *S]``: ``K`` baselines or
    references per example) or, for ``baselines``, the input's shape with ``B`` rows. Shared ones (``[1, ...]``,
    ``[R, *S]`` references, numbers, names) are passed unchanged. A :class:`~pathattr.references.ReferenceSet`
    is unpacked to its tensor.
    """
    if isinstance(value, tuple):
        if len(value) != len(items):
            return value  # the wrapped method reports the mismatch
        return tuple(_repeat_one(v, x, n, argument) for v, x in zip(value, items))
    return _repeat_one(value, items[0], n, argument)


def _repeat_one(value: Any, x: Tensor, n: int, argument: str) -> Any:
    value = getattr(value, "references", value) if argument == "references" else value
    if not isinstance(value, Tensor) or value.ndim == 0:
        return value
    b = x.shape[0]
    per_example = value.shape[0] == b and b > 1 and (
        value.ndim == x.ndim + 1 or (argument == "baselines" and value.ndim == x.ndim)
    )
    return value.repeat_interleave(n, 0) if per_example else value


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
