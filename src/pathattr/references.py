"""Reference selection for counterfactual methods such as IG2 (Zhuo & Ge, TPAMI 2024, arXiv 2406.10852).

Three recipes of the IG2 reference code, with the library's rules (spec ``ig2.md`` section 7):

* :func:`other_class` - references whose class differs from the explicand's (the general recipe);
* :func:`runner_up` - references from the classes ranked 2..k+1 by the model at the explicand (the authors'
  "relevant reference" recipe);
* :func:`from_class` - references from one chosen class (the wafer-map "normal" recipe).

Class membership is the **model's prediction** on the pool (or dataset ``pool_labels`` on request); a
candidate equal to the explicand (max absolute difference ``<= tolerance``) is never chosen; draws use an
explicit ``generator`` (seed 0 by default, never the global RNG); the result records the pool indices and
classes of every chosen reference. All functions return a :class:`ReferenceSet`, which ``IG2.explain`` accepts
directly as ``references``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import InputValidationError, check_finite
from .forward import model_guard
from .randomness import as_generator


@dataclass
class ReferenceSet:
    """Chosen references for ``B`` explicands.

    Attributes:
        references: ``[B, R, *S]``.
        indices: ``[B, R]`` long, index of every reference in the pool.
        classes: ``[B, R]`` long, class of every reference (model prediction or pool label).
        explicand_classes: ``[B]`` long, the class of each explicand the references were chosen against.
        strategy: ``"other_class"``, ``"runner_up"`` or ``"class"``.
    """

    references: Tensor
    indices: Tensor
    classes: Tensor
    explicand_classes: Tensor
    strategy: str

    @property
    def n_references(self) -> int:
        return self.references.shape[1]


@torch.no_grad()
def _predict(model: Callable[..., Any], x: Tensor, batch_size: int) -> Tensor:
    """Logits ``[n, C]`` of ``x`` in chunks, in eval mode (model state restored)."""
    with model_guard(model, True), torch.no_grad():
        out = torch.cat([model(x[a : a + batch_size]) for a in range(0, x.shape[0], batch_size)])
    if out.ndim != 2:
        raise InputValidationError(f"`model` must return logits [n, C], got shape {tuple(out.shape)}.", "model")
    return out


def _check(inputs: Tensor, pool: Tensor, batch_size: int, tolerance: float) -> None:
    for name, t in (("inputs", inputs), ("pool", pool)):
        if not isinstance(t, Tensor) or t.ndim < 2 or not t.is_floating_point():
            raise InputValidationError(f"`{name}` must be a floating-point tensor [n, *S].", name)
        check_finite(t, name)
    if tuple(pool.shape[1:]) != tuple(inputs.shape[1:]):
        raise InputValidationError(
            f"`pool` rows have shape {tuple(pool.shape[1:])}, the inputs {tuple(inputs.shape[1:])}.", "pool"
        )
    if pool.shape[0] == 0:
        raise InputValidationError("`pool` is empty.", "pool")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputValidationError(f"`batch_size` must be a positive int, got {batch_size!r}.", "batch_size")
    if not tolerance >= 0:
        raise InputValidationError(f"`tolerance` must be >= 0, got {tolerance!r}.", "tolerance")


def _pool_classes(model: Callable[..., Any], pool: Tensor, pool_labels: Tensor | None, batch_size: int) -> Tensor:
    if pool_labels is None:
        return _predict(model, pool, batch_size).argmax(1)
    labels = torch.as_tensor(pool_labels).reshape(-1).long().to(pool.device)
    if labels.numel() != pool.shape[0]:
        raise InputValidationError(
            f"`pool_labels` has {labels.numel()} entries for a pool of {pool.shape[0]}.", "pool_labels"
        )
    return labels


def _not_duplicate(inputs: Tensor, pool: Tensor, tolerance: float) -> Tensor:
    """``[B, N]`` True where pool row ``n`` differs from explicand ``b`` by more than ``tolerance`` (max abs)."""
    b, n = inputs.shape[0], pool.shape[0]
    diff = (inputs.reshape(b, 1, -1) - pool.reshape(1, n, -1)).abs().amax(2)
    return diff > tolerance


def _draw(
    eligible: Tensor, n_references: int | None, generator: torch.Generator, strategy: str
) -> Tensor:
    """Pool indices ``[B, R]``: ``n_references`` drawn uniformly without replacement from each row's eligible
    candidates (all of them, in pool order, if None and every row has the same number)."""
    counts = eligible.sum(1)
    take_all = n_references is None
    if take_all:
        if bool((counts != counts[0]).any()):
            raise InputValidationError(
                f"{strategy}: the explicands have different numbers of candidates ({counts.tolist()}); pass "
                "`n_references`.",
                "n_references",
            )
        n_references = int(counts[0])
    if isinstance(n_references, bool) or not isinstance(n_references, int) or n_references < 1:
        raise InputValidationError(f"`n_references` must be a positive int, got {n_references!r}.", "n_references")
    short = (counts < n_references).nonzero().flatten()
    if short.numel():
        i = int(short[0])
        raise InputValidationError(
            f"{strategy}: explicand {i} has only {int(counts[i])} eligible pool samples, fewer than "
            f"n_references = {n_references}.",
            "n_references",
        )
    rows = []
    for row in eligible.cpu():
        candidates = row.nonzero().flatten()
        if take_all:
            rows.append(candidates)
        else:
            rows.append(candidates[torch.randperm(candidates.numel(), generator=generator)[:n_references]])
    return torch.stack(rows).to(eligible.device)


def _finish(
    pool: Tensor, idx: Tensor, classes: Tensor, explicand: Tensor, strategy: str
) -> ReferenceSet:
    return ReferenceSet(pool[idx], idx, classes[idx], explicand, strategy)


def _explicand_classes(model, inputs: Tensor, target: Any, batch_size: int) -> tuple[Tensor, Tensor | None]:
    logits = None
    if target is None:
        logits = _predict(model, inputs, batch_size)
        return logits.argmax(1), logits
    t = torch.as_tensor(target).reshape(-1).long().to(inputs.device)
    if t.numel() == 1:
        t = t.expand(inputs.shape[0]).clone()
    if t.numel() != inputs.shape[0]:
        raise InputValidationError(f"`target` has {t.numel()} entries for {inputs.shape[0]} inputs.", "target")
    return t, logits


def other_class(
    model: Callable[..., Any],
    inputs: Tensor,
    pool: Tensor,
    n_references: int | None = None,
    target: Any = None,
    pool_labels: Tensor | None = None,
    generator: torch.Generator | int | None = None,
    tolerance: float = 1e-6,
    batch_size: int = 64,
) -> ReferenceSet:
    """References whose class differs from the explicand's (IG2's general recipe).

    Args:
        model: classifier returning logits ``[n, C]``.
        inputs: ``[B, *S]`` explicands.
        pool: ``[N, *S]`` candidate references.
        n_references: ``R`` per explicand, drawn uniformly without replacement (None: every candidate, if all
            explicands have the same number).
        target: the explicand classes (int or ``[B]``); None: the model's predicted class.
        pool_labels: ``[N]`` dataset labels to use instead of the model's predictions on the pool.
        generator: ``torch.Generator`` or int seed (default seed 0).
        tolerance: candidates within this max-abs difference of the explicand are excluded (never the explicand).
        batch_size: rows per model call when predicting.
    """
    _check(inputs, pool, batch_size, tolerance)
    explicand, _ = _explicand_classes(model, inputs, target, batch_size)
    classes = _pool_classes(model, pool, pool_labels, batch_size)
    eligible = (classes.view(1, -1) != explicand.view(-1, 1)) & _not_duplicate(inputs, pool, tolerance)
    idx = _draw(eligible, n_references, as_generator(generator), "other_class")
    return _finish(pool, idx, classes, explicand, "other_class")


def runner_up(
    model: Callable[..., Any],
    inputs: Tensor,
    pool: Tensor,
    k: int = 3,
    n_references: int | None = None,
    pool_labels: Tensor | None = None,
    generator: torch.Generator | int | None = None,
    tolerance: float = 1e-6,
    batch_size: int = 64,
) -> ReferenceSet:
    """References from the runner-up classes: ranks ``2 .. k + 1`` of ``f(x)`` (IG2's "relevant reference"
    recipe; the authors' notebook uses ranks 2..4, ``k = 3``). The explicand's own (top-1) class is excluded.

    Args as :func:`other_class`; ``k``: number of runner-up classes.
    """
    _check(inputs, pool, batch_size, tolerance)
    logits = _predict(model, inputs, batch_size)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < logits.shape[1]:
        raise InputValidationError(f"`k` must be an int in [1, C - 1] = [1, {logits.shape[1] - 1}], got {k!r}.", "k")
    ranked = logits.argsort(1, descending=True)
    wanted = ranked[:, 1 : k + 1]  # [B, k]
    classes = _pool_classes(model, pool, pool_labels, batch_size)
    eligible = (classes.view(1, -1, 1) == wanted.unsqueeze(1)).any(2) & _not_duplicate(inputs, pool, tolerance)
    idx = _draw(eligible, n_references, as_generator(generator), "runner_up")
    return _finish(pool, idx, classes, ranked[:, 0], "runner_up")


def from_class(
    model: Callable[..., Any],
    inputs: Tensor,
    pool: Tensor,
    reference_class: int,
    n_references: int | None = None,
    pool_labels: Tensor | None = None,
    generator: torch.Generator | int | None = None,
    tolerance: float = 1e-6,
    batch_size: int = 64,
) -> ReferenceSet:
    """References from one user-chosen class (IG2's wafer-map recipe: the "normal" class).

    Args as :func:`other_class`; ``reference_class``: the class index the references must have.
    """
    _check(inputs, pool, batch_size, tolerance)
    if isinstance(reference_class, bool) or not isinstance(reference_class, int) or reference_class < 0:
        raise InputValidationError(
            f"`reference_class` must be a non-negative int, got {reference_class!r}.", "reference_class"
        )
    classes = _pool_classes(model, pool, pool_labels, batch_size)
    eligible = (classes == reference_class).view(1, -1) & _not_duplicate(inputs, pool, tolerance)
    idx = _draw(eligible, n_references, as_generator(generator), "class")
    explicand, _ = _explicand_classes(model, inputs, None, batch_size)
    return _finish(pool, idx, classes, explicand, "class")


def select_references(
    model: Callable[..., Any], inputs: Tensor, pool: Tensor, strategy: str = "other_class", **kwargs: Any
) -> ReferenceSet:
    """Dispatch to :func:`other_class`, :func:`runner_up` (``k=``) or :func:`from_class`
    (``strategy="class"``, ``reference_class=``)."""
    table = {"other_class": other_class, "runner_up": runner_up, "class": from_class}
    if strategy not in table:
        raise InputValidationError(f"`strategy` must be one of {sorted(table)}, got {strategy!r}.", "strategy")
    return table[strategy](model, inputs, pool, **kwargs)


__all__ = ["ReferenceSet", "from_class", "other_class", "runner_up", "select_references"]
