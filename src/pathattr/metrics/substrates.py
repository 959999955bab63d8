"""Substrates: what a perturbation metric puts in place of the removed (or not yet inserted) features.

A substrate is a **baseline** (:mod:`pathattr.baselines`): one concept, one class hierarchy, one resolution
function, shared by methods and metrics. This module keeps the metric-side names working:
:class:`Substrate` is :class:`pathattr.baselines.Baseline`, :class:`UniformNoise` is
:class:`pathattr.baselines.Uniform`, :class:`RiseBlur`, :class:`Constant` and :func:`rise_kernel` are the
baselines of the same name, and :func:`resolve_substrate` is :func:`pathattr.baselines.resolve_substrate`.

A substrate specification is resolved against the inputs ``x`` ``[B, *S]`` into a tensor of the same shape:

* ``"zeros"``: ``0`` everywhere. Note that on a *normalised* image tensor (as in RISE's reference code) zero is
  the dataset mean colour, not black; use :class:`Constant` with the normalised value of black for black.
* ``"blur"``: RISE's Gaussian blur (:class:`RiseBlur`, 11x11 kernel, sigma 5, zero padding), per channel.
* ``"mean"``: each example's per-channel mean over its spatial axes (:class:`Mean`).
* ``"uniform"``: uniform noise in each example's ``[min, max]`` range (:class:`UniformNoise`), drawn from the
  metric's ``generator``; ``"gaussian"``: ``x + N(0, 0.1^2)``;
* a number: that constant; a tensor broadcastable to ``x`` (``[B, *S]``, ``[1, *S]`` or trailing dims);
* any :class:`~pathattr.baselines.Baseline` instance (also the methods' ``Blur``, ``Gaussian``...), or a callable
  ``f(x) -> tensor like x``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..baselines import (
    SUBSTRATE_DEFAULTS,
    Baseline,
    BaselineSpec,
    Constant,
    RiseBlur,
    Uniform,
    resolve_substrate,
    rise_kernel,
)
from ..baselines import Mean as _Mean

#: a substrate is a baseline (one class hierarchy for methods and metrics)
Substrate = Baseline
#: uniform noise in each example's range (the methods' :class:`~pathattr.baselines.Uniform`, one per example)
UniformNoise = Uniform
#: substrate names and their metric defaults
NAMED_SUBSTRATES = SUBSTRATE_DEFAULTS
SubstrateSpec = BaselineSpec


@dataclass
class Mean(_Mean):
    """Each example's per-channel mean over its spatial axes (``[B, C, *S]``), or its mean over all features
    for ``[B, F]`` inputs: :class:`pathattr.baselines.Mean` with ``over="example"`` by default (the methods'
    ``Mean`` uses the batch mean for ``[B, F]`` inputs)."""

    over: str | None = "example"


__all__ = [
    "NAMED_SUBSTRATES",
    "Constant",
    "Mean",
    "RiseBlur",
    "Substrate",
    "SubstrateSpec",
    "UniformNoise",
    "resolve_substrate",
    "rise_kernel",
]
