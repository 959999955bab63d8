"""Test helper: run PAIR-code/saliency's PIC metric (``saliency.metrics.pic``, v0.2.1) under NumPy 2.

PAIR's ``compute_pic_metric`` and ``aggregate_individual_pic_results`` call ``np.trapz``, which NumPy 2.4
removed. :func:`numpy2_compatible_pic` swaps the module's ``np`` for a proxy whose ``trapz`` is
``np.trapezoid`` (the same rule) for the duration of a ``with`` block; the installed package is never modified.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import numpy as np
import pytest

pair_pic = pytest.importorskip("saliency.metrics.pic")


class _NumpyProxy(types.ModuleType):
    """``numpy`` with ``trapz`` mapped to ``trapezoid``."""

    def __init__(self) -> None:
        super().__init__("numpy_proxy")

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def trapz(y, x=None, dx=1.0, axis=-1):
        return np.trapezoid(y, x=x, dx=dx, axis=axis)


@contextlib.contextmanager
def numpy2_compatible_pic() -> Iterator[types.ModuleType]:
    """Patch ``saliency.metrics.pic.np`` for NumPy 2.4 inside the block; yields the PAIR module."""
    original = pair_pic.np
    pair_pic.np = _NumpyProxy()
    try:
        yield pair_pic
    finally:
        pair_pic.np = original
