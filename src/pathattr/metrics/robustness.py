"""Robustness and complexity: max-sensitivity, infidelity and sparseness (Gini index).

References:
    Yeh, Hsieh, Suggala, Inouye, Ravikumar. "On the (In)fidelity and Sensitivity of Explanations." NeurIPS
    2019, arXiv:1901.09392 (max-sensitivity, infidelity).
    Chalasani, Chen, Chowdhury, Wu, Jha. "Concise Explanations of Neural Networks using Adversarial
    Training." ICML 2020, arXiv:1810.06583 (sparseness as the Gini index of ``|A|``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..baselines import resolve_baselines
from ..errors import InputValidationError, check_finite
from ..forward import ModelFunction, TargetType
from ..randomness import as_generator, rand, randint, randn
from ._common import (
    DEPRECATED,
    Metric,
    MetricResult,
    as_target,
    chunk_size_for,
    chunks,
    describe,
    float_batch,
    guard,
    internal_batch_size_alias,
    non_negative_float,
    positive_int,
    resolve_target_chunked,
    scores_in_chunks,
)

ExplainFunc = Callable[..., Any]


# ------------------------------------------------------------------------------------------- sparseness
def sparseness(attributions: Any) -> MetricResult:
    """Sparseness (Chalasani et al., ICML 2020): the Gini index of ``|A|`` over all features of an example.
    **Higher is better** (sparser): 0 when all features have equal magnitude, ``(N - 1) / N`` for a one-hot
    attribution.

    ``G = sum_{i=1..N} (2 i - N - 1) a_(i) / (N sum_i a_(i))`` with ``a_(1) <= ... <= a_(N)`` the sorted
    ``|A|`` (no offset added, unlike Quantus' ``+1e-7``). Raises for an all-zero attribution (undefined).

    Args:
        attributions: ``[B, *S]`` tensor or array.
    """
    a = float_batch(attributions, "attributions", min_ndim=1)
    b = a.shape[0]
    v = a.reshape(b, -1).to(torch.float64).abs().sort(dim=1).values
    n = v.shape[1]
    total = v.sum(1)
    bad = (total == 0).nonzero().flatten().tolist()
    if bad:
        raise InputValidationError(f"examples {bad[:8]} have all-zero attributions; the Gini index is undefined.",
                                   "attributions")
    i = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    gini = ((2 * i - n - 1) * v).sum(1) / (n * total)
    return MetricResult(name="sparseness", scores=gini, direction="higher",
                        hyperparameters={"n_features": n, "of": "|attributions|", "offset": 0.0})


# ------------------------------------------------------------------------------------------- explain funcs
def _bind_explain(explain_func: Any, explain_kwargs: dict[str, Any] | None) -> tuple[Callable, Any]:
    """``(call(inputs, target) -> attributions, forward_func or None)`` for an AttributionMethod or a callable."""
    from ..methods.base import AttributionMethod

    kwargs = dict(explain_kwargs or {})
    if isinstance(explain_func, AttributionMethod):
        method = explain_func

        def call(x: Tensor, target: Any) -> Tensor:
            out = method.attribute(x, target=target, **kwargs)
            if isinstance(out, tuple):
                raise InputValidationError("max_sensitivity supports single-tensor inputs.", "inputs")
            return out

        return call, method.forward_func
    if not callable(explain_func):
        raise InputValidationError(
            "`explain_func` must be an AttributionMethod or a callable (inputs, target) -> attributions.",
            "explain_func",
        )

    def call_fn(x: Tensor, target: Any) -> Tensor:
        return explain_func(x, target, **kwargs)

    return call_fn, None


def _targets_per_example(target: Any, b: int, device: torch.device) -> Any:
    """An int / list / tensor target as a ``[B]`` tensor (callables and None unchanged)."""
    if target is None or (callable(target) and not isinstance(target, Tensor)):
        return target
    if isinstance(target, bool):
        raise InputValidationError("`target` must not be a bool.", "target")
    t = torch.as_tensor(target, device=device).reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise InputValidationError(f"`target` has {t.numel()} entries; expected one per example ({b}).", "target")
    return t


def _norm(d: Tensor, norm: str | float) -> Tensor:
    d = d.reshape(d.shape[0], -1).to(torch.float64)
    if norm == "fro":
        return d.norm(dim=1)
    if norm == "inf":
        return d.abs().amax(1)
    return d.norm(p=float(norm), dim=1)


@dataclass(kw_only=True)
class SensitivityResult(MetricResult):
    """Result of :func:`max_sensitivity`.

    Attributes:
        scores: absolute max-sensitivity ``max_j ||Phi(x + delta_j) - Phi(x)||`` per example ``[B]``.
        relative: ``scores / ||Phi(x)||`` per example ``[B]`` (Captum's ``sensitivity_max``; ``inf`` where
            ``Phi(x) = 0`` but the explanation changes, 0 where both are 0).
        per_sample: ``||Phi(x + delta_j) - Phi(x)||`` ``[n_samples, B]``.
        target: the class explained per example (None if chosen by ``explain_func``).
    """

    relative: Tensor
    per_sample: Tensor
    target: Any


def max_sensitivity(
    explain_func: Any,
    inputs: Any,
    target: TargetType = None,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    norm: str | float = "fro",
    forward_func: Callable[..., Any] | None = None,
    explain_kwargs: dict[str, Any] | None = None,
    attributions: Any = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> SensitivityResult:
    """Max-sensitivity (Yeh et al., NeurIPS 2019): the largest change of the explanation under input
    perturbations in an L-infinity ball, estimated by Monte Carlo. **Lower is better.**

    ``SENS_max = max_{j=1..n} ||Phi(x + delta_j) - Phi(x)||``, ``delta_j ~ U([-r, r]^d)`` i.i.d., drawn from
    ``generator`` as ``delta_j = r (2 U_j - 1)`` with ``U_j = torch.rand((B, *S))`` (float64) for ``j = 1..n`` in
    order (so the draws do not depend on ``internal_batch_size``); the
    explanation is recomputed with the same hyperparameters and the **same target** as at ``x``. Both the
    absolute value (``scores``) and Captum's relative form (``relative = scores / ||Phi(x)||``) are returned.

    Args:
        explain_func: an :class:`~pathattr.methods.base.AttributionMethod` instance (its ``attribute`` is
            called with ``target=`` and ``explain_kwargs``), or a callable ``(inputs [n, *S], target) ->
            attributions [n, *S]`` (``target``: None, a callable, or a ``[n]`` tensor of classes).
        inputs: ``[B, *S]`` tensor or array.
        target: class per example (int, list, tensor) or callable; None: the class predicted at ``inputs`` by
            the method's ``forward_func`` (or ``forward_func``), else left to ``explain_func``.
        radius: ``r``, half-width of the L-infinity ball (Captum default 0.02).
        n_samples: Monte-Carlo draws ``n`` (Captum default 10, Quantus 200).
        norm: ``"fro"`` (Euclidean norm of the flattened difference), ``"inf"`` or a number ``p``.
        forward_func: model used to fix a None target when ``explain_func`` is a plain callable.
        explain_kwargs: keyword arguments for every explanation (e.g. ``n_steps``, ``baselines``).
        attributions: ``Phi(x)`` if already computed (``[B, *S]``); else computed.
        internal_batch_size: maximum perturbed examples per ``explain_func`` call (``batch_size``: its
            deprecated alias).
        generator: ``torch.Generator`` or int seed (seed 0 if None).
        model: the ``nn.Module`` (or modules) ``forward_func`` uses, when it cannot be found from it (for the
            None target); put in eval mode and restored.
    """
    batch_size = internal_batch_size_alias("max_sensitivity", internal_batch_size, batch_size)
    target = as_target(target)
    x = float_batch(inputs, "inputs", min_ndim=1)
    radius = non_negative_float(radius, "radius")
    n_samples = positive_int(n_samples, "n_samples")
    if not (norm in ("fro", "inf") or (isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm > 0)):
        raise InputValidationError(f"`norm` must be 'fro', 'inf' or a positive number, got {norm!r}.", "norm")
    call, method_forward = _bind_explain(explain_func, explain_kwargs)
    b = x.shape[0]
    fwd = forward_func or method_forward
    if target is None and fwd is not None:
        fm = ModelFunction(fwd, b)
        with guard(fwd, model):
            resolve_target_chunked(fm, None, (x,), chunk_size_for(batch_size, b, int(x[0].numel())))
        target = fm.target
    target = _targets_per_example(target, b, x.device)
    phi = call(x, target) if attributions is None else float_batch(attributions, "attributions", min_ndim=1)
    phi = phi.detach().to(x.device)
    if phi.shape[0] != b:
        raise InputValidationError(f"attributions have batch size {phi.shape[0]}, expected {b}.", "explain_func")
    gen = as_generator(generator)
    chunk = positive_int(batch_size, "internal_batch_size", allow_none=True) or n_samples * b
    per_group = max(1, chunk // b)  # samples drawn and explained together (memory: about max(chunk, B) rows)
    diffs = []
    for s0 in range(0, n_samples, per_group):
        s1 = min(n_samples, s0 + per_group)
        delta = torch.stack([radius * (2 * rand(x.shape, gen, x) - 1) for _ in range(s0, s1)])
        rows = (x.unsqueeze(0) + delta).reshape((s1 - s0) * b, *x.shape[1:])
        example = torch.arange((s1 - s0) * b, device=x.device) % b
        for lo, hi in chunks(rows.shape[0], chunk):
            t = target[example[lo:hi]] if isinstance(target, Tensor) else target
            phi_p = call(rows[lo:hi], t).detach()
            check_finite(phi_p, "explain_func", "attributions")
            diffs.append(_norm(phi_p - phi[example[lo:hi]], norm))
    per_sample = torch.cat(diffs).view(n_samples, b)
    sens = per_sample.amax(0)
    base = _norm(phi, norm)
    relative = torch.where(
        base > 0, sens / torch.where(base > 0, base, torch.ones_like(base)),
        torch.where(sens == 0, torch.zeros_like(sens), torch.full_like(sens, math.inf)),
    )
    hyper = {
        "radius": radius, "n_samples": n_samples, "norm": norm, "perturbation": "uniform in L-inf ball",
        "explain_func": describe(explain_func),
        "explain_kwargs": {k: describe(v) for k, v in (explain_kwargs or {}).items()},
        "target": describe(target), "internal_batch_size": batch_size, "generator": describe(generator),
    }
    return SensitivityResult(name="max_sensitivity", scores=sens, direction="lower", hyperparameters=hyper,
                             relative=relative, per_sample=per_sample, target=target)


# ------------------------------------------------------------------------------------------- infidelity
@dataclass(kw_only=True)
class InfidelityResult(MetricResult):
    """Result of :func:`infidelity`.

    Attributes:
        scores: infidelity per example ``[B]`` (of ``beta * Phi`` if ``normalize``).
        beta: the optimal scaling per example ``[B]`` (1 if not ``normalize``).
        dot: ``I^T Phi`` per draw ``[n_samples, B]``.
        output_change: ``f(x) - f(x - I)`` per draw ``[n_samples, B]``.
    """

    beta: Tensor
    dot: Tensor
    output_change: Tensor


PERTURBATIONS = ("gaussian", "square", "baseline")


def infidelity(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType = None,
    *,
    perturbation: str | Callable[[Tensor, torch.Generator], Tensor] = "gaussian",
    noise_std: float = 0.1,
    square_size: int = 4,
    baselines: Any = None,
    n_samples: int = 10,
    normalize: bool = False,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> InfidelityResult:
    """Infidelity (Yeh et al., NeurIPS 2019): how badly ``I^T Phi`` predicts the output change caused by
    perturbations ``I ~ mu``. **Lower is better.**

    ``INFD = mean_j (I_j^T Phi - (f(x) - f(x - I_j)))^2`` over ``n_samples`` draws; with ``normalize`` (Captum's
    option), ``Phi`` is first scaled by ``beta = sum_j (I_j^T Phi)(f(x) - f(x - I_j)) / sum_j (I_j^T Phi)^2``
    (``beta = 0`` if the denominator is 0). ``f`` is the raw target output (e.g. the logit).

    Perturbations ``mu`` (the perturbed input is ``x - I``):

    * ``"gaussian"``: ``I ~ N(0, noise_std^2)`` i.i.d. per element ("noisy baseline" of the paper);
    * ``"square"``: ``I = (x - x0)`` on a random ``square_size x square_size`` square (all channels) and 0
      elsewhere, ``x0`` = ``baselines`` (zeros by default) -- the paper's square removal; images ``[B, C, H, W]``;
    * ``"baseline"``: ``I = x - x0`` (deterministic; one draw suffices) -- infidelity w.r.t. a baseline;
    * a callable ``(x [B, *S], generator) -> I [B, *S]``, called once per draw.

    Args:
        forward_func: model or callable returning ``[n]`` or ``[n, C]``.
        inputs: ``[B, *S]`` tensor or array.
        attributions: ``Phi`` ``[B, *S]``.
        target: class per example, callable, or None (predicted class at ``inputs``).
        perturbation, noise_std, square_size, baselines: see above (``baselines`` as in
            :mod:`pathattr.baselines`; one baseline per example).
        n_samples: draws per example.
        normalize: report the infidelity of the optimally scaled ``beta * Phi``.
        additional_forward_args: extra arguments for ``forward_func``.
        internal_batch_size: maximum rows per forward call (``batch_size``: its deprecated alias).
        generator: ``torch.Generator`` or int seed (seed 0 if None).
        model: the ``nn.Module`` (or modules) ``forward_func`` uses, when it cannot be found from it (e.g. a
            lambda around the model); put in eval mode and restored.
    """
    batch_size = internal_batch_size_alias("infidelity", internal_batch_size, batch_size)
    x = float_batch(inputs, "inputs", min_ndim=1)
    phi = float_batch(attributions, "attributions", min_ndim=1).to(x)
    if phi.shape != x.shape:
        raise InputValidationError(f"`attributions` {tuple(phi.shape)} must match `inputs` {tuple(x.shape)}.",
                                   "attributions")
    n_samples = positive_int(n_samples, "n_samples")
    gen = as_generator(generator)
    b = x.shape[0]
    if callable(perturbation) and not isinstance(perturbation, str):
        def draw() -> Tensor:
            i = perturbation(x, gen)
            if not isinstance(i, Tensor) or i.shape != x.shape:
                raise InputValidationError("a callable `perturbation` must return a tensor shaped like `inputs`.",
                                           "perturbation")
            return i.detach().to(x)
        pert_desc: Any = describe(perturbation)
    else:
        if perturbation not in PERTURBATIONS:
            raise InputValidationError(f"`perturbation` must be one of {list(PERTURBATIONS)} or a callable, got "
                                       f"{perturbation!r}.", "perturbation")
        if perturbation == "gaussian":
            std = non_negative_float(noise_std, "noise_std")

            def draw() -> Tensor:
                return std * randn(x.shape, gen, x)
            pert_desc = {"name": "gaussian", "noise_std": std}
        else:
            base = resolve_baselines((x,), baselines, gen)[0]
            if base.shape[1] != 1:
                raise InputValidationError("`baselines` must give one baseline per example.", "baselines")
            diff = x - base[:, 0].expand_as(x)
            if perturbation == "baseline":
                def draw() -> Tensor:
                    return diff
                pert_desc = {"name": "baseline", "baselines": describe(baselines)}
            else:
                if x.ndim != 4:
                    raise InputValidationError("perturbation='square' needs images [B, C, H, W].", "perturbation")
                s = positive_int(square_size, "square_size")
                h, w = x.shape[2:]
                if s > min(h, w):
                    raise InputValidationError(f"`square_size` {s} exceeds the image size {(h, w)}.", "square_size")

                def draw() -> Tensor:
                    top = randint(h - s + 1, (b,), gen, x.device).view(b, 1, 1)
                    left = randint(w - s + 1, (b,), gen, x.device).view(b, 1, 1)
                    r = torch.arange(h, device=x.device).view(1, h, 1)
                    c = torch.arange(w, device=x.device).view(1, 1, w)
                    m = (r >= top) & (r < top + s) & (c >= left) & (c < left + s)
                    return diff * m.unsqueeze(1)
                pert_desc = {"name": "square", "square_size": s, "baselines": describe(baselines)}
    fm = ModelFunction(forward_func, b, additional_forward_args)
    chunk = chunk_size_for(batch_size, n_samples * b, int(x[0].numel()))
    per_group = max(1, chunk // b)  # draws evaluated together (memory: about max(chunk, B) rows)
    dots, outs = [], []
    with guard(forward_func, model):
        fx = resolve_target_chunked(fm, target, (x,), chunk).to(torch.float64)
        for s0 in range(0, n_samples, per_group):
            s1 = min(n_samples, s0 + per_group)
            perturbations = torch.stack([draw() for _ in range(s0, s1)])  # [s, B, *S], draws in order
            dots.append((perturbations * phi.unsqueeze(0)).reshape(s1 - s0, b, -1).to(torch.float64).sum(2))
            rows = (x.unsqueeze(0) - perturbations).reshape((s1 - s0) * b, *x.shape[1:])
            example = torch.arange((s1 - s0) * b, device=x.device) % b
            def make_rows(lo: int, hi: int, r: Tensor = rows, e: Tensor = example) -> tuple[tuple[Tensor], Tensor]:
                return (r[lo:hi],), e[lo:hi]

            outs.append(scores_in_chunks(fm, rows.shape[0], make_rows, chunk, "logit").view(s1 - s0, b))
    dot = torch.cat(dots)
    f_pert = torch.cat(outs)
    change = fx.unsqueeze(0) - f_pert
    if normalize:
        denom = dot.square().sum(0)
        beta = torch.where(denom > 0, (dot * change).sum(0) / torch.where(denom > 0, denom, torch.ones_like(denom)),
                           torch.zeros_like(denom))
    else:
        beta = torch.ones(b, dtype=torch.float64, device=x.device)
    infd = (beta.unsqueeze(0) * dot - change).square().mean(0)
    hyper = {"perturbation": pert_desc, "n_samples": n_samples, "normalize": normalize,
             "output": "raw target output", "target": describe(target), "internal_batch_size": batch_size,
             "generator": describe(generator)}
    return InfidelityResult(name="infidelity", scores=infd, direction="lower", hyperparameters=hyper, beta=beta,
                            dot=dot, output_change=change)


class Sparseness(Metric):
    """Class form of :func:`sparseness`. Higher is better."""

    function = staticmethod(sparseness)
    higher_is_better = True


class MaxSensitivity(Metric):
    """Class form of :func:`max_sensitivity`. Lower is better."""

    function = staticmethod(max_sensitivity)
    higher_is_better = False


class Infidelity(Metric):
    """Class form of :func:`infidelity`. Lower is better."""

    function = staticmethod(infidelity)
    higher_is_better = False
