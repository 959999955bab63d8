"""Baselines: what a path starts from, and what a perturbation metric puts in place of removed features.

One concept serves both. Path methods (IG, Expected Gradients, Guided IG, ...) integrate from a *baseline*;
perturbation metrics (insertion / deletion, infidelity, the completeness gap) replace features by a baseline,
which the metrics call the *substrate*. Both are specified the same way and resolved here:
:func:`resolve_baselines` (methods: ``K`` baselines per example) and :func:`resolve_substrate` (metrics: one
per example, shaped like the inputs). :class:`Baseline` is the one base class (``pathattr.metrics.Substrate``
is the same class under its metric name).

A baseline specification is resolved against the inputs into a tensor ``[B, K, *S]`` per input: ``K``
baselines for each of the ``B`` examples. Accepted specifications (per input, or a tuple with one per input):

* ``None`` or ``"zeros"``: all zeros.
* a Python number: that constant everywhere.
* a tensor whose ndim equals the input's: broadcast to ``[B, *S]`` (``[1, *S]`` shared, ``[B, *S]``
  per example) - one baseline per example;
* a tensor with one more dim: ``[B or 1, K, *S]`` - ``K`` baselines per example;
* a tensor with fewer dims: broadcast against the trailing dims ``S`` (e.g. per-channel ``[C, 1, 1]``);
* a name: ``"zeros"``, ``"uniform"``, ``"gaussian"``, ``"blur"``, ``"rise_blur"``, ``"mean"`` (default settings
  of the classes below), or an instance of one of those classes (e.g. ``Uniform(n=8)`` for eight random
  baselines), or of any :class:`Baseline` subclass;
* a callable ``f(x) -> tensor`` (``[B, *S]`` like ``x``, or ``[B, K, *S]``).

Two names have context-dependent defaults, kept from the published protocols each context follows: for
methods ``"blur"`` is :class:`Blur` (sigma 10, reflect padding; Sturmfels et al.) and ``"mean"`` is
:class:`Mean` (per-example for images, batch mean for ``[B, F]``); for metrics (:data:`SUBSTRATE_DEFAULTS`)
``"blur"`` is RISE's :class:`RiseBlur` (11x11, sigma 5, zero padding) and ``"mean"`` is always per example.
Name the class (``Blur(...)``, ``RiseBlur()``, ``Mean(over=...)``) to use the same baseline in both.

Random baselines draw from the ``generator`` passed to ``attribute`` (or to the metric; seed 0 if none is
given).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputValidationError, check_finite
from .ops import gaussian_blur
from .randomness import rand, randn


class Baseline(ABC):
    """A rule that makes baselines from the input batch: ``K`` per example for methods, one per example for
    metrics (where it is called a substrate; ``pathattr.metrics.Substrate`` is this class).

    ``__call__(x, generator)`` returns ``[B or 1, K, *S]`` for ``x`` ``[B, *S]``, or ``[B, *S]`` (one baseline per
    example, the form metric substrates have always returned); both are accepted everywhere.
    """

    name: str = "baseline"

    @abstractmethod
    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Return baselines of shape ``[B or 1, K, *S]`` (or ``[B, *S]``) for ``x`` of shape ``[B, *S]``."""

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
    """``n`` uniform-noise baselines per example (Sturmfels et al., Distill 2020); independent ``U(low, high)``
    per element. ``low``/``high`` default to the minimum/maximum of each example. As a metric substrate
    (``"uniform"``, formerly ``UniformNoise``) ``n`` is 1.
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


def rise_kernel(klen: int = 11, sigma: float = 5.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """RISE's blur kernel ``[klen, klen]``: SciPy's ``gaussian_filter(delta, sigma)`` (mode ``reflect``, radius
    ``int(4 sigma + 0.5)``) of a centred delta on a ``klen x klen`` grid, exactly as ``gkern`` in RISE's
    ``evaluation.py``. Separable: the outer product of the 1-D response."""
    if isinstance(klen, bool) or not isinstance(klen, int) or klen < 1:
        raise InputValidationError(f"`klen` must be a positive int, got {klen!r}.", "klen")
    delta = torch.zeros(1, 1, klen, dtype=torch.float64)
    delta[0, 0, klen // 2] = 1.0
    k1 = gaussian_blur(delta, float(sigma), spatial_dims=(2,), padding="reflect")[0, 0]
    return torch.outer(k1, k1).to(dtype)


@dataclass
class RiseBlur(Baseline):
    """Gaussian blur as in RISE (Petsiuk et al., BMVC 2018): each channel convolved with :func:`rise_kernel`
    (``klen x klen``, ``sigma``) with zero padding ``klen // 2`` (``conv2d(padding=klen // 2)``). The metrics'
    ``"blur"`` substrate; as a method baseline name it ``"rise_blur"``.

    Needs channels-first images ``[B, C, H, W]``.
    """

    klen: int = 11
    sigma: float = 5.0
    name = "blur"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.ndim != 4:
            raise InputValidationError(
                f"the RISE blur baseline needs images [B, C, H, W]; got inputs of shape {tuple(x.shape)}.",
                "substrate",
            )
        c = x.shape[1]
        kernel = rise_kernel(self.klen, self.sigma, x.dtype).to(x.device)
        weight = kernel.expand(c, 1, self.klen, self.klen).contiguous()
        out = F.conv2d(x, weight, padding=self.klen // 2, groups=c)
        if out.shape != x.shape:  # even klen: crop the extra row/column like a 'same' convolution
            out = out[..., : x.shape[2], : x.shape[3]]
        return out  # [B, *S]: one baseline per example


#: names accepted by methods (``baselines="..."``), with the methods' default settings
NAMED_BASELINES: dict[str, Callable[[], Baseline]] = {
    "zeros": Zeros,
    "uniform": Uniform,
    "gaussian": Gaussian,
    "blur": Blur,
    "rise_blur": RiseBlur,
    "mean": Mean,
}

#: names accepted by metrics (``substrate="..."``): the same names, with the metrics' defaults where they differ
#: ("zeros" is recorded as ``Constant(0)``; "blur" is RISE's blur; "mean" is always per example)
SUBSTRATE_DEFAULTS: dict[str, Callable[[], Baseline]] = {
    **NAMED_BASELINES,
    "zeros": lambda: Constant(0.0),
    "blur": RiseBlur,
    "mean": lambda: Mean(over="example"),
}

BaselineSpec = None | float | int | str | Tensor | Baseline | Callable[[Tensor], Tensor]
BaselinesType = BaselineSpec | tuple[BaselineSpec, ...]


def _positive(n: int, argument: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputValidationError(f"`{argument}` must be a positive int, got {n!r}.", argument)
    return n


def resolve_baseline(
    x: Tensor,
    spec: BaselineSpec,
    generator: torch.Generator,
    argument: str = "baselines",
    names: dict[str, Callable[[], Baseline]] | None = None,
) -> Tensor:
    """Resolve one input's baseline specification into ``[B or 1, K, *S]`` (checked finite).

    ``names``: the name table (:data:`NAMED_BASELINES` for methods, :data:`SUBSTRATE_DEFAULTS` for metrics).
    """
    names = NAMED_BASELINES if names is None else names
    if spec is None:
        spec = Zeros()
    if isinstance(spec, str):
        if spec not in names:
            raise InputValidationError(
                f"`{argument}` name {spec!r} is unknown; choose one of {sorted(names)}, a number, a tensor, a "
                "Baseline or a callable.",
                argument,
            )
        spec = names[spec]()
    if isinstance(spec, bool):
        raise InputValidationError(f"`{argument}` must not be a bool.", argument)
    if isinstance(spec, (int, float)):
        spec = Constant(float(spec))
    if isinstance(spec, Baseline):
        out = spec(x, generator)
        if not isinstance(out, Tensor):
            raise InputValidationError(f"the Baseline {type(spec).__name__} did not return a tensor.", argument)
        out = _from_tensor(x, out, argument) if out.ndim == x.ndim else out
    elif isinstance(spec, Tensor):
        out = _from_tensor(x, spec.detach(), argument)
    elif callable(spec):
        out = spec(x)
        if not isinstance(out, Tensor) or out.shape[0] != x.shape[0] or out.ndim not in (x.ndim, x.ndim + 1):
            raise InputValidationError(
                f"a callable `{argument}` must return a tensor [B, *S] like the inputs {tuple(x.shape)} (or "
                "[B, K, *S]).",
                argument,
            )
        out = _from_tensor(x, out.detach(), argument)
    else:
        raise InputValidationError(
            f"`{argument}` must be None, a number, a tensor, a name, a Baseline or a callable, got "
            f"{type(spec).__name__}.",
            argument,
        )
    check_finite(out, argument)
    return out


def describe_baseline(spec: Any, names: dict[str, Callable[[], Baseline]] | None = None) -> Any:
    """A record of a baseline specification for a result's hyperparameters."""
    names = NAMED_BASELINES if names is None else names
    if spec is None:
        spec = Zeros()
    if isinstance(spec, str) and spec in names:
        spec = names[spec]()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = Constant(float(spec))
    if isinstance(spec, Baseline):
        return spec.describe()
    if isinstance(spec, Tensor):
        return {"name": "tensor", "shape": tuple(spec.shape)}
    if callable(spec):
        return {"name": getattr(spec, "__qualname__", type(spec).__name__)}
    return {"name": repr(spec)}


def resolve_substrate(
    spec: BaselineSpec, x: Tensor, generator: torch.Generator, argument: str = "substrate"
) -> tuple[Tensor, Any]:
    """A metric's substrate: one baseline per example, shaped like ``x`` ``[B, *S]`` (a new tensor), and its
    record for the hyperparameters. Specifications as for methods (names with :data:`SUBSTRATE_DEFAULTS`)."""
    if spec is None:
        raise InputValidationError(f"`{argument}` must be a name, number, tensor, Baseline or callable.", argument)
    out = resolve_baseline(x, spec, generator, argument, SUBSTRATE_DEFAULTS)
    if out.shape[1] != 1:
        raise InputValidationError(
            f"`{argument}` gives {out.shape[1]} baselines per example; a metric needs one per example.", argument
        )
    try:
        sub = torch.broadcast_to(out[:, 0].to(device=x.device, dtype=x.dtype), x.shape).clone()
    except RuntimeError:
        raise InputValidationError(
            f"`{argument}` has shape {tuple(out.shape)}, which does not broadcast to the inputs {tuple(x.shape)}.",
            argument,
        ) from None
    return sub, describe_baseline(spec, SUBSTRATE_DEFAULTS)


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
        resolve_baseline(x, s, generator, "baselines" if len(inputs) == 1 else f"baselines[{i}]")
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
