"""Paths from baselines to inputs.

A *parametric* path knows every point in advance (straight line, blur path), so all its points can be
evaluated in any batch composition (:func:`pathattr.engine.integrate_parametric_path`). A *sequential* path
(Guided IG, IG2's GradPath) computes each point from the gradient at the previous one; it is batched across
examples and baselines, step by step (:func:`pathattr.engine.integrate_sequential_path`). How to add either:
docs/contributing_paths.md.
"""

from .base import ParametricPath, SequentialPath, StepEvaluation
from .straight import StraightLinePath

__all__ = ["ParametricPath", "SequentialPath", "StepEvaluation", "StraightLinePath"]
