"""Exceptions raised by pathattr.

Every exception names the offending argument (``.argument``) so that callers and tests can tell which input
was rejected without parsing the message.
"""

from __future__ import annotations


class PathattrError(Exception):
    """Base class of every exception pathattr raises on purpose."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class InputValidationError(PathattrError, ValueError):
    """An argument has the wrong shape, dtype, value or type."""


class TargetError(InputValidationError, IndexError):
    """``target`` does not select one valid output per example."""


class NonFiniteError(PathattrError, FloatingPointError):
    """NaN or infinity in the inputs, baselines, model outputs or gradients."""


class NoGradientError(PathattrError, RuntimeError):
    """The model output does not depend (differentiably) on the attributed input."""


def check_finite(tensor, argument: str, what: str = "values") -> None:
    """Raise :class:`NonFiniteError` naming ``argument`` if ``tensor`` holds NaN or infinity."""
    import math

    import torch

    if tensor.numel() == 0 or not (tensor.is_floating_point() or tensor.is_complex()):
        return
    total = tensor.detach().sum()  # one pass: a non-finite element (or overflow) makes the sum non-finite
    if math.isfinite(float(total.abs() if total.is_complex() else total)):
        return
    if not bool(torch.isfinite(tensor).all()):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteError(
            f"`{argument}` contains {n_bad} non-finite {what} (NaN or inf); attributions would be meaningless.",
            argument,
        )
