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


def _method_classes() -> dict[str, type]:
    from .. import methods
    from ..methods.base import AttributionMethod

    found: dict[str, type] = {}
    stack = [v for v in vars(methods).values() if isinstance(v, type) and issubclass(v, AttributionMethod)]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if getattr(cls, "__abstractmethods__", None) or cls.__name__.startswith("_"):
            continue
        snake = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", cls.__name__).lower()
        for key in (cls.__name__, cls.__name__.lower(), snake, getattr(cls, "name", None)):
            if isinstance(key, str) and key != "method":
                found.setdefault(key, cls)
    return found


def resolve_method(method: Any, model: nn.Module | Callable[..., Any], method_kwargs: dict[str, Any] | None = None):
    """An :class:`~pathattr.methods.base.AttributionMethod` instance for ``model``.

    ``method``: an instance (used as is), a class (instantiated as ``cls(model, **method_kwargs)``) or a name
    such as ``"IntegratedGradients"``, ``"integrated_gradients"`` or ``"saliency"``.
    """
    from ..methods.base import AttributionMethod

    if isinstance(method, AttributionMethod):
        return method
    if isinstance(method, str):
        classes = _method_classes()
        if method not in classes:
            raise InputValidationError(
                f"unknown method {method!r}; choose one of {sorted(k for k in classes if k[0].isupper())}.", "method"
            )
        method = classes[method]
    if isinstance(method, type) and issubclass(method, AttributionMethod):
        return method(model, **(method_kwargs or {}))
    raise InputValidationError("`method` must be a method name, an AttributionMethod class or instance.", "method")


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
        **kwargs: ``method`` (name, class or instance; default ``"IntegratedGradients"``), ``method_kwargs``
            (constructor arguments), ``channel_reduction`` (None to keep the input's shape, or ``"sum"`` /
            ``"abs_sum"`` / ``"mean"`` to return ``[B, 1, ...]``), ``dtype`` (torch dtype of the model's inputs;
            default the model's parameter dtype); Quantus' ``device`` is accepted; everything else is passed to
            ``attribute`` (e.g. ``baselines``, ``n_steps``, ``internal_batch_size``, ``generator``).

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
