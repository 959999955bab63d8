"""Test helper: run PAIR-code/saliency (v0.2.1, the reference implementations of Guided IG and Blur IG) on torch
models.

PAIR's methods take one unbatched NumPy example (channels-last for images) and a ``call_model_function(x_batch,
call_model_args, expected_keys)`` that returns ``{INPUT_OUTPUT_GRADIENTS: grads}``. Its Guided IG calls
``np.quantile(..., interpolation="lower")``, a keyword NumPy 2.4 removed; :func:`pair_guided_ig` swaps the
module's ``np`` for a proxy that translates it to ``method=`` for the duration of the call (the installed package
and the library code are never modified).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from pathattr.testing.peers import numpy2_compatible

saliency = pytest.importorskip("saliency.core")
guided_ig_module = pytest.importorskip("saliency.core.guided_ig")


def numpy2_compatible_guided_ig() -> contextlib.AbstractContextManager:
    return numpy2_compatible(guided_ig_module)


def call_model_function(model: torch.nn.Module, target: int, channels_last: bool, dtype=torch.float64):
    """PAIR's model interface for ``model`` (channels-first torch) and class ``target``."""

    def call(x_batch, call_model_args=None, expected_keys=None):
        x = torch.as_tensor(np.asarray(x_batch), dtype=dtype)
        if channels_last:
            x = x.movedim(-1, 1)
        x.requires_grad_(True)
        out = model(x)
        out = out[:, target] if out.ndim == 2 else out
        (grad,) = torch.autograd.grad(out.sum(), x)
        if channels_last:
            grad = grad.movedim(1, -1)
        return {saliency.INPUT_OUTPUT_GRADIENTS: grad.detach().numpy()}

    return call


def pair_guided_ig(model, x: torch.Tensor, baseline: torch.Tensor | None, target: int, **kwargs) -> torch.Tensor:
    """PAIR Guided IG for one example ``x`` (``[*S]``, any layout; the ranking is layout-free)."""
    call = call_model_function(model, target, channels_last=False, dtype=x.dtype)
    with numpy2_compatible_guided_ig():
        mask = saliency.GuidedIG().GetMask(
            x.numpy(), call, x_baseline=None if baseline is None else baseline.numpy(), **kwargs
        )
    return torch.as_tensor(mask)


def pair_blur_ig(model, x: torch.Tensor, target: int, **kwargs) -> torch.Tensor:
    """PAIR Blur IG for one channels-first image ``x`` (``[C, H, W]``); returns ``[C, H, W]``."""
    call = call_model_function(model, target, channels_last=True, dtype=x.dtype)
    mask = saliency.BlurIG().GetMask(x.movedim(0, -1).numpy(), call, **kwargs)
    return torch.as_tensor(mask).movedim(-1, 0)


def max_relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |b|`` (relative to the attribution scale)."""
    return float((a - b).abs().max() / b.abs().max())
