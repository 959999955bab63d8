"""Forward-function handling shared by every method.

:class:`ModelFunction` wraps a user's ``forward_func`` (an ``nn.Module`` or any callable) together with its
``additional_forward_args`` and ``target``. It evaluates *rows*, i.e. model inputs that belong to one of the
``B`` examples (``example_index`` says which), so that engines can batch points of many examples, baselines
and steps into one forward call. It also counts forward/backward passes for the cost report.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import types
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputValidationError, NoGradientError, NonFiniteError, TargetError, all_finite, check_finite
from .validation import normalize_target

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
    out: list[Tensor] = []
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
        if t.is_inference():  # an inference-mode tensor cannot take part in autograd: use a normal copy
            with torch.inference_mode(False):
                t = t.clone()
        if batch is None:
            batch = t.shape[0]
        elif t.shape[0] != batch:
            raise InputValidationError(
                f"`{name}` has batch size {t.shape[0]}, but the first input has {batch}.", argument
            )
        if not all_finite(t):
            check_finite(t, name)
        out.append(t)
    if batch == 0:
        raise InputValidationError(f"`{argument}` has batch size 0.", argument)
    return tuple(out)


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


class ModelNotFoundWarning(UserWarning):
    """pathattr found no ``nn.Module`` behind a forward function, so it cannot guard the model's state."""


#: what ``model=`` accepts: None (search ``forward_func``), one module, or several (an empty tuple: "no modules,
#: do not warn")
ModelsType = None | nn.Module | Sequence[nn.Module]

_MAX_DEPTH = 4
_warned: weakref.WeakSet | set = weakref.WeakSet()
_warned_ids: set[int] = set()


def _explicit_modules(model: Any) -> list[nn.Module]:
    if isinstance(model, nn.Module):
        return [model]
    if isinstance(model, (list, tuple)) and all(isinstance(m, nn.Module) for m in model):
        return list(model)
    raise InputValidationError(
        f"`model` must be an nn.Module, a list/tuple of modules or None, got {type(model).__name__}.", "model"
    )


def _code_names(code: Any, depth: int = 0) -> set[str]:
    """Global names a code object (and the code objects nested in it) refers to."""
    names = set(code.co_names)
    if depth < 2:
        for const in code.co_consts:
            if hasattr(const, "co_names"):
                names |= _code_names(const, depth + 1)
    return names


#: containers found on the way are searched only up to this many items (a model is not hidden in a data set)
_MAX_ITEMS = 64
_OPAQUE = (type, types.ModuleType, types.BuiltinFunctionType, Tensor, str, bytes, int, float, complex, bool)


def _children(obj: Any) -> list[Any]:
    """Objects a callable may use its modules through (cheap introspection only, no calls)."""
    out: list[Any] = []
    for attr in ("__self__", "__wrapped__", "__func__"):
        value = getattr(obj, attr, None)
        if value is not None:
            out.append(value)
    if isinstance(obj, functools.partial):
        out.append(obj.func)
        out.extend(obj.args)
        out.extend(obj.keywords.values())
    closure = getattr(obj, "__closure__", None)
    if closure:
        for cell in closure:
            with contextlib.suppress(ValueError):  # an empty cell
                out.append(cell.cell_contents)
    code, glob = getattr(obj, "__code__", None), getattr(obj, "__globals__", None)
    if code is not None and isinstance(glob, dict):
        for name in sorted(_code_names(code)):
            if name in glob:
                out.append(glob[name])
    if isinstance(obj, (list, tuple, set, frozenset)):
        if len(obj) <= _MAX_ITEMS:
            out.extend(obj)
    elif isinstance(obj, dict):
        if len(obj) <= _MAX_ITEMS:
            out.extend(obj.values())
    elif not isinstance(obj, (types.FunctionType, types.MethodType, functools.partial)):
        # an object (a predictor class with ``__call__``, the owner of a bound method): its attributes
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict) and len(attrs) <= _MAX_ITEMS:
            out.extend(attrs.values())
    return out


def find_modules(forward_func: Any, model: ModelsType = None) -> list[nn.Module]:
    """The ``nn.Module`` objects ``forward_func`` uses, outermost first.

    ``model`` (a module or a list of them) is taken as given. Otherwise the search looks, a few levels deep, at
    ``forward_func`` itself, the owner of a bound method (``__self__``), ``functools.partial`` functions and
    arguments, ``__wrapped__`` (decorators, ``functools.wraps``), closure cells, the globals the function's code
    names, the items of lists / tuples / dicts found on the way and the attributes of callable objects. Modules
    reachable only some other way cannot be found: pass them as ``model=``.
    """
    if model is not None:
        return _explicit_modules(model)
    found: list[nn.Module] = []
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(forward_func, 0)]
    while stack:
        obj, depth = stack.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            if all(obj is not m for m in found):
                found.append(obj)
            continue
        if depth >= _MAX_DEPTH or obj is None or isinstance(obj, _OPAQUE):
            continue
        with contextlib.suppress(Exception):  # introspection must never break attribution
            stack.extend((child, depth + 1) for child in _children(obj))
    return found


def _warn_no_model(forward_func: Any) -> None:
    """Warn once per forward function that no module was found (the remedy is ``model=``)."""
    try:
        if forward_func in _warned:
            return
        _warned.add(forward_func)
    except TypeError:  # not weak-referenceable
        if id(forward_func) in _warned_ids:
            return
        _warned_ids.add(id(forward_func))
    warnings.warn(
        f"pathattr found no torch.nn.Module behind forward_func {getattr(forward_func, '__qualname__', forward_func)!r}"
        ", so it cannot switch the model to eval mode or restore its state (dropout, batch-norm statistics); pass "
        "the model explicitly with `model=` (or `model=()` if the function uses no module).",
        ModelNotFoundWarning,
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside pathattr and contextlib (the user's call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_FILES):
        frame, level = frame.f_back, level + 1
    return level


#: frames skipped when a warning points at the caller: pathattr itself and contextlib
_INTERNAL_FILES = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
                   os.path.dirname(os.path.abspath(contextlib.__file__)) + os.sep + "contextlib")


#: buffers are snapshot (copied) before attribution when all together take at most this many bytes; larger
#: buffer sets keep only the batch-norm statistics' copies, and the others are still checked for replacement
BUFFER_SNAPSHOT_BYTES = 1 << 28


@contextlib.contextmanager
def model_guard(forward_func: Any, eval_mode: bool = True, model: ModelsType = None) -> Iterator[None]:
    """Put the model in the state attribution needs and restore it exactly afterwards.

    The modules are those :func:`find_modules` finds behind ``forward_func`` (or ``model``, if given; a warning
    names that remedy when none is found). Inside the block every submodule is in eval mode (if ``eval_mode``),
    no parameter requires grad (only input gradients are needed; this also saves memory), gradients are enabled
    (also under ``torch.no_grad()`` / ``torch.inference_mode()`` outside) and the global RNG is forked: whatever
    the model draws (dropout in train mode) comes from a fixed seed and the caller's RNG state is left as it was.
    On exit, also after an exception, the train/eval flag of every submodule, every parameter's
    ``requires_grad``, every hook dictionary and every buffer (batch-norm running statistics, ...) are restored
    to what they were, so a hook left behind by a failing method is removed and a removed hook is put back.
    """
    modules = find_modules(forward_func, model)
    if not modules and model is None:
        _warn_no_model(forward_func)
    # one pass over the distinct submodules; attributes are read from the instance dict and written only where
    # they change (``nn.Module.__setattr__`` and copies of empty hook dicts were most of this guard's cost: ~0.2 ms
    # per call on a 6-module MLP, more than half of a 50-row forward+backward)
    all_modules: list[nn.Module] = []
    seen: set[int] = set()
    for root in modules:
        for module in root.modules():
            if id(module) not in seen:
                seen.add(id(module))
                all_modules.append(module)
    saved_training = [module.training for module in all_modules]
    saved_hooks: list[tuple[nn.Module, str, dict]] = []  # hook dicts that held hooks: restored to a copy
    empty_hooks: list[tuple[nn.Module, str, dict]] = []  # empty hook dicts: emptied again if a hook was left
    saved_params: list[tuple[nn.Parameter, bool]] = []
    saved_buffers: list[tuple[nn.Module, str, Tensor | None, int, Tensor | None]] = []
    seen_params: set[int] = set()
    for module in all_modules:
        attrs = module.__dict__
        for name in _HOOK_DICTS:
            hooks = attrs.get(name)
            if hooks is None:
                hooks = getattr(module, name, None)
                if hooks is None:
                    continue
            if hooks:
                saved_hooks.append((module, name, dict(hooks)))
            else:
                empty_hooks.append((module, name, hooks))
        buffers = attrs.get("_buffers")
        if buffers:
            for name, buf in buffers.items():
                saved_buffers.append((module, name, buf, _version(buf), None))
        params = attrs.get("_parameters")
        if params:
            for p in params.values():
                if p is not None and id(p) not in seen_params:
                    seen_params.add(id(p))
                    saved_params.append((p, p.requires_grad))
    total = sum(b.numel() * b.element_size() for _, _, b, _, _ in saved_buffers if b is not None)
    for i, (module, name, buf, version, _) in enumerate(saved_buffers):
        if buf is not None and (total <= BUFFER_SNAPSHOT_BYTES or isinstance(module, nn.modules.batchnorm._NormBase)):
            saved_buffers[i] = (module, name, buf, version, buf.detach().clone())
    devices = sorted({p.device.index or 0 for p, _ in saved_params if p.device.type == "cuda"})
    try:
        if eval_mode:
            for module in all_modules:
                if module.training:
                    module.training = False
        for p, flag in saved_params:
            if flag:
                p.requires_grad_(False)
        with torch.random.fork_rng(devices=devices), torch.inference_mode(False), torch.enable_grad():
            torch.random.default_generator.manual_seed(_RNG_SEED)
            for d in devices:
                torch.cuda.default_generators[d].manual_seed(_RNG_SEED)
            yield
    finally:
        for module, training in zip(all_modules, saved_training):
            if module.training is not training:
                module.training = training
        for p, flag in saved_params:
            if p.requires_grad is not flag:
                p.requires_grad_(flag)
        for module, name, hooks in saved_hooks:
            current = getattr(module, name)
            current.clear()
            current.update(hooks)
        for module, name, hooks in empty_hooks:
            current = module.__dict__.get(name)
            if current is not hooks:  # replaced (or removed): look it up as the attribute
                current = getattr(module, name)
            if current:
                current.clear()
        with torch.no_grad():
            for module, name, buf, version, copy in saved_buffers:
                if module._buffers.get(name) is not buf:
                    module._buffers[name] = buf
                if buf is not None and copy is not None and (_version(buf) != version or not torch.equal(buf, copy)):
                    buf.copy_(copy)  # (batch norm updates its statistics without bumping the version counter)


def _version(buf: Tensor | None) -> int:
    """The in-place version counter of a buffer (-1 where there is none, e.g. an inference tensor)."""
    if buf is None:
        return 0
    try:
        return int(buf._version)
    except RuntimeError:
        return -1


#: seed of the forked global RNG inside :func:`model_guard` (dropout left on in train mode is reproducible)
_RNG_SEED = 0


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
    #: ``(target tensor, its class index if uniform else None)``, see :meth:`_uniform_column`
    _column: tuple[Any, int | None] | None = field(default=None, init=False, repr=False, compare=False)
    #: ``(normalized target, explained inputs)`` waiting to be fixed at the first model output (:meth:`defer_target`)
    _deferred: tuple[Any, tuple[Tensor, ...]] | None = field(default=None, init=False, repr=False, compare=False)

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
        try:
            return self.forward_func(*inputs, *self._row_args(example_index))
        except Exception:
            if self._deferred is None:
                raise
            # the first call of a deferred target failed: resolving it at ``x`` gives the error an eager resolution
            # gives (e.g. inputs without their batch dimension); if that succeeds, the original error stands
            target, inputs_x = self._deferred
            self._deferred = None
            self.resolve_target(target, inputs_x)
            raise

    # ------------------------------------------------------------------ targets
    def resolve_target(self, target: TargetType, inputs: Sequence[Tensor]) -> Tensor:
        """Fix the target once, validate it and return ``f_c(x)`` per example (shape ``[B]``, no graph).

        ``None`` on a ``[B, C]`` output selects the predicted class (argmax at ``inputs``) for ``C > 1``.
        An int applies to every example; a list or 1-D tensor gives one class per example; a callable maps
        the raw output of ``n`` rows to ``n`` scalars.
        """
        target = normalize_target(target)
        with torch.no_grad():
            try:
                output = self.forward(inputs)
            except Exception as err:
                if self._accepts_unbatched(inputs, any_output=True):
                    raise self._unbatched_error(inputs) from err
                raise
        if callable(target) and not isinstance(target, Tensor):
            self.target = target
            return self.select(output, None)
        return self._fix_target(target, output, inputs)

    @staticmethod
    def can_defer_target(target: TargetType) -> bool:
        """Whether :meth:`defer_target` can fix ``target`` without ``f(x)``: an explicit class index (int, list or
        tensor). None (the predicted class at ``x``) and callables need the output at ``x``."""
        target = normalize_target(target)
        if isinstance(target, bool) or target is None:
            return False
        return isinstance(target, (int, list, Tensor))

    def defer_target(self, target: TargetType, inputs: Sequence[Tensor]) -> None:
        """Fix ``target`` (one that :meth:`can_defer_target`) at the first model output of any rows instead of by
        a forward call at ``inputs``: a method whose rows include ``x`` itself reads ``f_c(x)`` from them.

        The validation and its errors are those of :meth:`resolve_target`: the target is checked against the
        number of classes of that first output, and a first call that fails or returns no per-row output is
        followed by :meth:`resolve_target` at ``inputs``, which raises the error it gives.
        """
        self._deferred = (normalize_target(target), tuple(inputs))

    def _settle_target(self, output: Any, n_rows: int) -> None:
        """Fix a deferred target at the first model output ``output`` of ``n_rows`` rows."""
        target, inputs = self._deferred  # type: ignore[misc]
        self._deferred = None
        if isinstance(output, Tensor) and output.ndim in (1, 2) and output.shape[0] == n_rows:
            self._store_target(target, output)
        else:
            self.resolve_target(target, inputs)  # the error an eager resolution gives for this model

    def resolve_target_with_rows(
        self, target: TargetType, inputs: Sequence[Tensor], points: Sequence[Tensor], example_index: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """:meth:`resolve_target`, evaluating the target outputs of more rows ``points`` (``example_index[i]`` =
        example of row ``i``) in the same forward call as ``inputs``: ``(f_c(x) [B], f_c(points) [n])``.

        One call instead of two; the rows are the same, only batched together. Where they cannot share a call
        (other dtype or shape, a model that fails on the joint batch or returns no per-row output), the second
        element is None and the target is resolved exactly as by :meth:`resolve_target`.
        """
        b, n = self.batch_size, int(points[0].shape[0])
        if len(points) != len(inputs) or any(
            p.dtype != x.dtype or p.device != x.device or p.shape[1:] != x.shape[1:] for p, x in zip(points, inputs)
        ):
            return self.resolve_target(target, inputs), None
        target = normalize_target(target)
        rows = tuple(torch.cat([x.detach(), p.detach()]) for x, p in zip(inputs, points))
        index = torch.cat([torch.arange(b, device=example_index.device), example_index])
        saved = (self.cost.forward_calls, self.cost.forward_rows)
        try:
            with torch.no_grad():
                output = self.forward(rows, index)
        except Exception:
            output = None
        if callable(target) and not isinstance(target, Tensor):
            if output is not None:
                self.target = target
                values = self.select(output, None)
                if values.shape[0] == b + n:
                    return values[:b], values[b:]
        elif isinstance(output, Tensor) and output.ndim in (1, 2) and output.shape[0] == b + n:
            return self._fix_target(target, output[:b], inputs), self.select(output[b:], example_index)
        self.cost.forward_calls, self.cost.forward_rows = saved
        self.target = None
        return self.resolve_target(target, inputs), None

    def _fix_target(self, target: Any, output: Any, inputs: Sequence[Tensor]) -> Tensor:
        """Validate a (normalized, non-callable) ``target`` against the output ``[B]`` / ``[B, C]`` at the
        explained inputs, store it and return ``f_c(x)``."""
        if not isinstance(output, Tensor):
            raise InputValidationError(
                f"`forward_func` returned {type(output).__name__}; return a tensor or pass a callable `target` "
                "that extracts one scalar per example.",
                "forward_func",
            )
        b = self.batch_size
        if output.ndim == 0 or output.shape[0] != b or output.ndim > 2:
            if self._accepts_unbatched(inputs):
                raise self._unbatched_error(inputs)
            raise InputValidationError(
                f"`forward_func` returned shape {tuple(output.shape)}; expected [B] or [B, C] with B={b} "
                "(or pass a callable `target`).",
                "forward_func",
            )
        self._store_target(target, output)
        return self.select(output, None)

    def _store_target(self, target: Any, output: Tensor) -> None:
        """Validate a (normalized, non-callable) ``target`` against the model output ``output`` (``[n]`` or ``[n,
        C]``; for ``target=None`` the rows must be the explained inputs) and store it as :attr:`target`."""
        b = self.batch_size
        if output.ndim == 1:
            if target not in (None, 0) and not (isinstance(target, (list, tuple, Tensor)) and _all_zero(target)):
                raise TargetError(
                    "`target` must be None (or 0) for a model with one output per example.", "target"
                )
            self.target = None
        else:
            n_classes = output.shape[1]
            in_range = False  # whether ``index`` is known to be in range without a check on the tensor
            if target is None:
                index = output.argmax(dim=1) if n_classes > 1 else torch.zeros(b, dtype=torch.long)
                in_range = True
            elif isinstance(target, bool):
                raise TargetError("`target` must be an int, list, tensor or callable, not bool.", "target")
            elif isinstance(target, int):
                if not 0 <= target < n_classes:
                    raise TargetError(f"`target` {target} is out of range for {n_classes} output classes.", "target")
                index = torch.full((b,), target, dtype=torch.long)
                in_range = True
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
            if not in_range and (bool((index < 0).any()) or bool((index >= n_classes).any())):
                raise TargetError(
                    f"`target` {index.tolist()[:8]} is out of range for {n_classes} output classes.", "target"
                )
            self.target = index.to(output.device)
            if isinstance(target, int):  # one class for every example, known without looking at the tensor
                self._column = (self.target, target)

    def _accepts_unbatched(self, inputs: Sequence[Tensor], any_output: bool = False) -> bool:
        """Whether ``inputs`` look like one example without its batch dimension: the model runs when every input
        gets a leading axis of size 1 and returns one example's output (``[1]`` or ``[1, C]``; with ``any_output``,
        used when the plain call raised, the first tensor of a tuple or dict output counts)."""
        if inputs[0].ndim > 4 or inputs[0].shape[0] == 1:
            return False
        try:
            with torch.no_grad():
                out = self.forward_func(*(t.unsqueeze(0) for t in inputs), *self._args)
        except Exception:
            return False
        if any_output:  # the first tensor of a tuple / dict output
            while isinstance(out, (tuple, list, dict)) and len(out):
                out = next(iter(out.values())) if isinstance(out, dict) else out[0]
        return isinstance(out, Tensor) and out.ndim in (1, 2) and out.shape[0] == 1

    def _unbatched_error(self, inputs: Sequence[Tensor]) -> InputValidationError:
        shape = tuple(inputs[0].shape)
        return InputValidationError(
            f"`inputs` of shape {shape} look like a single example without the batch dimension: the model fails on "
            f"(or returns no per-example output for) shape {shape} but accepts {(1, *shape)}. Pass `inputs[None]` "
            "(dim 0 = examples).",
            "inputs",
        )

    def select(self, output: Any, example_index: Tensor | None, check: bool = True) -> Tensor:
        """The target scalar of every row: shape ``[n]`` (``check``: raise if one is not finite)."""
        if self._deferred is not None:
            self._settle_target(output, self.batch_size if example_index is None else int(example_index.shape[0]))
        if self.target is not None and not isinstance(self.target, Tensor):
            values = self.target(output)
            if not isinstance(values, Tensor) or values.ndim != 1:
                raise TargetError("a callable `target` must return a 1-D tensor, one value per row.", "target")
        elif output.ndim == 1:
            values = output
        else:
            column = self._uniform_column()
            if column is not None:  # one class for every example: a strided view, the same elements as a gather
                values = output.select(1, column)
            else:
                index = self.target if example_index is None else self.target[example_index.to(self.target.device)]
                values = output.gather(1, index.view(-1, 1)).squeeze(1)
        if check and not all_finite(values):
            check_finite(values, "forward_func", "outputs")
        return values

    def _uniform_column(self) -> int | None:
        """The class index if the (tensor) target names the same class for every example, else None; remembered
        for the target tensor it was computed from (callers may assign :attr:`target`)."""
        target = self.target
        cached = self._column
        if cached is not None and cached[0] is target:
            return cached[1]
        column = None
        if isinstance(target, Tensor) and target.ndim == 1 and target.numel() > 0:
            first = target[0]
            if target.numel() == 1 or bool((target == first).all()):
                column = int(first)
        self._column = (target, column)
        return column

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
        with contextlib.nullcontext() if torch.is_grad_enabled() else torch.enable_grad():
            values = self.select(self.forward(points, example_index), example_index, check=False)
            grads = self.backward(values, points, check=False)
        values = values.detach()
        if not all_finite(values, *grads):  # one test for outputs and gradients; a failure names which, outputs first
            check_finite(values, "forward_func", "outputs")
            self._check_gradients(grads)
        return grads, values

    def backward(self, values: Tensor, points: Sequence[Tensor], retain_graph: bool = False,
                 check: bool = True) -> tuple[Tensor, ...]:
        """``d sum(values) / d points`` with checks: no graph -> NoGradientError, NaN -> NonFiniteError (only with
        ``check``; the caller then checks the gradients itself)."""
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
        out = tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, points))
        if check:
            self._check_gradients(out)
        return out

    @staticmethod
    def _check_gradients(grads: Sequence[Tensor]) -> None:
        for i, g in enumerate(grads):
            if not all_finite(g):
                raise NonFiniteError(
                    f"the gradient w.r.t. `inputs{'' if len(grads) == 1 else f'[{i}]'}` contains NaN or inf; "
                    "the model is not differentiable at some path point.",
                    "inputs",
                )


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
