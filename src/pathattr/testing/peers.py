"""Run PAIR-code/saliency 0.2.1 (a peer used as an oracle and in benchmarks) under NumPy 2.

PAIR calls ``np.quantile(..., interpolation=...)`` (Guided IG) and ``np.trapz`` (PIC), both gone in NumPy 2.4.
:func:`numpy2_compatible` swaps the ``np`` global of one PAIR module for a proxy that maps both to their NumPy 2
names, for the duration of a ``with`` block; the installed package is not changed.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import numpy as np


class NumpyProxy(types.ModuleType):
    """``numpy`` with ``quantile(..., interpolation=...)`` mapped to ``method=`` and ``trapz`` to ``trapezoid``."""

    def __init__(self) -> None:
        super().__init__("numpy_pair_proxy")

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, *args, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return np.quantile(a, q, *args, **kwargs)

    @staticmethod
    def trapz(y, x=None, dx=1.0, axis=-1):
        return np.trapezoid(y, x=x, dx=dx, axis=axis)


@contextlib.contextmanager
def numpy2_compatible(module: types.ModuleType) -> Iterator[types.ModuleType]:
    """Within the block, ``module.np`` is a :class:`NumpyProxy`; restored afterwards, also on exceptions."""
    original = module.np
    module.np = NumpyProxy()
    try:
        yield module
    finally:
        module.np = original
