"""Attribution methods the benchmark runner can evaluate, with per-family default hyperparameters.

Every entry maps ``(family, quick)`` to its hyperparameters (stored with the results and hashed into the
result key) and runs the method on a chunk of explicands. Methods that need references (``ig_refs``, ``ig2``,
``gradpath_ig``, ``gradcf_ig``) get **the same references** per example, chosen by the family's recipe
(:mod:`pathattr.references`: other-class, runner-up or a chosen normal class), so comparisons are fair;
``eg`` draws its baselines from the family's whole reference pool. Method classes are imported lazily; a method
whose implementation is missing raises :class:`MethodUnavailable` naming it.

Registered: ``ig`` (zero / family baseline), ``ig_refs`` (IG averaged over the IG2 references), ``eg``
(Expected Gradients), ``saliency``, ``smoothgrad``, ``guided_ig``, ``blur_ig`` (images only), ``ig2``,
``gradpath_ig`` (IG from the references along GradPath), ``gradcf_ig`` (straight-line IG from GradCF), ``idgi``
(IG with the IDGI integrator) and ``ig2_idgi`` (IG2 with the IDGI integrator).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .families.base import Family


class MethodUnavailable(RuntimeError):
    """The method's implementation is not importable (yet) in this installation."""


@dataclass(frozen=True)
class MethodSpec:
    """One benchmark method.

    Attributes:
        name: registry key (stored in the results).
        label: display name for reports.
        defaults: ``(family, quick) -> hyperparameters`` (JSON-serialisable).
        run: ``(family, x [B, *S], target [B], references [B, R, *S] or None, hyperparameters, generator) ->
            Explanation``.
        needs_references: gets the shared per-example references.
        spatial_only: only for image families (``Family.spatial``).
        has_reference_output: the explanation's ``baseline_outputs`` is the output it explains (completeness).
        stochastic: uses the generator.
        requires: dotted names that must be importable (else :class:`MethodUnavailable`).
        needs_representation: needs ``Family.representation`` (IG2-type methods).
    """

    name: str
    label: str
    defaults: Callable[[Family, bool], dict[str, Any]]
    run: Callable[..., Any]
    needs_references: bool = False
    spatial_only: bool = False
    has_reference_output: bool = True
    stochastic: bool = False
    requires: tuple[str, ...] = field(default_factory=tuple)
    needs_representation: bool = False

    def available(self) -> bool:
        try:
            for item in self.requires:
                _resolve(item)
        except MethodUnavailable:
            return False
        return True


def _resolve(qualified: str) -> Any:
    module, _, attr = qualified.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise MethodUnavailable(f"{qualified} is not available in this installation ({err}).") from err


def _steps(family: Family, quick: bool) -> int:
    """IG2-type path steps: the family's IG2 setting, else :func:`path_steps`."""
    return int(family.ig2.get("n_steps", path_steps(family, quick)))


def path_steps(family: Family, quick: bool) -> int:
    """Steps of IG / Guided IG / Blur IG (and EG samples): the family's ``budget`` or 16 (quick) / 64 (full)."""
    budget = getattr(family, "budget", None) or {}
    return int(budget.get("quick_steps" if quick else "full_steps", 16 if quick else 64))


def _ibs(family: Family) -> int | None:
    return family.info.get("internal_batch_size")


def _pathattr(name: str) -> Any:
    return _resolve(f"pathattr.{name}")


# ------------------------------------------------------------------------------------------------ runners
def _ig(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _pathattr("IntegratedGradients")(family.model).explain(
        x, baselines=family.baseline, target=target, n_steps=hp["n_steps"], method=hp["method"],
        internal_batch_size=_ibs(family),
    )


def _idgi(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _pathattr("IntegratedGradients")(family.model, integrator="idgi").explain(
        x, baselines=family.baseline, target=target, n_steps=hp["n_steps"], method=hp["method"],
        internal_batch_size=_ibs(family),
    )


def _ig_refs(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _pathattr("IntegratedGradients")(family.model).explain(
        x, baselines=refs, target=target, n_steps=hp["n_steps"], method=hp["method"], internal_batch_size=_ibs(family)
    )


def _eg(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _pathattr("ExpectedGradients")(family.model).explain(
        x, baselines=family.reference_pool, target=target, n_samples=hp["n_samples"], stratified=hp["stratified"],
        internal_batch_size=_ibs(family), generator=gen,
    )


def _saliency(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _pathattr("Saliency")(family.model, abs=hp["abs"]).explain(x, target=target,
                                                                      internal_batch_size=_ibs(family))


def _smoothgrad(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    sal = _pathattr("Saliency")(family.model, abs=hp["abs"])
    return _pathattr("NoiseTunnel")(sal).explain(
        x, nt_type="smoothgrad", nt_samples=hp["nt_samples"], stdev_spread=hp["stdev_spread"], target=target,
        generator=gen,
    )


def _guided(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _pathattr("GuidedIntegratedGradients")(family.model).explain(
        x, baselines=family.baseline, target=target, n_steps=hp["n_steps"], fraction=hp["fraction"],
        max_dist=hp["max_dist"], internal_batch_size=_ibs(family),
    )


def _blur(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _pathattr("BlurIntegratedGradients")(family.model).explain(
        x, target=target, max_sigma=hp["max_sigma"], n_steps=hp["n_steps"], internal_batch_size=_ibs(family)
    )


def _gradpath_kwargs(family: Family, hp: dict) -> dict[str, Any]:
    return {"n_steps": hp["n_steps"], "step_size": hp["step_size"],
            "bounds": tuple(hp["bounds"]) if hp["bounds"] is not None else None, "internal_batch_size": _ibs(family)}


def _gradpath_class(name: str, integrator: str | None = None) -> Callable[..., Any]:
    def run(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
        if family.representation is None:
            raise MethodUnavailable(f"{family.name} has no representation layer for IG2-type methods.")
        cls = _resolve(f"pathattr.methods.ig2.{name}")
        kwargs = {"integrator": integrator} if integrator else {}
        method = cls(family.model, representation=family.representation, **kwargs)
        extra = {k: hp[k] for k in ("closing_steps", "ig_steps", "method") if k in hp}
        return method.explain(x, references=refs, target=target, **_gradpath_kwargs(family, hp), **extra,
                              return_gradcf=False)

    return run


# ------------------------------------------------------------------------------------------------ defaults
def _ig_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {"n_steps": path_steps(family, quick), "method": "gausslegendre", "baseline": str(family.baseline)}


def _ig_refs_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {"n_steps": path_steps(family, quick), "method": "gausslegendre", **reference_settings(family)}


def _eg_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {"n_samples": path_steps(family, quick), "stratified": True, "pool": int(family.reference_pool.shape[0])}


def _smooth_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {"nt_samples": max(4, path_steps(family, quick) // 2), "stdev_spread": 0.15, "abs": True}


def _guided_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {"n_steps": path_steps(family, quick), "fraction": 0.25, "max_dist": 0.02, "baseline": str(family.baseline)}


def _blur_defaults(family: Family, quick: bool) -> dict[str, Any]:
    side = int(family.inputs.shape[-1])
    return {"n_steps": path_steps(family, quick), "max_sigma": round(max(3.0, 50.0 * side / 224), 3)}


def _ig2_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {"n_steps": _steps(family, quick), "step_size": family.ig2.get("step_size"),
            "bounds": list(family.bounds) if family.bounds is not None else None, **reference_settings(family)}


def _gradpath_ig_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {**_ig2_defaults(family, quick), "closing_steps": _steps(family, quick)}


def _gradcf_ig_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {**_ig2_defaults(family, quick), "ig_steps": path_steps(family, quick), "method": "gausslegendre"}


def reference_settings(family: Family) -> dict[str, Any]:
    """The reference recipe of a family (part of the hyperparameters of every method that uses them)."""
    recipe = family.ig2.get("recipe", "class" if family.normal_class is not None else "other_class")
    out: dict[str, Any] = {"recipe": recipe, "n_references": int(family.ig2.get("n_references", 4))}
    if recipe == "class":
        out["reference_class"] = int(family.ig2.get("reference_class", family.normal_class))
    if recipe == "runner_up":
        out["k"] = int(family.ig2.get("k", 3))
    return out


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("ig", "IG (zero baseline)", _ig_defaults, _ig, requires=("pathattr.IntegratedGradients",)),
        MethodSpec("ig_refs", "IG (IG2's references)", _ig_refs_defaults, _ig_refs, needs_references=True,
                   requires=("pathattr.IntegratedGradients",)),
        MethodSpec("eg", "Expected Gradients", _eg_defaults, _eg, stochastic=True,
                   requires=("pathattr.ExpectedGradients",)),
        MethodSpec("saliency", "Saliency", lambda f, q: {"abs": True}, _saliency, has_reference_output=False,
                   requires=("pathattr.Saliency",)),
        MethodSpec("smoothgrad", "SmoothGrad", _smooth_defaults, _smoothgrad, has_reference_output=False,
                   stochastic=True, requires=("pathattr.NoiseTunnel",)),
        MethodSpec("guided_ig", "Guided IG", _guided_defaults, _guided,
                   requires=("pathattr.GuidedIntegratedGradients",)),
        MethodSpec("blur_ig", "Blur IG", _blur_defaults, _blur, spatial_only=True,
                   requires=("pathattr.BlurIntegratedGradients",)),
        MethodSpec("ig2", "IG2", _ig2_defaults, _gradpath_class("IG2"), needs_references=True,
                   needs_representation=True,
                   requires=("pathattr.methods.ig2.IG2",)),
        MethodSpec("gradpath_ig", "IG on GradPath (ablation)", _gradpath_ig_defaults, _gradpath_class("GradPathIG"),
                   needs_references=True, needs_representation=True, requires=("pathattr.methods.ig2.GradPathIG",)),
        MethodSpec("gradcf_ig", "IG from GradCF (ablation)", _gradcf_ig_defaults, _gradpath_class("GradCFIG"),
                   needs_references=True, needs_representation=True, requires=("pathattr.methods.ig2.GradCFIG",)),
        MethodSpec("idgi", "IG + IDGI", _ig_defaults, _idgi, requires=("pathattr.IntegratedGradients",)),
        MethodSpec("ig2_idgi", "IG2 + IDGI", _ig2_defaults, _gradpath_class("IG2", "idgi"),
                   needs_references=True, needs_representation=True,
                   requires=("pathattr.methods.ig2.IG2",)),
    )
}

#: the default comparison of the paper suite
PAPER_METHODS = ("ig", "ig_refs", "eg", "saliency", "smoothgrad", "guided_ig", "blur_ig", "ig2", "gradpath_ig",
                 "gradcf_ig")


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; raises ``KeyError`` listing the choices, or :class:`MethodUnavailable`."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    spec = METHODS[name]
    for item in spec.requires:
        _resolve(item)
    return spec


def applicable(spec: MethodSpec, family: Family) -> bool:
    """Whether ``spec`` can run on ``family`` (Blur IG needs images; IG2-type methods need a representation)."""
    if spec.spatial_only and not family.spatial:
        return False
    return not (spec.needs_representation and family.representation is None)


def select_references(family: Family, example: int, x: Tensor, target: int, pool_classes: Tensor,
                      settings: dict[str, Any], seed: int) -> Tensor:
    """``[R, *S]`` references for one explicand, by the family's recipe, drawn with a generator seeded by
    ``(seed, example)`` so the choice does not depend on chunking or on which examples were already done.
    Uses :mod:`pathattr.references` (class membership = the model's prediction on the pool, computed once)."""
    refs_mod = importlib.import_module("pathattr.references")
    gen = torch.Generator().manual_seed(_mix(seed, example, 7919))
    common = {"n_references": settings["n_references"], "pool_labels": pool_classes, "generator": gen}
    pool = family.reference_pool
    if settings["recipe"] == "other_class":
        chosen = refs_mod.other_class(family.model, x.unsqueeze(0), pool, target=torch.tensor([target]), **common)
    elif settings["recipe"] == "runner_up":
        chosen = refs_mod.runner_up(family.model, x.unsqueeze(0), pool, k=settings["k"], **common)
    elif settings["recipe"] == "class":
        chosen = refs_mod.from_class(family.model, x.unsqueeze(0), pool, settings["reference_class"], **common)
    else:
        raise ValueError(f"unknown reference recipe {settings['recipe']!r}")
    return chosen.references[0]


def _mix(*values: int) -> int:
    """Deterministic 63-bit mix of integers (a seed for a per-example or per-chunk generator)."""
    h = 1469598103934665603
    for v in values:
        h = ((h ^ (int(v) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h
