"""Adversarial paths: AGI (Pan, Li & Zhu, IJCAI 2021) and MFABA (Zhu et al., AAAI 2024), batched over paths.

Both methods walk from the input ``x`` *away* from the explained class ``y`` by an adversarial attack and
integrate the gradient of ``y``'s output along the walk, so the path starts at the input and ends at an
adversarial point (the "baseline" is found, not given)::

    z_0 = x,   z_{i+1} = step(z_i, gradient at z_i),   A = - sum_i g_y(z_i) * (z_{i+1} - z_i)

(a left Riemann sum from the input end; ``sum(A) ~= o_y(x) - o_y(z_end)``).

* **AGI** (:func:`agi_step`): one path per example and *false class* ``t``; the step ascends ``o_t`` with a
  signed-gradient (FGSM) step ``z' = clip(z + epsilon sign(grad o_t(z)))`` and the path stops once the model
  predicts ``t``; the paths of the ``k`` false classes are **summed**. ``reference_compat=True`` reproduces
  ``pd90506/AGI``'s ``fgsm_step``, which steps from the original input every iteration (so every iterate is
  within ``epsilon`` of ``x`` and the sum is not a path integral).
* **MFABA** (:func:`mfaba_step`): one path per example; the step *descends* ``o_y``: ``sharp`` is normalised
  gradient descent ``z' = clip(z - eta g / |g|_2)``, ``smooth`` a signed step kept in an L-inf ball of radius
  ``epsilon`` around ``x``; the path stops once the model no longer predicts ``y``.

The functions here are pure and batched over ``n`` rows (any shape ``[n, *S]``; norms are taken over all
features of a row). :func:`draw_false_classes` and :func:`spaced_false_classes` choose AGI's false classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import InputValidationError

MFABA_MODES = ("sharp", "smooth")
#: MFABA's default step per mode: sharp ``alpha * 100 = 0.1`` (L2 length), smooth ``alpha = 0.001`` (per feature)
MFABA_STEP_SIZE = {"sharp": 0.1, "smooth": 0.001}


def _clip(z: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    return z if bounds is None else z.clamp(bounds[0], bounds[1])


def agi_step(
    points: Tensor,
    inputs: Tensor,
    adversarial_gradients: Tensor,
    epsilon: float,
    bounds: tuple[float, float] | None = None,
    reference_compat: bool = False,
) -> tuple[Tensor, Tensor]:
    """One step of ``n`` AGI paths (pure function; Pan, Li & Zhu, IJCAI 2021, Algorithm 1).

    Args:
        points: ``[n, *S]`` current points ``z_i``.
        inputs: ``[n, *S]`` the explicand ``x`` of every path (used only with ``reference_compat``).
        adversarial_gradients: ``[n, *S]`` ``grad o_t(z_i)`` of the path's false class ``t`` (ascent direction).
        epsilon: FGSM step per feature (L-inf length of an unclipped step).
        bounds: ``(lo, hi)`` box the new points are clipped to, or None.
        reference_compat: step from ``x`` instead of ``z_i`` (``pd90506/AGI``'s ``fgsm_step(image, ...)``).

    Returns:
        ``z_{i+1} = clip(s + epsilon sign(a))`` ``[n, *S]`` with ``s = z_i`` (or ``x``) and the displacement
        ``z_{i+1} - s`` that the target gradient is integrated against (``A += -g_y * displacement``).
    """
    start = inputs if reference_compat else points
    new = _clip(start + epsilon * adversarial_gradients.sign().to(start.dtype), bounds)
    return new, new - start


def mfaba_step(
    points: Tensor,
    inputs: Tensor,
    gradients: Tensor,
    mode: str = "sharp",
    step_size: float | None = None,
    epsilon: float = 0.3,
    bounds: tuple[float, float] | None = None,
    eps: float = 1e-12,
) -> Tensor:
    """One MFABA step for ``n`` paths (pure function; Zhu et al., AAAI 2024; ``LMBTough/MFABA``'s ``FGSMGrad``).

    Args:
        points: ``[n, *S]`` current points ``z_t``.
        inputs: ``[n, *S]`` the explicand ``x`` of every path (the centre of ``smooth``'s L-inf ball).
        gradients: ``[n, *S]`` ``g_t = grad o_y(z_t)`` of the explained output (descent direction).
        mode: ``"sharp"``: ``z_{t+1} = clip(z_t - eta g_t / max(|g_t|_2, eps))`` (L2 norm over all features of a
            row; a zero gradient gives a zero step where the reference returns NaN); ``"smooth"``:
            ``z_{t+1} = clip(x + clip(z_t - eta sign(g_t) - x, -epsilon, epsilon))``.
        step_size: ``eta`` (None: the reference's 0.1 for sharp, 0.001 for smooth).
        epsilon: L-inf radius of ``smooth``'s ball around ``x`` (the reference's 0.3; unused by ``sharp``).
        bounds: ``(lo, hi)`` box the new points are clipped to, or None.
        eps: floor of the gradient norm (``sharp``).

    Returns:
        ``z_{t+1}`` ``[n, *S]``.
    """
    eta = MFABA_STEP_SIZE[mode] if step_size is None else step_size
    if mode == "smooth":
        moved = (points - eta * gradients.sign().to(points.dtype) - inputs).clamp(-epsilon, epsilon)
        return _clip(inputs + moved, bounds)
    n = points.shape[0]
    norm = torch.linalg.vector_norm(gradients.reshape(n, -1), dim=1).clamp_min(eps)
    return _clip(points - eta * gradients / norm.view(-1, *([1] * (points.ndim - 1))), bounds)


def draw_false_classes(target: Tensor, n_classes: int, k: int, generator: torch.Generator) -> Tensor:
    """``k`` distinct false classes per example, uniformly at random among the classes other than its target.

    Args:
        target: ``[B]`` explained class of every example.
        n_classes: number of classes ``C`` (``k <= C - 1``).
        k: false classes per example.
        generator: the only source of randomness (CPU generator; one ``[B, C]`` uniform draw).

    Returns:
        ``[B, k]`` long tensor on ``target``'s device.
    """
    keys = torch.rand((target.shape[0], n_classes), generator=generator, dtype=torch.float64)
    keys[torch.arange(target.shape[0]), target.cpu()] = 2.0  # never among the k smallest
    return keys.topk(k, dim=1, largest=False).indices.to(target.device)


def spaced_false_classes(n_classes: int, k: int) -> Tensor:
    """``pd90506/AGI``'s deterministic choice: every ``C // k``-th class below ``C - 1``
    (``range(0, 999, 1000 // k)`` on ImageNet), ``[k']`` with ``k' ~= k``; pass it as ``false_classes`` (a path
    whose false class equals the explained class is skipped, as in the reference)."""
    return torch.arange(0, n_classes - 1, max(n_classes // k, 1))


def check_agi_arguments(epsilon: Any, max_iter: Any, k: Any) -> None:
    """Validate AGI's hyperparameters (raises :class:`InputValidationError` naming the argument)."""
    _positive_int(max_iter, "max_iter")
    _positive_int(k, "k")
    _positive_number(epsilon, "epsilon")


def check_mfaba_arguments(n_steps: Any, mode: Any, step_size: Any, epsilon: Any) -> None:
    """Validate MFABA's hyperparameters (raises :class:`InputValidationError` naming the argument)."""
    _positive_int(n_steps, "n_steps")
    if mode not in MFABA_MODES:
        raise InputValidationError(f"`mode` must be one of {MFABA_MODES}, got {mode!r}.", "mode")
    if step_size is not None:
        _positive_number(step_size, "step_size")
    _positive_number(epsilon, "epsilon")


def check_bounds(bounds: Any) -> tuple[float, float] | None:
    """``None`` or ``(lo, hi)`` with ``lo < hi`` as floats (raises :class:`InputValidationError` on ``bounds``)."""
    if bounds is None:
        return None
    ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds
    )
    if not ok or not float(bounds[0]) < float(bounds[1]):
        raise InputValidationError(f"`bounds` must be None or (lo, hi) numbers with lo < hi, got {bounds!r}.",
                                   "bounds")
    return float(bounds[0]), float(bounds[1])


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputValidationError(f"`{name}` must be a positive int, got {value!r}.", name)


def _positive_number(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < float("inf"):
        raise InputValidationError(f"`{name}` must be a positive finite number, got {value!r}.", name)


__all__ = [
    "MFABA_MODES",
    "MFABA_STEP_SIZE",
    "agi_step",
    "check_agi_arguments",
    "check_bounds",
    "check_mfaba_arguments",
    "draw_false_classes",
    "mfaba_step",
    "spaced_false_classes",
]
