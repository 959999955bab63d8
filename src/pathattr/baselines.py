"""Baselines (references) for path methods.

A baseline specification is resolved against the inputs into a tensor ``[B, K, *S]`` per input: ``K``
baselines for each of the ``B`` examples. Accepted specifications (per input, or a tuple with one per input):

* ``None`` or ``"zeros"``: all zeros.
* a Python number: that constant everywhere.
* a tensor whose ndim equals the input's: broadcast to ``[B, *S]`` (``[1, *S]`` shared, ``[B, *S]``
  per example) - one baseline per example;
* a tensor with one more dim: ``[B or 1, K, *S]`` - ``K`` baselines per example;
* a tensor with fewer dims: broadcast against the trailing dims ``S`` (e.g. per-channel ``[C, 1, 1]``);
* a name: ``"zeros"``, ``"uniform"``, ``"gaussian"``, ``"blur"``, ``"mean"`` (default settings of the
  classes below), or an instance of one of those classes (e.g. ``Uniform(n=8)`` for eight random baselines).

Random baselines draw from the ``generator`` passed to ``attribute`` (seed 0 if none is given).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import InputValidationError, check_finite
from .ops import gaussian_blur
from .randomness import rand, randn


class Baseline(ABC):
    """A rule that makes ``K`` baselines per example from the input batch."""

    name: str = "baseline"

    @abstractmethod
    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Return baselines of shape ``[B, K, *S]`` for ``x`` of shape ``[B, *S]``."""

    def describe(self) -> dict[str, Any]:
        """Settings for the result's hyperparameter record."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


@dataclass
class Zeros(Baseline):
    """All-zero baseline (black image in [0, 1] pixel space)."""

    name = "zeros"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x.new_zeros((1, 1, *x.shape[1:]))


@dataclass
class Constant(Baseline):
    """Constant baseline ``value`` everywhere."""

    value: float = 0.0
    name = "constant"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x.new_full((1, 1, *x.shape[1:]), float(self.value))


@dataclass
class Uniform(Baseline):
    """``n`` uniform-noise baselines per example (Sturmfels et al., Distill 2020).

    ``low``/``high`` default to the minimum/maximum of each example.
    """

    low: float | None = None
    high: float | None = None
    n: int = 1
    name = "uniform"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        flat = x.reshape(b, -1)
        low = flat.min(1).values if self.low is None else torch.full((b,), float(self.low), dtype=x.dtype)
        high = flat.max(1).values if self.high is None else torch.full((b,), float(self.high), dtype=x.dtype)
        shape_tail = (1,) * (x.ndim - 1)
        low = low.to(x).view(b, 1, *shape_tail)
        high = high.to(x).view(b, 1, *shape_tail)
        u = rand((b, _positive(self.n, "n"), *x.shape[1:]), generator, x)
        return low + u * (high - low)


@dataclass
class Gaussian(Baseline):
    """``n`` baselines ``x + N(0, sigma^2)`` per example (Sturmfels et al., Distill 2020).

    ``sigma`` is absolute; clip the result with ``clip=(low, high)`` to stay in the data range.
    """

    sigma: float = 0.1
    n: int = 1
    clip: tuple[float, float] | None = None
    name = "gaussian"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        noise = randn((x.shape[0], _positive(self.n, "n"), *x.shape[1:]), generator, x)
        out = x.unsqueeze(1) + float(self.sigma) * noise
        return out.clamp(*self.clip) if self.clip is not None else out


@dataclass
class Blur(Baseline):
    """Gaussian-blurred copy of each example (Fong & Vedaldi 2017; Sturmfels et al. 2020).

    ``sigma`` in pixels over the spatial axes of a channels-first input (``spatial_dims`` to override).
    """

    sigma: float = 10.0
    spatial_dims: Sequence[int] | None = None
    padding: str = "reflect"
    name = "blur"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return gaussian_blur(x, self.sigma, self.spatial_dims, padding=self.padding).unsqueeze(1)


@dataclass
class Mean(Baseline):
    """Mean baseline.

    ``over="example"`` (default for inputs with spatial axes): each example's per-channel mean over its
    spatial axes. ``over="batch"`` (default for ``[B, F]`` inputs): the feature-wise mean over the batch,
    the usual tabular "data mean" baseline when the batch is representative.
    """

    over: str | None = None
    name = "mean"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        over = self.over or ("example" if x.ndim >= 3 else "batch")
        if over == "batch":
            return x.mean(0, keepdim=True).unsqueeze(1)
        if over == "example":
            dims = tuple(range(2, x.ndim)) if x.ndim >= 3 else tuple(range(1, x.ndim))
            return x.mean(dim=dims, keepdim=True).expand_as(x).clone().unsqueeze(1)
        raise InputValidationError(f"`over` must be 'example' or 'batch', got {over!r}.", "baselines")


NAMED_BASELINES: dict[str, type[Baseline]] = {
    "zeros": Zeros,
    "uniform": Uniform,
    "gaussian": Gaussian,
    "blur": Blur,
    "mean": Mean,
}

BaselineSpec = None | float | int | str | Tensor | Baseline
BaselinesType = BaselineSpec | tuple[BaselineSpec, ...]


def _positive(n: int, argument: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputValidationError(f"`{argument}` must be a positive int, got {n!r}.", argument)
    return n


def _resolve_one(x: Tensor, spec: BaselineSpec, generator: torch.Generator, argument: str) -> Tensor:
    if spec is None:
        spec = Zeros()
    if isinstance(spec, str):
        if spec not in NAMED_BASELINES:
            raise InputValidationError(
                f"`{argument}` name {spec!r} is unknown; choose one of {sorted(NAMED_BASELINES)}.", argument
            )
        spec = NAMED_BASELINES[spec]()
    if isinstance(spec, bool):
        raise InputValidationError(f"`{argument}` must not be a bool.", argument)
    if isinstance(spec, (int, float)):
        spec = Constant(float(spec))
    if isinstance(spec, Baseline):
        out = spec(x, generator)
    elif isinstance(spec, Tensor):
        out = _from_tensor(x, spec, argument)
    else:
        raise InputValidationError(
            f"`{argument}` must be None, a number, a tensor, a name or a Baseline, got {type(spec).__name__}.",
            argument,
        )
    check_finite(out, argument)
    return out


def _from_tensor(x: Tensor, t: Tensor, argument: str) -> Tensor:
    if not t.is_floating_point():
        t = t.to(x.dtype)
    t = t.to(device=x.device, dtype=x.dtype)
    b, shape = x.shape[0], tuple(x.shape[1:])
    try:
        if t.ndim == x.ndim + 1:
            if t.shape[0] not in (1, b) or tuple(t.shape[2:]) != shape:
                raise RuntimeError
            return t
        if t.ndim < x.ndim or t.shape[0] == 1:
            return torch.broadcast_to(t, (1, *shape)).unsqueeze(1)
        return torch.broadcast_to(t, x.shape).unsqueeze(1)
    except RuntimeError:
        raise InputValidationError(
            f"`{argument}` has shape {tuple(t.shape)}, which does not fit the input shape {tuple(x.shape)}: "
            f"expected a tensor broadcastable to [B, *S] = {tuple(x.shape)}, or [B or 1, K, *S] for K baselines "
            "per example.",
            argument,
        ) from None


def resolve_baselines(
    inputs: tuple[Tensor, ...], baselines: BaselinesType, generator: torch.Generator
) -> tuple[Tensor, ...]:
    """Resolve a baseline specification into one ``[B or 1, K, *S]`` tensor per input (same ``K`` for all;
    batch dim 1 when the baselines are shared by all examples)."""
    if isinstance(baselines, tuple):
        if len(baselines) != len(inputs):
            raise InputValidationError(
                f"`baselines` is a tuple of {len(baselines)} entries but there are {len(inputs)} inputs.",
                "baselines",
            )
        specs = baselines
    else:
        specs = (baselines,) * len(inputs)
    resolved = [
        _resolve_one(x, s, generator, "baselines" if len(inputs) == 1 else f"baselines[{i}]")
        for i, (x, s) in enumerate(zip(inputs, specs))
    ]
    k = max(r.shape[1] for r in resolved)
    for i, r in enumerate(resolved):
        if r.shape[1] not in (1, k):
            raise InputValidationError(
                f"`baselines` give {r.shape[1]} baselines per example for input {i} but {k} for another input.",
                "baselines",
            )
    return tuple(r.expand(r.shape[0], k, *r.shape[2:]) if r.shape[1] != k else r for r in resolved)
