"""AGI and MFABA: attribution along adversarial paths, on the engine's sequential-path entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..engine import integrate_sequential_path
from ..errors import InputValidationError
from ..forward import TargetType, TensorOrTuple, restore_structure
from ..integrators import RiemannIntegrator
from ..paths.adversarial import (
    AGIPath,
    MFABAPath,
    check_agi_arguments,
    check_bounds,
    check_mfaba_arguments,
    classifier_outputs,
    resolve_false_classes,
)
from ..randomness import as_generator
from ..result import Explanation
from .base import PathMethod
from .registry import register


@register("agi", paper="Pan, Li & Zhu, IJCAI 2021", sequential=True)
class AdversarialGradientIntegration(PathMethod):
    """Adversarial Gradient Integration (Pan, Li & Zhu, "Explaining Deep Neural Network Models with Adversarial
    Gradient Integration", IJCAI 2021).

    For every example and each of ``k`` false classes ``t``, a signed-gradient attack walks from ``x`` towards
    ``t`` (``z' = clip(z + epsilon sign(grad o_t(z)))``) until the model predicts ``t`` or ``n_steps`` steps are
    taken, and the gradient of the explained output ``o_y`` (softmax by default) is integrated along the walk:
    ``AGI = sum_t sum_i -grad o_y(z_i) * (z_{i+1} - z_i)``, so ``sum(AGI) ~= sum_t (o_y(x) - o_y(z_end^t))``.
    Batched over examples x false classes (:class:`~pathattr.paths.adversarial.AGIPath`).

    Args:
        forward_func: a classifier returning ``[B, C]`` scores (logits), ``C >= 2``.
        integrator: ``"riemann"`` (default, the paper's sum), ``"idgi"``, ``"left_ig"``, ``"split_ig"`` or an
            :class:`~pathattr.integrators.Integrator` (``reference_compat`` needs the Riemann sum).
        eval_mode: evaluate the model in eval mode (restored afterwards).
        model: the ``nn.Module`` (s) behind ``forward_func`` if pathattr cannot find them (see the base class).
    """

    def explain(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 20,
        epsilon: float = 0.05,
        n_false_classes: int | None = None,
        false_classes: Any = None,
        bounds: tuple[float, float] | None = None,
        reference_compat: bool = False,
        use_softmax: bool = True,
        internal_batch_size: int | None = None,
        generator: torch.Generator | int | None = None,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor or tuple of tensors (dim 0 = examples in each).
        target: class per example (int, list, 1-D tensor) or None (the predicted class, as the reference).
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors have dim 0 = B).
        n_steps: maximum attack steps per false class (the reference's ``max_iter``).
        epsilon: signed-gradient step per feature.
        n_false_classes: ``k``, false classes drawn per example (uniformly among the other classes, with
            ``generator``); None: ``min(20, C - 1)`` (the paper's 20); ignored when ``false_classes`` is given.
        false_classes: class indices ``[k]`` (shared) or ``[B, k]``; an entry equal to the target is skipped
            (e.g. :func:`~pathattr.paths.adversarial.spaced_false_classes`, the reference's choice).
        bounds: ``(lo, hi)`` box every point is clipped to (the reference: ``(0, 1)``), or None.
        reference_compat: step from ``x`` every iteration, as ``pd90506/AGI``'s code (not a path integral; no
            convergence delta).
        use_softmax: attack and explain softmax probabilities (the reference) instead of logits.
        internal_batch_size: maximum rows (examples x false classes) per forward call; results do not depend on it.
        generator: draws the false classes (``torch.Generator`` or int seed; default seed 0).

        ``outputs``/``baseline_outputs`` are in the explained space (probabilities with ``use_softmax``);
        ``baseline_outputs = o_y(x) - sum_t (o_y(x) - o_y(z_end^t))`` so the convergence delta is the completeness
        gap of the sum. Extras: ``false_classes`` ``[B, k]``, ``end_outputs`` ``[B, k]``, ``steps`` ``[B, k]``,
        ``success`` ``[B, k]`` (the attack reached ``t``), ``end_points`` ``[B, k, *S]`` per input.
        """
        check_agi_arguments(epsilon, n_steps, n_false_classes)
        box = check_bounds(bounds)
        if reference_compat and type(self.integrator) is not RiemannIntegrator:
            raise InputValidationError("`reference_compat=True` is not a path; it needs the Riemann integrator.",
                                       "integrator")
        with self.session(inputs, target, additional_forward_args) as s:
            logits, s.outputs = classifier_outputs(s.model, s.inputs, use_softmax)
            target_idx = s.model.target
            classes = resolve_false_classes(false_classes, target_idx, logits.shape[1], n_false_classes,
                                            as_generator(generator))
            batch, k = classes.shape
            example = torch.arange(batch * k, device=classes.device) // k
            path = AGIPath(tuple(t.repeat_interleave(k, 0) for t in s.inputs), example, target_idx[example],
                           classes.reshape(-1), n_steps, float(epsilon), box, reference_compat, use_softmax)
            r = integrate_sequential_path(s.model, path, self.integrator, internal_batch_size, s.inputs,
                                          s.outputs.repeat_interleave(k))
            per = r.per_path or tuple(a.repeat_interleave(k, 0) for a in r.attributions)  # sum over t, not mean
            attributions = tuple(a.view(batch, k, *a.shape[1:]).sum(1).to(t.dtype) for a, t in zip(per, s.inputs))
            ends = r.start_outputs.view(batch, k)
            hyper = {"n_steps": n_steps, "epsilon": float(epsilon), "n_false_classes": k, "bounds": box,
                     "reference_compat": reference_compat, "use_softmax": use_softmax,
                     "false_classes": "drawn" if false_classes is None else "given",
                     "internal_batch_size": internal_batch_size, **self.integrator.describe()}
            extras = {**r.extras, "false_classes": classes, "end_outputs": ends,
                      "steps": path.steps.view(batch, k), "success": (path.success & path.active).view(batch, k),
                      "end_points": restore_structure([e.view(batch, k, *e.shape[1:]) for e in path.end_points()],
                                                      s.original)}
            baseline = None if reference_compat else s.outputs - (s.outputs.unsqueeze(1) - ends).sum(1)
            return s.explanation(attributions, hyper, baseline_outputs=baseline, extras=extras)


@register("mfaba", paper="Zhu et al., AAAI 2024", sequential=True)
class MFABA(PathMethod):
    """MFABA (Zhu, Chen, Zhang, Wang, Jin, Xue, Zhu & Choo, "MFABA: A More Faithful and Accelerated
    Boundary-based Attribution Method for Deep Neural Networks", AAAI 2024, arXiv 2312.13630).

    An untargeted attack walks from ``x`` down the explained output ``o_y`` (softmax by default) until the model
    no longer predicts ``y`` (``early_stop``) or ``n_steps`` steps are taken, and the gradients along the walk are
    summed: ``MFABA = -sum_t grad o_y(z_t) * (z_{t+1} - z_t)`` (left Riemann from the input end, so
    ``sum(MFABA) ~= o_y(x) - o_y(z_end)``). ``mode="sharp"`` is normalised gradient descent (L2 step
    ``step_size``, default 0.1), ``"smooth"`` a signed step (default 0.001) kept within ``epsilon`` (L-inf) of
    ``x`` - the reference's ``mfaba_sharp`` / ``mfaba_smooth``. Batched over examples
    (:class:`~pathattr.paths.adversarial.MFABAPath`).

    Args:
        forward_func: a classifier returning ``[B, C]`` scores (logits), ``C >= 2``.
        integrator: ``"riemann"`` (default, the paper's sum), ``"idgi"``, ``"left_ig"``, ``"split_ig"`` or an
            :class:`~pathattr.integrators.Integrator`.
        eval_mode: evaluate the model in eval mode (restored afterwards).
        model: the ``nn.Module`` (s) behind ``forward_func`` if pathattr cannot find them (see the base class).
    """

    def explain(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        mode: str = "sharp",
        step_size: float | None = None,
        epsilon: float = 0.3,
        bounds: tuple[float, float] | None = None,
        early_stop: bool = True,
        use_softmax: bool = True,
        internal_batch_size: int | None = None,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor or tuple of tensors (the sharp step is normalised over all their features).
        target: class per example (int, list, 1-D tensor) or None (the predicted class).
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors have dim 0 = B).
        n_steps: maximum attack steps ``T`` (one gradient each).
        mode: ``"sharp"`` or ``"smooth"``.
        step_size: L2 step (sharp) or per-feature step (smooth); None: 0.1 / 0.001 as the reference.
        epsilon: L-inf radius around ``x`` of the smooth attack (unused by sharp).
        bounds: ``(lo, hi)`` box every point is clipped to (the reference: ``(0, 1)``), or None.
        early_stop: stop a path at the first point after ``x`` where the prediction is no longer ``y``.
        use_softmax: attack and explain softmax probabilities (the reference) instead of logits.
        internal_batch_size: maximum rows (examples) per forward call; results do not depend on it.

        ``outputs``/``baseline_outputs`` are ``o_y`` at ``x`` / at the path's end (probabilities with
        ``use_softmax``). Extras: ``steps`` ``[B]``, ``success`` ``[B]`` (class changed at the end),
        ``end_points`` ``[B, *S]`` per input (the boundary points).
        """
        check_mfaba_arguments(n_steps, mode, step_size, epsilon)
        box = check_bounds(bounds)
        with self.session(inputs, target, additional_forward_args) as s:
            _, s.outputs = classifier_outputs(s.model, s.inputs, use_softmax)
            example = torch.arange(s.batch_size, device=s.outputs.device)
            path = MFABAPath(s.inputs, example, s.model.target, n_steps, mode,
                             None if step_size is None else float(step_size), float(epsilon), box, bool(early_stop),
                             use_softmax)
            r = integrate_sequential_path(s.model, path, self.integrator, internal_batch_size, s.inputs, s.outputs)
            hyper = {"n_steps": n_steps, "mode": mode, "step_size": step_size, "epsilon": float(epsilon),
                     "bounds": box, "early_stop": bool(early_stop), "use_softmax": use_softmax,
                     "internal_batch_size": internal_batch_size, **self.integrator.describe()}
            extras = {**r.extras, "steps": path.steps, "success": path.success,
                      "end_points": restore_structure(path.end_points(), s.original)}
            attributions = tuple(a.to(t.dtype) for a, t in zip(r.attributions, s.inputs))
            return s.explanation(attributions, hyper, baseline_outputs=r.start_outputs, extras=extras)


def agi(forward_func: Callable[..., Any], inputs: TensorOrTuple, **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`AdversarialGradientIntegration` (``integrator`` may be passed as a keyword)."""
    ctor = {k: kwargs.pop(k) for k in ("integrator", "eval_mode", "model") if k in kwargs}
    return AdversarialGradientIntegration(forward_func, **ctor).attribute(inputs, **kwargs)


def mfaba(forward_func: Callable[..., Any], inputs: TensorOrTuple, **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`MFABA` (``integrator`` may be passed as a keyword)."""
    ctor = {k: kwargs.pop(k) for k in ("integrator", "eval_mode", "model") if k in kwargs}
    return MFABA(forward_func, **ctor).attribute(inputs, **kwargs)


__all__ = ["MFABA", "AdversarialGradientIntegration", "agi", "mfaba"]
