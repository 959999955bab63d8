"""Shared pieces of the metrics: the result base class, argument checks, channel reductions, ranks, the
trapezoid rule and chunked scoring of model outputs."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputValidationError, TargetError, check_finite
from ..forward import ModelFunction, all_finite, model_guard
from ..planner import chunk_ranges, plan_chunks, planner_key, resolve_chunk_size, row_numel

#: allowed score directions of a metric
DIRECTIONS = ("higher", "lower", "zero", "none")

#: channel reductions that turn ``[B, C, *S]`` attributions into one value per location ``[B, *S]``
CHANNEL_REDUCTIONS = ("sum", "abs_sum", "abs_of_sum", "mean", "max_abs")


@dataclass(kw_only=True)
class MetricResult:
    """What every metric returns.

    Attributes:
        name: the metric's name.
        scores: one score per example, shape ``[B]`` (float64).
        direction: ``"higher"`` (higher is better), ``"lower"``, ``"zero"`` (closer to zero is better) or
            ``"none"`` (descriptive, no preferred direction).
        hyperparameters: every setting that influenced the scores.
    """

    name: str
    scores: Tensor
    direction: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool | None:
        """True / False for ``"higher"`` / ``"lower"``; None otherwise (see :attr:`direction`)."""
        return {"higher": True, "lower": False}.get(self.direction)

    def mean(self) -> float:
        """Mean score over examples (NaN entries, e.g. skipped images, are ignored)."""
        s = self.scores.to(torch.float64)
        return float(s.nanmean()) if s.numel() else float("nan")

    def summary(self) -> str:
        """A one-line description for logs."""
        settings = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        head = f"{self.name}: mean {self.mean():.6g} over {self.scores.numel()} examples ({self.direction} is better)"
        return head + (f"; {settings}" if settings else "")


class Metric:
    """Class form of a metric (torchmetrics-style): hyperparameters at construction, data at call.

    Subclasses set :attr:`function` (the functional metric) and :attr:`higher_is_better`. Keyword arguments
    given at construction are passed to every call; keyword arguments given at call time override them.
    Example: ``Deletion(n_steps=50, substrate="blur")(model, x, attributions)``.
    """

    #: the functional form this class wraps
    function: Callable[..., MetricResult]
    #: the score direction: True (higher is better), False (lower) or None (closer to zero / descriptive)
    higher_is_better: bool | None = None

    def __init__(self, **hyperparameters: Any) -> None:
        import inspect

        params = inspect.signature(type(self).function).parameters
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for key in hyperparameters:
            if key not in params and not takes_kwargs:
                raise InputValidationError(
                    f"{type(self).__name__} got an unknown hyperparameter `{key}`.", key
                )
        self.hyperparameters = dict(hyperparameters)

    def __call__(self, *args: Any, **kwargs: Any) -> MetricResult:
        return type(self).function(*args, **{**self.hyperparameters, **kwargs})

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({settings})"


# ------------------------------------------------------------------------------------------- argument checks
def to_tensor(
    value: Any, argument: str, *, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> Tensor:
    """Accept a tensor or a NumPy array (or nested lists) and return a detached tensor."""
    if isinstance(value, Tensor):
        t = value.detach()
    elif isinstance(value, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, (list, tuple, int, float)) and not isinstance(value, bool):
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as e:
            raise InputValidationError(f"`{argument}` could not be converted to a tensor: {e}", argument) from None
    else:
        raise InputValidationError(
            f"`{argument}` must be a torch.Tensor or a numpy.ndarray, got {type(value).__name__}.", argument
        )
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    return t


def float_batch(value: Any, argument: str, *, min_ndim: int = 2) -> Tensor:
    """A floating-point, finite, non-empty batch tensor ``[B, ...]`` (NumPy accepted)."""
    t = to_tensor(value, argument)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim < min_ndim:
        raise InputValidationError(
            f"`{argument}` has shape {tuple(t.shape)}; expected at least {min_ndim} dims with dim 0 = examples.",
            argument,
        )
    if t.shape[0] == 0:
        raise InputValidationError(f"`{argument}` has batch size 0.", argument)
    if not all_finite(t):  # one summing pass; the elementwise test (and its error) only for a non-finite sum
        check_finite(t, argument)
    return t


def as_float_tuple(value: Any, argument: str) -> tuple[Tensor, ...]:
    """A tensor / array or a tuple of them, as a tuple of float batch tensors with a common batch size."""
    items = value if isinstance(value, tuple) else (value,)
    if not items:
        raise InputValidationError(f"`{argument}` is an empty tuple.", argument)
    out = tuple(
        float_batch(v, argument if len(items) == 1 else f"{argument}[{i}]", min_ndim=1) for i, v in enumerate(items)
    )
    b = out[0].shape[0]
    for i, t in enumerate(out):
        if t.shape[0] != b:
            raise InputValidationError(f"`{argument}[{i}]` has batch size {t.shape[0]}, expected {b}.", argument)
    return out


def positive_int(value: Any, argument: str, *, allow_none: bool = False) -> int | None:
    """Validate a positive int (or None if allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputValidationError(f"`{argument}` must be a positive int, got {value!r}.", argument)
    return int(value)


def non_negative_float(value: Any, argument: str) -> float:
    """Validate a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputValidationError(f"`{argument}` must be a number, got {type(value).__name__}.", argument)
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise InputValidationError(f"`{argument}` must be finite and >= 0, got {value}.", argument)
    return value


def choice(value: Any, options: tuple[str, ...], argument: str) -> str:
    """Validate a string option."""
    if not isinstance(value, str) or value not in options:
        raise InputValidationError(f"`{argument}` must be one of {list(options)}, got {value!r}.", argument)
    return value


def resolve_k(k: Any, n: int, argument: str = "k") -> int:
    """``k`` as a count out of ``n``: a positive int ``<= n``, or a fraction in ``(0, 1]`` (``floor(k * n)``,
    at least 1)."""
    if isinstance(k, bool):
        raise InputValidationError(f"`{argument}` must be an int or a fraction, not bool.", argument)
    if isinstance(k, (int, np.integer)):
        if not 1 <= k <= n:
            raise InputValidationError(f"`{argument}` must lie in [1, {n}], got {k}.", argument)
        return int(k)
    if isinstance(k, (float, np.floating)):
        if not 0 < k <= 1:
            raise InputValidationError(f"a fractional `{argument}` must lie in (0, 1], got {k}.", argument)
        return max(1, int(math.floor(float(k) * n + 1e-9)))
    raise InputValidationError(f"`{argument}` must be an int or a float fraction, got {type(k).__name__}.", argument)


# ------------------------------------------------------------------------------------------- reductions
def reduce_channels(a: Tensor, reduction: str, argument: str = "channel_reduction") -> Tensor:
    """Reduce ``[B, C, *S]`` to ``[B, *S]`` over the channel axis 1.

    ``"sum"``: ``sum_c A``; ``"abs_sum"``: ``sum_c |A|``; ``"abs_of_sum"``: ``|sum_c A|`` (PAIR's notebook);
    ``"mean"``: ``mean_c A``; ``"max_abs"``: ``max_c |A|``.
    """
    reduction = choice(reduction, CHANNEL_REDUCTIONS, argument)
    if reduction == "sum":
        return a.sum(1)
    if reduction == "abs_sum":
        return a.abs().sum(1)
    if reduction == "abs_of_sum":
        return a.sum(1).abs()
    if reduction == "mean":
        return a.mean(1)
    return a.abs().amax(1)


def align_to_mask(attributions: Tensor, mask: Tensor, channel_reduction: str, argument: str = "attributions") -> Tensor:
    """Bring attributions to the mask's shape ``[B, *S]``: reduce a channel axis 1 if the attributions have one
    more axis than the mask (or the mask has a singleton channel axis)."""
    a = attributions
    if a.shape[0] != mask.shape[0]:
        raise InputValidationError(
            f"`{argument}` has batch size {a.shape[0]} but the mask has {mask.shape[0]}.", argument
        )
    if a.shape == mask.shape:
        return a
    if a.ndim == mask.ndim + 1 and a.shape[2:] == mask.shape[1:]:
        return reduce_channels(a, channel_reduction)
    if a.ndim == mask.ndim and mask.shape[1] == 1 and a.shape[2:] == mask.shape[2:]:
        return reduce_channels(a, channel_reduction).unsqueeze(1)
    raise InputValidationError(
        f"`{argument}` has shape {tuple(a.shape)}, which does not fit the mask shape {tuple(mask.shape)}: expected "
        "the same shape, or one extra channel axis 1 that is reduced with `channel_reduction`.",
        argument,
    )


def as_mask(value: Any, argument: str) -> Tensor:
    """A boolean mask tensor (NumPy accepted; nonzero = True)."""
    m = to_tensor(value, argument)
    if m.dtype != torch.bool:
        if m.is_floating_point():
            check_finite(m, argument)
        m = m != 0
    if m.ndim < 2:
        raise InputValidationError(f"`{argument}` must have a batch axis 0 and at least one more axis.", argument)
    return m


# ------------------------------------------------------------------------------------------- ranks
def sort_descending(values: Tensor) -> Tensor:
    """Indices that sort each row of ``[B, N]`` by decreasing value; ties keep the lower index first."""
    return torch.sort(values, dim=1, descending=True, stable=True).indices


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of each row of ``[B, N]`` with ties given their average rank (SciPy ``rankdata``)."""
    b, n = values.shape
    sorted_values, order = torch.sort(values, dim=1, stable=True)
    positions = torch.arange(n, device=values.device).expand(b, n)
    new_group = torch.ones_like(sorted_values, dtype=torch.bool)
    new_group[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    start = torch.where(new_group, positions, torch.zeros_like(positions)).cummax(1).values
    last_of_group = torch.ones_like(new_group)
    last_of_group[:, :-1] = new_group[:, 1:]
    rev = torch.where(last_of_group, positions, torch.full_like(positions, n)).flip(1).cummin(1).values.flip(1)
    avg = (start + rev).to(torch.float64) / 2 + 1
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of ``[B, N]`` tensors (float64); NaN where a row is constant."""
    a = a.to(torch.float64) - a.to(torch.float64).mean(1, keepdim=True)
    b = b.to(torch.float64) - b.to(torch.float64).mean(1, keepdim=True)
    denom = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return (a * b).sum(1) / denom


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Spearman rank correlation of ``[B, N]`` tensors (average ranks for ties, as SciPy)."""
    return pearson(average_ranks(a), average_ranks(b))


# ------------------------------------------------------------------------------------------- curves
def trapezoid(y: Tensor, x: Tensor | None = None, dim: int = -1) -> Tensor:
    """Trapezoid rule along ``dim`` (NumPy's removed ``trapz``; unit spacing if ``x`` is None)."""
    y = y.to(torch.float64)
    y0 = y.narrow(dim, 0, y.shape[dim] - 1)
    y1 = y.narrow(dim, 1, y.shape[dim] - 1)
    if x is None:
        return ((y0 + y1) / 2).sum(dim)
    x = x.to(torch.float64)
    dx = x.narrow(-1, 1, x.shape[-1] - 1) - x.narrow(-1, 0, x.shape[-1] - 1)
    return ((y0 + y1) / 2 * dx).sum(dim)


# ------------------------------------------------------------------------------------------- model scores
OUTPUT_KINDS = ("probability", "logit")


def target_scores(model: ModelFunction, raw: Any, example_index: Tensor, output: str) -> Tensor:
    """Score of the fixed target for each row: the target output itself (``"logit"``) or its softmax
    probability over classes (``"probability"``; sigmoid for single-output models)."""
    if output == "logit":
        return model.select(raw, example_index)
    if model.target is not None and not isinstance(model.target, Tensor):
        raise TargetError(
            "a callable `target` selects a raw output; use output='logit' with it (or return probabilities "
            "from `forward_func` and use output='logit').",
            "target",
        )
    if raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1):
        values = torch.sigmoid(raw.reshape(-1))
    else:
        probs = torch.softmax(raw, dim=1, dtype=torch.float64)  # = softmax(raw.to(float64)), one op
        index = model.target[example_index.to(model.target.device)]
        values = probs.gather(1, index.view(-1, 1)).squeeze(1)
    if not all_finite(values):
        check_finite(values, "forward_func", "outputs")
    return values


def chunk_size_for(
    batch_size: int | None, n_rows: int, row_numel: int, argument: str = "internal_batch_size"
) -> int:
    """Rows per forward call: ``internal_batch_size`` if given (validated), else the engine's memory cap."""
    positive_int(batch_size, argument, allow_none=True)
    return resolve_chunk_size(batch_size, n_rows, row_numel)


class _Deprecated:
    """Default of a deprecated argument (tells "not given" apart from an explicit ``None``)."""

    def __repr__(self) -> str:
        return "<deprecated>"


#: default of the deprecated ``batch_size`` argument of the metrics
DEPRECATED = _Deprecated()
_warned_batch_size: set[str] = set()


def internal_batch_size_alias(function: str, internal_batch_size: Any, batch_size: Any) -> Any:
    """Resolve the deprecated ``batch_size`` alias of ``internal_batch_size`` for the metric ``function``.

    Warns (``FutureWarning``, shown to users by default) the first time in the process that ``function`` gets
    ``batch_size``; giving both with different values raises.
    """
    if batch_size is DEPRECATED:
        return internal_batch_size
    if function not in _warned_batch_size:
        _warned_batch_size.add(function)
        warnings.warn(
            f"`batch_size` of pathattr.metrics.{function} is deprecated and will be removed; use "
            "`internal_batch_size` (the name the methods use).",
            FutureWarning,
            stacklevel=3,
        )
    if internal_batch_size is not None and internal_batch_size != batch_size:
        raise InputValidationError(
            f"`internal_batch_size`={internal_batch_size!r} and its deprecated alias `batch_size`={batch_size!r} "
            "disagree; give only `internal_batch_size`.",
            "internal_batch_size",
        )
    return batch_size


def chunks(n_rows: int, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges of at most ``size`` rows."""
    return chunk_ranges(n_rows, size)


def scores_in_chunks(
    model: ModelFunction,
    n_rows: int,
    make_rows: Callable[[int, int], tuple[tuple[Tensor, ...], Tensor]],
    chunk: int,
    output: str,
) -> Tensor:
    """Evaluate ``n_rows`` rows built lazily by ``make_rows(start, stop) -> (rows, example_index)`` in chunks
    of ``chunk`` rows and return the target score of each row ``[n_rows]`` (float64)."""
    out = []
    with torch.no_grad():
        for start, stop in chunks(n_rows, chunk):
            rows, index = make_rows(start, stop)
            raw = model.forward(rows, index)
            out.append(target_scores(model, raw, index, output).to(torch.float64))
    return torch.cat(out)


def as_target(target: Any) -> Any:
    """A target as the methods take it: NumPy arrays become tensors and NumPy integers Python ints (anything
    else unchanged; :meth:`ModelFunction.resolve_target` validates it)."""
    if isinstance(target, np.ndarray):
        if target.dtype == object:
            raise TargetError("`target` must hold integer class indices, got a NumPy object array.", "target")
        return torch.from_numpy(np.ascontiguousarray(target))
    if isinstance(target, np.integer):
        return int(target)
    if isinstance(target, np.bool_):
        raise TargetError("`target` must be an int, list, tensor or callable, not bool.", "target")
    return target


def guard(forward_func: Any, model: Any = None) -> contextlib.AbstractContextManager[None]:
    """:func:`pathattr.forward.model_guard` for a metric: eval mode, frozen parameters, buffers, hooks and the
    global RNG restored afterwards.

    ``model``: the ``nn.Module`` (or a list of them) that ``forward_func`` uses, for forward functions whose
    modules pathattr cannot find (see :func:`pathattr.forward.find_modules`); ``()``: it uses none.
    """
    return model_guard(forward_func, model=model)


def resolve_target_chunked(model: ModelFunction, target: Any, inputs: tuple[Tensor, ...], chunk: int) -> Tensor:
    """Fix ``model.target`` like :meth:`ModelFunction.resolve_target` (None = predicted class), evaluating the
    ``B`` examples in chunks of at most ``chunk`` rows, and return ``f_c(x)`` ``[B]`` (no graph)."""
    target = as_target(target)
    b = inputs[0].shape[0]
    index = torch.arange(b, device=inputs[0].device)
    with torch.no_grad():
        try:
            raws = [model.forward(tuple(t[lo:hi] for t in inputs), index[lo:hi]) for lo, hi in chunks(b, chunk)]
        except Exception as err:  # one example without its batch axis: name `inputs`, not the model's error
            if model._accepts_unbatched(inputs, any_output=True):
                raise model._unbatched_error(inputs) from err
            raise
    if callable(target) and not isinstance(target, Tensor):
        model.target = target
        return torch.cat([model.select(r, index[lo:hi]) for r, (lo, hi) in zip(raws, chunks(b, chunk))])
    return _fix_target(model, target, raws, b)


def _fix_target(model: ModelFunction, target: Any, raws: list[Any], b: int) -> Tensor:
    """Fix ``model.target`` (not callable) from the raw outputs ``raws`` of the ``B`` examples, in order, and
    return ``f_c(x)`` ``[B]``."""
    if not all(isinstance(r, Tensor) for r in raws):
        raise InputValidationError(
            "`forward_func` must return a tensor (or pass a callable `target` that extracts one scalar per row).",
            "forward_func",
        )
    raw = torch.cat(raws) if len(raws) > 1 else raws[0]
    fixed = ModelFunction(lambda *_: raw, b)
    values = fixed.resolve_target(target, (raw,))
    model.target = fixed.target
    return values


#: raw model outputs (elements) kept before they are scored together by :func:`scores_with_target`
HELD_OUTPUT_ELEMENTS = 1 << 20


def scores_with_target(
    model: ModelFunction,
    target: Any,
    inputs: tuple[Tensor, ...],
    n_rows: int,
    make_rows: Callable[[int, int], tuple[tuple[Tensor, ...], Tensor]],
    internal_batch_size: int | None,
    output: str,
) -> tuple[Tensor, int]:
    """Fix ``model.target`` (as :func:`resolve_target_chunked`) and return the target score of each of ``n_rows``
    rows ``[n_rows]`` (float64) and the largest number of rows per forward call.

    The first ``B`` rows built by ``make_rows(start, stop) -> (rows, example_index)`` must be the examples
    ``inputs`` themselves, in order: the target (e.g. the predicted class) is fixed from their outputs, so the
    examples are not evaluated twice, and the other rows of the chunks that hold them are scored once it is fixed.
    Chunks follow :func:`pathattr.planner.plan_chunks`: ``internal_batch_size`` rows, or with None the automatic
    plan of forward-only rows (remembered per model and row layout, as the methods' ``"outputs"`` plans).
    """
    target = as_target(target)
    b = inputs[0].shape[0]
    resolved = callable(target) and not isinstance(target, Tensor)
    if resolved:
        model.target = target
    key = planner_key(model, inputs, "outputs")
    x_raws: list[Any] = []
    held: list[tuple[Any, Tensor]] = []  # raw outputs waiting to be scored (all at once: fewer small ops)
    held_numel = 0
    out: list[Tensor] = []
    largest = 0

    def score_held() -> None:
        nonlocal held_numel
        if not held:
            return
        if len(held) == 1 or callable(model.target):
            out.extend(target_scores(model, r, i, output).to(torch.float64) for r, i in held)
        else:  # scores are computed row by row: one call on the concatenated outputs gives the same values
            raw = torch.cat([r for r, _ in held])
            out.append(target_scores(model, raw, torch.cat([i for _, i in held]), output).to(torch.float64))
        held.clear()
        held_numel = 0

    with torch.no_grad():
        for lo, hi in plan_chunks(internal_batch_size, n_rows, row_numel(inputs), key):
            largest = max(largest, hi - lo)
            rows, index = make_rows(lo, hi)
            try:
                raw = model.forward(rows, index)
            except Exception as err:  # one example without its batch axis: name `inputs`, not the model's error
                if lo == 0 and model._accepts_unbatched(inputs, any_output=True):
                    raise model._unbatched_error(inputs) from err
                raise
            held.append((raw, index))
            if not resolved:
                if not (isinstance(raw, Tensor) and raw.ndim in (1, 2) and raw.shape[0] == hi - lo):
                    # an output the target cannot be fixed from: evaluating the examples alone gives the usual error
                    resolve_target_chunked(model, target, inputs, max(1, hi - lo))
                    resolved = True
                    score_held()
                    continue
                if lo < b:
                    x_raws.append(raw[: min(hi, b) - lo])
                if hi < b:
                    continue
                x_raw = x_raws[0]
                if type(target) is int and len(x_raws) == 1 and x_raw.ndim == 2 and 0 <= target < x_raw.shape[1]:
                    # the common case, fixed as ModelFunction.resolve_target would (its checks pass) without its
                    # small ops; the outputs' finiteness is checked with the scores
                    model.target = torch.full((b,), target, dtype=torch.long, device=x_raw.device)
                else:
                    _fix_target(model, target, x_raws, b)
                resolved = True
                x_raws.clear()
            held_numel += raw.numel() if isinstance(raw, Tensor) else HELD_OUTPUT_ELEMENTS
            if held_numel >= HELD_OUTPUT_ELEMENTS or callable(model.target):
                score_held()
    score_held()
    return (torch.cat(out) if len(out) > 1 else out[0]), largest


def describe(value: Any) -> Any:
    """A compact, printable description of a hyperparameter value (tensors by shape)."""
    if isinstance(value, Tensor):
        if value.numel() <= 8:
            return value.tolist()
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, np.ndarray):
        return describe(torch.from_numpy(value))
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or type(value).__name__
    return value
