"""Perturbation faithfulness: insertion / deletion curves (RISE), DiffID, and the completeness gap.

References:
    Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box Models." BMVC 2018,
    arXiv:1806.07421 (insertion and deletion games; reference code ``eclique/RISE``, ``evaluation.py``).
    Sundararajan, Taly, Yan. "Axiomatic Attribution for Deep Networks." ICML 2017 (completeness).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..baselines import BaselineSpec as SubstrateSpec
from ..baselines import BaselinesType, resolve_baselines, resolve_substrate
from ..errors import InputValidationError, check_finite
from ..forward import ModelFunction, TargetType
from ..randomness import as_generator
from ._common import (
    CHANNEL_REDUCTIONS,
    DEPRECATED,
    OUTPUT_KINDS,
    Metric,
    MetricResult,
    as_float_tuple,
    choice,
    chunk_size_for,
    describe,
    float_batch,
    guard,
    internal_batch_size_alias,
    non_negative_float,
    positive_int,
    reduce_channels,
    resolve_target_chunked,
    scores_in_chunks,
    scores_with_target,
    sort_descending,
)

GRANULARITIES = ("pixel", "feature", "patch")
#: integer dtype of each float element size, for bit selections between two float tensors
_BIT_VIEWS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass(kw_only=True)
class CurveResult(MetricResult):
    """Result of :func:`insertion` / :func:`deletion`.

    Attributes:
        scores: area under each example's curve ``[B]`` (``AUC``).
        curve: score of the target after each step ``[B, n + 1]`` (step 0 = start image).
        fractions: fraction of units changed at each step ``[n + 1]`` (from 0 to 1).
        target: the class scored per example ``[B]`` (None for single-output models or callable targets).
        n_units: number of perturbation units (pixels, features or patches) per example.
    """

    curve: Tensor
    fractions: Tensor
    target: Tensor | None
    n_units: int

    @property
    def mean_curve(self) -> Tensor:
        """Pointwise mean curve ``[n + 1]``. Its AUC equals the mean of the per-example AUCs (the AUC is linear
        in the curve and all curves share one grid), so RISE's "AUC of the mean curve" is :meth:`mean`."""
        return self.curve.mean(0)


@dataclass(kw_only=True)
class DiffIDResult(MetricResult):
    """Result of :func:`diffid`: ``scores = insertion.scores - deletion.scores`` per example."""

    insertion: CurveResult
    deletion: CurveResult


# ------------------------------------------------------------------------------------------- units
def _units(
    x: Tensor, attributions: Tensor, granularity: str, patch_size: Any, channel_reduction: str
) -> tuple[Tensor, Callable[[Tensor], Tensor], dict[str, Any]]:
    """Per-unit saliency ``[B, N]`` and a function expanding a unit mask ``[R, N]`` to an input mask."""
    b = x.shape[0]
    if attributions.shape[0] != b:
        raise InputValidationError(
            f"`attributions` has batch size {attributions.shape[0]} but `inputs` has {b}.", "attributions"
        )
    info: dict[str, Any] = {"granularity": granularity}
    if granularity == "feature":
        if attributions.shape != x.shape:
            raise InputValidationError(
                f"with granularity='feature' `attributions` must have the inputs' shape {tuple(x.shape)}, got "
                f"{tuple(attributions.shape)}.",
                "attributions",
            )
        shape = x.shape[1:]
        return attributions.reshape(b, -1), lambda m: m.view(m.shape[0], *shape), info
    if x.ndim < 3:
        raise InputValidationError(
            f"granularity={granularity!r} needs channels-first inputs [B, C, *spatial]; got shape "
            f"{tuple(x.shape)}. Use granularity='feature'.",
            "granularity",
        )
    spatial = tuple(x.shape[2:])
    if attributions.shape == x.shape:
        pixel = reduce_channels(attributions, channel_reduction)
        info["channel_reduction"] = channel_reduction
    elif tuple(attributions.shape[1:]) == spatial:
        pixel = attributions
    elif attributions.ndim == x.ndim and attributions.shape[1] == 1 and tuple(attributions.shape[2:]) == spatial:
        pixel = attributions[:, 0]
    else:
        raise InputValidationError(
            f"`attributions` has shape {tuple(attributions.shape)}; expected the inputs' shape {tuple(x.shape)}, "
            f"[B, *spatial] = {(b, *spatial)} or [B, 1, *spatial].",
            "attributions",
        )
    if granularity == "pixel":
        return pixel.reshape(b, -1), lambda m: m.view(m.shape[0], 1, *spatial), info
    # patches
    if x.ndim != 4:
        raise InputValidationError("granularity='patch' needs images [B, C, H, W].", "granularity")
    if patch_size is None:
        raise InputValidationError("granularity='patch' needs `patch_size` (int or (height, width)).", "patch_size")
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    ph = positive_int(ph, "patch_size")
    pw = positive_int(pw, "patch_size")
    h, w = spatial
    nh, nw = math.ceil(h / ph), math.ceil(w / pw)
    padded = F.pad(pixel, (0, nw * pw - w, 0, nh * ph - h))
    per_patch = padded.reshape(b, nh, ph, nw, pw).sum(dim=(2, 4))
    info["patch_size"] = (ph, pw)

    def expand(m: Tensor) -> Tensor:
        grid = m.view(m.shape[0], nh, 1, nw, 1).expand(m.shape[0], nh, ph, nw, pw).reshape(m.shape[0], nh * ph, -1)
        return grid[:, :h, :w].unsqueeze(1)

    return per_patch.reshape(b, -1), expand, info


def _causal_curve(
    mode: str,
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType,
    n_steps: int | None,
    substrate: SubstrateSpec,
    internal_batch_size: int | None,
    step: int | None,
    granularity: str | None,
    patch_size: Any,
    channel_reduction: str,
    output: str,
    additional_forward_args: Any,
    generator: torch.Generator | int | None,
    module: Any,
) -> CurveResult:
    x = float_batch(inputs, "inputs")
    a = float_batch(attributions, "attributions", min_ndim=2).to(device=x.device)
    if granularity is None:
        granularity = "pixel" if x.ndim == 4 else "feature"
    granularity = choice(granularity, GRANULARITIES, "granularity")
    channel_reduction = choice(channel_reduction, CHANNEL_REDUCTIONS, "channel_reduction")
    output = choice(output, OUTPUT_KINDS, "output")
    saliency, expand, unit_info = _units(x, a, granularity, patch_size, channel_reduction)
    b, n_units = saliency.shape
    if step is not None:
        step = positive_int(step, "step")
        n = math.ceil(n_units / step)
        count_list = [min(i * step, n_units) for i in range(n + 1)]
    else:
        n = positive_int(n_steps, "n_steps")
        count_list = [i * n_units // n for i in range(n + 1)]
    gen = as_generator(generator)
    sub, sub_desc = resolve_substrate(substrate, x, gen)
    start, finish = (x, sub) if mode == "deletion" else (sub, x)

    order = sort_descending(saliency)
    rank = torch.empty((b, n_units), dtype=torch.int32, device=x.device)  # unit j is changed at count c: rank < c
    rank.scatter_(1, order, torch.arange(n_units, dtype=torch.int32, device=x.device).expand(b, n_units))

    internal_batch_size = positive_int(internal_batch_size, "internal_batch_size", allow_none=True)
    model = ModelFunction(forward_func, b, additional_forward_args)
    n_rows = b * (n + 1)
    # Row layout: rows 0 .. B-1 are the examples themselves (curve point 0 of deletion, point n of insertion: no
    # unit or every unit changed), so the target is fixed from their outputs without a separate forward; then the
    # other n points of each example, example-major (row = B + example * n + point), so a chunk covers a few
    # examples and each example's start / finish broadcast against its masks without being copied per row.
    x_point = 0 if mode == "deletion" else n
    first_point = 1 if mode == "deletion" else 0
    # rows are built as bit selections `start ^ ((finish ^ start) & mask)` on the integer views of the floats:
    # the same bits as torch.where(mask, finish, start), whose broadcasting kernel is ~8x slower on CPU (0.42 vs
    # 0.05 ms for 33 rows of 3x32x32, i.e. 6 % of the small CNN's forward of those rows)
    bits = _BIT_VIEWS.get(x.element_size()) if start.dtype == finish.dtype == x.dtype else None
    if bits is not None:
        start_bits = start.view(bits)
        flip_bits = finish.view(bits) ^ start_bits
    # units changed at each perturbed point
    point_counts = torch.tensor(count_list[first_point : first_point + n], dtype=torch.int32,
                                device=x.device).unsqueeze(1)
    if b == 1:
        row_example = torch.zeros(n_rows, dtype=torch.long, device=x.device)
    else:
        row_example = torch.arange(b, device=x.device)
        row_example = torch.cat([row_example, row_example.repeat_interleave(n)])

    def make_rows(lo: int, hi: int) -> tuple[tuple[Tensor, ...], Tensor]:
        rows = torch.empty((hi - lo, *x.shape[1:]), dtype=x.dtype, device=x.device)
        first = lo
        if first < b:
            rows[: min(hi, b) - lo].copy_(x[first : min(hi, b)])
            first = min(hi, b)
        while first < hi:  # one example's points at a time: its masks broadcast against its start / finish
            e, q = divmod(first - b, n)
            last = min(hi, first + n - q)
            part = slice(first - lo, last - lo)
            if bits is not None:  # changed units: rank - count < 0, all bits set after the arithmetic shift
                mask = torch.sub(rank[e : e + 1], point_counts[q : q + last - first]).bitwise_right_shift_(31)
                mask = expand(mask if bits == torch.int32 else mask.to(bits))
                torch.bitwise_and(flip_bits[e : e + 1], mask, out=rows.view(bits)[part])
                rows.view(bits)[part].bitwise_xor_(start_bits[e : e + 1])
            else:
                mask = expand(rank[e : e + 1] < point_counts[q : q + last - first])
                torch.where(mask, finish[e : e + 1], start[e : e + 1], out=rows[part])
            first = last
        return (rows,), row_example[lo:hi]

    with guard(forward_func, module):
        values, largest = scores_with_target(model, target, (x,), n_rows, make_rows, internal_batch_size, output)
    if b == 1 and x_point == 0:
        curve = values.view(1, n + 1)  # already in curve order
    else:
        curve = torch.empty((b, n + 1), dtype=values.dtype, device=values.device)
        curve[:, x_point] = values[:b]
        curve[:, first_point : first_point + n] = values[b:].view(b, n)
    # (sum - curve[0] / 2 - curve[n] / 2) / n; halving is exact, so the alpha form gives the same bits in fewer ops
    auc = torch.sub(curve.sum(1), curve[:, 0], alpha=0.5).sub_(curve[:, -1], alpha=0.5).div_(n)
    target_index = model.target if isinstance(model.target, Tensor) else None
    hyper = {
        "mode": mode,
        "n_steps": n,
        "step": step,
        "n_units": n_units,
        **unit_info,
        "substrate": sub_desc,
        "output": output,
        "target": describe(target),
        "tie_break": "stable: equal saliency -> lower flat index first",
        "auc": "trapezoid on uniform grid i/n: (sum(curve) - curve[0]/2 - curve[n]/2) / n",
        "internal_batch_size": internal_batch_size,
        "rows_per_forward": internal_batch_size if internal_batch_size is not None else largest,
    }
    return CurveResult(
        name=mode,
        scores=auc,
        direction="higher" if mode == "insertion" else "lower",
        hyperparameters=hyper,
        curve=curve,
        fractions=torch.tensor([c / n_units for c in count_list], dtype=torch.float64),
        target=target_index,
        n_units=n_units,
    )


_CURVE_ARGS_DOC = """
    Args:
        forward_func: model or callable ``(inputs, *additional_forward_args) -> [n, C]`` (or ``[n]``).
        inputs: ``[B, *S]`` tensor or array, as the model sees it (e.g. normalised ``[B, C, H, W]`` images).
        attributions: saliency per input element ``[B, *S]``, or per location ``[B, *spatial]`` /
            ``[B, 1, *spatial]`` for pixel or patch granularity. Higher = more important.
        target: class scored per example: int, list / 1-D tensor of ``B`` ints, callable on the raw output, or
            None (the class predicted on ``inputs``; fixed for the whole curve).
        n_steps: number of steps ``n``; after step ``i`` the ``floor(i * N / n)`` most salient units are changed.
        substrate: replacement values, a baseline (:mod:`pathattr.baselines`): name (``"zeros"``, ``"blur"`` =
            RISE's blur, ``"mean"``, ``"uniform"``, ...), number, tensor, ``Baseline`` instance, callable.
        internal_batch_size: maximum rows (perturbed inputs) per forward call; bounds memory. None: the automatic
            plan of the methods (:func:`pathattr.planner.plan_chunks`: chunk sizes measured for speed within a memory
            cap of about 4M input elements per call, remembered per model). ``batch_size`` is its deprecated alias.
        step: units changed per step instead of ``n_steps`` (RISE's ``step``; ``n = ceil(N / step)``).
        granularity: ``"pixel"`` (a unit is one spatial location, all channels; default for ``[B, C, H, W]``),
            ``"feature"`` (a unit is one input element; default otherwise) or ``"patch"`` (``patch_size``
            squares of pixels, saliency summed over the patch).
        patch_size: int or ``(height, width)`` for ``granularity="patch"``.
        channel_reduction: how ``[B, C, *spatial]`` attributions become one value per location: ``"sum"``,
            ``"abs_sum"``, ``"abs_of_sum"``, ``"mean"``, ``"max_abs"``.
        output: ``"probability"`` (softmax over classes of the raw output, as RISE; sigmoid for single-output
            models) or ``"logit"`` (the raw target output).
        additional_forward_args: extra arguments for ``forward_func`` (per-example tensors have dim 0 = B).
        generator: ``torch.Generator`` or int seed for random substrates (seed 0 if None).
        model: the ``nn.Module`` (or modules) ``forward_func`` uses, when it cannot be found from it (e.g. a
            lambda around the model); put in eval mode and restored like ``forward_func`` itself.

    Formula (RISE): with ``c`` fixed, ``score_i = p_c(x_i)``, ``AUC = (sum_i score_i - score_0/2 - score_n/2) / n``
    (trapezoid on the uniform grid ``i / n``). Ties in the saliency are broken by flat index (lower first).
    Each example's curve is independent of the other examples and of ``internal_batch_size`` (up to float rounding of
    the model), except with a random substrate (``"uniform"``), which is drawn for the whole batch at once.

    Returns:
        :class:`CurveResult`: ``scores`` (AUC per example), ``curve`` ``[B, n + 1]``, ``fractions``, ``target``.
"""


def deletion(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType = None,
    n_steps: int = 100,
    substrate: SubstrateSpec = "zeros",
    internal_batch_size: int | None = None,
    *,
    step: int | None = None,
    granularity: str | None = None,
    patch_size: int | tuple[int, int] | None = None,
    channel_reduction: str = "sum",
    output: str = "probability",
    additional_forward_args: Any = None,
    generator: torch.Generator | int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> CurveResult:
    """Deletion game (RISE): start from the input and replace the most salient units by the substrate first;
    a faithful attribution makes the target score drop fast. **Lower AUC is better.**
    """
    internal_batch_size = internal_batch_size_alias("deletion", internal_batch_size, batch_size)
    return _causal_curve(
        "deletion", forward_func, inputs, attributions, target, n_steps, substrate, internal_batch_size, step,
        granularity, patch_size, channel_reduction, output, additional_forward_args, generator, model,
    )


def insertion(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType = None,
    n_steps: int = 100,
    substrate: SubstrateSpec = "blur",
    internal_batch_size: int | None = None,
    *,
    step: int | None = None,
    granularity: str | None = None,
    patch_size: int | tuple[int, int] | None = None,
    channel_reduction: str = "sum",
    output: str = "probability",
    additional_forward_args: Any = None,
    generator: torch.Generator | int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> CurveResult:
    """Insertion game (RISE): start from the substrate (default: RISE's blur) and insert the most salient
    units of the input first; a faithful attribution makes the target score rise fast. **Higher AUC is
    better.**
    """
    internal_batch_size = internal_batch_size_alias("insertion", internal_batch_size, batch_size)
    return _causal_curve(
        "insertion", forward_func, inputs, attributions, target, n_steps, substrate, internal_batch_size, step,
        granularity, patch_size, channel_reduction, output, additional_forward_args, generator, model,
    )


deletion.__doc__ = (deletion.__doc__ or "") + _CURVE_ARGS_DOC
insertion.__doc__ = (insertion.__doc__ or "") + _CURVE_ARGS_DOC


def diffid(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType = None,
    n_steps: int = 100,
    insertion_substrate: SubstrateSpec = "blur",
    deletion_substrate: SubstrateSpec = "zeros",
    internal_batch_size: int | None = None,
    *,
    batch_size: Any = DEPRECATED,
    **kwargs: Any,
) -> DiffIDResult:
    """DiffID = insertion AUC - deletion AUC per example (as reported by MA-GIG and IDG). **Higher is better.**

    Runs :func:`insertion` with ``insertion_substrate`` (default RISE blur) and :func:`deletion` with
    ``deletion_substrate`` (default zeros) on the same target; ``kwargs`` are passed to both (``step``,
    ``granularity``, ``patch_size``, ``channel_reduction``, ``output``, ``additional_forward_args``,
    ``generator``, ``model``). Both curves are kept in the result. ``batch_size`` is the deprecated alias of
    ``internal_batch_size``.
    """
    ibs = internal_batch_size_alias("diffid", internal_batch_size, batch_size)
    ins = insertion(forward_func, inputs, attributions, target, n_steps, insertion_substrate, ibs, **kwargs)
    if target is None and ins.target is not None:
        target = ins.target
    dele = deletion(forward_func, inputs, attributions, target, n_steps, deletion_substrate, ibs, **kwargs)
    hyper = {
        "insertion": ins.hyperparameters,
        "deletion": dele.hyperparameters,
    }
    return DiffIDResult(
        name="diffid", scores=ins.scores - dele.scores, direction="higher", hyperparameters=hyper,
        insertion=ins, deletion=dele,
    )


# ------------------------------------------------------------------------------------------- completeness
@dataclass(kw_only=True)
class CompletenessResult(MetricResult):
    """Result of :func:`completeness_gap`.

    Attributes:
        scores: the absolute gap ``sum(A) - (F(x) - F_ref)`` per example ``[B]`` (signed; closer to 0 is better).
        relative: ``scores / max(|F(x) - F_ref|, eps)`` ``[B]`` (signed).
        total_attribution: ``sum(A)`` per example ``[B]``.
        output_difference: ``F(x) - F_ref`` per example ``[B]``.
        passed: ``|scores| <= atol + rtol * |F(x) - F_ref|`` per example ``[B]`` (bool).
        pass_rate: fraction of examples that passed.
    """

    relative: Tensor
    total_attribution: Tensor
    output_difference: Tensor
    passed: Tensor
    pass_rate: float


def completeness_gap(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    baselines: BaselinesType = None,
    target: TargetType = None,
    *,
    reference_outputs: Any = None,
    atol: float = 1e-4,
    rtol: float = 1e-2,
    eps: float = 1e-12,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> CompletenessResult:
    """Completeness gap of attributions (Sundararajan et al. 2017): how far ``sum(A)`` is from the output change
    it should explain. No normalisation is applied (unlike Quantus ``Completeness``, which tests exact float
    equality after rescaling the attributions). **Closer to zero is better.**

    ``Delta_abs = sum_i A_i - (F(x) - F_ref)``, ``Delta_rel = Delta_abs / max(|F(x) - F_ref|, eps)``, computed in
    float64; an example passes if ``|Delta_abs| <= atol + rtol * |F(x) - F_ref|``.

    Args:
        forward_func: model or callable returning ``[n]`` or ``[n, C]``; ``F`` is the target output (logit).
        inputs: ``[B, *S]`` tensor/array or tuple of them.
        attributions: same structure and shapes as ``inputs``.
        baselines: what ``F_ref`` is evaluated at (as in :mod:`pathattr.baselines`): None (zeros), a number, a
            name, a tensor ``[B or 1, *S]``, or ``[B or 1, K, *S]`` for ``K`` baselines per example (``F_ref`` is
            then the mean of ``F`` over them, as for multi-baseline IG or Expected Gradients). Ignored if
            ``reference_outputs`` is given.
        target: class per example (None: predicted class at ``inputs``), or a callable on the raw output.
        reference_outputs: ``F_ref`` directly, ``[B]`` or a scalar (e.g. IG2's mean output at its
            counterfactuals, Blur IG's output at the fully blurred image).
        atol, rtol: tolerances of the pass verdict.
        eps: floor of the relative gap's denominator.
        additional_forward_args: extra arguments for ``forward_func``.
        internal_batch_size: maximum rows per forward call (``batch_size``: its deprecated alias).
        generator: ``torch.Generator`` or int seed for random baselines (seed 0 if None).
        model: the ``nn.Module`` (or modules) ``forward_func`` uses, when it cannot be found from it.

    Returns:
        :class:`CompletenessResult`; ``scores`` is the signed absolute gap (closer to zero is better).
    """
    batch_size = internal_batch_size_alias("completeness_gap", internal_batch_size, batch_size)
    items = as_float_tuple(inputs, "inputs")
    attrs = as_float_tuple(attributions, "attributions")
    if len(attrs) != len(items) or any(a.shape != x.shape for a, x in zip(attrs, items)):
        raise InputValidationError(
            f"`attributions` shapes {[tuple(a.shape) for a in attrs]} do not match `inputs` "
            f"{[tuple(x.shape) for x in items]}.",
            "attributions",
        )
    atol = non_negative_float(atol, "atol")
    rtol = non_negative_float(rtol, "rtol")
    b = items[0].shape[0]
    fm = ModelFunction(forward_func, b, additional_forward_args)
    with guard(forward_func, model):
        chunk0 = chunk_size_for(batch_size, b, sum(int(t[0].numel()) for t in items))
        out = resolve_target_chunked(fm, target, items, chunk0).to(torch.float64)
        if reference_outputs is not None:
            ref = torch.as_tensor(reference_outputs, dtype=torch.float64).reshape(-1).to(out.device)
            if ref.numel() == 1:
                ref = ref.expand(b)
            if ref.numel() != b:
                raise InputValidationError(
                    f"`reference_outputs` has {ref.numel()} values; expected one per example ({b}).",
                    "reference_outputs",
                )
            check_finite(ref, "reference_outputs")
            ref_desc: Any = "given"
        else:
            bases = resolve_baselines(items, baselines, as_generator(generator))
            k = bases[0].shape[1]
            flat = [base.expand(b, *base.shape[1:]).reshape(b * k, *base.shape[2:]) for base in bases]
            index = torch.arange(b, device=items[0].device).repeat_interleave(k)
            chunk = chunk_size_for(batch_size, b * k, sum(int(t[0].numel()) for t in flat))

            def make_rows(lo: int, hi: int) -> tuple[tuple[Tensor, ...], Tensor]:
                return tuple(t[lo:hi] for t in flat), index[lo:hi]

            values = scores_in_chunks(fm, b * k, make_rows, chunk, "logit")
            ref = values.view(b, k).mean(1)
            ref_desc = {"baselines": describe(baselines), "per_example": k}
    total = sum(a.reshape(b, -1).to(torch.float64).sum(1) for a in attrs)
    diff = out - ref
    gap = total - diff
    relative = gap / diff.abs().clamp_min(eps)
    passed = gap.abs() <= atol + rtol * diff.abs()
    hyper = {
        "reference": ref_desc,
        "target": describe(target),
        "atol": atol,
        "rtol": rtol,
        "eps": eps,
        "normalise": False,
        "dtype": "float64",
        "internal_batch_size": batch_size,
    }
    return CompletenessResult(
        name="completeness_gap", scores=gap, direction="zero", hyperparameters=hyper, relative=relative,
        total_attribution=total, output_difference=diff, passed=passed, pass_rate=float(passed.double().mean()),
    )


# ------------------------------------------------------------------------------------------- class forms
class Deletion(Metric):
    """Class form of :func:`deletion`: ``Deletion(n_steps=..., substrate=...)(forward_func, inputs, attributions)``.
    Lower is better."""

    function = staticmethod(deletion)
    higher_is_better = False


class Insertion(Metric):
    """Class form of :func:`insertion`. Higher is better."""

    function = staticmethod(insertion)
    higher_is_better = True


class DiffID(Metric):
    """Class form of :func:`diffid`. Higher is better."""

    function = staticmethod(diffid)
    higher_is_better = True


class CompletenessGap(Metric):
    """Class form of :func:`completeness_gap`. Closer to zero is better (``higher_is_better`` is None)."""

    function = staticmethod(completeness_gap)
    higher_is_better = None
