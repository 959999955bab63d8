"""The rich result of an explanation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .forward import Cost, TensorOrTuple


@dataclass
class Explanation:
    """Attributions plus everything needed to judge and reproduce them.

    Attributes:
        attributions: same structure and shapes as the inputs.
        method: name of the method.
        target: class index per example ``[B]`` (None for single-output models or callable targets).
        outputs: target output at the inputs, ``f_c(x)``, shape ``[B]``.
        baseline_outputs: mean target output at the baselines / path ends, shape ``[B]`` (None if the
            method has no baseline).
        convergence_delta: ``sum(attributions) - (outputs - baseline_outputs)`` per example ``[B]``
            (completeness gap; None where undefined).
        relative_delta: ``|convergence_delta| / |outputs - baseline_outputs|`` per example.
        cost: forward/backward passes, wall time and peak memory.
        hyperparameters: every setting the method used.
        extras: method-specific diagnostics (e.g. Split IG parts, IG2 path distances).
    """

    attributions: TensorOrTuple
    method: str
    target: Tensor | None = None
    outputs: Tensor | None = None
    baseline_outputs: Tensor | None = None
    convergence_delta: Tensor | None = None
    relative_delta: Tensor | None = None
    cost: Cost = field(default_factory=Cost)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def attribution_tuple(self) -> tuple[Tensor, ...]:
        a = self.attributions
        return a if isinstance(a, tuple) else (a,)

    def summary(self) -> str:
        """One line per fact, for logs and the CLI."""
        lines = [f"method: {self.method}"]
        shapes = ", ".join(str(tuple(a.shape)) for a in self.attribution_tuple)
        lines.append(f"attributions: {shapes}")
        if self.convergence_delta is not None:
            lines.append(
                f"convergence delta: max |abs| {float(self.convergence_delta.abs().max()):.3g}, "
                f"max rel {float(self.relative_delta.max()):.3g}"
            )
        c = self.cost
        lines.append(
            f"cost: {c.forward_rows} forward rows in {c.forward_calls} calls, {c.backward_rows} backward rows in "
            f"{c.backward_calls} calls, {c.wall_seconds:.3f} s"
            + (f", peak {c.peak_memory_bytes / 2**20:.1f} MiB" if c.peak_memory_bytes else "")
        )
        lines.append("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items()))
        return "\n".join(lines)


def completeness(
    attributions: tuple[Tensor, ...], outputs: Tensor, baseline_outputs: Tensor
) -> tuple[Tensor, Tensor]:
    """Absolute and relative completeness gap per example.

    ``delta = sum(attributions) - (outputs - baseline_outputs)``;
    ``relative = |delta| / |outputs - baseline_outputs|`` (``inf`` where the output difference is exactly 0 but
    ``delta`` is not, 0 where both are 0).
    """
    total = sum(a.reshape(a.shape[0], -1).sum(1) for a in attributions)
    diff = (outputs - baseline_outputs).to(total.dtype)
    delta = total - diff
    # x / 0 = inf for x > 0 and 0 / 0 = NaN -> 0 (``delta`` is finite: its inputs are checked)
    relative = torch.nan_to_num(delta.abs() / diff.abs(), nan=0.0, posinf=float("inf"))
    return delta, relative
