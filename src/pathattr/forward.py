"""Forward-function handling shared by every method.

:class:`ModelFunction` wraps a user's ``forward_func`` (an ``nn.Module`` or any callable) together with its
``additional_forward_args`` and ``target``. It evaluates *rows*, i.e. model inputs that belong to one of the
``B`` examples (``example_index`` says which), so that engines can batch points of many examples, baselines
and steps into one forward call. It also counts forward/backward passes for the cost report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputValidationError, NoGradientError, NonFiniteError, TargetError, check_finite

TargetType = None | int | Sequence[int] | Tensor | Callable[[Tensor], Tensor]
TensorOrTuple = Tensor | tuple[Tensor, ...]


# ----------------------------------------------------------------------------------------------- inputs
def as_tuple(inputs: TensorOrTuple, argument: str = "inputs") -> tuple[Tensor, ...]:
    """Return ``inputs`` as a tuple of tensors and check that they form a valid batch.

    Every tensor must be floating point, non-empty, finite and share the batch size in dim 0.
    """
    items = inputs if isinstance(inputs, tuple) else (inputs,)
    if len(items) == 0:
        raise InputValidationError(f"`{argument}` is an empty tuple; expected at least one tensor.", argument)
    batch = None
    for i, t in enumerate(items):
        name = argument if len(items) == 1 else f"{argument}[{i}]"
        if not isinstance(t, Tensor):
            raise InputValidationError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}.", argument)
        if not t.is_floating_point():
            raise InputValidationError(
                f"`{name}` has dtype {t.dtype}; attributions need a floating-point tensor "
                "(e.g. embed token ids first and attribute the embeddings).",
                argument,
            )
        if t.ndim == 0:
            raise InputValidationError(f"`{name}` is a scalar; expected a batch with dim 0 = examples.", argument)
        if batch is None:
            batch = t.shape[0]
        elif t.shape[0] != batch:
            raise InputValidationError(
                f"`{name}` has batch size {t.shape[0]}, but the first input has {batch}.", argument
            )
        check_finite(t, name)
    if batch == 0:
        raise InputValidationError(f"`{argument}` has batch size 0.", argument)
    return tuple(items)


def restore_structure(values: Sequence[Tensor], like: TensorOrTuple) -> TensorOrTuple:
    """Return ``values`` as a single tensor if ``like`` is a tensor, else as a tuple."""
    return tuple(values) if isinstance(like, tuple) else values[0]


# ----------------------------------------------------------------------------------------------- cost
@dataclass
class Cost:
    """What an explanation cost.

    ``forward_rows``/``backward_rows`` count model evaluations (examples x points); ``*_calls`` count batched
    calls. ``peak_memory_bytes`` is the CUDA allocator's peak during the call (``None`` on CPU, where PyTorch
    exposes no allocator statistics).
    """

    forward_calls: int = 0
    forward_rows: int = 0
    backward_calls: int = 0
    backward_rows: int = 0
    wall_seconds: float = 0.0
    peak_memory_bytes: int | None = None

    def add(self, other: Cost) -> None:
        """Add another cost record (used by wrappers such as NoiseTunnel)."""
        self.forward_calls += other.forward_calls
        self.forward_rows += other.forward_rows
        self.backward_calls += other.backward_calls
        self.backward_rows += other.backward_rows
        if other.peak_memory_bytes is not None:
            self.peak_memory_bytes = max(self.peak_memory_bytes or 0, other.peak_memory_bytes)


# ----------------------------------------------------------------------------------------------- hygiene
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks",
)


def find_modules(forward_func: Any) -> list[nn.Module]:
    """The ``nn.Module`` objects reachable from ``forward_func`` (itself, or the owner of a bound method)."""
    found: list[nn.Module] = []
    for candidate in (forward_func, getattr(forward_func, "__self__", None), getattr(forward_func, "func", None)):
        if isinstance(candidate, nn.Module) and all(candidate is not m for m in found):
            found.append(candidate)
    return found


@contextlib.contextmanager
def model_guard(forward_func: Any, eval_mode: bool = True) -> Iterator[None]:
    """Put the model in the state attribution needs and restore it exactly afterwards.

    Inside the block every submodule is in eval mode (if ``eval_mode``) and no parameter requires grad (only
    input gradients are needed; this also saves memory). On exit, also after an exception, the train/eval flag
    of every submodule, every parameter's ``requires_grad`` and every hook dictionary are restored to what
    they were, so a hook left behind by a failing method is removed and a removed hook is put back.
    """
    modules = find_modules(forward_func)
    saved_training: list[tuple[nn.Module, bool]] = []
    saved_hooks: list[tuple[nn.Module, str, dict]] = []
    saved_params: list[tuple[nn.Parameter, bool]] = []
    seen: set[int] = set()
    for root in modules:
        for module in root.modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            saved_training.append((module, module.training))
            for name in _HOOK_DICTS:
                hooks = getattr(module, name, None)
                if hooks is not None:
                    saved_hooks.append((module, name, dict(hooks)))
        for p in root.parameters():
            saved_params.append((p, p.requires_grad))
    try:
        for module, _ in saved_training:
            if eval_mode:
                module.training = False
        for p, _ in saved_params:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for module, training in saved_training:
            module.training = training
        for p, flag in saved_params:
            p.requires_grad_(flag)
        for module, name, hooks in saved_hooks:
            current = getattr(module, name)
            current.clear()
            current.update(hooks)


# ----------------------------------------------------------------------------------------------- model
@dataclass
class ModelFunction:
    """A forward function bound to its extra arguments and target, evaluated on rows of examples.

    Args:
        forward_func: ``nn.Module`` or callable mapping ``(*inputs, *additional_forward_args)`` to outputs of
            shape ``[n]`` or ``[n, C]`` (any shape if ``target`` is a callable).
        batch_size: number of examples ``B``.
        additional_forward_args: extra positional arguments appended after the inputs. A tensor whose dim 0
            equals ``B`` is per-example and is gathered for every row; anything else is passed unchanged.
        cost: the :class:`Cost` record that calls are counted in.
    """

    forward_func: Callable[..., Any]
    batch_size: int
    additional_forward_args: Any = None
    cost: Cost = field(default_factory=Cost)
    target: Tensor | Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if not callable(self.forward_func):
            raise InputValidationError("`forward_func` must be callable (an nn.Module or function).", "forward_func")
        args = self.additional_forward_args
        if args is None:
            args = ()
        elif not isinstance(args, tuple):
            args = (args,)
        self._args: tuple = args

    def _row_args(self, example_index: Tensor | None) -> tuple:
        if example_index is None:
            return self._args
        out = []
        for a in self._args:
            if isinstance(a, Tensor) and a.ndim > 0 and a.shape[0] == self.batch_size:
                out.append(a.index_select(0, example_index.to(a.device)))
            else:
                out.append(a)
        return tuple(out)

    def forward(self, inputs: Sequence[Tensor], example_index: Tensor | None = None) -> Any:
        """Raw model output for rows ``inputs`` (``example_index[i]`` = example of row ``i``)."""
        self.cost.forward_calls += 1
        self.cost.forward_rows += int(inputs[0].shape[0])
        return self.forward_func(*inputs, *self._row_args(example_index))

    # ------------------------------------------------------------------ targets
    def resolve_target(self, target: TargetType, inputs: Sequence[Tensor]) -> Tensor:
        """Fix the target once, validate it and return ``f_c(x)`` per example (shape ``[B]``, no graph).

        ``None`` on a ``[B, C]`` output selects the predicted class (argmax at ``inputs``) for ``C > 1``.
        An int applies to every example; a list or 1-D tensor gives one class per example; a callable maps
        the raw output of ``n`` rows to ``n`` scalars.
        """
        with torch.no_grad():
            output = self.forward(inputs)
        if callable(target) and not isinstance(target, Tensor):
            self.target = target
            return self.select(output, None)
        if not isinstance(output, Tensor):
            raise InputValidationError(
                f"`forward_func` returned {type(output).__name__}; return a tensor or pass a callable `target` "
                "that extracts one scalar per example.",
                "forward_func",
            )
        b = self.batch_size
        if output.ndim == 0 or output.shape[0] != b or output.ndim > 2:
            raise InputValidationError(
                f"`forward_func` returned shape {tuple(output.shape)}; expected [B] or [B, C] with B={b} "
                "(or pass a callable `target`).",
                "forward_func",
            )
        if output.ndim == 1:
            if target not in (None, 0) and not (isinstance(target, (list, tuple, Tensor)) and _all_zero(target)):
                raise TargetError(
                    "`target` must be None (or 0) for a model with one output per example.", "target"
                )
            self.target = None
        else:
            n_classes = output.shape[1]
            if target is None:
                index = output.argmax(dim=1) if n_classes > 1 else torch.zeros(b, dtype=torch.long)
            elif isinstance(target, bool):
                raise TargetError("`target` must be an int, list, tensor or callable, not bool.", "target")
            elif isinstance(target, int):
                index = torch.full((b,), target, dtype=torch.long)
            elif isinstance(target, (list, tuple, Tensor)):
                index = torch.as_tensor(target)
                if index.is_floating_point() or index.dtype == torch.bool:
                    raise TargetError(f"`target` must hold integer class indices, got {index.dtype}.", "target")
                index = index.reshape(-1).long()
                if index.numel() == 1:
                    index = index.expand(b).clone()
                if index.numel() != b:
                    raise TargetError(
                        f"`target` has {index.numel()} entries; expected one per example ({b}).", "target"
                    )
            else:
                raise TargetError(
                    f"`target` must be None, int, list, 1-D tensor or callable, got {type(target).__name__}.",
                    "target",
                )
            if bool((index < 0).any()) or bool((index >= n_classes).any()):
                raise TargetError(
                    f"`target` {index.tolist()[:8]} is out of range for {n_classes} output classes.", "target"
                )
            self.target = index.to(output.device)
        return self.select(output, None)

    def select(self, output: Any, example_index: Tensor | None) -> Tensor:
        """The target scalar of every row: shape ``[n]``."""
        if self.target is not None and not isinstance(self.target, Tensor):
            values = self.target(output)
            if not isinstance(values, Tensor) or values.ndim != 1:
                raise TargetError("a callable `target` must return a 1-D tensor, one value per row.", "target")
        elif output.ndim == 1:
            values = output
        else:
            index = self.target if example_index is None else self.target[example_index.to(self.target.device)]
            values = output.gather(1, index.view(-1, 1)).squeeze(1)
        check_finite(values, "forward_func", "outputs")
        return values

    # ------------------------------------------------------------------ evaluation
    def outputs(self, inputs: Sequence[Tensor], example_index: Tensor | None) -> Tensor:
        """Target outputs without gradients, shape ``[n]``."""
        with torch.no_grad():
            return self.select(self.forward(inputs, example_index), example_index)

    def gradients(
        self, inputs: Sequence[Tensor], example_index: Tensor | None
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        """Gradients of the target output w.r.t. every input row, and the outputs themselves."""
        points = tuple(t.detach().requires_grad_(True) for t in inputs)
        with torch.enable_grad():
            values = self.select(self.forward(points, example_index), example_index)
            grads = self.backward(values, points)
        return grads, values.detach()

    def backward(self, values: Tensor, points: Sequence[Tensor], retain_graph: bool = False) -> tuple[Tensor, ...]:
        """``d sum(values) / d points`` with checks: no graph -> NoGradientError, NaN -> NonFiniteError."""
        if not values.requires_grad:
            raise NoGradientError(
                "the model output does not depend on `inputs` (no gradient flows back); check that the forward "
                "function uses its inputs and does not detach them or run under torch.no_grad().",
                "inputs",
            )
        self.cost.backward_calls += 1
        self.cost.backward_rows += int(points[0].shape[0])
        grads = torch.autograd.grad(values.sum(), points, allow_unused=True, retain_graph=retain_graph)
        if all(g is None for g in grads):
            raise NoGradientError(
                "the model output does not depend on `inputs` (autograd found no path from the output back to any "
                "input); check that the forward function does not detach its inputs.",
                "inputs",
            )
        out = []
        for i, (g, p) in enumerate(zip(grads, points)):
            if g is None:
                g = torch.zeros_like(p)
            if not bool(torch.isfinite(g).all()):
                raise NonFiniteError(
                    f"the gradient w.r.t. `inputs{'' if len(points) == 1 else f'[{i}]'}` contains NaN or inf; "
                    "the model is not differentiable at some path point.",
                    "inputs",
                )
            out.append(g)
        return tuple(out)


def _all_zero(target: Any) -> bool:
    return bool((torch.as_tensor(target) == 0).all())


# ----------------------------------------------------------------------------------------------- timing
@contextlib.contextmanager
def track_cost(cost: Cost, device: torch.device) -> Iterator[None]:
    """Measure wall time (and the CUDA peak memory on CUDA devices) of the enclosed block into ``cost``."""
    cuda = device.type == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        if cuda:
            torch.cuda.synchronize(device)
            cost.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
        cost.wall_seconds += time.perf_counter() - start
