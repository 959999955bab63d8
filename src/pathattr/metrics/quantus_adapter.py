"""Use pathattr methods as Quantus ``explain_func``.

Quantus (v0.6) calls ``explain_func(model=model, inputs=x_batch, targets=y_batch, **explain_func_kwargs)`` with
NumPy arrays (channels-first for PyTorch) and expects a NumPy array of attributions shaped like ``x_batch``
(a reduced channel axis of size 1 is allowed). Quantus itself is not imported here.

Example::

    import quantus, pathattr.metrics as pm
    metric = quantus.MaxSensitivity(nr_samples=10, disable_warnings=True)
    scores = metric(model=model, x_batch=x, y_batch=y, explain_func=pm.quantus_explain,
                    explain_func_kwargs={"method": "IntegratedGradients", "n_steps": 32})
    # or bind once:
    explain = pm.as_quantus_explain_func("integrated_gradients", n_steps=32)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputValidationError
from ..methods.base import AttributionMethod
from ..methods.registry import METHODS


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


def method_names() -> dict[str, type]:
    """Every name :func:`quantus_explain` accepts, mapped to its class: each method of the library's registry
    (:data:`pathattr.methods.registry.METHODS`) under its registry name (``"integrated_gradients"``, ``"ig2"``,
    ``"agi"``...), its class name (``"IntegratedGradients"``), the lower-case class name and the class name in
    snake case."""
    found: dict[str, type] = {}
    for entry in METHODS.values():
        found.setdefault(entry.name, entry.cls)
    for entry in METHODS.values():
        for key in (entry.cls.__name__, entry.cls.__name__.lower(), _snake(entry.cls.__name__)):
            found.setdefault(key, entry.cls)
    return found


def resolve_method(method: Any, model: nn.Module | Callable[..., Any], method_kwargs: dict[str, Any] | None = None):
    """An :class:`~pathattr.methods.base.AttributionMethod` instance for ``model``.

    ``method``: an instance (used as is), a class (instantiated as ``cls(model, **method_kwargs)``) or the name of
    a registered method (:func:`method_names`: ``"integrated_gradients"`` / ``"IntegratedGradients"``,
    ``"saliency"``, ``"ig2"`` (needs ``method_kwargs={"representation": ...}`` and ``references=``), ...).
    """
    if isinstance(method, AttributionMethod):
        return method
    if isinstance(method, str):
        classes = method_names()
        if method not in classes:
            raise InputValidationError(
                f"unknown method {method!r}; choose a registered method: {', '.join(METHODS)} (or its class name).",
                "method",
            )
        method = classes[method]
    if isinstance(method, type) and issubclass(method, AttributionMethod):
        return method(model, **(method_kwargs or {}))
    raise InputValidationError("`method` must be a method name, an AttributionMethod class or instance.", "method")


def _needs_references(explainer: Any) -> bool:
    return any(e.cls is type(explainer) and e.needs_references for e in METHODS.values())


def _model_dtype_device(model: Any) -> tuple[torch.dtype, torch.device]:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.dtype, p.device
    return torch.get_default_dtype(), torch.device("cpu")


def quantus_explain(model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
    """A Quantus-compatible ``explain_func`` running a pathattr method.

    Args:
        model: the PyTorch model Quantus passes (an ``nn.Module`` or callable).
        inputs: ``x_batch`` NumPy ``[B, C, ...]`` (or tensor).
        targets: ``y_batch`` NumPy ``[B]`` of class indices (or an int / None).
        **kwargs: ``method`` (a registered name, class or instance; default ``"IntegratedGradients"``),
            ``method_kwargs``
            (constructor arguments), ``channel_reduction`` (None to keep the input's shape, or ``"sum"`` /
            ``"abs_sum"`` / ``"mean"`` to return ``[B, 1, ...]``), ``dtype`` (torch dtype of the model's inputs;
            default the model's parameter dtype); Quantus' ``device`` is accepted; everything else is passed to
            ``attribute`` (e.g. ``baselines``, ``n_steps``, ``internal_batch_size``, ``generator``;
            ``references`` for methods that need them, as NumPy or tensor).

    Returns:
        attributions as a NumPy array ``[B, C, ...]`` (or ``[B, 1, ...]`` with ``channel_reduction``).
    """
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "IntegratedGradients")
    method_kwargs = kwargs.pop("method_kwargs", None)
    reduction = kwargs.pop("channel_reduction", None)
    device = kwargs.pop("device", None)
    dtype, model_device = _model_dtype_device(model)
    dtype = kwargs.pop("dtype", None) or dtype
    device = torch.device(device) if device is not None else model_device
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    x = x.to(device=device, dtype=dtype)
    if targets is None or isinstance(targets, int):
        target = targets
    else:
        target = torch.as_tensor(np.asarray(targets)).reshape(-1).long().to(device)
    explainer = resolve_method(method, model, method_kwargs)
    if _needs_references(explainer):
        if kwargs.get("references") is None:
            raise InputValidationError(
                f"method {type(explainer).__name__} needs `references=` (e.g. in Quantus' explain_func_kwargs).",
                "references",
            )
        refs = kwargs.pop("references")
        refs = torch.as_tensor(np.asarray(refs) if not isinstance(refs, torch.Tensor) else refs)
        kwargs["references"] = refs.to(device=device, dtype=dtype)
    attr = explainer.attribute(x, target=target, **kwargs)
    if isinstance(attr, tuple):
        raise InputValidationError("Quantus needs single-tensor inputs.", "inputs")
    attr = attr.detach()
    if reduction is not None:
        if reduction == "sum":
            attr = attr.sum(1, keepdim=True)
        elif reduction == "abs_sum":
            attr = attr.abs().sum(1, keepdim=True)
        elif reduction == "mean":
            attr = attr.mean(1, keepdim=True)
        else:
            raise InputValidationError(f"`channel_reduction` must be None, 'sum', 'abs_sum' or 'mean', got "
                                       f"{reduction!r}.", "channel_reduction")
    return attr.cpu().numpy()


def as_quantus_explain_func(method: Any = "IntegratedGradients", **kwargs: Any) -> Callable[..., np.ndarray]:
    """Bind a method (name, class or instance) and its keyword arguments into a Quantus ``explain_func``
    ``(model, inputs, targets, **more) -> np.ndarray``; keyword arguments Quantus passes at call time override
    the bound ones. See :func:`quantus_explain` for the keywords."""

    def explain_func(model: Any, inputs: Any, targets: Any, **more: Any) -> np.ndarray:
        return quantus_explain(model, inputs, targets, **{"method": method, **kwargs, **more})

    label = method if isinstance(method, str) else getattr(method, "__name__", type(method).__name__)
    explain_func.__name__ = f"pathattr_{label}"
    return explain_func
