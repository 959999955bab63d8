"""Test helper: run PAIR-code/saliency's PIC metric (``saliency.metrics.pic``, v0.2.1) under NumPy 2.

PAIR's ``compute_pic_metric`` and ``aggregate_individual_pic_results`` call ``np.trapz``, which NumPy 2.4
removed. :func:`numpy2_compatible_pic` swaps the module's ``np`` for a proxy whose ``trapz`` is
``np.trapezoid`` (the same rule) for the duration of a ``with`` block; the installed package is never modified.
"""

from __future__ import annotations

import contextlib

import pytest

from pathattr.testing.peers import numpy2_compatible

pair_pic = pytest.importorskip("saliency.metrics.pic")


def numpy2_compatible_pic() -> contextlib.AbstractContextManager:
    """Patch ``saliency.metrics.pic.np`` for NumPy 2.4 inside the block; yields the PAIR module."""
    return numpy2_compatible(pair_pic)
