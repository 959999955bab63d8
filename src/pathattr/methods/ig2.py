"""IG2: Integrated Gradient on Iterative Gradient Path, and its two ablations, on the shared engine.

Zhuo & Ge, "IG2: Integrated Gradient on Iterative Gradient Path for Feature Attribution", IEEE TPAMI 46(11),
7173-7190, 2024, arXiv 2406.10852. Spec: docs/ig2.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..engine import (
    gradients_in_chunks,
    integrate_parametric_path,
    integrate_sequential_path,
    outputs_in_chunks,
    walk_sequential_path,
)
from ..errors import InputValidationError
from ..forward import ModelsType, TargetType, TensorOrTuple
from ..integrators import SEGMENT_RULES, Integrator, RiemannIntegrator, SegmentRule, segment_nodes
from ..paths.gradpath import (
    PAPER_DIM,
    PAPER_ETA,
    PAPER_SCALE,
    STEP_RULES,
    DistanceType,
    GradPath,
    RepresentationCapture,
    RepresentationType,
    check_gradpath_arguments,
    default_eps,
    equivalent_step_size,
    path_step_sizes,
    reference_representations,
    resolve_references,
    squared_l2,
)
from ..paths.straight import StraightLinePath
from ..result import Explanation
from .base import PathMethod, Session
from .registry import register


@dataclass
class _Setup:
    x: Tensor
    refs: Tensor  # [B or 1, R, *S]
    batch: int
    r: int
    example: Tensor  # [P]
    ref_rows: Tensor  # [P, *S]
    path: GradPath
    layout: str  # the resolved path layout, "rows" or "chunks"


class _GradPathMethod(PathMethod):
    """Shared construction and GradPath set-up of :class:`IG2`, :class:`GradPathIG` and :class:`GradCFIG`."""

    def __init__(
        self,
        forward_func: Callable[..., Any],
        representation: RepresentationType,
        representation_side: str = "input",
        distance: DistanceType | None = None,
        integrator: str | Integrator | None = None,
        eval_mode: bool = True,
        *,
        model: ModelsType = None,
    ) -> None:
        super().__init__(forward_func, integrator, eval_mode, model=model)
        self.capture = RepresentationCapture(forward_func, representation, representation_side)
        if distance is not None and not callable(distance):
            raise InputValidationError("`distance` must be a callable (h, rho) -> [n] or None.", "distance")
        self.distance = distance or squared_l2

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
        record_path: bool = False, step_rule: str = "fixed", path_layout: str = "chunks",
    ) -> _Setup:
        x = s.inputs[0]
        refs = resolve_references(x, references)
        batch, r = x.shape[0], refs.shape[1]
        n = batch * r
        example = torch.arange(n, device=x.device) // r
        x_rows = x.detach().repeat_interleave(r, 0)
        ref_rows = refs.expand(batch, *refs.shape[1:]).reshape(n, *x.shape[1:])
        layout = resolve_path_layout(path_layout, x)
        rows_layout = layout == "rows"
        rho = reference_representations(s.model, self.capture, refs, batch, 1 if rows_layout else internal_batch_size)
        eta = path_step_sizes(x_rows, ref_rows, n_steps, step_size)
        path = GradPath(
            self.capture, x_rows, rho, example, n_steps, eta,
            (float(bounds[0]), float(bounds[1])) if bounds is not None else None,
            float(eps) if eps is not None else default_eps(x.dtype), self.distance, record_path, step_rule,
        )
        path.max_walk_rows = 1 if rows_layout else None
        return _Setup(x, refs, batch, r, example, ref_rows, path, layout)

    def _hyper(self, su: _Setup, **kw: Any) -> dict[str, Any]:
        return {
            "representation": self.capture.describe(),
            "distance": getattr(self.distance, "__name__", type(self.distance).__name__),
            "n_references": su.r,
            "eps": su.path.eps,
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
            "step_size": su.path.step_size.view(b, r),
        }
        if return_gradcf:
            extras["gradcf"] = su.path.point.reshape(b, r, *su.x.shape[1:])
            extras["gradcfe"] = su.x - extras["gradcf"].mean(1)  # the wafer notebook's counterfactual map
        if not isinstance(references, Tensor):  # a ReferenceSet records where its references came from
            for key in ("indices", "classes"):
                value = getattr(references, key, None)
                if value is not None:
                    extras[f"reference_{key}"] = value
        return extras


# ----------------------------------------------------------------------------------------------- presets
class _Auto:
    """Marker of an :meth:`IG2.explain` argument left to the preset (or to the default settings)."""

    def __repr__(self) -> str:
        return "AUTO"


#: an argument of :meth:`IG2.explain` that was not given: the preset's value, else :data:`DEFAULT_SETTINGS`'
AUTO: Any = _Auto()

#: the settings a preset resolves (every other argument keeps its own default)
PRESET_KEYS = ("n_steps", "step_size", "bounds", "step_rule", "segment_rule", "substeps", "adaptive",
               "adaptive_depth", "path_layout")

#: values of ``path_layout``: ``"rows"`` walks every path row in a forward call of its own (the path does not depend
#: on ``internal_batch_size``), ``"chunks"`` in chunks of ``internal_batch_size`` rows, ``"auto"`` = ``"rows"``
#: for inputs of at least :data:`ROW_LAYOUT_MIN_FEATURES` features per example, else ``"chunks"``
PATH_LAYOUTS = ("auto", "rows", "chunks")

#: ``path_layout="auto"`` walks rows one per call from this many features per example (a 3x224x224 image has
#: 150,528; a 32-token x 384 embedding 12,288): there a forward call costs far more than its overhead, so one row
#: per call costs no more time per row than a batch (EfficientNet-Lite0 on a CPU), while smaller inputs (tabular
#: rows, MNIST, 3x32x32) keep batched calls
ROW_LAYOUT_MIN_FEATURES = 4096


def resolve_path_layout(path_layout: str, x: Tensor) -> str:
    """``"rows"`` or ``"chunks"`` for ``path_layout`` on inputs ``x`` ``[B, *S]``."""
    if path_layout not in PATH_LAYOUTS:
        raise InputValidationError(f"`path_layout` must be one of {PATH_LAYOUTS}, got {path_layout!r}.",
                                   "path_layout")
    if path_layout == "auto":
        return "rows" if x[0].numel() >= ROW_LAYOUT_MIN_FEATURES else "chunks"
    return path_layout

#: the authors' notebook settings per family (spec ``shared/reference/ig2.md`` section 8; Zhuo & Ge's
#: ``example_ImageNet.ipynb`` / ``example_TREC.ipynb`` / ``example_wafer.ipynb``): ``eta`` in the notebook's input
#: units, converted by :func:`paper_preset` where the notebook's input scale is known. All use the fixed step,
#: the left Riemann rule and no refinement; the representation (the input of the final linear layer) and the
#: reference recipe (runner-up classes / other-class sentences / the normal class) are the caller's choice.
PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "paper-imagenet": {"n_steps": 201, "eta": PAPER_ETA, "scale": PAPER_SCALE, "paper_dim": PAPER_DIM,
                       "bounds": (0.0, 1.0)},
    "paper-trec": {"n_steps": 501, "eta": 0.01, "scale": 1.0, "paper_dim": None, "bounds": None},
    "paper-wafer": {"n_steps": 1001, "eta": 0.05, "scale": 1.0, "paper_dim": None, "bounds": (0.0, 1.0)},
}

#: the reference algorithm with the library's scale-free step (``|x - x^r| / n_steps``): the defaults of
#: ``IG2.explain`` before the well-posed rule existed
REFERENCE_SETTINGS: dict[str, Any] = {"n_steps": 201, "step_size": None, "bounds": None, "step_rule": "fixed",
                                      "segment_rule": "left", "substeps": 1, "adaptive": None, "adaptive_depth": 6,
                                      "path_layout": "chunks"}

#: pathattr's well-posed IG2 (docs/ig2.md, "Well-posed default"): a convergent path (damped Newton steps on the
#: representation distance, capped at ``|x - x^r| / n_steps``), adaptive trapezoid segments (completeness gap
#: about ``adaptive`` of ``|f_c(x)|``), with 32 path steps (the paper preset: 201)
WELLPOSED_SETTINGS: dict[str, Any] = {"n_steps": 32, "step_size": None, "bounds": None,
                                      "step_rule": "damped_newton", "segment_rule": "trapezoid", "substeps": 1,
                                      "adaptive": 0.03, "adaptive_depth": 6, "path_layout": "auto"}

#: what ``IG2.explain`` uses for an argument that neither the caller nor a preset sets
DEFAULT_SETTINGS: dict[str, Any] = WELLPOSED_SETTINGS

PRESETS = (*PAPER_PRESETS, "wellposed", "reference")


def paper_preset(name: str, input_shape: Any = None, bounds: Any = AUTO) -> dict[str, Any]:
    """The keyword arguments of :meth:`IG2.explain` that run IG2 as the authors' notebook ``name`` does.

    Args:
        name: ``"paper-imagenet"`` (201 steps, ``eta = 512`` on 0..255 pixels of 299x299x3 converted to the same
            per-feature RMS move on [0, 1] inputs of ``input_shape``: 1.504 at 3x224x224, bounds (0, 1)),
            ``"paper-trec"`` (501 steps, ``eta = 0.01`` in embedding units, bounds: the caller's, the authors clip
            to the min / max of the embedding matrix), ``"paper-wafer"`` (1001 steps, ``eta = 0.05``, bounds
            (0, 1)); also ``"wellposed"`` and ``"reference"`` (:data:`WELLPOSED_SETTINGS`,
            :data:`REFERENCE_SETTINGS`).
        input_shape: the shape of one example (``[C, H, W]``, or a batch ``[B, C, H, W]`` with ``batch=True``
            semantics: give ``x.shape[1:]``); needed by ``"paper-imagenet"`` to convert the step.
        bounds: override the preset's clipping box (``(lo, hi)`` or None).

    Returns:
        ``{"n_steps", "step_size", "bounds", "step_rule", "segment_rule", "substeps", "adaptive",
        "adaptive_depth", "path_layout"}``.
    """
    if name == "wellposed":
        out = dict(WELLPOSED_SETTINGS)
    elif name == "reference":
        out = dict(REFERENCE_SETTINGS)
    elif name in PAPER_PRESETS:
        p = PAPER_PRESETS[name]
        eta = p["eta"] / p["scale"]
        if p["paper_dim"] is not None:
            if input_shape is None:
                raise InputValidationError(f"preset {name!r} needs `input_shape` to convert the step size.",
                                           "input_shape")
            dim = 1
            for size in input_shape:
                dim *= int(size)
            eta = equivalent_step_size(dim, p["eta"], p["scale"], p["paper_dim"])
        out = {"n_steps": p["n_steps"], "step_size": eta, "bounds": p["bounds"], "step_rule": "fixed",
               "segment_rule": "left", "substeps": 1, "adaptive": None, "adaptive_depth": 6,
               "path_layout": "chunks"}
    else:
        raise InputValidationError(f"`preset` must be one of {PRESETS} or None, got {name!r}.", "preset")
    if bounds is not AUTO:
        out["bounds"] = bounds
    return out


def resolve_settings(preset: str | None, input_shape: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The settings of one call: explicit arguments (not :data:`AUTO`) over the preset over
    :data:`DEFAULT_SETTINGS`."""
    base = dict(DEFAULT_SETTINGS) if preset is None else paper_preset(preset, input_shape)
    out = {k: (base[k] if given.get(k, AUTO) is AUTO else given[k]) for k in PRESET_KEYS}
    if out["step_rule"] not in STEP_RULES:
        raise InputValidationError(f"`step_rule` must be one of {STEP_RULES}, got {out['step_rule']!r}.",
                                   "step_rule")
    return out


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
    references) are batched and chunked by ``internal_batch_size`` (results agree to float round-off, which the
    reference's fixed step amplifies on real networks: docs/ig2.md); the path is not kept unless
    ``return_path=True``.

    **Defaults: pathattr's well-posed IG2** (:data:`DEFAULT_SETTINGS` = :data:`WELLPOSED_SETTINGS`, docs/ig2.md):
    32 damped-Newton steps that converge instead of oscillating, adaptive trapezoid segments (completeness gap
    about 3 % of ``|f_c(x)|``), image-sized rows walked one per forward call (``path_layout``) so that the result
    does not depend on ``internal_batch_size``. ``preset="paper-imagenet" | "paper-trec" | "paper-wafer"`` runs
    the authors' notebook settings (:func:`paper_preset`), ``preset="reference"`` the authors' algorithm with the
    scale-free step; explicit arguments override the preset, and ``hyperparameters`` records the preset and the
    resolved settings. With an integrator other than Riemann the segment rule defaults to the left rule.

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
        n_steps: int = AUTO,
        step_size: float | None = AUTO,
        bounds: tuple[float, float] | None = AUTO,
        eps: float | None = None,
        substeps: int = AUTO,
        segment_rule: str = AUTO,
        adaptive: float | None = AUTO,
        adaptive_depth: int = AUTO,
        internal_batch_size: int | None = None,
        return_path: bool = False,
        return_gradcf: bool = True,
        step_rule: str = AUTO,
        preset: str | None = None,
        path_layout: str = AUTO,
    ) -> Explanation:
        """Args:
        inputs: ``[B, *S]`` tensor (images ``[B, C, H, W]``, tabular ``[B, d]``, embeddings ``[B, L, E]``;
            per-token scores: ``attributions.sum(-1)``). Tuples are rejected.
        references: ``[R, *S]`` shared by all examples, ``[B, R, *S]`` per example, or a
            :class:`pathattr.references.ReferenceSet` (its indices and classes are recorded in the extras).
        target: int, list / 1-D tensor of B ints, callable on the output, or None (predicted class); fixed
            for the whole path.
        additional_forward_args: extra ``forward_func`` arguments (per-example tensors have dim 0 = B).
        n_steps: ``K``, GradPath steps (default 32; the authors: 201 on ImageNet). This argument and
            ``step_size``, ``bounds``, ``step_rule``, ``segment_rule``, ``substeps``, ``adaptive``,
            ``adaptive_depth``, ``path_layout``: when not given (:data:`AUTO`), the ``preset``'s value, else
            :data:`DEFAULT_SETTINGS`.
        step_size: ``eta``, the L2 length of every unclipped step over all features of a row (the paper's
            absolute step); None: ``|x - x^r|_2 / n_steps`` per reference (path length = straight distance).
        bounds: ``(lo, hi)``: every path point is clipped to the box (e.g. ``(0, 1)`` for images).
        eps: floor of the step normaliser ``W = max(|u|_2, eps)`` (default 1e-12 float64, 1e-6 float32,
            1e-3 half): a zero counterfactual gradient gives a zero step, never NaN.
        substeps: integration nodes per path segment (the completeness remedy; 1 = the reference). The path
            (its direction and points) does not change; only ``grad f_c`` is evaluated at extra points inside
            each straight segment, batched as extra rows (at most ``MAX_SUBSTEPS`` = 1024).
        segment_rule: ``"left"`` (reference for ``substeps=1``; ``m - 1`` extra rows per segment),
            ``"trapezoid"`` (second order; ``m - 1`` extra rows per segment plus one gradient at GradCF) or
            ``"gausslegendre"`` (``m`` extra rows). Rules other than ``left``/1 need the Riemann integrator.
        adaptive: adaptive segment integration (the second remedy; None = off): every segment is integrated
            with the trapezoid rule and bisected, up to ``adaptive_depth`` times, wherever its completeness error
            ``|f(a) - f(b) - 1/2 (g_a + g_b) . (a - b)|`` exceeds ``adaptive * |f_c(x)| / n_steps`` (``adaptive``
            is floored at the machine epsilon of the output dtype, and a piece whose error did not shrink when it
            was cut is accepted: rounding noise); the path is unchanged. ``extras["refined_pieces"]`` ``[B, R]``
            counts the bisections (= extra gradient rows), ``extras["stalled_pieces"]`` the pieces accepted above
            the tolerance that way.
        adaptive_depth: maximum bisection depth per segment.
        internal_batch_size: maximum rows (paths) per forward call. With ``path_layout="rows"`` (the default on
            inputs of >= 4096 features) the path does not depend on it at all and the attributions only through
            the round-off of the refinement rows; with ``"chunks"`` the path depends on it through float round-off,
            which the ``"fixed"`` step rule can amplify along the path on real networks (docs/ig2.md).
        return_path: keep every path point (``extras["path"]``, ``[B, R, K + 1, *S]``).
        return_gradcf: put GradCF (``[B, R, *S]``) in ``extras["gradcf"]``.
        step_rule: ``"fixed"`` (the reference: every unclipped step has length ``eta``, the path oscillates
            around the representation minimum) or ``"damped_newton"`` (length ``min(cap, D / |u|)``, the cap
            starting at ``eta`` and halved for a path whenever its distance went up: the path converges). With
            either rule a path whose representation difference is float noise stays where it is
            (``extras["stopped"]``).
        preset: None, a name of :data:`PRESETS` (``"paper-imagenet"``, ``"paper-trec"``, ``"paper-wafer"``,
            ``"wellposed"``, ``"reference"``): see :func:`paper_preset`.
        path_layout: ``"rows"``: every path row is walked in a forward call of its own (also ``phi`` of the
            references), so the path, which can amplify round-off, does not depend on ``internal_batch_size`` or
            on which rows share a call; ``"chunks"``: rows in chunks of ``internal_batch_size``; ``"auto"``
            (default): ``"rows"`` for inputs of at least :data:`ROW_LAYOUT_MIN_FEATURES` features per example,
            else ``"chunks"`` (the paper presets: ``"chunks"``). Refinement rows (``substeps``, ``adaptive``)
            are always chunked by ``internal_batch_size``: they do not feed back into the path.

        Extras: ``gradcf``, ``gradcfe`` (``x - mean_r GradCF^r``, ``[B, *S]``), ``gradcf_outputs`` /
        ``gradcf_predictions`` ``[B, R]``, ``counterfactual_valid``
        ``[B, R]`` (argmax ``f(GradCF)`` differs from the explained class; None for single-output models),
        ``distance_start`` / ``distance_end`` / ``distance_ratio`` ``[B, R]``, ``step_size`` ``[B, R]``,
        ``step_outputs`` ``[B, R, K]`` (``f_c`` at ``gamma_0 .. gamma_{K-1}``), ``cf_gradient_norms``
        ``[B, R, K]``, ``completeness_gap`` / ``relative_completeness_gap`` ``[B]`` (= the convergence delta),
        ``reference_indices`` / ``reference_classes`` for a ReferenceSet, and the integrator's extras.
        """
        self._check_single(inputs)
        shape = tuple(inputs.shape[1:]) if isinstance(inputs, Tensor) else None
        given = {"n_steps": n_steps, "step_size": step_size, "bounds": bounds, "step_rule": step_rule,
                 "segment_rule": segment_rule, "substeps": substeps, "adaptive": adaptive,
                 "adaptive_depth": adaptive_depth, "path_layout": path_layout}
        settings = resolve_settings(preset, shape, given)
        if (type(self.integrator) is not RiemannIntegrator and segment_rule is AUTO and substeps is AUTO
                and adaptive is AUTO):  # the well-posed rules need the Riemann sum: other integrators keep left
            settings.update(segment_rule="left", substeps=1, adaptive=None)
        n_steps, step_size, bounds = settings["n_steps"], settings["step_size"], settings["bounds"]
        check_gradpath_arguments(n_steps, step_size, bounds, eps)
        segments = SegmentRule(settings["segment_rule"], settings["substeps"], settings["adaptive"],
                               settings["adaptive_depth"])
        segments.check(self.integrator)
        with self.session(inputs, target, additional_forward_args) as s:
            su = self._setup(s, references, n_steps, step_size, bounds, eps, internal_batch_size, return_path,
                             settings["step_rule"], settings["path_layout"])
            run = integrate_sequential_path(s.model, su.path, self.integrator, internal_batch_size, s.inputs,
                                            s.outputs[su.example], segments)
            (attr,), end, path = run.attributions, run.end, su.path
            b, r = su.batch, su.r
            result_extras = self._extras(s, su, end.outputs, end.extras["prediction"], path.distances[0],
                                         end.extras["distance"], return_gradcf, references)
            result_extras["step_outputs"] = torch.stack(path.step_outputs, 1).view(b, r, n_steps)
            result_extras["cf_gradient_norms"] = torch.stack(path.cf_norms, 1).view(b, r, n_steps)
            if return_path:
                result_extras["path"] = torch.stack(path.path, 1).reshape(b, r, n_steps + 1, *su.x.shape[1:])
            for name in ("refined_pieces", "stalled_pieces"):
                if name in run.extras:
                    run.extras[name] = run.extras[name].view(b, r)
            result_extras.update(run.extras)
            hyper = self._hyper(su, preset=preset, n_steps=n_steps, step_size=step_size,
                                bounds=bounds,
                                step_rule=settings["step_rule"],
                                path_layout=su.layout,
                                **segments.describe(),
                                internal_batch_size=internal_batch_size)
            result_extras["stopped"] = path.stopped.view(b, r)
            if settings["step_rule"] == "damped_newton":
                result_extras["rejected_steps"] = path.rejections.view(b, r)
            baseline_out = end.outputs.view(b, r).mean(1)
            out = s.explanation((attr.to(su.x.dtype),), hyper, baseline_outputs=baseline_out, extras=result_extras)
            out.extras["completeness_gap"] = out.convergence_delta
            out.extras["relative_completeness_gap"] = out.relative_delta
            return out


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
            run = integrate_sequential_path(s.model, su.path, self.integrator, internal_batch_size, s.inputs,
                                            s.outputs[su.example], end_gradient=True)
            (acc,), end = run.per_path, run.end
            gc = su.path.point
            disp = ((gc - su.ref_rows) / m).to(acc.dtype)  # baseline -> input orientation
            acc.addcmul_(end.gradients[0].to(acc.dtype), disp)
            if m > 1:
                ts = [i / m for i in range(1, m)]
                pts = torch.cat([torch.lerp(gc, su.ref_rows, t) for t in ts])
                (g,), _ = gradients_in_chunks(s.model, (pts,), su.example.repeat(len(ts)), internal_batch_size)
                acc.add_((g.to(acc.dtype).view(len(ts), *acc.shape) * disp).sum(0))
            ref_out = outputs_in_chunks(s.model, (su.ref_rows,), su.example, internal_batch_size)
            extras = self._extras(s, su, end.outputs, end.extras["prediction"], su.path.distances[0],
                                  end.extras["distance"], return_gradcf, references)
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
            end = walk_sequential_path(s.model, su.path, internal_batch_size, s.inputs, s.outputs[su.example]).end
            end_out, end_pred, d_end = end.outputs, end.extras["prediction"], end.extras["distance"]
            d_start = su.path.distances[0]
            gradcf = su.path.point.reshape(su.batch, su.r, *su.x.shape[1:])
            alphas, weights = self.integrator.nodes(method, ig_steps, su.x.dtype, su.x.device)
            path = StraightLinePath.from_baselines(s.inputs, (gradcf,), alphas, weights, True)
            attr, int_extras, start_out, _ = integrate_parametric_path(
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


__all__ = [
    "AUTO",
    "DEFAULT_SETTINGS",
    "PAPER_PRESETS",
    "PATH_LAYOUTS",
    "PRESETS",
    "ROW_LAYOUT_MIN_FEATURES",
    "REFERENCE_SETTINGS",
    "SEGMENT_RULES",
    "WELLPOSED_SETTINGS",
    "GradCFIG",
    "GradPathIG",
    "IG2",
    "gradcf_ig",
    "gradpath_ig",
    "ig2",
    "paper_preset",
    "resolve_path_layout",
    "resolve_settings",
    "segment_nodes",
]
