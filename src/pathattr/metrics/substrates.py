"""Substrates: what a perturbation metric puts in place of the removed (or not yet inserted) features.

A substrate specification is resolved against the inputs ``x`` ``[B, *S]`` into a tensor of the same shape:

* ``"zeros"``: ``0`` everywhere. Note that on a *normalised* image tensor (as in RISE's reference code) zero is
  the dataset mean colour, not black; use :class:`Constant` with the normalised value of black for black.
* ``"blur"``: RISE's Gaussian blur (:class:`RiseBlur`, 11x11 kernel, sigma 5, zero padding), per channel.
* ``"mean"``: each example's per-channel mean over its spatial axes (:class:`Mean`).
* ``"uniform"``: uniform noise in each example's ``[min, max]`` range (:class:`UniformNoise`), drawn from the
  metric's ``generator``.
* a number: that constant; a tensor broadcastable to ``x`` (``[B, *S]``, ``[1, *S]`` or trailing dims);
* a :class:`Substrate` instance, or a callable ``f(x) -> tensor like x``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputValidationError, check_finite
from ..ops import gaussian_blur
from ..randomness import rand


class Substrate(ABC):
    """A rule that makes the replacement values ``[B, *S]`` for inputs ``x`` ``[B, *S]``."""

    name: str = "substrate"

    @abstractmethod
    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Return a tensor shaped like ``x``."""

    def describe(self) -> dict[str, Any]:
        """Settings for the result's hyperparameter record."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


@dataclass
class Constant(Substrate):
    """The constant ``value`` everywhere (``value=0`` is the ``"zeros"`` substrate)."""

    value: float = 0.0
    name = "constant"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return torch.full_like(x, float(self.value))


def rise_kernel(klen: int = 11, sigma: float = 5.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """RISE's blur kernel ``[klen, klen]``: SciPy's ``gaussian_filter(delta, sigma)`` (mode ``reflect``, radius
    ``int(4 sigma + 0.5)``) of a centred delta on a ``klen x klen`` grid, exactly as ``gkern`` in RISE's
    ``evaluation.py``. Separable: the outer product of the 1-D response."""
    if klen < 1:
        raise InputValidationError(f"`klen` must be a positive int, got {klen}.", "klen")
    delta = torch.zeros(1, 1, klen, dtype=torch.float64)
    delta[0, 0, klen // 2] = 1.0
    k1 = gaussian_blur(delta, float(sigma), spatial_dims=(2,), padding="reflect")[0, 0]
    return torch.outer(k1, k1).to(dtype)


@dataclass
class RiseBlur(Substrate):
    """Gaussian blur as in RISE (Petsiuk et al., BMVC 2018): each channel convolved with :func:`rise_kernel`
    (``klen x klen``, ``sigma``) with zero padding ``klen // 2`` (``conv2d(padding=klen // 2)``).

    Needs channels-first images ``[B, C, H, W]``.
    """

    klen: int = 11
    sigma: float = 5.0
    name = "blur"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.ndim != 4:
            raise InputValidationError(
                f"the blur substrate needs images [B, C, H, W]; got inputs of shape {tuple(x.shape)}.", "substrate"
            )
        c = x.shape[1]
        kernel = rise_kernel(self.klen, self.sigma, x.dtype).to(x.device)
        weight = kernel.expand(c, 1, self.klen, self.klen).contiguous()
        pad = self.klen // 2
        out = F.conv2d(x, weight, padding=pad, groups=c)
        if out.shape != x.shape:  # even klen: crop the extra row/column like a 'same' convolution
            out = out[..., : x.shape[2], : x.shape[3]]
        return out


@dataclass
class Mean(Substrate):
    """Each example's per-channel mean over its spatial axes (``[B, C, *S]``), or its mean over all features
    for ``[B, F]`` inputs."""

    name = "mean"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        dims = tuple(range(2, x.ndim)) if x.ndim >= 3 else tuple(range(1, x.ndim))
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()


@dataclass
class UniformNoise(Substrate):
    """Independent ``U(low, high)`` noise per element; ``low``/``high`` default to each example's min/max.
    Drawn from the metric's ``generator``."""

    low: float | None = None
    high: float | None = None
    name = "uniform"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        flat = x.reshape(b, -1)
        tail = (1,) * (x.ndim - 1)
        low = flat.amin(1) if self.low is None else torch.full((b,), float(self.low), dtype=x.dtype)
        high = flat.amax(1) if self.high is None else torch.full((b,), float(self.high), dtype=x.dtype)
        low = low.to(x).view(b, *tail)
        high = high.to(x).view(b, *tail)
        return low + rand(x.shape, generator, x) * (high - low)


NAMED_SUBSTRATES: dict[str, Callable[[], Substrate]] = {
    "zeros": lambda: Constant(0.0),
    "blur": RiseBlur,
    "mean": Mean,
    "uniform": UniformNoise,
}

SubstrateSpec = str | float | int | Tensor | Substrate | Callable[[Tensor], Tensor]


def resolve_substrate(
    spec: SubstrateSpec, x: Tensor, generator: torch.Generator, argument: str = "substrate"
) -> tuple[Tensor, Any]:
    """Return ``(substrate [B, *S] like x, description for the hyperparameter record)``."""
    if isinstance(spec, bool):
        raise InputValidationError(f"`{argument}` must not be a bool.", argument)
    if isinstance(spec, str):
        if spec not in NAMED_SUBSTRATES:
            raise InputValidationError(
                f"`{argument}` name {spec!r} is unknown; choose one of {sorted(NAMED_SUBSTRATES)}, a number, a "
                "tensor, a Substrate or a callable.",
                argument,
            )
        spec = NAMED_SUBSTRATES[spec]()
    if isinstance(spec, (int, float)):
        spec = Constant(float(spec))
    if isinstance(spec, Substrate):
        out, desc = spec(x, generator), spec.describe()
    elif isinstance(spec, Tensor):
        t = spec.detach().to(device=x.device, dtype=x.dtype)
        try:
            out = torch.broadcast_to(t, x.shape).clone()
        except RuntimeError:
            raise InputValidationError(
                f"`{argument}` has shape {tuple(t.shape)}, which does not broadcast to the inputs {tuple(x.shape)}.",
                argument,
            ) from None
        desc = {"name": "tensor", "shape": tuple(t.shape)}
    elif callable(spec):
        out = spec(x)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            raise InputValidationError(
                f"a callable `{argument}` must return a tensor shaped like the inputs {tuple(x.shape)}.", argument
            )
        out = out.detach().to(x)
        desc = {"name": getattr(spec, "__qualname__", type(spec).__name__)}
    else:
        raise InputValidationError(
            f"`{argument}` must be a name, number, tensor, Substrate or callable, got {type(spec).__name__}.",
            argument,
        )
    check_finite(out, argument)
    return out, desc
