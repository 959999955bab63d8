"""Model-parameter randomisation sanity check (cascading and independent).

Reference: Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim. "Sanity Checks for Saliency Maps." NeurIPS 2018,
arXiv:1810.03292.

The model is never modified: every randomisation happens on a ``copy.deepcopy`` of it, so its parameters,
buffers, train/eval flags and hooks are exactly as before (also after an exception).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputValidationError, check_finite
from ..forward import ModelFunction, TargetType
from ..randomness import as_generator, randn
from ._common import (
    Metric,
    MetricResult,
    as_target,
    chunk_size_for,
    describe,
    float_batch,
    guard,
    resolve_target_chunked,
    spearman,
)

Reinit = Callable[[Tensor, torch.Generator], Tensor]


def gaussian_like(param: Tensor, generator: torch.Generator) -> Tensor:
    """Default re-initialisation: ``N(0, s^2)`` with ``s`` the standard deviation of the original parameter
    tensor (``0.01`` for constant tensors, e.g. zero-initialised biases), drawn from ``generator``."""
    s = float(param.detach().to(torch.float64).std()) if param.numel() > 1 else 0.0
    return randn(param.shape, generator, param) * (s if s > 0 else 0.01)


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in registration order (input side first)."""
    out = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            out.append((name, module))
    return out


@dataclass(kw_only=True)
class RandomisationResult(MetricResult):
    """Result of :func:`model_parameter_randomisation`.

    Attributes:
        scores: Spearman correlation of ``|A|`` between the original and the fully randomised model (last
            entry of ``layers``) per example ``[B]``. **Lower is better** (the explanation depends on the
            parameters).
        layers: names of the layers in the order they were randomised.
        spearman_abs: Spearman correlation of ``|A|`` per layer step ``[n_layers, B]``.
        spearman: Spearman correlation of the signed ``A`` per layer step ``[n_layers, B]``.
        target: the class explained per example (fixed on the original model).
    """

    layers: list[str]
    spearman_abs: Tensor
    spearman: Tensor
    target: Tensor | None


def model_parameter_randomisation(
    model: nn.Module,
    inputs: Any,
    explain_func: Any,
    target: TargetType = None,
    *,
    cascading: bool = True,
    top_down: bool = True,
    layers: list[str] | None = None,
    reinit: Reinit = gaussian_like,
    explain_kwargs: dict[str, Any] | None = None,
    generator: torch.Generator | int | None = None,
) -> RandomisationResult:
    """Model-parameter randomisation test (Adebayo et al., NeurIPS 2018): re-initialise the model's layers one
    after another and report how similar the explanation stays, by Spearman rank correlation per example.
    A method passes if the similarity falls as layers are randomised. **Lower similarity is better.**

    Cascading (default): step ``l`` explains the model with layers ``1..l`` (from the logits downwards if
    ``top_down``) all re-initialised; independent (``cascading=False``): step ``l`` re-initialises only layer
    ``l``. The target is fixed on the original model (None: its predicted class) and reused for every step.
    Similarities ``rho_l = spearman(|A|, |A_l|)`` and ``spearman(A, A_l)`` over the flattened features.

    Args:
        model: the ``nn.Module`` (not modified: each step works on a deep copy).
        inputs: ``[B, *S]`` tensor or array.
        explain_func: an :class:`~pathattr.methods.base.AttributionMethod` *class* (called as
            ``cls(model_copy).attribute(inputs, target=target, **explain_kwargs)``) or a callable
            ``(model, inputs, target) -> attributions [B, *S]`` (Quantus' order).
        target: class per example, or None (predicted by the original model).
        cascading: cascading (True) or independent (False) randomisation.
        top_down: start at the output layer (True, as the paper) or the input layer.
        layers: names (``model.named_modules()``) of the layers to randomise, in the order given; default every
            module owning parameters, ordered per ``top_down``.
        reinit: ``(parameter, generator) -> new values``; default :func:`gaussian_like`.
        explain_kwargs: keyword arguments for every explanation.
        generator: ``torch.Generator`` or int seed for the re-initialisation (seed 0 if None).
    """
    from ..methods.base import AttributionMethod

    if not isinstance(model, nn.Module):
        raise InputValidationError("`model` must be an nn.Module (it is deep-copied and re-initialised).", "model")
    x = float_batch(inputs, "inputs", min_ndim=1)
    kwargs = dict(explain_kwargs or {})
    if isinstance(explain_func, type) and issubclass(explain_func, AttributionMethod):
        cls = explain_func

        def explain(m: nn.Module, xx: Tensor, t: Any) -> Tensor:
            return cls(m).attribute(xx, target=t, **kwargs)
    elif callable(explain_func):
        def explain(m: nn.Module, xx: Tensor, t: Any) -> Tensor:
            return explain_func(m, xx, t, **kwargs)
    else:
        raise InputValidationError("`explain_func` must be an AttributionMethod class or a callable.", "explain_func")

    all_layers = _layers(model)
    if layers is None:
        names = [n for n, _ in all_layers]
        if top_down:
            names = names[::-1]
    else:
        known = {n for n, _ in all_layers}
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise InputValidationError(f"`layers` {unknown} are not modules with parameters of the model; known: "
                                       f"{sorted(known)}.", "layers")
        names = list(layers)
    if not names:
        raise InputValidationError("the model has no parameters to randomise.", "model")

    b = x.shape[0]
    fm = ModelFunction(model, b)
    target = as_target(target)
    with guard(model):
        resolve_target_chunked(fm, target, (x,), chunk_size_for(None, b, int(x[0].numel())))
    fixed_target = fm.target if isinstance(fm.target, Tensor) else target
    original = explain(model, x, fixed_target).detach()
    check_finite(original, "explain_func", "attributions")
    flat0 = original.reshape(b, -1)
    gen = as_generator(generator)

    rho_abs, rho = [], []
    current = copy.deepcopy(model) if cascading else None
    for name in names:
        m = current if cascading else copy.deepcopy(model)
        module = m.get_submodule(name)  # "" is the root module
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                new = reinit(p, gen)
                if not isinstance(new, Tensor) or new.shape != p.shape:
                    raise InputValidationError("`reinit` must return a tensor shaped like the parameter.", "reinit")
                p.copy_(new)
        attr = explain(m, x, fixed_target).detach()
        check_finite(attr, "explain_func", "attributions")
        flat = attr.reshape(b, -1)
        rho_abs.append(spearman(flat0.abs(), flat.abs()))
        rho.append(spearman(flat0, flat))
    spearman_abs = torch.stack(rho_abs)
    spearman_signed = torch.stack(rho)
    if bool(torch.isnan(spearman_abs).any()):
        raise InputValidationError("an explanation is constant, so its rank correlation is undefined (NaN).",
                                   "explain_func")
    hyper = {"cascading": cascading, "top_down": top_down, "layers": names, "reinit": describe(reinit),
             "similarity": "spearman (average ranks)", "explain_func": describe(explain_func),
             "explain_kwargs": {k: describe(v) for k, v in kwargs.items()}, "generator": describe(generator)}
    return RandomisationResult(
        name="model_parameter_randomisation", scores=spearman_abs[-1], direction="lower", hyperparameters=hyper,
        layers=names, spearman_abs=spearman_abs, spearman=spearman_signed,
        target=fm.target if isinstance(fm.target, Tensor) else None,
    )


class ModelParameterRandomisation(Metric):
    """Class form of :func:`model_parameter_randomisation`. Lower (similarity) is better."""

    function = staticmethod(model_parameter_randomisation)
    higher_is_better = False
