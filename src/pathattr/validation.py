"""Shared argument validators: one place that decides what a count, a flag, a finite number, a per-input value,
a target or a list of axes is, so every method rejects the same bad settings with the same clear message.

Every validator raises :class:`~pathattr.errors.InputValidationError` (or :class:`~pathattr.errors.TargetError`)
naming the offending argument, and returns the normalised value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .errors import InputValidationError, TargetError


def _is_int(value: Any) -> bool:
    """True for Python and NumPy integers, False for bools (``True`` is not a count) and everything else."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    return isinstance(value, numbers.Integral)


def check_count(value: Any, argument: str, minimum: int = 1) -> int:
    """An integer count ``>= minimum``: floats (even ``3.0``), bools and strings are rejected."""
    if not _is_int(value) or int(value) < minimum:
        raise InputValidationError(
            f"`{argument}` must be an int >= {minimum}, got {value!r} ({type(value).__name__}).", argument
        )
    return int(value)


def check_optional_count(value: Any, argument: str, minimum: int = 1) -> int | None:
    """``None`` or a count (see :func:`check_count`)."""
    return None if value is None else check_count(value, argument, minimum)


def check_flag(value: Any, argument: str) -> bool:
    """A real bool (``True``/``False``, NumPy bools too): strings such as ``"no"`` and numbers are rejected."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise InputValidationError(f"`{argument}` must be True or False, got {value!r} ({type(value).__name__}).",
                               argument)


def check_number(
    value: Any, argument: str, *, positive: bool = False, nonnegative: bool = False, finite: bool = True
) -> float:
    """A real number (not a bool), finite unless ``finite=False``, optionally ``> 0`` or ``>= 0``."""
    if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, numbers.Real):
        raise InputValidationError(f"`{argument}` must be a number, got {value!r} ({type(value).__name__}).",
                                   argument)
    out = float(value)
    if math.isnan(out) or (finite and not math.isfinite(out)):
        raise InputValidationError(f"`{argument}` must be a finite number, got {value!r}.", argument)
    if positive and not out > 0:
        raise InputValidationError(f"`{argument}` must be > 0, got {value!r}.", argument)
    if nonnegative and not out >= 0:
        raise InputValidationError(f"`{argument}` must be >= 0, got {value!r}.", argument)
    return out


def per_input(value: Any, n_inputs: int, argument: str) -> tuple[Any, ...]:
    """One value per input: a scalar is repeated; a tuple or list must have exactly ``n_inputs`` entries."""
    if isinstance(value, (tuple, list)):
        if len(value) != n_inputs:
            raise InputValidationError(
                f"`{argument}` has {len(value)} entries but there are {n_inputs} inputs; give one value per input "
                "or a single value for all.",
                argument,
            )
        return tuple(value)
    return (value,) * n_inputs


def check_spatial_dims(
    spatial_dims: Sequence[int] | None, ndim: int, argument: str = "spatial_dims"
) -> tuple[int, ...]:
    """Axes of an ``ndim``-dimensional batch to act on: ints in ``[-ndim, ndim)``, not the batch axis 0, no
    duplicates (after resolving negative axes). ``None`` means all axes after the channel axis 1 (needs
    ``ndim >= 3``)."""
    if spatial_dims is None:
        if ndim < 3:
            raise InputValidationError(
                f"blurring needs a channels-first input [B, C, *spatial]; got a {ndim}-d input "
                "(pass `spatial_dims` for other layouts).",
                "inputs",
            )
        return tuple(range(2, ndim))
    if _is_int(spatial_dims) or not isinstance(spatial_dims, Sequence) or isinstance(spatial_dims, str):
        raise InputValidationError(f"`{argument}` must be a sequence of axes, got {spatial_dims!r}.", argument)
    if len(spatial_dims) == 0:
        raise InputValidationError(f"`{argument}` is empty; give at least one axis.", argument)
    out = []
    for d in spatial_dims:
        if not _is_int(d):
            raise InputValidationError(f"`{argument}` entries must be ints, got {d!r}.", argument)
        d = int(d)
        if not -ndim <= d < ndim:
            raise InputValidationError(
                f"`{argument}` axis {d} is out of range for a {ndim}-d input (valid: {-ndim}..{ndim - 1}).", argument
            )
        out.append(d % ndim)
    if 0 in out:
        raise InputValidationError(f"`{argument}` must not contain the batch axis 0.", argument)
    if len(set(out)) != len(out):
        raise InputValidationError(f"`{argument}` {tuple(spatial_dims)} names an axis twice.", argument)
    return tuple(out)


class OutputIndexTarget:
    """Captum's tuple target: ``(i, j, ...)`` indexes the output dimensions after the batch dimension, the same
    for every example (``out[:, i, j, ...]``)."""

    def __init__(self, index: tuple[int, ...]) -> None:
        self.index = index

    def __call__(self, output: Any) -> Any:
        if not hasattr(output, "ndim") or output.ndim != len(self.index) + 1:
            raise TargetError(
                f"tuple `target` {self.index} indexes {len(self.index)} output dimensions after the batch dimension, "
                f"but the output has shape {tuple(getattr(output, 'shape', ()))}.",
                "target",
            )
        return output[(slice(None), *self.index)]

    def __repr__(self) -> str:
        return f"OutputIndexTarget({self.index})"


def normalize_target(target: Any) -> Any:
    """Accept NumPy targets like Python ones: a NumPy integer becomes an ``int``, an integer array a tensor
    (a float or bool array is rejected naming ``target``). A tuple of ints is Captum's index into the output
    dimensions after the batch dimension (:class:`OutputIndexTarget`); a list of tuples (Captum's per-example
    form) is rejected with the remedy. Everything else is returned unchanged."""
    if target is None or isinstance(target, bool):
        return target
    if isinstance(target, tuple):
        if not target or not all(isinstance(i, int) and not isinstance(i, bool) for i in target):
            raise TargetError(f"a tuple `target` must hold ints (Captum's output index), got {target!r}.", "target")
        return OutputIndexTarget(target)
    if isinstance(target, list) and any(isinstance(t, tuple) for t in target):
        raise TargetError(
            "a list of tuples as `target` (Captum's per-example output index) is not supported; pass a callable, "
            "e.g. `target=lambda out: out[torch.arange(len(out)), rows, cols]`.",
            "target",
        )
    mod = type(target).__module__
    if mod == "numpy" or mod.startswith("numpy."):
        import numpy as np
        import torch

        if isinstance(target, np.ndarray):
            if target.dtype.kind not in "iu":
                raise TargetError(f"`target` must hold integer class indices, got a NumPy {target.dtype} array.",
                                  "target")
            return torch.as_tensor(target.astype(np.int64))
        if isinstance(target, np.integer):
            return int(target)
        if isinstance(target, np.bool_):
            raise TargetError("`target` must be an int, list, tensor or callable, not bool.", "target")
        if isinstance(target, np.generic):
            raise TargetError(f"`target` must be an integer class index, got {target!r}.", "target")
    return target


__all__ = [
    "check_count",
    "check_flag",
    "check_number",
    "check_optional_count",
    "check_spatial_dims",
    "normalize_target",
    "per_input",
]
