"""Attribution methods the benchmark runner can evaluate, with per-family default hyperparameters.

The methods themselves come from the library's one registry, :data:`pathattr.methods.registry.METHODS` (the
``@register`` decorator on each method class): every harness entry names the library method it runs
(:attr:`MethodSpec.method`) and resolves the class there, so a method is "available" exactly when the installed
``pathattr`` registers it. What the harness adds, keyed by its own names (a library method may appear several
times, e.g. IG with the zero baseline and with IG2's references), is the per-family defaults and the runner.

Every entry maps ``(family, quick)`` to its hyperparameters (stored with the results and hashed into the
result key) and runs the method on a chunk of explicands. Methods that need references (``ig_refs``, ``ig2``,
``gradpath_ig``, ``gradcf_ig``) get **the same references** per example, chosen by the family's recipe
(:mod:`pathattr.references`: other-class, runner-up or a chosen normal class), so comparisons are fair;
``eg`` draws its baselines from the family's whole reference pool. A method the installed library does not
register raises :class:`MethodUnavailable` naming it.

Registered: ``ig`` (zero / family baseline), ``ig_refs`` (IG averaged over the IG2 references), ``eg``
(Expected Gradients), ``saliency``, ``smoothgrad``, ``guided_ig``, ``blur_ig`` (images only), ``ig2``,
``gradpath_ig`` (IG from the references along GradPath), ``gradcf_ig`` (straight-line IG from GradCF), ``idgi``
(IG with the IDGI integrator), ``ig2_idgi`` (IG2 with the IDGI integrator), ``ig2_paper`` (IG2 at the authors'
notebook preset of the family), ``agi`` (Adversarial Gradient
Integration) and ``mfaba`` (MFABA). AGI and MFABA take IG2's step count, AGI attacks as many false classes as IG2
has references (quick; the paper's 20 in full), both clip to the family's bounds, scale their step to the input
range (the reference values are for [0, 1] images) and explain softmax probabilities as their papers do.

Runners read ``hp["internal_batch_size"]`` when present (the stability metric recomputes an explanation with a
different chunking that way); the stored defaults never contain it, so result keys do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from pathattr import NoiseTunnel, references
from pathattr.methods.registry import METHODS as LIBRARY_METHODS
from pathattr.methods.registry import MethodEntry

from .families.base import Family


class MethodUnavailable(RuntimeError):
    """The installed ``pathattr`` does not register the method (yet)."""


@dataclass(frozen=True)
class MethodSpec:
    """One benchmark method.

    Attributes:
        name: harness key (stored in the results).
        label: display name for reports.
        defaults: ``(family, quick) -> hyperparameters`` (JSON-serialisable).
        run: ``(family, x [B, *S], target [B], references [B, R, *S] or None, hyperparameters, generator) ->
            Explanation``.
        method: the library registry name of the method it runs (:data:`pathattr.methods.registry.METHODS`).
        needs_references: gets the shared per-example references.
        spatial_only: only for image families (``Family.spatial``).
        has_reference_output: the explanation's ``baseline_outputs`` is the output it explains (completeness).
        stochastic: uses the generator.
        requires: further library registry names that must be registered (else :class:`MethodUnavailable`).
        needs_representation: needs ``Family.representation`` (IG2-type methods).
        explained_output: what the attributions explain, ``"logit"`` or ``"probability"`` (softmax; AGI and
            MFABA): the completeness gap is measured in that space.
    """

    name: str
    label: str
    defaults: Callable[[Family, bool], dict[str, Any]]
    run: Callable[..., Any]
    method: str | None = None
    needs_references: bool = False
    spatial_only: bool = False
    has_reference_output: bool = True
    stochastic: bool = False
    requires: tuple[str, ...] = field(default_factory=tuple)
    needs_representation: bool = False
    explained_output: str = "logit"

    @property
    def library_names(self) -> tuple[str, ...]:
        """Every library registry name this entry needs."""
        return ((self.method,) if self.method else ()) + tuple(self.requires)

    def available(self) -> bool:
        return all(n in LIBRARY_METHODS for n in self.library_names)

    @property
    def entry(self) -> MethodEntry:
        """The library registry entry of :attr:`method` (class, paper, flags)."""
        if self.method is None:
            raise MethodUnavailable(f"{self.name} names no library method")
        return _entry(self.method)


def _entry(name: str) -> MethodEntry:
    try:
        return LIBRARY_METHODS[name]
    except KeyError:
        raise MethodUnavailable(
            f"pathattr registers no method {name!r} in this installation (registered: {', '.join(LIBRARY_METHODS)})."
        ) from None


def _cls(name: str) -> Any:
    """The method class registered in the library under ``name``."""
    return _entry(name).cls


def _steps(family: Family, quick: bool) -> int:
    """IG2-type path steps: the family's IG2 setting, else :func:`path_steps`."""
    return int(family.ig2.get("n_steps", path_steps(family, quick)))


def path_steps(family: Family, quick: bool) -> int:
    """Steps of IG / Guided IG / Blur IG (and EG samples): the family's ``budget`` or 16 (quick) / 64 (full)."""
    budget = getattr(family, "budget", None) or {}
    return int(budget.get("quick_steps" if quick else "full_steps", 16 if quick else 64))


def _ibs(family: Family, hp: dict | None = None) -> int | None:
    if hp is not None and "internal_batch_size" in hp:
        return hp["internal_batch_size"]
    return family.info.get("internal_batch_size")


# ------------------------------------------------------------------------------------------------ runners
def _ig_runner(baselines: str, integrator: str | None = None) -> Callable[..., Any]:
    """IG from the family's baseline (``"family"``) or from the shared references (``"references"``)."""

    def run(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
        kwargs = {"integrator": integrator} if integrator else {}
        return _cls("integrated_gradients")(family.model, **kwargs).explain(
            x, baselines=family.baseline if baselines == "family" else refs, target=target, n_steps=hp["n_steps"],
            method=hp["method"], internal_batch_size=_ibs(family, hp),
        )

    return run


def _eg(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _cls("expected_gradients")(family.model).explain(
        x, baselines=family.reference_pool, target=target, n_samples=hp["n_samples"], stratified=hp["stratified"],
        internal_batch_size=_ibs(family, hp), generator=gen,
    )


def _saliency(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _cls("saliency")(family.model, abs=hp["abs"]).explain(x, target=target,
                                                                 internal_batch_size=_ibs(family, hp))


def _smoothgrad(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    sal = _cls("saliency")(family.model, abs=hp["abs"])
    extra = {"internal_batch_size": hp["internal_batch_size"]} if "internal_batch_size" in hp else {}
    return NoiseTunnel(sal).explain(
        x, nt_type="smoothgrad", nt_samples=hp["nt_samples"], stdev_spread=hp["stdev_spread"], target=target,
        generator=gen, **extra,
    )


def _guided(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _cls("guided_integrated_gradients")(family.model).explain(
        x, baselines=family.baseline, target=target, n_steps=hp["n_steps"], fraction=hp["fraction"],
        max_dist=hp["max_dist"], internal_batch_size=_ibs(family, hp),
    )


def _blur(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _cls("blur_integrated_gradients")(family.model).explain(
        x, target=target, max_sigma=hp["max_sigma"], n_steps=hp["n_steps"], internal_batch_size=_ibs(family, hp)
    )


def _gradpath_kwargs(family: Family, hp: dict) -> dict[str, Any]:
    return {"n_steps": hp["n_steps"], "step_size": hp["step_size"],
            "bounds": tuple(hp["bounds"]) if hp["bounds"] is not None else None,
            "internal_batch_size": _ibs(family, hp)}


def _gradpath_class(name: str, integrator: str | None = None) -> Callable[..., Any]:
    """Runner of the IG2-type method registered in the library as ``name``."""

    def run(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
        if family.representation is None:
            raise MethodUnavailable(f"{family.name} has no representation layer for IG2-type methods.")
        kwargs = {"integrator": integrator} if integrator else {}
        method = _cls(name)(family.model, representation=family.representation, **kwargs)
        # the ablations' own settings, and the IG2 settings that _ig2_default_settings records
        extra = {k: hp[k] for k in ("closing_steps", "ig_steps", "method", "step_rule", "path_layout", "segment_rule",
                                    "substeps", "adaptive", "adaptive_depth") if k in hp}
        return method.explain(x, references=refs, target=target, **_gradpath_kwargs(family, hp), **extra,
                              return_gradcf=False)

    return run


#: ``ig2_paper``: the authors' notebook preset per family (:func:`pathattr.methods.ig2.paper_preset`); families
#: without a notebook run the reference algorithm (preset ``"reference"``: 201 fixed steps of ``|x - x^r| / 201``).
#: References: the family's recipe (shared with every method; the wafer family uses the normal class and text
#: other-class samples as the notebooks do; ImageNet uses other-class photos, since the notebook's runner-up
#: classes are rarely in the bundled pool)
IG2_PAPER_PRESETS = {"imagenet": "paper-imagenet", "text": "paper-trec", "wafer": "paper-wafer"}


def _ig2_paper_defaults(family: Family, quick: bool) -> dict[str, Any]:
    from pathattr.methods.ig2 import paper_preset

    preset = IG2_PAPER_PRESETS.get(family.name, "reference")
    hp = paper_preset(preset, tuple(family.inputs.shape[1:]))
    if hp["bounds"] is None and family.bounds is not None:  # TREC: the authors clip to the embeddings' range
        hp["bounds"] = family.bounds
    hp["bounds"] = list(hp["bounds"]) if hp["bounds"] is not None else None
    if hp["step_size"] is not None:
        hp["step_size"] = round(float(hp["step_size"]), 6)
    return {"preset": preset, **hp, **reference_settings(family)}


def _ig2_paper(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict,
               gen: torch.Generator) -> Any:
    if family.representation is None:
        raise MethodUnavailable(f"{family.name} has no representation layer for IG2-type methods.")
    keys = ("n_steps", "step_size", "step_rule", "segment_rule", "substeps", "adaptive", "adaptive_depth")
    return _cls("ig2")(family.model, representation=family.representation).explain(
        x, references=refs, target=target, preset=hp["preset"], **{k: hp[k] for k in keys},
        bounds=tuple(hp["bounds"]) if hp["bounds"] is not None else None, internal_batch_size=_ibs(family, hp),
        return_gradcf=False)


def _agi(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _cls("agi")(family.model).explain(
        x, target=target, n_steps=hp["n_steps"], epsilon=hp["epsilon"], n_false_classes=hp["n_false_classes"],
        bounds=tuple(hp["bounds"]) if hp["bounds"] is not None else None, internal_batch_size=_ibs(family, hp),
        generator=gen,
    )


def _mfaba(family: Family, x: Tensor, target: Tensor, refs: Tensor | None, hp: dict, gen: torch.Generator) -> Any:
    return _cls("mfaba")(family.model).explain(
        x, target=target, n_steps=hp["n_steps"], mode=hp["mode"], step_size=hp["step_size"],
        bounds=tuple(hp["bounds"]) if hp["bounds"] is not None else None, internal_batch_size=_ibs(family, hp),
    )


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


def _ig2_default_settings(family: Family, quick: bool) -> dict[str, Any]:
    """``ig2`` / ``ig2_idgi``: the library's default IG2 (:data:`pathattr.methods.ig2.DEFAULT_SETTINGS`, the
    well-posed variant) with the family's bounds and references, every setting recorded; the quick profile keeps
    the family's short path (CI), the full and paper profiles the library's ``n_steps``."""
    from pathattr.methods.ig2 import DEFAULT_SETTINGS

    hp = {**dict(DEFAULT_SETTINGS), **_ig2_defaults(family, quick)}
    if not quick:
        hp["n_steps"] = int(DEFAULT_SETTINGS["n_steps"])
    return hp


def _ig2_idgi_default_settings(family: Family, quick: bool) -> dict[str, Any]:
    """``ig2_idgi``: as ``ig2``, with the left rule (IDGI integrates the path's own segments)."""
    return {**_ig2_default_settings(family, quick), "segment_rule": "left", "substeps": 1, "adaptive": None}


def _gradpath_ig_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {**_ig2_defaults(family, quick), "closing_steps": _steps(family, quick)}


def _gradcf_ig_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {**_ig2_defaults(family, quick), "ig_steps": path_steps(family, quick), "method": "gausslegendre"}


def _input_range(family: Family) -> float:
    """Width of the valid input box (the data's range where the family states no bounds)."""
    if family.bounds is not None:
        return float(family.bounds[1]) - float(family.bounds[0])
    return float(family.inputs.max() - family.inputs.min()) or 1.0


def _agi_defaults(family: Family, quick: bool) -> dict[str, Any]:
    n_refs = int(family.ig2.get("n_references", 4))
    return {"n_steps": _steps(family, quick), "epsilon": round(0.05 * _input_range(family), 6),
            "n_false_classes": min(n_refs if quick else 20, family.n_classes - 1),
            "bounds": list(family.bounds) if family.bounds is not None else None, "use_softmax": True}


def _mfaba_defaults(family: Family, quick: bool) -> dict[str, Any]:
    return {"n_steps": _steps(family, quick), "mode": "sharp", "step_size": round(0.1 * _input_range(family), 6),
            "bounds": list(family.bounds) if family.bounds is not None else None, "early_stop": True,
            "use_softmax": True}


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
        MethodSpec("ig", "IG (zero baseline)", _ig_defaults, _ig_runner("family"), method="integrated_gradients"),
        MethodSpec("ig_refs", "IG (IG2's references)", _ig_refs_defaults, _ig_runner("references"),
                   method="integrated_gradients", needs_references=True),
        MethodSpec("eg", "Expected Gradients", _eg_defaults, _eg, method="expected_gradients", stochastic=True),
        MethodSpec("saliency", "Saliency", lambda f, q: {"abs": True}, _saliency, method="saliency",
                   has_reference_output=False),
        MethodSpec("smoothgrad", "SmoothGrad", _smooth_defaults, _smoothgrad, method="saliency",
                   has_reference_output=False, stochastic=True),
        MethodSpec("guided_ig", "Guided IG", _guided_defaults, _guided, method="guided_integrated_gradients"),
        MethodSpec("blur_ig", "Blur IG", _blur_defaults, _blur, method="blur_integrated_gradients",
                   spatial_only=True),
        MethodSpec("ig2", "IG2", _ig2_default_settings, _gradpath_class("ig2"), method="ig2", needs_references=True,
                   needs_representation=True),
        MethodSpec("ig2_paper", "IG2 (paper preset)", _ig2_paper_defaults, _ig2_paper, method="ig2",
                   needs_references=True, needs_representation=True),
        MethodSpec("gradpath_ig", "IG on GradPath (ablation)", _gradpath_ig_defaults, _gradpath_class("gradpath_ig"),
                   method="gradpath_ig", needs_references=True, needs_representation=True),
        MethodSpec("gradcf_ig", "IG from GradCF (ablation)", _gradcf_ig_defaults, _gradpath_class("gradcf_ig"),
                   method="gradcf_ig", needs_references=True, needs_representation=True),
        MethodSpec("idgi", "IG + IDGI", _ig_defaults, _ig_runner("family", "idgi"), method="integrated_gradients"),
        MethodSpec("ig2_idgi", "IG2 + IDGI", _ig2_idgi_default_settings, _gradpath_class("ig2", "idgi"), method="ig2",
                   needs_references=True, needs_representation=True),
        MethodSpec("agi", "AGI", _agi_defaults, _agi, method="agi", stochastic=True, explained_output="probability"),
        MethodSpec("mfaba", "MFABA", _mfaba_defaults, _mfaba, method="mfaba", explained_output="probability"),
    )
}

#: the default comparison of the paper suite
PAPER_METHODS = ("ig", "ig_refs", "eg", "saliency", "smoothgrad", "guided_ig", "blur_ig", "ig2", "gradpath_ig",
                 "gradcf_ig", "agi", "mfaba")


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; raises ``KeyError`` listing the choices, or :class:`MethodUnavailable` if
    the installed library does not register the method it runs."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    spec = METHODS[name]
    for item in spec.library_names:
        _entry(item)
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
    refs_mod = references
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
