"""Paths from baselines to inputs.

A *parametric* path knows every point in advance (straight line, blur path), so all its points can be
evaluated in any batch composition. A *sequential* path (Guided IG, IG2's GradPath) computes each point from
the gradient at the previous one; it is batched across examples and baselines, step by step.
"""

from .base import ParametricPath
from .straight import StraightLinePath

__all__ = ["ParametricPath", "StraightLinePath"]
