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
:class:`AGIPath` and :class:`MFABAPath` are the :class:`~pathattr.paths.base.SequentialPath` s walked by
:func:`pathattr.engine.integrate_sequential_path`: they evaluate the model themselves (softmax or logits, the
stopping test on the predicted class, AGI's second gradient) and a path that has stopped costs no further model
call (it stays put: zero path elements, its last output repeated).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import InputValidationError, check_finite
from .base import SequentialPath, StepEvaluation
from .guided import flatten_features, unflatten_features

#: AGI's default number of false classes (the paper's k = 20, at most C - 1)
AGI_FALSE_CLASSES = 20
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


class AttackPath(SequentialPath):
    """``P`` attack paths from the inputs (``direction = -1``), advanced one step per engine call.

    Args:
        inputs: per input ``[P, *S]``, the explicand of every path (the start ``z_0``).
        example: ``[P]`` the example each path explains.
        target: ``[P]`` the explained class ``y`` of every path.
        n_steps: maximum number of steps.
        use_softmax: differentiate ``softmax(logits)`` (both papers) instead of the logits.
        active: ``[P]`` bool, paths that are walked (None: all); the others stay at the input.

    State: ``z`` ``[P, N]`` (flattened features, the inputs' dtype), ``stopped`` ``[P]`` (no further model
    calls), ``success`` ``[P]`` (the attack's goal reached at the last evaluated point), ``steps`` ``[P]`` steps
    taken and ``last_output`` ``[P]`` the target output at the last evaluated point.
    """

    direction = -1

    def __init__(self, inputs: tuple[Tensor, ...], example: Tensor, target: Tensor, n_steps: int,
                 use_softmax: bool = True, active: Tensor | None = None) -> None:
        p = inputs[0].shape[0]
        self.like, self.example, self.target, self.n_steps = inputs, example, target, n_steps
        self.x = flatten_features(inputs, p, inputs[0].dtype)
        self.z, self.dtype, self.use_softmax, self.active = self.x, self.x.dtype, use_softmax, active
        self.stopped = torch.zeros(p, dtype=torch.bool, device=self.x.device) if active is None else ~active
        self.success = torch.zeros_like(self.stopped)
        self.steps = torch.zeros(p, dtype=torch.long, device=self.x.device)
        self.last_output = torch.zeros(p, dtype=self.x.dtype, device=self.x.device)
        self.step = 0

    @property
    def n_paths(self) -> int:
        return self.x.shape[0]

    def example_index(self, path_index: Tensor) -> Tensor:
        return self.example[path_index]

    def points(self, rows: Tensor | None) -> tuple[Tensor, ...]:
        return unflatten_features(self.z if rows is None else self.z[rows], self.like)

    # the method-specific parts -------------------------------------------------------------------------------
    def goal(self, logits: Tensor, rows: Tensor) -> Tensor:
        """``[n]`` bool: the attack has reached its goal at these rows' points."""
        raise NotImplementedError

    def may_stop(self, final: bool) -> bool:
        """Whether the goal test may stop a path at the current evaluation."""
        return not final

    def attack_gradient(self, model: Any, probs: Tensor, rows: Tensor, points: tuple[Tensor, ...],
                        retain: bool) -> Tensor | None:
        """The gradient the step follows, flattened ``[n, N]`` (None: the target gradient)."""
        return None

    def move(self, z: Tensor, x: Tensor, attack: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_{i+1}, path element)`` of rows ``z`` (element oriented baseline -> input: ``z_i - z_{i+1}``)."""
        raise NotImplementedError

    # the SequentialPath protocol -----------------------------------------------------------------------------
    def evaluate(self, model: Any, rows: Tensor, points: tuple[Tensor, ...], example_index: Tensor, gradient: bool,
                 final: bool) -> StepEvaluation:
        """Rows that have stopped repeat their last output (zero gradient, no model call); the others get one
        forward (softmax or logits), the goal test, the target gradient and, before a step, the attack's own."""
        run = (~self.stopped[rows]).nonzero().squeeze(1)
        every, n_run = run.numel() == rows.numel(), run.numel()
        grads = attack = None
        if not every:
            grads = None if not gradient else tuple(torch.zeros_like(t) for t in points)
            attack = None if final else self.x.new_zeros((rows.numel(), self.x.shape[1]))
        if n_run:
            r = rows if every else rows[run]
            graph = gradient or not final
            pts = tuple((t if every else t[run]).detach().requires_grad_(graph) for t in points)
            with torch.set_grad_enabled(graph):
                logits = model.forward(pts, example_index if every else example_index[run])
                probs = torch.softmax(logits, dim=1) if self.use_softmax else logits
                values = probs.gather(1, self.target[r].view(-1, 1)).squeeze(1)
                check_finite(values, "forward_func", "outputs")
                reached = self.goal(logits.detach(), r)
                self.success[r] = reached
                if self.may_stop(final):
                    self.stopped[r] = reached
                self.last_output[r] = values.detach().to(self.dtype)
                a = None if final else self.attack_gradient(model, probs, r, pts, retain=gradient)
                g = model.backward(values, pts) if gradient or (a is None and not final) else None
            if not final and a is None:
                a = flatten_features(g, n_run, self.dtype)  # type: ignore[arg-type]
            if every:
                grads, attack = (g if gradient else None), a
            else:
                if gradient:
                    for full, part in zip(grads, g):  # type: ignore[arg-type]
                        full[run] = part
                if not final:
                    attack[run] = a  # type: ignore[index]
        return StepEvaluation(grads, self.last_output[rows].clone(), {} if final else {"attack": attack})

    def advance(self, evaluation: StepEvaluation, rows: Tensor | None) -> tuple[Tensor, ...]:
        """One step of the paths that have not stopped; stopped rows stay put (zero path element)."""
        idx = torch.arange(self.n_paths, device=self.x.device) if rows is None else rows
        z, moving = self.z[idx], ~self.stopped[idx]
        new, element = self.move(z, self.x[idx], evaluation.extras["attack"], idx)
        keep = moving.view(-1, 1)
        new, element = torch.where(keep, new, z), torch.where(keep, element, torch.zeros_like(element))
        self.z = new if rows is None else self.z.index_copy(0, rows, new)  # never in place: points() are in use
        self.steps[idx] += moving.long()
        self.step += 1
        return unflatten_features(element, self.like)

    def end_points(self) -> tuple[Tensor, ...]:
        """The last point of every path, per input ``[P, *S]``."""
        return unflatten_features(self.z, self.like)


class AGIPath(AttackPath):
    """AGI's paths (Pan, Li & Zhu, IJCAI 2021): one per example x false class ``t``; each step ascends ``o_t``
    with :func:`agi_step` and a path stops at the first point the model assigns to ``t`` (tested before each
    step, as the reference). Extra args: ``false_class`` ``[P]``, ``epsilon``, ``bounds``, ``reference_compat``.
    """

    def __init__(self, inputs: tuple[Tensor, ...], example: Tensor, target: Tensor, false_class: Tensor,
                 n_steps: int, epsilon: float, bounds: tuple[float, float] | None = None,
                 reference_compat: bool = False, use_softmax: bool = True) -> None:
        super().__init__(inputs, example, target, n_steps, use_softmax, active=false_class != target)
        self.false_class, self.epsilon, self.bounds, self.compat = false_class, epsilon, bounds, reference_compat

    def goal(self, logits: Tensor, rows: Tensor) -> Tensor:
        return logits.argmax(1) == self.false_class[rows]

    def attack_gradient(self, model: Any, probs: Tensor, rows: Tensor, points: tuple[Tensor, ...],
                        retain: bool) -> Tensor:
        values = probs.gather(1, self.false_class[rows].view(-1, 1)).squeeze(1)
        return flatten_features(model.backward(values, points, retain_graph=retain), rows.numel(), self.dtype)

    def move(self, z: Tensor, x: Tensor, attack: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        new, disp = agi_step(z, x, attack, self.epsilon, self.bounds, self.compat)
        return new, -disp


class MFABAPath(AttackPath):
    """MFABA's paths (Zhu et al., AAAI 2024): one per example; each step descends ``o_y`` with
    :func:`mfaba_step` and (with ``early_stop``) a path stops at the first point after the input where the model
    no longer predicts ``y``. Extra args: ``mode``, ``step_size``, ``epsilon``, ``bounds``, ``early_stop``, ``eps``.
    """

    def __init__(self, inputs: tuple[Tensor, ...], example: Tensor, target: Tensor, n_steps: int, mode: str,
                 step_size: float | None, epsilon: float, bounds: tuple[float, float] | None = None,
                 early_stop: bool = True, use_softmax: bool = True, eps: float = 1e-12) -> None:
        super().__init__(inputs, example, target, n_steps, use_softmax)
        self.mode, self.step_size, self.epsilon, self.bounds = mode, step_size, epsilon, bounds
        self.early_stop, self.eps = early_stop, eps

    def goal(self, logits: Tensor, rows: Tensor) -> Tensor:
        return logits.argmax(1) != self.target[rows]

    def may_stop(self, final: bool) -> bool:
        return self.early_stop and self.step > 0  # the reference tests only after a step

    def move(self, z: Tensor, x: Tensor, attack: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        new = mfaba_step(z, x, attack, self.mode, self.step_size, self.epsilon, self.bounds, self.eps)
        return new, z - new


def classifier_outputs(model: Any, inputs: tuple[Tensor, ...], use_softmax: bool) -> tuple[Tensor, Tensor]:
    """Logits ``[B, C]`` at the inputs (one forward) and the explained output ``o_y(x)`` ``[B]`` (softmax
    probability or logit of the resolved target); raises :class:`InputValidationError` unless the model is a
    classifier (``[B, C]``, ``C >= 2``) and the target one class index per example (no callable)."""
    with torch.no_grad():
        logits = model.forward(inputs)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise InputValidationError(f"adversarial paths need class scores [B, C] with C >= 2 from `forward_func`, "
                                   f"got {shape}.", "forward_func")
    if not isinstance(model.target, Tensor):
        raise InputValidationError("`target` must select one class per example (an int, list or tensor, or None "
                                   "for the predicted class), not a callable.", "target")
    probs = torch.softmax(logits, dim=1) if use_softmax else logits
    return logits, probs.gather(1, model.target.view(-1, 1)).squeeze(1)


def resolve_false_classes(false_classes: Any, target: Tensor, n_classes: int, k: int | None,
                          generator: torch.Generator) -> Tensor:
    """AGI's false classes ``[B, k]``: drawn with :func:`draw_false_classes` if None (``k`` None: ``min(20, C - 1)``),
    else the given class indices (``[k]`` shared or ``[B, k]``; entries equal to an example's target are skipped
    by the path)."""
    if false_classes is None:
        k = min(AGI_FALSE_CLASSES, n_classes - 1) if k is None else k
        if k > n_classes - 1:
            raise InputValidationError(f"`n_false_classes` = {k} exceeds the {n_classes - 1} classes other than the "
                                       "target.", "n_false_classes")
        return draw_false_classes(target, n_classes, k, generator)
    classes = torch.as_tensor(false_classes, device=target.device)
    if classes.is_floating_point() or classes.dtype == torch.bool or classes.ndim not in (1, 2) or \
            classes.numel() == 0 or (classes.ndim == 2 and classes.shape[0] != target.shape[0]):
        raise InputValidationError(f"`false_classes` must be class indices [k] or [B, k] with B = {target.shape[0]}, "
                                   f"got {tuple(classes.shape)} {classes.dtype}.", "false_classes")
    if bool((classes < 0).any()) or bool((classes >= n_classes).any()):
        raise InputValidationError(f"`false_classes` must lie in [0, {n_classes}).", "false_classes")
    return classes.long().expand(target.shape[0], classes.shape[-1])


def check_agi_arguments(epsilon: Any, n_steps: Any, n_false_classes: Any) -> None:
    """Validate AGI's hyperparameters (raises :class:`InputValidationError` naming the argument)."""
    _positive_int(n_steps, "n_steps")
    if n_false_classes is not None:
        _positive_int(n_false_classes, "n_false_classes")
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
    "AGI_FALSE_CLASSES",
    "AGIPath",
    "AttackPath",
    "MFABAPath",
    "MFABA_MODES",
    "MFABA_STEP_SIZE",
    "agi_step",
    "check_agi_arguments",
    "check_bounds",
    "check_mfaba_arguments",
    "classifier_outputs",
    "resolve_false_classes",
    "draw_false_classes",
    "mfaba_step",
    "spaced_false_classes",
]
