"""Evaluation metrics the benchmark runner computes, on top of :mod:`pathattr.metrics` (imported lazily).

Each entry is a *group* that produces one or more stored metric names from one computation (``insdel`` runs
the insertion and deletion games once and stores ``insertion``, ``deletion`` and ``diffid``; their curves are
kept as artifacts for the report). A group applies to a family/method pair or not (ground-truth metrics need
masks, NLP metrics need tokens, the completeness gap needs a method with a reference output).

Stored metric names and their direction:

=====================  ==========  ==========================================================================
name                   better      definition
=====================  ==========  ==========================================================================
insertion              higher      RISE insertion AUC (probability; blur substrate on images, zeros otherwise)
deletion               lower       RISE deletion AUC (probability; zeros substrate)
diffid                 higher      insertion - deletion
completeness_abs       lower       ``|sum(A) - (f(x) - f_ref)|`` (logit units)
completeness_rel       lower       ``|sum(A) - (f(x) - f_ref)| / |f(x) - f_ref|``
gt_auroc               higher      AUROC of ``|A|`` (channel abs-sum) against the ground-truth mask
gt_topk                higher      precision of the ``k`` top ``|A|`` features, ``k`` = mean mask size
gt_ap                  higher      average precision of ``|A|`` against the mask
pointing_game          higher      maximum of the (channel-summed) attribution inside the mask
energy_pointing_game   higher      share of positive attribution mass inside the mask
comprehensiveness      higher      ERASER, top 20 % tokens deleted
sufficiency            lower       ERASER, only the top 20 % tokens kept
log_odds               lower       DIG log-odds, top 20 % tokens replaced by the zero embedding
cost_seconds           (cost)      wall seconds of the attribution per example (chunk time / chunk size)
cost_passes            (cost)      forward + backward rows of the attribution per example
=====================  ==========  ==========================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .families.base import Family
from .methods_registry import MethodSpec

DIRECTIONS = {
    "insertion": "higher", "deletion": "lower", "diffid": "higher", "completeness_abs": "lower",
    "completeness_rel": "lower", "gt_auroc": "higher", "gt_topk": "higher", "gt_ap": "higher",
    "pointing_game": "higher", "energy_pointing_game": "higher", "comprehensiveness": "higher",
    "sufficiency": "lower", "log_odds": "lower", "cost_seconds": "lower", "cost_passes": "lower",
}
COST_METRICS = ("cost_seconds", "cost_passes")


def _metrics() -> Any:
    try:
        return importlib.import_module("pathattr.metrics")
    except ImportError as err:  # pragma: no cover - the package is part of pathattr
        raise RuntimeError(f"pathattr.metrics is not importable: {err}") from err


@dataclass
class MetricContext:
    """What a metric group sees for one chunk of ``B`` explicands."""

    family: Family
    method: MethodSpec
    x: Tensor
    attributions: Tensor
    target: Tensor
    explanation: Any
    example_index: Tensor
    generator: torch.Generator
    quick: bool


@dataclass(frozen=True)
class MetricGroup:
    """A computation that yields the stored metrics ``names``.

    ``compute(ctx) -> (values {name: [B] tensor}, curves {name: [B, n] tensor})``; ``applies(family, method)``;
    ``settings(family, quick)`` are the group's hyperparameters (recorded in the run's hyperparameter JSON).
    """

    key: str
    names: tuple[str, ...]
    compute: Callable[[MetricContext], tuple[dict[str, Tensor], dict[str, Tensor]]]
    applies: Callable[[Family, MethodSpec], bool]
    settings: Callable[[Family, bool], dict[str, Any]]


# ------------------------------------------------------------------------------------------------ insdel
def _insdel_settings(family: Family, quick: bool) -> dict[str, Any]:
    budget = getattr(family, "budget", None) or {}
    steps = budget.get("quick_metric_steps" if quick else "full_metric_steps")
    if family.spatial:
        return {"n_steps": int(steps or (16 if quick else 100)), "insertion_substrate": "blur",
                "deletion_substrate": "zeros", "granularity": "pixel", "output": "probability",
                "channel_reduction": "sum"}
    n_features = int(family.inputs[0].numel())
    return {"n_steps": int(steps or min(n_features, 32 if quick else 100)), "insertion_substrate": "zeros",
            "deletion_substrate": "zeros", "granularity": "feature", "output": "probability",
            "channel_reduction": "sum"}


def _insdel(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    s = _insdel_settings(ctx.family, ctx.quick)
    res = _metrics().diffid(
        ctx.family.model, ctx.x, ctx.attributions, ctx.target, n_steps=s["n_steps"],
        insertion_substrate=s["insertion_substrate"], deletion_substrate=s["deletion_substrate"],
        granularity=s["granularity"], output=s["output"], channel_reduction=s["channel_reduction"],
        generator=ctx.generator,
    )
    values = {"insertion": res.insertion.scores, "deletion": res.deletion.scores, "diffid": res.scores}
    curves = {"insertion": res.insertion.curve, "deletion": res.deletion.curve}
    return values, curves


# ------------------------------------------------------------------------------------------------ completeness
def _completeness(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    ref = ctx.explanation.baseline_outputs
    res = _metrics().completeness_gap(ctx.family.model, ctx.x, ctx.attributions, target=ctx.target,
                                      reference_outputs=ref.detach())
    return {"completeness_abs": res.scores.abs(), "completeness_rel": res.relative.abs()}, {}


# ------------------------------------------------------------------------------------------------ ground truth
def _gt_k(family: Family) -> int:
    gt = family.ground_truth
    assert gt is not None
    return max(1, round(float(gt.reshape(gt.shape[0], -1).sum(1).double().mean())))


def _gt(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    m = _metrics()
    gt = ctx.family.ground_truth
    assert gt is not None
    mask = gt[ctx.example_index]
    a = ctx.attributions
    kw = {"channel_reduction": "abs_sum", "absolute": True}
    return {
        "gt_auroc": m.auroc(a, mask, **kw).scores,
        "gt_ap": m.average_precision(a, mask, **kw).scores,
        "gt_topk": m.top_k_precision(a, mask, _gt_k(ctx.family), **kw).scores,
    }, {}


def _pointing(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    m = _metrics()
    gt = ctx.family.ground_truth
    assert gt is not None
    mask = gt[ctx.example_index]
    return {
        "pointing_game": m.pointing_game(ctx.attributions, mask, channel_reduction="sum").scores,
        "energy_pointing_game": m.energy_pointing_game(ctx.attributions, mask, channel_reduction="sum").scores,
    }, {}


def _spatial_mask(family: Family) -> bool:
    gt = family.ground_truth
    return gt is not None and family.spatial and gt.ndim == family.inputs.ndim - 1


# ------------------------------------------------------------------------------------------------ NLP
class _MaskIgnoring(torch.nn.Module):
    """Adapter for embedding-space text models without an attention-mask argument: the token metrics pass the
    (shortened) mask as a second argument; padding is the zero embedding for these models, which is also what
    the metrics write into freed positions, so the mask carries no extra information."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.model(x)


def _nlp(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    m = _metrics()
    mask = ctx.family.token_mask
    assert mask is not None
    att = mask[ctx.example_index]
    model = _MaskIgnoring(ctx.family.model).train(ctx.family.model.training)
    kw = {"topk": 0.2, "attention_mask": att}
    return {
        "comprehensiveness": m.comprehensiveness(model, ctx.x, ctx.attributions, ctx.target, **kw).scores,
        "sufficiency": m.sufficiency(model, ctx.x, ctx.attributions, ctx.target, **kw).scores,
        "log_odds": m.log_odds(model, ctx.x, ctx.attributions, ctx.target, **kw).scores,
    }, {}


GROUPS: dict[str, MetricGroup] = {
    g.key: g
    for g in (
        MetricGroup("insdel", ("insertion", "deletion", "diffid"), _insdel,
                    lambda f, s: f.token_mask is None, _insdel_settings),
        MetricGroup("completeness", ("completeness_abs", "completeness_rel"), _completeness,
                    lambda f, s: s.has_reference_output, lambda f, q: {"atol": 1e-4, "rtol": 1e-2}),
        MetricGroup("ground_truth", ("gt_auroc", "gt_ap", "gt_topk"), _gt,
                    lambda f, s: f.ground_truth is not None,
                    lambda f, q: {"absolute": True, "channel_reduction": "abs_sum",
                                  "k": _gt_k(f) if f.ground_truth is not None else None}),
        MetricGroup("pointing", ("pointing_game", "energy_pointing_game"), _pointing,
                    lambda f, s: _spatial_mask(f), lambda f, q: {"tolerance": 0.0, "channel_reduction": "sum"}),
        MetricGroup("nlp", ("comprehensiveness", "sufficiency", "log_odds"), _nlp,
                    lambda f, s: f.token_mask is not None,
                    lambda f, q: {"topk": 0.2, "mode": "delete", "baseline": "zero embedding"}),
    )
}

NAME_TO_GROUP = {name: g.key for g in GROUPS.values() for name in g.names}
DEFAULT_METRICS = tuple(NAME_TO_GROUP)


def resolve_groups(names: list[str] | tuple[str, ...] | None) -> dict[str, tuple[str, ...]]:
    """Group key -> the requested stored names of that group (``None`` or ``["all"]``: every metric). Names may
    also be group keys (``insdel``, ``ground_truth``...). Unknown names raise ``KeyError`` listing the choices."""
    if not names or list(names) == ["all"]:
        return {k: g.names for k, g in GROUPS.items()}
    out: dict[str, list[str]] = {}
    for name in names:
        if name in GROUPS:
            out.setdefault(name, []).extend(GROUPS[name].names)
        elif name in NAME_TO_GROUP:
            out.setdefault(NAME_TO_GROUP[name], []).append(name)
        elif name in COST_METRICS:
            continue  # always recorded
        else:
            raise KeyError(f"unknown metric {name!r}; choose from {', '.join([*GROUPS, *NAME_TO_GROUP])}")
    return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}
