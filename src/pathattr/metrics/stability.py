"""Attribution stability under numerical perturbation: does the explanation survive changes that should not
matter?

The same explanation is recomputed with one numerical change at a time and compared with the reference
computation, per example:

* ``"chunking"``: a different ``internal_batch_size`` (how the path rows are split into model calls; in float32
  a matrix product of a different shape rounds differently);
* ``"noise"``: the inputs plus tiny Gaussian noise, ``x + noise * rms(x) * N(0, 1)`` per element (seeded);
* ``"float64"``: model, inputs and tensor arguments in float64 (on a deep copy of the model).

Each comparison reports Spearman rank correlation, Pearson correlation and the top-``k`` overlap of the
feature rankings. An explanation that is a deterministic, well-conditioned function of the model and the input
scores 1 (a linear model gives exactly 1); IG2's fixed-length path on a real network in float32 does not
(issue 13: Pearson 0.78 between two chunk sizes on EfficientNet-Lite0).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InputValidationError, check_finite
from ..forward import ModelFunction, TargetType, find_modules
from ..randomness import as_generator, randn
from ._common import (
    CHANNEL_REDUCTIONS,
    Metric,
    MetricResult,
    as_target,
    choice,
    chunk_size_for,
    describe,
    float_batch,
    guard,
    non_negative_float,
    pearson,
    positive_int,
    reduce_channels,
    resolve_k,
    resolve_target_chunked,
    sort_descending,
    spearman,
)

#: the numerical perturbations :func:`stability` knows
PERTURBATIONS = ("chunking", "noise", "float64")


@dataclass(kw_only=True)
class StabilityResult(MetricResult):
    """Result of :func:`stability`.

    Attributes:
        scores: the lowest Spearman correlation over the perturbations, per example ``[B]`` (higher is better;
            1 = every perturbation kept the ranking).
        perturbations: the perturbations, in the order of the rows below.
        spearman: Spearman rank correlation with the reference, ``[P, B]``.
        pearson: Pearson correlation with the reference, ``[P, B]``.
        top_k_overlap: ``|top_k(ref) & top_k(perturbed)| / k`` by magnitude, ``[P, B]``.
        k: the number of top features compared.
        target: the class explained per example (fixed at the unperturbed inputs).
    """

    perturbations: tuple[str, ...]
    spearman: Tensor
    pearson: Tensor
    top_k_overlap: Tensor
    k: int
    target: Any

    def of(self, perturbation: str) -> dict[str, Tensor]:
        """``{"spearman", "pearson", "top_k_overlap"}`` of one perturbation, each ``[B]``."""
        if perturbation not in self.perturbations:
            raise KeyError(f"{perturbation!r} was not computed; computed: {list(self.perturbations)}")
        i = self.perturbations.index(perturbation)
        return {"spearman": self.spearman[i], "pearson": self.pearson[i], "top_k_overlap": self.top_k_overlap[i]}


def _to_float64(value: Any) -> Any:
    """Floating tensors (also inside tuples, lists and dicts) in float64; everything else unchanged."""
    if isinstance(value, Tensor):
        return value.double() if value.is_floating_point() else value
    if isinstance(value, tuple):
        return tuple(_to_float64(v) for v in value)
    if isinstance(value, list):
        return [_to_float64(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_float64(v) for k, v in value.items()}
    return value


def _float64_method(method: Any) -> Any:
    """A deep copy of an attribution method whose modules are in float64 (the user's model is untouched)."""
    clone = copy.deepcopy(method)
    explicit = getattr(method, "model", None)
    originals = {id(m) for m in find_modules(method.forward_func) + find_modules(method.forward_func, explicit)}
    searched = find_modules(clone.forward_func)
    modules = searched + find_modules(clone.forward_func, getattr(clone, "model", None))
    if not searched or any(id(m) in originals for m in modules):
        raise InputValidationError(
            "the 'float64' perturbation needs a method whose `forward_func` is an nn.Module (or a bound method of "
            "one), so that a float64 copy can be made; leave 'float64' out of `perturbations` otherwise.",
            "perturbations",
        )
    for m in modules:
        m.double()
    return clone


def _snap(a: Tensor, floor: Tensor) -> Tensor:
    """Entries with ``|a| <= floor`` (per row) set to 0: below the resolution their order is round-off."""
    return torch.where(a.abs() <= floor, torch.zeros_like(a), a)


def _compare(ref: Tensor, other: Tensor, k: int, absolute: bool, resolution: float) -> tuple[Tensor, Tensor, Tensor]:
    """Spearman, Pearson and top-k overlap of rows of ``[B, N]`` (float64); identical rows give exactly 1."""
    if resolution > 0:
        floor = resolution * ref.abs().amax(1, keepdim=True)
        ref, other = _snap(ref, floor), _snap(other, floor)
    a, b = (ref.abs(), other.abs()) if absolute else (ref, other)
    same = (ref == other).all(1)
    one = torch.ones_like(same, dtype=torch.float64)
    rho = torch.where(same, one, spearman(a, b))
    r = torch.where(same, one, pearson(a, b))
    top_ref = sort_descending(ref.abs())[:, :k]
    top_other = sort_descending(other.abs())[:, :k]
    hits = (top_ref.unsqueeze(2) == top_other.unsqueeze(1)).any(2).sum(1)
    return rho, r, hits.to(torch.float64) / k


def stability(
    explain_func: Any,
    inputs: Any,
    target: TargetType = None,
    *,
    perturbations: Sequence[str] = PERTURBATIONS,
    chunk_size: int = 7,
    noise: float = 1e-6,
    top_k: int | float = 0.1,
    absolute: bool = False,
    resolution: float = 1e-5,
    channel_reduction: str | None = None,
    explain_kwargs: dict[str, Any] | None = None,
    attributions: Any = None,
    internal_batch_size: int | None = None,
    forward_func: Callable[..., Any] | None = None,
    model: Any = None,
    generator: torch.Generator | int | None = None,
) -> StabilityResult:
    """Stability of an explanation under numerical perturbation (issue 13): recompute it with a different
    chunking, with tiny input noise and in float64, and compare each with the reference computation per
    example. **Higher is better** (1 = unchanged ranking).

    ``scores`` is the lowest Spearman correlation over the perturbations; every Spearman / Pearson / top-k value
    is kept per perturbation (``result.of("chunking")``). Rows that are exactly equal score exactly 1 (also when
    constant); otherwise a constant row gives NaN.

    Args:
        explain_func: an :class:`~pathattr.methods.base.AttributionMethod` instance (its ``attribute`` is called
            with ``target=``, ``internal_batch_size=`` and ``explain_kwargs``), or a callable ``(inputs, target,
            **explain_kwargs) -> attributions``; a callable must accept ``internal_batch_size=`` for
            ``"chunking"`` and compute in float64 when given float64 inputs for ``"float64"``.
        inputs: ``[B, *S]`` tensor or array.
        target: class per example (int, list, tensor, NumPy array) or callable; None: the class predicted at
            ``inputs`` (by the method's ``forward_func`` or ``forward_func``), fixed for every recomputation.
        perturbations: any of ``"chunking"``, ``"noise"``, ``"float64"`` (default all three).
        chunk_size: ``internal_batch_size`` of the ``"chunking"`` recomputation (default 7 rows: not a power of
            two, so its chunks straddle the reference's); must differ from the reference's.
        noise: relative standard deviation of the ``"noise"`` perturbation: ``noise * rms(x_b)`` per example
            (``rms`` = root mean square of the example; 1 if it is 0).
        top_k: ``k`` features (an int, or a fraction of the features) for the top-k overlap, ranked by ``|A|``
            (ties: lower index first).
        absolute: correlate ``|A|`` instead of the signed ``A``.
        resolution: attributions with ``|A| <= resolution * max|A_ref|`` (per example, ``A_ref`` the reference)
            count as 0 in both computations, so the order of values at round-off level (e.g. ``(x - 0) * g`` on
            black pixels under input noise) does not count as instability. 0 compares raw values.
        channel_reduction: compare ``[B, C, *S]`` attributions per location after this reduction (``"sum"``,
            ``"abs_sum"``, ...); None compares every element.
        explain_kwargs: keyword arguments of every explanation (``n_steps``, ``baselines``, ``references``; a
            ``generator`` object is reset to its initial state before each computation, so stochastic methods
            draw the same numbers every time).
        attributions: the reference attributions if already computed (with ``internal_batch_size``).
        internal_batch_size: chunking of the reference computation (None: the method's default).
        forward_func: the model, to fix a None target when ``explain_func`` is a plain callable.
        model: the ``nn.Module`` (or modules) ``forward_func`` uses, when it cannot be found from it.
        generator: ``torch.Generator`` or int seed of the input noise (seed 0 if None).

    Returns:
        :class:`StabilityResult`.
    """
    from ..methods.base import AttributionMethod

    x = float_batch(inputs, "inputs", min_ndim=1)
    b = x.shape[0]
    perturbations = tuple(perturbations) if not isinstance(perturbations, str) else (perturbations,)
    if not perturbations or len(set(perturbations)) != len(perturbations):
        raise InputValidationError(f"`perturbations` must be distinct names from {list(PERTURBATIONS)}.",
                                   "perturbations")
    for p in perturbations:
        choice(p, PERTURBATIONS, "perturbations")
    chunk_size = positive_int(chunk_size, "chunk_size")
    internal_batch_size = positive_int(internal_batch_size, "internal_batch_size", allow_none=True)
    kwargs = dict(explain_kwargs or {})
    if "internal_batch_size" in kwargs:
        given = kwargs.pop("internal_batch_size")
        if internal_batch_size is not None and given != internal_batch_size:
            raise InputValidationError("`internal_batch_size` is given twice (also in `explain_kwargs`).",
                                       "internal_batch_size")
        internal_batch_size = given
    if "chunking" in perturbations and internal_batch_size == chunk_size:
        raise InputValidationError(
            f"`chunk_size` {chunk_size} equals the reference's `internal_batch_size`: nothing would change.",
            "chunk_size",
        )
    noise = non_negative_float(noise, "noise")
    resolution = non_negative_float(resolution, "resolution")
    if channel_reduction is not None:
        channel_reduction = choice(channel_reduction, CHANNEL_REDUCTIONS, "channel_reduction")
    if "target" in kwargs:
        raise InputValidationError("pass `target` to stability itself, not in `explain_kwargs`.", "explain_kwargs")
    gen_kw = kwargs.get("generator")
    gen_state = gen_kw.get_state() if isinstance(gen_kw, torch.Generator) else None

    is_method = isinstance(explain_func, AttributionMethod)
    if not is_method and not callable(explain_func):
        raise InputValidationError(
            "`explain_func` must be an AttributionMethod or a callable (inputs, target, **kwargs) -> attributions.",
            "explain_func",
        )

    def compute(fn: Any, xx: Tensor, t: Any, ibs: int | None, extra: dict[str, Any]) -> Tensor:
        if gen_state is not None:
            gen_kw.set_state(gen_state)
        kw = dict(extra)
        if ibs is not None:
            kw["internal_batch_size"] = ibs
        out = fn.attribute(xx, target=t, **kw) if is_method else fn(xx, t, **kw)
        if isinstance(out, tuple):
            raise InputValidationError("stability supports single-tensor inputs and attributions.", "inputs")
        if not isinstance(out, Tensor) or out.shape[0] != b:
            raise InputValidationError(f"`explain_func` must return attributions [B, ...] with B={b}.",
                                       "explain_func")
        out = out.detach()
        check_finite(out, "explain_func", "attributions")
        return out

    # fix the target once, at the unperturbed inputs
    target = as_target(target)
    fwd = explain_func.forward_func if is_method else forward_func
    if is_method and model is None:
        model = getattr(explain_func, "model", None)
    if target is None and fwd is not None:
        fm = ModelFunction(fwd, b)
        with guard(fwd, model):
            resolve_target_chunked(fm, None, (x,), chunk_size_for(None, b, int(x[0].numel())))
        target = fm.target
    if isinstance(target, Tensor):
        target = target.reshape(-1).long().to(x.device)
        if target.numel() == 1:
            target = target.expand(b)

    if attributions is None:
        ref = compute(explain_func, x, target, internal_batch_size, kwargs)
    else:
        ref = float_batch(attributions, "attributions", min_ndim=1).to(x.device)
        if ref.shape[0] != b:
            raise InputValidationError(f"`attributions` has batch size {ref.shape[0]}, expected {b}.",
                                       "attributions")

    def flat(a: Tensor) -> Tensor:
        if channel_reduction is not None and a.ndim >= 3:
            a = reduce_channels(a, channel_reduction)
        return a.reshape(b, -1).to(torch.float64)

    ref_flat = flat(ref)
    k = resolve_k(top_k, ref_flat.shape[1], "top_k")
    rows: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    for p in perturbations:
        if p == "chunking":
            other = compute(explain_func, x, target, chunk_size, kwargs)
        elif p == "noise":
            rms = x.reshape(b, -1).to(torch.float64).square().mean(1).sqrt()
            rms = torch.where(rms > 0, rms, torch.ones_like(rms)).view(b, *(1,) * (x.ndim - 1))
            delta = noise * rms * randn(x.shape, as_generator(generator), rms)
            other = compute(explain_func, (x.to(torch.float64) + delta).to(x.dtype), target, internal_batch_size,
                            kwargs)
        else:
            fn = _float64_method(explain_func) if is_method else explain_func
            other = compute(fn, x.double(), target, internal_batch_size, _to_float64(kwargs))
        if other.numel() != ref.numel() or other.shape[0] != b:
            raise InputValidationError(
                f"the {p!r} recomputation returned shape {tuple(other.shape)}, the reference {tuple(ref.shape)}.",
                "explain_func",
            )
        rows[p] = _compare(ref_flat, flat(other.to(ref.device)), k, absolute, resolution)
    rho = torch.stack([rows[p][0] for p in perturbations])
    r = torch.stack([rows[p][1] for p in perturbations])
    overlap = torch.stack([rows[p][2] for p in perturbations])
    hyper = {
        "perturbations": perturbations,
        "chunk_size": chunk_size if "chunking" in perturbations else None,
        "internal_batch_size": internal_batch_size,
        "noise": noise if "noise" in perturbations else None,
        "noise_rule": "x + noise * rms(x_b) * N(0, 1)",
        "top_k": k,
        "absolute": absolute,
        "resolution": resolution,
        "channel_reduction": channel_reduction,
        "explain_func": describe(explain_func),
        "explain_kwargs": {key: describe(v) for key, v in kwargs.items()},
        "target": describe(target),
        "generator": describe(generator),
        "scores": "min over perturbations of the Spearman correlation",
    }
    return StabilityResult(
        name="stability", scores=rho.amin(0), direction="higher", hyperparameters=hyper, perturbations=perturbations,
        spearman=rho, pearson=r, top_k_overlap=overlap, k=k, target=target,
    )


class Stability(Metric):
    """Class form of :func:`stability`. Higher is better."""

    function = staticmethod(stability)
    higher_is_better = True
