"""Evaluation metrics the benchmark runner computes, on top of :mod:`pathattr.metrics`.

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
completeness_abs       lower       ``|sum(A) - (f(x) - f_ref)|`` (logit units; probabilities for AGI and MFABA)
completeness_rel       lower       ``|sum(A) - (f(x) - f_ref)| / |f(x) - f_ref|``
gt_auroc               higher      AUROC of ``|A|`` (channel abs-sum) against the ground-truth mask
gt_topk                higher      precision of the ``k`` top ``|A|`` features, ``k`` = the example's mask size
gt_ap                  higher      average precision of ``|A|`` against the mask
pointing_game          higher      maximum of the (channel-summed) attribution inside the mask
energy_pointing_game   higher      share of positive attribution mass inside the mask
comprehensiveness      higher      ERASER, top 20 % tokens deleted
sufficiency            lower       ERASER, only the top 20 % tokens kept
log_odds               lower       DIG log-odds, top 20 % tokens replaced by the zero embedding
stability_spearman     higher      lowest Spearman correlation with the reference computation over the three
                                   numerical perturbations (chunking, input noise 1e-6, float64)
stability_topk         higher      lowest top-10 % overlap (by ``|A|``) over the three perturbations
stability_chunking     higher      Pearson correlation with the explanation recomputed at another
                                   ``internal_batch_size`` (7 rows per call; 31 in quick mode)
stability_noise        higher      Pearson correlation with the explanation of ``x + 1e-6 rms(x) N(0, 1)``
stability_float64      higher      Pearson correlation with the explanation computed in float64 (model copy)
cost_seconds           (cost)      wall seconds of the attribution per example (chunk time / chunk size)
cost_passes            (cost)      forward + backward rows of the attribution per example
=====================  ==========  ==========================================================================
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import pathattr.metrics as pm
from pathattr.errors import InputValidationError

from .families.base import Family
from .methods_registry import MethodSpec

DIRECTIONS = {
    "insertion": "higher", "deletion": "lower", "diffid": "higher", "completeness_abs": "lower",
    "completeness_rel": "lower", "gt_auroc": "higher", "gt_topk": "higher", "gt_ap": "higher",
    "pointing_game": "higher", "energy_pointing_game": "higher", "comprehensiveness": "higher",
    "sufficiency": "lower", "log_odds": "lower", "stability_spearman": "higher", "stability_topk": "higher",
    "stability_chunking": "higher", "stability_noise": "higher", "stability_float64": "higher",
    "cost_seconds": "lower", "cost_passes": "lower",
}
COST_METRICS = ("cost_seconds", "cost_passes")


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
    #: the shared references the explanation used (None: recomputed by the family's recipe where needed)
    references: Tensor | None = None
    #: the hyperparameters the explanation used (None: the method's defaults for the family)
    hyperparameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class MetricGroup:
    """A computation that yields the stored metrics ``names``.

    ``compute(ctx) -> (values {name: [B] tensor}, curves {name: [B, n] tensor})``; ``applies(family, method)``;
    ``settings(family, quick)`` are the group's hyperparameters (recorded in the run's hyperparameter JSON);
    ``stored(family, quick)``, if given, is the subset of ``names`` the group stores in that profile.
    """

    key: str
    names: tuple[str, ...]
    compute: Callable[[MetricContext], tuple[dict[str, Tensor], dict[str, Tensor]]]
    applies: Callable[[Family, MethodSpec], bool]
    settings: Callable[[Family, bool], dict[str, Any]]
    stored: Callable[[Family, bool], tuple[str, ...]] | None = None

    def stored_names(self, family: Family, quick: bool) -> tuple[str, ...]:
        """The metrics this group stores for ``family`` in the quick or full profile."""
        return self.names if self.stored is None else self.stored(family, quick)


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
    res = pm.diffid(
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
    model = ctx.family.model
    fwd = model
    if ctx.method.explained_output == "probability":  # AGI, MFABA: the gap in the space they explain

        def fwd(x: Tensor) -> Tensor:
            return torch.softmax(model(x), dim=1)

    res = pm.completeness_gap(fwd, ctx.x, ctx.attributions, target=ctx.target, reference_outputs=ref.detach(),
                              model=model)
    return {"completeness_abs": res.scores.abs(), "completeness_rel": res.relative.abs()}, {}


# ------------------------------------------------------------------------------------------------ ground truth
def _topk_by_mask_size(a: Tensor, mask: Tensor, **kw: Any) -> Tensor:
    """Top-k precision with ``k`` = each example's own mask size (R-precision): a property of the example, so a
    score never depends on which other explicands were loaded (``--limit``)."""
    sizes = mask.reshape(mask.shape[0], -1).sum(1).clamp(min=1)
    out = torch.empty(mask.shape[0], dtype=torch.float64, device=a.device)
    for k in sizes.unique().tolist():
        sel = (sizes == k).nonzero().squeeze(1)
        out[sel] = pm.top_k_precision(a[sel], mask[sel], int(k), **kw).scores.to(out.device)
    return out


def _gt(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    m = pm
    gt = ctx.family.ground_truth
    assert gt is not None
    mask = gt[ctx.example_index]
    a = ctx.attributions
    kw = {"channel_reduction": "abs_sum", "absolute": True}
    return {
        "gt_auroc": m.auroc(a, mask, **kw).scores,
        "gt_ap": m.average_precision(a, mask, **kw).scores,
        "gt_topk": _topk_by_mask_size(a, mask, **kw),
    }, {}


def _pointing(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    m = pm
    gt = ctx.family.ground_truth
    assert gt is not None
    mask = gt[ctx.example_index]
    return {
        "pointing_game": m.pointing_game(ctx.attributions, mask, channel_reduction="sum").scores,
        "energy_pointing_game": _energy_pointing(ctx.attributions, mask),
    }, {}


def _energy_pointing(attributions: Tensor, mask: Tensor) -> Tensor:
    """The energy-based pointing game per example; an example whose attribution has no positive part (the
    metric is undefined there: 0 / 0) puts no positive energy inside the region and scores 0."""
    try:
        return pm.energy_pointing_game(attributions, mask, channel_reduction="sum").scores
    except InputValidationError:
        out = []
        for i in range(attributions.shape[0]):
            try:
                out.append(pm.energy_pointing_game(attributions[i : i + 1], mask[i : i + 1],
                                                   channel_reduction="sum").scores)
            except InputValidationError:
                out.append(torch.zeros(1, dtype=torch.float64))
        return torch.cat(out)


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
    m = pm
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


# ------------------------------------------------------------------------------------------------ stability
STABILITY_NAMES = ("stability_spearman", "stability_topk", "stability_chunking", "stability_noise",
                   "stability_float64")


#: families whose float64 recomputation is not part of the stability metric outside the quick profile either: a
#: float64 EfficientNet-Lite0 / MiniLM runs ~6x slower than float32 (one float64 rerun would cost more than every
#: other metric of the explicand together)
NO_FLOAT64_STABILITY = ("imagenet", "text_minilm")


def _stability_settings(family: Family, quick: bool) -> dict[str, Any]:
    # the quick (CI) profile skips the float64 recomputation everywhere
    skip64 = quick or family.name in NO_FLOAT64_STABILITY
    perturbations = ["chunking", "noise"] if skip64 else ["chunking", "noise", "float64"]
    return {"perturbations": perturbations, "chunk_size": 31 if quick else 7, "noise": 1e-6,
            "top_k": 0.1, "resolution": 1e-5,
            "channel_reduction": "sum" if family.spatial else None, "absolute": False,
            "reference": "the stored explanation (deterministic methods) or a recomputation with the same seed",
            "undefined": "a correlation with a constant attribution is stored as 0"}


_FLOAT64_FAMILIES: dict[int, tuple[Family, Family]] = {}


def _float64_family(family: Family) -> Family:
    """The family with a float64 deep copy of its model (and representation layer) and float64 tensors; cached
    per family object (the user's model is never converted)."""
    hit = _FLOAT64_FAMILIES.get(id(family))
    if hit is not None and hit[0] is family:
        return hit[1]
    model, representation = copy.deepcopy((family.model, family.representation))
    model.double()
    if representation is not None:
        representation.double()

    def f64(v: Any) -> Any:
        return v.double() if isinstance(v, Tensor) and v.is_floating_point() else v

    fam64 = dataclasses.replace(family, model=model, representation=representation,
                                reference_pool=f64(family.reference_pool), baseline=f64(family.baseline))
    _FLOAT64_FAMILIES.clear()  # one family at a time
    _FLOAT64_FAMILIES[id(family)] = (family, fam64)
    return fam64


def _references_for(ctx: MetricContext) -> Tensor:
    """The shared references of ``ctx``'s explicands by the family's recipe (seed 0, as the runner's default)."""
    from .methods_registry import reference_settings, select_references

    fam = ctx.family
    settings = reference_settings(fam)
    with torch.no_grad():
        pool_classes = fam.model(fam.reference_pool).argmax(1)
    return torch.stack([select_references(fam, int(i), fam.inputs[int(i)], int(t), pool_classes, settings, 0)
                        for i, t in zip(ctx.example_index, ctx.target)])


def _stability(ctx: MetricContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    s = _stability_settings(ctx.family, ctx.quick)
    fam, spec = ctx.family, ctx.method
    hp = dict(ctx.hyperparameters) if ctx.hyperparameters is not None else spec.defaults(fam, ctx.quick)
    refs = ctx.references
    # the stored attributions are the reference computation when the rerun reproduces them exactly: a
    # deterministic method with the runner's own references (recomputed references use seed 0)
    reuse = not spec.stochastic and not (spec.needs_references and refs is None)
    if spec.needs_references and refs is None:
        refs = _references_for(ctx)
    seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
    model_dtype = next(iter(fam.model.parameters())).dtype
    perturbations = [p for p in s["perturbations"] if not (p == "float64" and model_dtype == torch.float64)]

    def explain(x: Tensor, target: Tensor, internal_batch_size: int | None = None) -> Tensor:
        family = _float64_family(fam) if x.dtype == torch.float64 and model_dtype != torch.float64 else fam
        h = dict(hp) if internal_batch_size is None else {**hp, "internal_batch_size": internal_batch_size}
        r = refs.to(x.dtype) if refs is not None else None
        e = spec.run(family, x, target, r, h, torch.Generator().manual_seed(seed))
        a = e.attributions
        return a[0] if isinstance(a, tuple) else a

    chunk = s["chunk_size"] + (2 if fam.info.get("internal_batch_size") == s["chunk_size"] else 0)
    res = pm.stability(explain, ctx.x, ctx.target, perturbations=perturbations, chunk_size=chunk,
                       noise=s["noise"], top_k=s["top_k"], resolution=s["resolution"],
                       channel_reduction=s["channel_reduction"],
                       absolute=s["absolute"], attributions=ctx.attributions if reuse else None,
                       generator=seed)
    b = ctx.x.shape[0]
    ones = torch.ones(b, dtype=torch.float64)

    def clean(t: Tensor) -> Tensor:
        return torch.nan_to_num(t.to(torch.float64).cpu(), nan=0.0)

    values = {
        "stability_spearman": clean(res.spearman.amin(0)),
        "stability_topk": clean(res.top_k_overlap.amin(0)),
    }
    # a perturbation that was not computed is not stored; a float64 model's own float64 rerun is itself (1.0)
    for p in ("chunking", "noise", "float64"):
        if p in perturbations:
            values[f"stability_{p}"] = clean(res.of(p)["pearson"])
        elif p in s["perturbations"]:
            values[f"stability_{p}"] = ones
    return values, {}


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
                                  "k": "mask size of each example"}),
        MetricGroup("pointing", ("pointing_game", "energy_pointing_game"), _pointing,
                    lambda f, s: _spatial_mask(f),
                    lambda f, q: {"tolerance": 0.0, "channel_reduction": "sum",
                                  "undefined": "no positive attribution: energy pointing game 0"}),
        MetricGroup("nlp", ("comprehensiveness", "sufficiency", "log_odds"), _nlp,
                    lambda f, s: f.token_mask is not None,
                    lambda f, q: {"topk": 0.2, "mode": "delete", "baseline": "zero embedding"}),
        MetricGroup("stability", STABILITY_NAMES, _stability, lambda f, s: True, _stability_settings,
                    lambda f, q: tuple(n for n in STABILITY_NAMES if n != "stability_float64" or not q)),
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
