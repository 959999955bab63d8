"""PAIR-code/saliency adapters for the speed benchmark (Guided IG and Blur IG), and a shortcut command.

:mod:`pathattr_bench.speed` times pathattr's Guided IG and Blur IG against PAIR's with these adapters.
``python -m pathattr_bench.guided_blur_speed [--quick]`` runs just those cases of ``pathattr_bench.speed``
(results in ``docs/guided_blur_performance.md``).

PAIR (``saliency`` 0.2.1, NumPy, one example at a time) gets the same torch model through a
``call_model_function`` adapter; its Guided IG calls ``np.quantile(..., interpolation=...)``, a keyword NumPy 2.4
removed: the module's ``np`` is swapped for a proxy that maps it to ``method=`` for the duration of the call
(the same patch as ``tests/pair_adapter.py``; the installed package is never modified).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from pathattr.testing.peers import numpy2_compatible

# ----------------------------------------------------------------------------------------------- PAIR adapter


@contextlib.contextmanager
def _pair_guided_ig_numpy2() -> Iterator[Any]:
    import saliency.core as saliency
    import saliency.core.guided_ig as module

    with numpy2_compatible(module):
        yield saliency


def _pair_call(model: nn.Module, target: int, channels_last: bool) -> Callable[..., dict]:
    import saliency.core as saliency

    def call(x_batch, call_model_args=None, expected_keys=None):
        x = torch.as_tensor(np.asarray(x_batch), dtype=torch.float32)
        if channels_last:
            x = x.movedim(-1, 1)
        x.requires_grad_(True)
        out = model(x)[:, target].sum()
        (grad,) = torch.autograd.grad(out, x)
        if channels_last:
            grad = grad.movedim(1, -1)
        return {saliency.INPUT_OUTPUT_GRADIENTS: grad.numpy()}

    return call


def pair_guided_ig(model: nn.Module, x: torch.Tensor, target: int, n_steps: int) -> None:
    """PAIR Guided IG on each example of ``x`` in turn (default fraction and max_dist)."""
    with _pair_guided_ig_numpy2() as saliency:
        call = _pair_call(model, target, channels_last=False)
        for xi in x:
            saliency.GuidedIG().GetMask(xi.numpy(), call, x_steps=n_steps)


def pair_blur_ig(model: nn.Module, x: torch.Tensor, target: int, n_steps: int, batch_size: int = 1) -> None:
    """PAIR Blur IG on each example of ``x`` in turn (channels-last, as PAIR expects)."""
    import saliency.core as saliency

    call = _pair_call(model, target, channels_last=True)
    for xi in x:
        saliency.BlurIG().GetMask(xi.movedim(0, -1).numpy(), call, steps=n_steps, batch_size=batch_size)


__all__ = ["pair_blur_ig", "pair_guided_ig"]
