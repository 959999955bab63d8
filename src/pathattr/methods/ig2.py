"""IG2: Integrated Gradient on Iterative Gradient Path, and its two ablations, on the shared engine.

Zhuo & Ge, "IG2: Integrated Gradient on Iterative Gradient Path for Feature Attribution", IEEE TPAMI 46(11),
7173-7190, 2024, arXiv 2406.10852. Spec: docs/ig2.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..engine import gradients_in_chunks, integrate_parametric_path, outputs_in_chunks
from ..errors import InputValidationError
from ..forward import TargetType, TensorOrTuple
from ..integrators import Evaluation, IDGIIntegrator, Integrator, PathInfo, RiemannIntegrator, get_integrator
from ..paths.gradpath import (
    DistanceType,
    GradPathWalker,
    RepresentationCapture,
    RepresentationType,
    check_gradpath_arguments,
    default_eps,
    path_step_sizes,
    reference_representations,
    resolve_references,
    squared_l2,
)
from ..paths.straight import StraightLinePath
from ..result import Explanation
from .base import AttributionMethod, Session
from .registry import register

SEGMENT_RULES = ("left", "trapezoid", "gausslegendre")


def segment_nodes(rule: str, substeps: int) -> tuple[list[float], list[float]]:
    """Nodes ``t`` in [0, 1] (0 = the explicand-side end ``gamma_j`` of a segment, 1 = ``gamma_{j+1}``) and
    weights of the quadrature applied to every GradPath segment.

    ``left`` with ``m`` substeps: ``t = 0, 1/m, ..., (m-1)/m`` (``m = 1`` is the reference's left Riemann sum);
    ``trapezoid``: ``t = 0, 1/m, ..., 1`` with halved end weights (both ends are free: ``gamma_j`` and
    ``gamma_{j+1}`` are evaluated by the fused steps anyway); ``gausslegendre``: ``m`` Gauss-Legendre nodes.
    """
    if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
        raise InputValidationError(f"`substeps` must be a positive int, got {substeps!r}.", "substeps")
    m = substeps
    if rule == "left":
        return [k / m for k in range(m)], [1.0 / m] * m
    if rule == "trapezoid":
        w = [1.0 / m] * (m + 1)
        w[0] = w[-1] = 0.5 / m
        return [k / m for k in range(m + 1)], w
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(m)
        return [float(0.5 * (1 + t)) for t in nodes], [float(0.5 * w) for w in weights]
    raise InputValidationError(f"`segment_rule` must be one of {SEGMENT_RULES}, got {rule!r}.", "segment_rule")


@dataclass
class _Setup:
    x: Tensor
    refs: Tensor  # [B or 1, R, *S]
    batch: int
    r: int
    example: Tensor  # [P]
    ref_rows: Tensor  # [P, *S]
    walker: GradPathWalker


class _GradPathMethod(AttributionMethod):
    """Shared construction and GradPath set-up of :class:`IG2`, :class:`GradPathIG` and :class:`GradCFIG`."""

    def __init__(
        self,
        forward_func: Callable[..., Any],
        representation: RepresentationType,
        representation_side: str = "input",
        distance: DistanceType | None = None,
        integrator: str | Integrator | None = None,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(forward_func, eval_mode)
        self.capture = RepresentationCapture(forward_func, representation, representation_side)
        if distance is not None and not callable(distance):
            raise InputValidationError("`distance` must be a callable (h, rho) -> [n] or None.", "distance")
        self.distance = distance or squared_l2
        self.integrator = get_integrator(integrator)

    def _check_single(self, inputs: Any) -> None:
        if isinstance(inputs, tuple):
            raise InputValidationError(
                f"{type(self).__name__} takes a single input tensor (got a tuple of {len(inputs)}); the path "
                "normalises each step over all features of one tensor (concatenate several inputs into one).",
                "inputs",
            )

    def _setup(
        self, s: Session, references: Any, n_steps: int, step_size: float | None,
        bounds: tuple[float, float] | None, eps: float | None, internal_batch_size: int | None,
    ) -> _Setup:
        x = s.inputs[0]
        refs = resolve_references(x, references)
        batch, r = x.shape[0], refs.shape[1]
        n = batch * r
        example = torch.arange(n, device=x.device) // r
        x_rows = x.detach().repeat_interleave(r, 0)
        ref_rows = refs.expand(batch, *refs.shape[1:]).reshape(n, *x.shape[1:])
        rho = reference_representations(s.model, self.capture, refs, batch, internal_batch_size)
        eta = path_step_sizes(x_rows, ref_rows, n_steps, step_size)
        walker = GradPathWalker(
            s.model, self.capture, x_rows, rho, example, n_steps, eta,
            (float(bounds[0]), float(bounds[1])) if bounds is not None else None,
            float(eps) if eps is not None else default_eps(x.dtype), self.distance, internal_batch_size,
        )
        return _Setup(x, refs, batch, r, example, ref_rows, walker)

    def _hyper(self, su: _Setup, **kw: Any) -> dict[str, Any]:
        return {
            "representation": self.capture.describe(),
            "distance": getattr(self.distance, "__name__", type(self.distance).__name__),
            "n_references": su.r,
            "eps": su.walker.eps,
            **kw,
            **self.integrator.describe(),
        }

    @staticmethod
    def _extras(
        s: Session, su: _Setup, end_out: Tensor, end_pred: Tensor, d_start: Tensor, d_end: Tensor,
        return_gradcf: bool, references: Any,
    ) -> dict[str, Any]:
        b, r = su.batch, su.r
        target = s.model.target if isinstance(s.model.target, Tensor) else None
        valid = None
        if target is not None and bool((end_pred >= 0).all()):
            valid = end_pred.view(b, r) != target.view(b, 1)
        extras: dict[str, Any] = {
            "gradcf_outputs": end_out.view(b, r),
            "gradcf_predictions": end_pred.view(b, r),
            "counterfactual_valid": valid,
            "distance_start": d_start.view(b, r),
            "distance_end": d_end.view(b, r),
            "distance_ratio": (d_end / d_start.where(d_start > 0, torch.ones_like(d_start))).view(b, r),
            "step_size": su.walker.step_size.view(b, r),
        }
        if return_gradcf:
            extras["gradcf"] = su.walker.point.reshape(b, r, *su.x.shape[1:])
            extras["gradcfe"] = su.x - extras["gradcf"].mean(1)  # the wafer notebook's counterfactual map
        if not isinstance(references, Tensor):  # a ReferenceSet records where its references came from
            for key in ("indices", "classes"):
                value = getattr(references, key, None)
                if value is not None:
                    extras[f"reference_{key}"] = value
        return extras


@register("ig2", paper="Zhuo & Ge, IEEE TPAMI 2024", needs_references=True, sequential=True)
class IG2(_GradPathMethod):
    """IG2 (Zhuo & Ge, "IG2: Integrated Gradient on Iterative Gradient Path for Feature Attribution", IEEE TPAMI
    2024, arXiv 2406.10852).

    For every reference ``x^r`` a GradPath walks from ``x`` by normalised gradient descent on the representation
    distance ``D_r(z) = dist(phi(z), phi(x^r))`` (``n_steps`` steps of L2 length ``eta``, clipped to ``bounds``)
    to the counterfactual baseline ``GradCF^r``; the target-output gradient is integrated along the path with
    the actual (clipped) displacements and averaged over references::

        IG2(x) = 1/R sum_r sum_j grad f_c(gamma^r_j) * (gamma^r_j - gamma^r_{j+1})

    which explains ``f_c(x) - mean_r f_c(GradCF^r)`` (the convergence delta is exactly the gap to it). One
    forward per step gives both gradients (two backward passes through the retained graph); rows (examples x
    references) are batched and chunked by ``internal_batch_size`` with identical results; the path is not kept
    unless ``return_path=True``.

    Args:
        forward_func: model or callable returning ``[B]`` or ``[B, C]`` (logits: ``f_c`` is a logit).
        representation: the layer ``phi`` (an ``nn.Module`` of the model, hooked on its input by default, or a
            dotted module name), or a callable ``z -> features`` (computed as a second call on the same rows).
            The reference uses the input of the final linear classifier.
        representation_side: ``"input"`` or ``"output"`` of the module.
        distance: ``(h, rho) -> [n]`` distance between representations (default: squared L2 per row).
        integrator: ``"riemann"`` (default, the reference's left Riemann sum), ``"idgi"``, ``"left_ig"``,
            ``"split_ig"`` or an :class:`~pathattr.integrators.Integrator`. IDGI streams; Split IG and custom
            integrators need ``f(GradCF)`` before the first step, so their per-step gradients and displacements
            are kept (``n_steps x B x R x d`` values) and replayed once the path has ended.
        eval_mode: evaluate the model in eval mode (restored afterwards).
    """

    name = "ig2"

    def explain(
        self,
        inputs: TensorOrTuple,
        references: Any,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 201,
        step_size: float | None = None,
        bounds: tuple[float, float] | None = None,
        eps: float | None = None,
        substeps: int = 1,
        segment_rule: str = "left",
        adaptive: float | None = None,
        adaptive_depth: int = 6,
        internal_batch_size: int | None = None,
        return_path: bool = False,
        return_gradcf: bool = True,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor (images ``[B, C, H, W]``, tabular ``[B, d]``, embeddings ``[B, L, E]``;
            per-token scores: ``attributions.sum(-1)``). Tuples are rejected.
        references: ``[R, *S]`` shared by all examples, ``[B, R, *S]`` per example, or a
            :class:`pathattr.references.ReferenceSet` (its indices and classes are recorded in the extras).
        target: int, list / 1-D tensor of B ints, callable on the output, or None (predicted class); fixed
            for the whole path.
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors have dim 0 = B).
        n_steps: ``K``, GradPath steps (reference: 201 on ImageNet).
        step_size: ``eta``, the L2 length of every unclipped step over all features of a row (the paper's
            absolute step); None: ``|x - x^r|_2 / n_steps`` per reference (path length = straight distance).
        bounds: ``(lo, hi)``: every path point is clipped to the box (e.g. ``(0, 1)`` for images).
        eps: floor of the step normaliser ``W = max(|u|_2, eps)`` (default 1e-12 float64, 1e-6 float32,
            1e-3 half): a zero counterfactual gradient gives a zero step, never NaN.
        substeps: integration nodes per path segment (the completeness remedy; 1 = the reference). The path
            (its direction and points) does not change; only ``grad f_c`` is evaluated at extra points inside
            each straight segment, batched as extra rows.
        segment_rule: ``"left"`` (reference for ``substeps=1``; ``m - 1`` extra rows per segment),
            ``"trapezoid"`` (second order; ``m - 1`` extra rows per segment plus one gradient at GradCF) or
            ``"gausslegendre"`` (``m`` extra rows). Rules other than ``left``/1 need the Riemann integrator.
        adaptive: adaptive segment integration (the second remedy; None = off): every segment is integrated
            with the trapezoid rule and bisected, up to ``adaptive_depth`` times, wherever its completeness error
            ``|f(a) - f(b) - 1/2 (g_a + g_b) . (a - b)|`` exceeds ``adaptive * |f_c(x)| / n_steps``; the path is
            unchanged. ``extras["refined_pieces"]`` ``[B, R]`` counts the bisections (= extra gradient rows).
        adaptive_depth: maximum bisection depth per segment.
        internal_batch_size: maximum rows (paths) per forward call; results do not depend on it.
        return_path: keep every path point (``extras["path"]``, ``[B, R, K + 1, *S]``).
        return_gradcf: put GradCF (``[B, R, *S]``) in ``extras["gradcf"]``.

        Extras: ``gradcf``, ``gradcfe`` (``x - mean_r GradCF^r``, ``[B, *S]``), ``gradcf_outputs`` /
        ``gradcf_predictions`` ``[B, R]``, ``counterfactual_valid``
        ``[B, R]`` (argmax ``f(GradCF)`` differs from the explained class; None for single-output models),
        ``distance_start`` / ``distance_end`` / ``distance_ratio`` ``[B, R]``, ``step_size`` ``[B, R]``,
        ``step_outputs`` ``[B, R, K]`` (``f_c`` at ``gamma_0 .. gamma_{K-1}``), ``cf_gradient_norms``
        ``[B, R, K]``, ``completeness_gap`` / ``relative_completeness_gap`` ``[B]`` (= the convergence delta),
        ``reference_indices`` / ``reference_classes`` for a ReferenceSet, and the integrator's extras.
        """
        check_gradpath_arguments(n_steps, step_size, bounds, eps)
        self._check_single(inputs)
        t_nodes, w_nodes = segment_nodes(segment_rule, substeps)
        direct = type(self.integrator) is RiemannIntegrator
        if adaptive is not None:
            if isinstance(adaptive, bool) or not isinstance(adaptive, (int, float)) or not adaptive > 0:
                raise InputValidationError(f"`adaptive` must be a positive number or None, got {adaptive!r}.",
                                           "adaptive")
            if isinstance(adaptive_depth, bool) or not isinstance(adaptive_depth, int) or adaptive_depth < 0:
                raise InputValidationError(f"`adaptive_depth` must be an int >= 0, got {adaptive_depth!r}.",
                                           "adaptive_depth")
            if substeps != 1:
                raise InputValidationError("`adaptive` refines single segments; use it with substeps=1.", "substeps")
        if not direct and (segment_rule != "left" or substeps != 1 or adaptive is not None):
            raise InputValidationError(
                f"`substeps`/`segment_rule` other than 1/'left' need the Riemann integrator, not "
                f"{self.integrator.name!r} (IDGI is complete by construction).",
                "substeps",
            )
        with self.session(inputs, target, additional_forward_args) as s:
            su = self._setup(s, references, n_steps, step_size, bounds, eps, internal_batch_size)
            if direct:
                tol = None
                if adaptive is not None:
                    scale = s.outputs.abs().to(torch.float64).clamp_min(torch.finfo(s.outputs.dtype).tiny)
                    tol = ((float(adaptive) / n_steps) * scale[su.example], adaptive_depth)
                attr, run = _riemann_walk(s, su, t_nodes, w_nodes, internal_batch_size, return_path, adaptive=tol)
                extras: dict[str, Any] = {}
                if adaptive is not None:
                    extras["refined_pieces"] = run["refined"].view(su.batch, su.r)
            else:
                attr, run, extras = _streamed_walk(s, su, self.integrator, return_path)
            end_out, end_pred, d_end = run["end"]
            result_extras = self._extras(s, su, end_out, end_pred, run["distance"][:, 0], d_end, return_gradcf,
                                         references)
            b, r = su.batch, su.r
            result_extras["step_outputs"] = run["outputs"].view(b, r, n_steps)
            result_extras["cf_gradient_norms"] = run["norms"].view(b, r, n_steps)
            if return_path:
                result_extras["path"] = run["path"].reshape(b, r, n_steps + 1, *su.x.shape[1:])
            result_extras.update(extras)
            hyper = self._hyper(su, n_steps=n_steps, step_size=step_size, bounds=bounds, substeps=substeps,
                                segment_rule="trapezoid" if adaptive is not None else segment_rule,
                                adaptive=adaptive, adaptive_depth=adaptive_depth if adaptive is not None else None,
                                internal_batch_size=internal_batch_size)
            baseline_out = end_out.view(b, r).mean(1)
            out = s.explanation((attr.to(su.x.dtype),), hyper, baseline_outputs=baseline_out, extras=result_extras)
            out.extras["completeness_gap"] = out.convergence_delta
            out.extras["relative_completeness_gap"] = out.relative_delta
            return out


def _riemann_walk(
    s: Session, su: _Setup, t_nodes: list[float], w_nodes: list[float], internal_batch_size: int | None,
    return_path: bool, closing: bool = False, adaptive: tuple[Tensor, int] | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Walk every GradPath, accumulating ``sum_j sum_k w_k grad f(gamma_j + t_k (gamma_{j+1} - gamma_j)) *
    (gamma_j - gamma_{j+1})`` directly (in the input dtype; float64 for half types). Returns the per-example
    mean over references and the record."""
    walker = su.walker
    n, k = walker.n_paths, walker.n_steps
    # float32 / float64 inputs accumulate in their own dtype (no per-step casts); half types in float64
    acc_dtype = walker.point.dtype if walker.point.dtype in (torch.float32, torch.float64) else torch.float64
    acc = torch.zeros(walker.point.shape, dtype=acc_dtype, device=walker.point.device)
    w0 = sum(w for t, w in zip(t_nodes, w_nodes) if t == 0.0)
    w1 = sum(w for t, w in zip(t_nodes, w_nodes) if t == 1.0)
    inner = [(t, w) for t, w in zip(t_nodes, w_nodes) if 0.0 < t < 1.0]
    inner_example = su.example.repeat(len(inner)) if inner else None
    outputs = torch.empty(n, k, dtype=walker.point.dtype, device=walker.point.device)
    norms, dists = torch.empty_like(outputs), torch.empty_like(outputs)
    path = [walker.point] if return_path else None
    pending: Tensor | None = None  # w1 * displacement of the previous segment, waiting for the next gradient
    previous: tuple[Tensor, Tensor, Tensor] | None = None  # adaptive: (gamma_j, g_j, f_j) of the open segment
    refined = torch.zeros(n, dtype=torch.long, device=walker.point.device)
    for j in range(k):
        rec = walker.advance(with_target=True)
        if adaptive is not None:
            if previous is not None:
                _adaptive_segment(s, su, acc, refined, *previous, rec.points, rec.gradients, rec.outputs, adaptive,
                                  internal_batch_size)
            previous = (rec.points, rec.gradients, rec.outputs)  # type: ignore[assignment]
            outputs[:, j] = rec.outputs  # type: ignore[assignment]
            norms[:, j], dists[:, j] = rec.cf_norm, rec.distance
            if path is not None:
                path.append(rec.next_points)
            continue
        g = rec.gradients.to(acc_dtype)  # type: ignore[union-attr]
        disp = (rec.points - rec.next_points).to(acc_dtype)
        if pending is not None:
            acc.addcmul_(g, pending)
        if w0:
            acc.addcmul_(g, disp, value=w0)
        if inner:
            pts = torch.cat([torch.lerp(rec.points, rec.next_points, t) for t, _ in inner])
            (gi,), _ = gradients_in_chunks(s.model, (pts,), inner_example, internal_batch_size)
            for i, (_, w) in enumerate(inner):
                acc.addcmul_(gi[i * n : (i + 1) * n].to(acc_dtype), disp, value=w)
        pending = disp.mul_(w1) if w1 else None
        outputs[:, j] = rec.outputs  # type: ignore[assignment]
        norms[:, j], dists[:, j] = rec.cf_norm, rec.distance
        if path is not None:
            path.append(rec.next_points)
    need_end_gradient = pending is not None or closing or previous is not None
    end_out, end_pred, d_end, g_end = walker.evaluate_end(with_gradient=need_end_gradient)
    if pending is not None:
        acc.addcmul_(g_end.to(acc_dtype), pending)  # type: ignore[union-attr]
    if previous is not None:
        _adaptive_segment(s, su, acc, refined, *previous, walker.point, g_end, end_out, adaptive,  # type: ignore[arg-type]
                          internal_batch_size)
    run = {"end": (end_out, end_pred, d_end), "outputs": outputs, "norms": norms, "distance": dists,
           "path": torch.stack(path, 1) if path is not None else None, "end_gradient": g_end, "acc": acc,
           "refined": refined}
    return acc.view(su.batch, su.r, *acc.shape[1:]).mean(1), run


def _adaptive_segment(
    s: Session, su: _Setup, acc: Tensor, refined: Tensor, a: Tensor, ga: Tensor, fa: Tensor, b: Tensor, gb: Tensor,
    fb: Tensor, adaptive: tuple[Tensor, int], internal_batch_size: int | None,
) -> None:
    """Integrate the straight segments ``a -> b`` (one per path) with the trapezoid rule, bisecting every piece
    whose completeness error ``|f(a) - f(b) - 1/2 (g_a + g_b) . (a - b)|`` exceeds its path's tolerance, level by
    level (all pieces of all paths of one level are one batch of gradient rows), at most ``depth`` times.

    The error of an accepted piece is exactly its contribution to the completeness gap, so the gap of the whole
    path is at most the sum of the tolerances plus the error of pieces that reached ``depth``.
    """
    tol, depth = adaptive
    rows = torch.arange(a.shape[0], device=a.device)
    for level in range(depth + 1):
        disp = (a - b).to(torch.float64)
        trap = (ga.to(torch.float64) + gb.to(torch.float64)).mul_(disp).mul_(0.5)
        err = (fa - fb).to(torch.float64) - trap.reshape(trap.shape[0], -1).sum(1)
        ok = (err.abs() <= tol[rows]) | (level == depth)
        acc.index_add_(0, rows[ok], trap[ok].to(acc.dtype))
        bad = (~ok).nonzero().squeeze(1)
        if bad.numel() == 0:
            return
        a, b, ga, gb, fa, fb, rows = (t[bad] for t in (a, b, ga, gb, fa, fb, rows))
        refined.index_add_(0, rows, torch.ones_like(rows))
        mid = torch.lerp(a, b, 0.5)
        (gm,), fm = gradients_in_chunks(s.model, (mid,), su.example[rows], internal_batch_size)
        a, b = torch.cat([a, mid]), torch.cat([mid, b])
        ga, gb = torch.cat([ga, gm]), torch.cat([gm, gb])
        fa, fb = torch.cat([fa, fm.to(fa.dtype)]), torch.cat([fm.to(fb.dtype), fb])
        rows = torch.cat([rows, rows])


def _streamed_walk(
    s: Session, su: _Setup, integrator: Integrator, return_path: bool
) -> tuple[Tensor, dict[str, Any], dict[str, Any]]:
    """Walk every GradPath and feed each step to ``integrator`` (rows arrive from the input end)."""
    walker = su.walker
    n, k = walker.n_paths, walker.n_steps
    rows = torch.arange(n, device=walker.point.device)
    like = (torch.zeros((1, *su.x.shape[1:]), dtype=torch.float64, device=su.x.device).expand_as(su.x),)
    streaming = isinstance(integrator, IDGIIntegrator)
    info = dict(n_paths=n, output_index=su.example, n_outputs=su.batch, like=like, end_outputs=s.outputs[su.example],
                direction=-1, scale=1.0 / su.r)
    acc = integrator.accumulator(PathInfo(**info)) if streaming else None
    kept: list[Evaluation] = []
    outputs = torch.empty(n, k, dtype=walker.point.dtype, device=walker.point.device)
    norms, dists = torch.empty_like(outputs), torch.empty_like(outputs)
    path = [walker.point] if return_path else None
    for j in range(k):
        rec = walker.advance(with_target=True)
        ev = Evaluation(rows, torch.full_like(rows, j), (rec.gradients.to(torch.float64),),  # type: ignore[union-attr]
                        rec.outputs, ((rec.points - rec.next_points).to(torch.float64),))
        if acc is not None:
            acc.update(ev)
        else:
            kept.append(ev)
        outputs[:, j] = rec.outputs  # type: ignore[assignment]
        norms[:, j], dists[:, j] = rec.cf_norm, rec.distance
        if path is not None:
            path.append(rec.next_points)
    end_out, end_pred, d_end, _ = walker.evaluate_end(with_gradient=False)
    if acc is None:
        acc = integrator.accumulator(PathInfo(**info, start_outputs=end_out))
        for ev in kept:
            acc.update(ev)
        kept.clear()
    zeros = (torch.zeros((n, *su.x.shape[1:]), dtype=torch.float64, device=su.x.device),)
    acc.update(Evaluation(rows, torch.full_like(rows, k), zeros, end_out, zeros))  # closes the last segment
    (attr,) = acc.result()
    run = {"end": (end_out, end_pred, d_end), "outputs": outputs, "norms": norms, "distance": dists,
           "path": torch.stack(path, 1) if path is not None else None}
    return attr, run, dict(acc.extras)


@register("gradpath_ig", paper="Zhuo & Ge, IEEE TPAMI 2024 (ablation)", needs_references=True, sequential=True)
class GradPathIG(_GradPathMethod):
    """Ablation "GradPath at a fixed baseline": Integrated Gradients from the **reference** ``x^r`` (the usual
    IG baseline) along GradPath instead of the straight line.

    The path is GradPath from ``x`` to ``GradCF^r`` followed by the straight segment from ``GradCF^r`` to the
    reference ``x^r`` (``closing_steps`` left-Riemann nodes, batched as extra rows). It explains
    ``f_c(x) - mean_r f_c(x^r)`` like multi-reference IG, so comparing it with IG on the same references
    isolates the effect of the path, and comparing it with :class:`IG2` the effect of the GradCF baseline
    (Zhuo & Ge, TPAMI 2024, ablations). Arguments as for :class:`IG2`; Riemann integrator only.
    """

    name = "gradpath_ig"

    def explain(
        self,
        inputs: TensorOrTuple,
        references: Any,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 201,
        step_size: float | None = None,
        bounds: tuple[float, float] | None = None,
        eps: float | None = None,
        closing_steps: int | None = None,
        internal_batch_size: int | None = None,
        return_gradcf: bool = True,
    ) -> Explanation:
        """Args as :meth:`IG2.explain`; ``closing_steps``: nodes on the segment GradCF -> reference (default
        ``n_steps``)."""
        check_gradpath_arguments(n_steps, step_size, bounds, eps)
        self._check_single(inputs)
        m = n_steps if closing_steps is None else closing_steps
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise InputValidationError(f"`closing_steps` must be a positive int, got {m!r}.", "closing_steps")
        if type(self.integrator) is not RiemannIntegrator:
            raise InputValidationError("GradPathIG supports only the Riemann integrator.", "integrator")
        with self.session(inputs, target, additional_forward_args) as s:
            su = self._setup(s, references, n_steps, step_size, bounds, eps, internal_batch_size)
            _, run = _riemann_walk(s, su, [0.0], [1.0], internal_batch_size, False, closing=True)
            acc: Tensor = run["acc"]
            gc = su.walker.point
            disp = ((gc - su.ref_rows) / m).to(acc.dtype)  # baseline -> input orientation
            acc.addcmul_(run["end_gradient"].to(acc.dtype), disp)
            if m > 1:
                ts = [i / m for i in range(1, m)]
                pts = torch.cat([torch.lerp(gc, su.ref_rows, t) for t in ts])
                (g,), _ = gradients_in_chunks(s.model, (pts,), su.example.repeat(len(ts)), internal_batch_size)
                acc.add_((g.to(acc.dtype).view(len(ts), *acc.shape) * disp).sum(0))
            ref_out = outputs_in_chunks(s.model, (su.ref_rows,), su.example, internal_batch_size)
            end_out, end_pred, d_end = run["end"]
            extras = self._extras(s, su, end_out, end_pred, run["distance"][:, 0], d_end, return_gradcf, references)
            extras["reference_outputs"] = ref_out.view(su.batch, su.r)
            attr = acc.view(su.batch, su.r, *acc.shape[1:]).mean(1).to(su.x.dtype)
            hyper = self._hyper(su, n_steps=n_steps, step_size=step_size, bounds=bounds, closing_steps=m,
                                internal_batch_size=internal_batch_size)
            return s.explanation((attr,), hyper, baseline_outputs=ref_out.view(su.batch, su.r).mean(1), extras=extras)


@register("gradcf_ig", paper="Zhuo & Ge, IEEE TPAMI 2024 (ablation)", needs_references=True, sequential=True)
class GradCFIG(_GradPathMethod):
    """Ablation "GradCF baseline, straight path": Integrated Gradients on the straight line from each
    ``GradCF^r`` (found by GradPath, which costs one forward and one backward per step) to ``x``, averaged over
    references (Zhuo & Ge, TPAMI 2024, ablations). Explains ``f_c(x) - mean_r f_c(GradCF^r)`` like :class:`IG2`.
    Arguments as for :class:`IG2`, plus ``ig_steps`` and ``method`` of the straight-line quadrature (any
    integrator works on the straight line).
    """

    name = "gradcf_ig"

    def explain(
        self,
        inputs: TensorOrTuple,
        references: Any,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 201,
        step_size: float | None = None,
        bounds: tuple[float, float] | None = None,
        eps: float | None = None,
        ig_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_gradcf: bool = True,
    ) -> Explanation:
        """Args as :meth:`IG2.explain`; ``ig_steps`` / ``method``: the IG quadrature from GradCF to ``x``."""
        check_gradpath_arguments(n_steps, step_size, bounds, eps)
        self._check_single(inputs)
        with self.session(inputs, target, additional_forward_args) as s:
            su = self._setup(s, references, n_steps, step_size, bounds, eps, internal_batch_size)
            d_start = None
            for _ in range(n_steps):
                rec = su.walker.advance(with_target=False)
                if d_start is None:
                    d_start = rec.distance
            end_out, end_pred, d_end, _ = su.walker.evaluate_end(with_gradient=False)
            gradcf = su.walker.point.reshape(su.batch, su.r, *su.x.shape[1:])
            alphas, weights = self.integrator.nodes(method, ig_steps, su.x.dtype, su.x.device)
            path = StraightLinePath.from_baselines(s.inputs, (gradcf,), alphas, weights, True)
            attr, int_extras, start_out = integrate_parametric_path(
                s.model, path, self.integrator, internal_batch_size, s.inputs, s.outputs.repeat_interleave(su.r)
            )
            extras = self._extras(s, su, end_out, end_pred, d_start, d_end, return_gradcf, references)
            extras.update(int_extras)
            hyper = self._hyper(su, n_steps=n_steps, step_size=step_size, bounds=bounds, ig_steps=ig_steps,
                                method=method, internal_batch_size=internal_batch_size)
            return s.explanation(attr, hyper, baseline_outputs=start_out.view(su.batch, su.r).mean(1), extras=extras)


_CTOR = ("representation", "representation_side", "distance", "integrator", "eval_mode")


def _functional(cls: type, forward_func: Callable[..., Any], inputs: TensorOrTuple, references: Any,
                kwargs: dict[str, Any]) -> TensorOrTuple:
    ctor = {k: kwargs.pop(k) for k in _CTOR if k in kwargs}
    if "representation" not in ctor:
        raise InputValidationError("`representation` is required (a module of the model or a callable).",
                                   "representation")
    return cls(forward_func, **ctor).attribute(inputs, references, **kwargs)


def ig2(forward_func: Callable[..., Any], inputs: TensorOrTuple, references: Any, **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`IG2`: ``ig2(model, x, refs, representation=model.fc, n_steps=..., ...)``
    (constructor options ``representation``, ``representation_side``, ``distance``, ``integrator``,
    ``eval_mode`` as keywords; ``return_convergence_delta=True`` returns ``(attributions, delta)``)."""
    return _functional(IG2, forward_func, inputs, references, kwargs)


def gradpath_ig(forward_func: Callable[..., Any], inputs: TensorOrTuple, references: Any,
                **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`GradPathIG` (keywords as for :func:`ig2`)."""
    return _functional(GradPathIG, forward_func, inputs, references, kwargs)


def gradcf_ig(forward_func: Callable[..., Any], inputs: TensorOrTuple, references: Any,
              **kwargs: Any) -> TensorOrTuple:
    """Functional form of :class:`GradCFIG` (keywords as for :func:`ig2`)."""
    return _functional(GradCFIG, forward_func, inputs, references, kwargs)


__all__ = ["SEGMENT_RULES", "GradCFIG", "GradPathIG", "IG2", "gradcf_ig", "gradpath_ig", "ig2", "segment_nodes"]
