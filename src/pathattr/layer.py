"""Layer attribution: explain a layer's activation (e.g. token embeddings) while the inputs stay what the model
takes (e.g. token ids).

`LayerAttribution` runs any attribution method of the library on a forward function whose input is the
layer's activation: a forward hook replaces the layer's output (or, with ``attribute_to_layer_input=True``, a
pre-hook replaces its floating-point inputs) by the point the method evaluates, while the model still receives
the original inputs. Baselines and references given in *input* space (token ids, as in Captum's
``LayerIntegratedGradients``) are pushed through the model up to the layer; activation-space ones are passed with
``layer_baselines`` / ``layer_references``::

    lig = pathattr.LayerIntegratedGradients(model, model.embedding)
    attr = lig.attribute(token_ids, baselines=pad_ids, target=1, additional_forward_args=(mask,))  # [B, T, E]
    scores = attr.sum(-1)                                                                           # per token

    ig2 = pathattr.LayerIG2(model, model.embedding, representation=model.classifier)
    e = ig2.explain(token_ids, references=other_class_ids, additional_forward_args=(mask,))

Which method arguments are converted is read from the method's ``explain`` signature: ``baselines`` (paired
with the examples: ``[B or 1, *S]`` or ``[B, K, *S]``; for `pathattr.ExpectedGradients` a set
``[N, *S]``) and ``references`` (``[R, *S]`` shared or ``[B, R, *S]``). Methods that take neither (Saliency,
Blur IG) need no conversion, so every registered method works, including ones added later.

The layer must run exactly once per forward call. The model's hooks, train/eval flags and ``requires_grad``
flags are restored after every call, also on errors.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputValidationError
from .forward import TensorOrTuple, find_modules, model_guard
from .methods.base import AttributionMethod
from .methods.registry import get_method_class
from .result import Explanation

__all__ = [
    "LayerAttribution",
    "LayerBlurIntegratedGradients",
    "LayerGuidedIntegratedGradients",
    "LayerIG2",
    "LayerIntegratedGradients",
    "layer_activations",
]


class _StopForward(Exception):
    """Raised by the capture hook to skip the rest of the model once the layer has run."""


def _tensors(value: Any, what: str) -> tuple[Tensor, ...]:
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not items or not all(isinstance(t, Tensor) for t in items):
        raise InputValidationError(
            f"the layer's {what} must be a tensor or a flat tuple of tensors, got {type(value).__name__}.", "layer"
        )
    return tuple(items)


class _LayerForward(nn.Module):
    """``(*activations, *inputs, *additional_forward_args) -> forward_func(*inputs, *additional_forward_args)``
    with the layer's output (or input) replaced by ``activations``.

    It is an ``nn.Module`` holding the user's model, so the library's model guard (eval mode, frozen parameters,
    hooks restored) reaches the model through it.
    """

    def __init__(
        self, forward_func: Callable[..., Any], layer: nn.Module, to_input: bool, extra_modules: list[nn.Module]
    ) -> None:
        super().__init__()
        self.func = forward_func
        roots = find_modules(forward_func)
        self.roots = nn.ModuleList(roots + [m for m in [layer, *extra_modules] if all(m is not r for r in roots)])
        self.layer_ref = [layer]  # not registered twice
        self.to_input = to_input
        self.n_activations = 1
        self.single = True

    @property
    def layer(self) -> nn.Module:
        return self.layer_ref[0]

    @contextlib.contextmanager
    def replaced(self, activations: tuple[Tensor, ...]) -> Iterator[list[int]]:
        calls = [0]

        def check(natural: tuple[Tensor, ...]) -> None:
            calls[0] += 1
            if calls[0] > 1:
                raise InputValidationError(
                    f"the layer {type(self.layer).__name__} ran more than once in one forward call; layer attribution "
                    "needs a layer that runs exactly once (attribute a layer that is not shared).",
                    "layer",
                )
            if len(natural) != len(activations) or any(
                n.shape != a.shape for n, a in zip(natural, activations)
            ):
                raise InputValidationError(
                    f"the layer produced {[tuple(n.shape) for n in natural]} but the attributed activation is "
                    f"{[tuple(a.shape) for a in activations]}; do the inputs and the activations belong together?",
                    "layer",
                )

        if self.to_input:

            def pre_hook(module: nn.Module, args: tuple) -> tuple:
                positions = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.is_floating_point()]
                check(tuple(args[i] for i in positions))
                new = list(args)
                for i, act in zip(positions, activations):
                    new[i] = act
                return tuple(new)

            handle = self.layer.register_forward_pre_hook(pre_hook)
        else:

            def hook(module: nn.Module, args: tuple, output: Any) -> Any:
                check(_tensors(output, "output"))
                return activations[0] if not isinstance(output, (tuple, list)) else type(output)(activations)

            handle = self.layer.register_forward_hook(hook)
        try:
            yield calls
        finally:
            handle.remove()

    def forward(self, *args: Any) -> Any:
        n = self.n_activations
        activations, rest = tuple(args[:n]), args[n:]
        with self.replaced(activations) as calls:
            out = self.func(*rest)
        if calls[0] == 0:
            raise InputValidationError(
                f"the layer {type(self.layer).__name__} did not run in the forward call; pass a module the model "
                "uses.",
                "layer",
            )
        return out

    @contextlib.contextmanager
    def capturing(self, store: list) -> Iterator[None]:
        """Record the layer's natural activation and stop the forward there (raises ``_StopForward``)."""
        if self.to_input:

            def pre_hook(module: nn.Module, args: tuple) -> None:
                acts = tuple(a for a in args if isinstance(a, Tensor) and a.is_floating_point())
                if not acts:
                    raise InputValidationError(
                        f"the input of {type(self.layer).__name__} has no floating-point tensor (e.g. token ids of "
                        "an embedding); attribute to the layer's output instead (attribute_to_layer_input=False).",
                        "attribute_to_layer_input",
                    )
                store.append(acts)
                raise _StopForward

            handle = self.layer.register_forward_pre_hook(pre_hook)
        else:

            def hook(module: nn.Module, args: tuple, output: Any) -> None:
                store.append(_tensors(output, "output"))
                raise _StopForward

            handle = self.layer.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def _gather_args(args: tuple, batch: int, example_index: Tensor | None) -> tuple:
    if example_index is None:
        return args
    return tuple(
        a.index_select(0, example_index.to(a.device)) if isinstance(a, Tensor) and a.ndim > 0 and a.shape[0] == batch
        else a
        for a in args
    )


def _per_example_args(args: tuple, batch: int) -> bool:
    return any(isinstance(a, Tensor) and a.ndim > 0 and a.shape[0] == batch for a in args)


def _as_args(additional_forward_args: Any) -> tuple:
    if additional_forward_args is None:
        return ()
    return additional_forward_args if isinstance(additional_forward_args, tuple) else (additional_forward_args,)


def layer_activations(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    inputs: TensorOrTuple,
    additional_forward_args: Any = None,
    attribute_to_layer_input: bool = False,
    eval_mode: bool = True,
) -> TensorOrTuple:
    """The layer's activation (output, or floating-point inputs) at ``inputs``, without gradients.

    The forward call stops right after the layer, so this costs a fraction of a model call.
    """
    wrapper = _LayerForward(forward_func, layer, attribute_to_layer_input, [])
    items = inputs if isinstance(inputs, tuple) else (inputs,)
    acts = _capture(wrapper, items, _as_args(additional_forward_args), eval_mode)
    return acts[0] if len(acts) == 1 else acts


def _capture(wrapper: _LayerForward, inputs: tuple[Tensor, ...], args: tuple, eval_mode: bool) -> tuple[Tensor, ...]:
    store: list = []
    with model_guard(wrapper, eval_mode), torch.no_grad(), wrapper.capturing(store), \
            contextlib.suppress(_StopForward):
        wrapper.func(*inputs, *args)
    if not store:
        raise InputValidationError(
            f"the layer {type(wrapper.layer).__name__} did not run in the forward call; pass a module the model uses.",
            "layer",
        )
    return tuple(t.detach() for t in store[0])


class LayerAttribution(AttributionMethod):
    """Any attribution method of the library, at a layer.

    Args:
        method: a method class (``pathattr.IntegratedGradients``, ``pathattr.IG2``, ...), or its registry name
            (``"integrated_gradients"``, ``"ig2"``; see ``pathattr methods``).
        forward_func: the model (``nn.Module`` or callable) taking the original inputs (e.g. token ids).
        layer: the ``nn.Module`` of the model whose activation is attributed (it must run once per call).
        attribute_to_layer_input: attribute the layer's floating-point inputs instead of its output (Captum's
            argument; may also be given per call).
        eval_mode: evaluate the model in eval mode (restored afterwards).
        **method_kwargs: constructor arguments of the method (``multiply_by_inputs``, ``integrator``, and for
            IG2 ``representation``: a module of the model or its dotted name).

    ``attribute``/``explain`` take the wrapped method's arguments. Attributions have the activation's shape
    (a tuple when the layer has several outputs/inputs). Input-space ``baselines``/``references`` (same
    structure as ``inputs``; ``None`` = zeros, as in Captum) are converted by running the model up to the layer
    with the same ``additional_forward_args``; ``layer_baselines``/``layer_references`` are given in activation
    space (anything the method accepts, e.g. ``"zeros"`` or a tensor ``[B, T, E]``). A string in ``baselines``
    (``"zeros"``, ``"uniform"``, ...) is also taken in activation space.
    """

    has_delta = True

    def __init__(
        self,
        method: type | str,
        forward_func: Callable[..., Any],
        layer: nn.Module,
        attribute_to_layer_input: bool = False,
        eval_mode: bool = True,
        **method_kwargs: Any,
    ) -> None:
        super().__init__(forward_func, eval_mode)
        if isinstance(layer, (list, tuple)):
            raise InputValidationError(
                "`layer` must be one nn.Module (Captum's list of layers is not supported: use one "
                "LayerAttribution per layer).",
                "layer",
            )
        if not isinstance(layer, nn.Module):
            raise InputValidationError(f"`layer` must be an nn.Module, got {type(layer).__name__}.", "layer")
        cls = get_method_class(method) if isinstance(method, str) else method
        if not (isinstance(cls, type) and issubclass(cls, AttributionMethod)):
            raise InputValidationError(
                f"`method` must be an attribution method class or a registered name, got {method!r}.", "method"
            )
        self.layer = layer
        self.attribute_to_layer_input = attribute_to_layer_input
        rep = method_kwargs.get("representation")
        if isinstance(rep, str):  # resolve a dotted name against the user's model, not the wrapper
            for root in find_modules(forward_func):
                with contextlib.suppress(AttributeError):
                    method_kwargs["representation"] = root.get_submodule(rep)
                    break
        extra = [v for v in method_kwargs.values() if isinstance(v, nn.Module)]
        self._wrappers = {
            side: _LayerForward(forward_func, layer, side, extra) for side in (False, True)
        }
        self.methods = {side: cls(w, eval_mode=eval_mode, **method_kwargs) for side, w in self._wrappers.items()}
        self.method_class = cls
        self.name = f"layer_{cls.name}"
        params = inspect.signature(cls.explain).parameters
        self._takes_baselines = "baselines" in params
        self._takes_references = "references" in params
        self._baselines_are_a_set = bool(getattr(cls, "baselines_are_reference_set", False)) or \
            getattr(cls, "name", "") == "expected_gradients"
        self.has_delta = getattr(self.methods[False], "has_delta", True)

    @property
    def multiplies_by_inputs(self) -> bool:
        return bool(getattr(self.methods[False], "multiply_by_inputs", True))

    @property
    def method(self) -> AttributionMethod:
        """The wrapped method instance (attributing the layer's output)."""
        return self.methods[self.attribute_to_layer_input]

    # ------------------------------------------------------------------ conversion to activation space
    def _activations(
        self, wrapper: _LayerForward, rows: tuple[Tensor, ...], args: tuple, batch: int, example: Tensor | None
    ) -> tuple[Tensor, ...]:
        return _capture(wrapper, rows, _gather_args(args, batch, example), self.eval_mode)

    def _rows(self, value: Any, inputs: tuple[Tensor, ...], argument: str) -> tuple[tuple[Tensor, ...], tuple]:
        """Input-space ``value`` as rows ``[n, *S]`` per input plus its leading shape."""
        items = value if isinstance(value, tuple) else (value,) * len(inputs) if not isinstance(value, Tensor) \
            else (value,)
        if len(items) != len(inputs):
            raise InputValidationError(
                f"`{argument}` has {len(items)} entries but there are {len(inputs)} inputs.", argument
            )
        rows, lead = [], None
        for x, v in zip(inputs, items):
            if v is None:
                v = 0
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                t = torch.full_like(x[:1], v)
            elif isinstance(v, Tensor):
                t = v.to(device=x.device, dtype=x.dtype)
                if t.ndim == x.ndim - 1:
                    t = t.unsqueeze(0)
            else:
                raise InputValidationError(
                    f"`{argument}` in input space must be None, a number or a tensor; give activation-space values "
                    f"with `layer_{argument}`.",
                    argument,
                )
            s = t.ndim - (x.ndim - 1)
            if s < 1 or tuple(t.shape[s:]) != tuple(x.shape[1:]):
                raise InputValidationError(
                    f"`{argument}` has shape {tuple(t.shape)}; its trailing dims must be the input's "
                    f"{tuple(x.shape[1:])}.",
                    argument,
                )
            this = tuple(t.shape[:s])
            if lead is not None and this != lead:
                raise InputValidationError(f"the entries of `{argument}` have different leading shapes.", argument)
            lead = this
            rows.append(t.reshape(-1, *x.shape[1:]))
        return tuple(rows), lead or (1,)

    def _paired(self, wrapper: _LayerForward, value: Any, inputs: tuple[Tensor, ...], args: tuple) -> Any:
        """Baselines paired with the examples: ``[B or 1, *S]`` -> ``[B, *A]``; ``[B or 1, K, *S]`` ->
        ``[B, K, *A]``."""
        b = inputs[0].shape[0]
        rows, lead = self._rows(value, inputs, "baselines")
        if len(lead) > 2 or lead[0] not in (1, b):
            raise InputValidationError(
                f"`baselines` has leading shape {lead}; expected [B or 1] or [B or 1, K] before the input's shape.",
                "baselines",
            )
        k = lead[1] if len(lead) == 2 else 1
        if lead[0] == 1:
            rows = tuple(r.expand(b * k, *r.shape[1:]) if k == 1 else r.repeat(b, *[1] * (r.ndim - 1)) for r in rows)
        example = torch.arange(b, device=inputs[0].device).repeat_interleave(k)
        acts = self._activations(wrapper, rows, args, b, example)
        if len(lead) == 2:
            acts = tuple(a.reshape(b, k, *a.shape[1:]) for a in acts)
        return acts if len(acts) > 1 else acts[0]

    def _shared(self, wrapper: _LayerForward, value: Any, inputs: tuple[Tensor, ...], args: tuple,
                argument: str, allow_per_example: bool) -> Any:
        """A set shared by all examples ``[N, *S]`` or per example ``[B, N, *S]``."""
        b = inputs[0].shape[0]
        if isinstance(value, Tensor) and value.ndim == inputs[0].ndim + 1 and value.shape[0] == 1 and b > 1:
            value = value[0]  # [1, N, *S]: shared
        if isinstance(value, Tensor) and value.ndim == inputs[0].ndim + 1:
            rows, lead = self._rows(value, inputs, argument)
            if lead[0] not in (1, b) or not allow_per_example:
                raise InputValidationError(f"`{argument}` has leading shape {lead}; expected [N] or [B, N].", argument)
            n = lead[1]
            example = torch.arange(lead[0], device=inputs[0].device).repeat_interleave(n)
            acts = self._activations(wrapper, rows, args, b, example if lead[0] == b else None)
            return acts[0].reshape(lead[0], n, *acts[0].shape[1:])
        if not isinstance(value, Tensor):
            raise InputValidationError(
                f"`{argument}` in input space must be a tensor [N, *S]; give activation-space values with "
                f"`layer_{argument}`.",
                argument,
            )
        rows, lead = self._rows(value.unsqueeze(0) if value.ndim == inputs[0].ndim - 1 else value, inputs, argument)
        n = lead[0]
        if not _per_example_args(args, b):
            acts = self._activations(wrapper, rows, args, b, None)
            return acts[0]
        # every shared row with every example's arguments (Captum's rule for baselines): [B, N, *A]
        rows = tuple(r.repeat(b, *[1] * (r.ndim - 1)) for r in rows)
        example = torch.arange(b, device=inputs[0].device).repeat_interleave(n)
        acts = self._activations(wrapper, rows, args, b, example)
        per = acts[0].reshape(b, n, *acts[0].shape[1:])
        if allow_per_example:
            return per
        if bool((per == per[:1]).all()):  # the arguments do not reach the layer (e.g. an embedding)
            return per[0]
        raise InputValidationError(
            f"`{argument}` is a set shared by all examples, but its activation at the layer depends on the "
            f"example's `additional_forward_args`; pass activation-space values with `layer_{argument}`.",
            argument,
        )

    # ------------------------------------------------------------------ calls
    def explain(self, inputs: TensorOrTuple, *args: Any, **kwargs: Any) -> Explanation:
        """Attribute the layer's activation at ``inputs``.

        Args:
            inputs: what the model takes (token ids ``[B, T]``, images, ...); a tuple for several inputs.
            *args: the wrapped method's positional arguments after ``inputs`` (e.g. IG2's ``references``).
            **kwargs: the wrapped method's arguments (``target``, ``additional_forward_args``, ``n_steps``,
                ``internal_batch_size``, ...), plus ``attribute_to_layer_input`` (overrides the constructor),
                ``layer_baselines`` and ``layer_references`` (activation space), and ``progress``
                (``True``/``False``/``"auto"``: passed to the method if it takes it, else a bar counting the
                model's rows, `pathattr.progress.model_calls`).

        Returns:
            The wrapped method's `pathattr.result.Explanation` in activation space;
            ``extras["layer"]`` names the layer and its side.
        """
        to_input = kwargs.pop("attribute_to_layer_input", self.attribute_to_layer_input)
        wrapper, method = self._wrappers[bool(to_input)], self.methods[bool(to_input)]
        progress = None
        if "progress" in kwargs and "progress" not in inspect.signature(method.explain).parameters:
            progress = kwargs.pop("progress")  # the method has no bar of its own: count the model's rows
        if progress is None:
            return self._explain(wrapper, method, bool(to_input), inputs, args, kwargs)
        from .progress import model_calls

        with model_calls(wrapper, desc=self.name, enabled=progress):
            return self._explain(wrapper, method, bool(to_input), inputs, args, kwargs)

    def _explain(self, wrapper: _LayerForward, method: AttributionMethod, to_input: bool, inputs: TensorOrTuple,
                 args: tuple, kwargs: dict[str, Any]) -> Explanation:
        layer_baselines = kwargs.pop("layer_baselines", None)
        layer_references = kwargs.pop("layer_references", None)
        items = inputs if isinstance(inputs, tuple) else (inputs,)
        if not items or not all(isinstance(t, Tensor) for t in items):
            raise InputValidationError("`inputs` must be a tensor or a tuple of tensors.", "inputs")
        b = items[0].shape[0]
        bound = inspect.signature(method.explain).bind_partial(items[0], *args, **kwargs).arguments
        bound.pop(next(iter(bound)))
        user_args = _as_args(bound.get("additional_forward_args"))
        acts = self._activations(wrapper, items, user_args, b, None)
        wrapper.n_activations = len(acts)

        if self._takes_baselines:
            given = bound.get("baselines")
            if layer_baselines is not None:
                if given is not None:
                    raise InputValidationError("pass `baselines` or `layer_baselines`, not both.", "layer_baselines")
                bound["baselines"] = layer_baselines
            elif isinstance(given, str):
                pass  # a named recipe, applied in activation space
            elif self._baselines_are_a_set:
                bound["baselines"] = self._shared(wrapper, given, items, user_args, "baselines", False)
            else:
                bound["baselines"] = self._paired(wrapper, given, items, user_args)
        elif layer_baselines is not None:
            raise InputValidationError(f"{self.method_class.__name__} takes no baselines.", "layer_baselines")
        if self._takes_references:
            given = bound.get("references")
            if layer_references is not None:
                if given is not None:
                    raise InputValidationError("pass `references` or `layer_references`, not both.",
                                               "layer_references")
                bound["references"] = layer_references
            elif given is None:
                raise InputValidationError(f"{self.method_class.__name__} needs `references`.", "references")
            else:
                refs = getattr(given, "references", given)
                bound["references"] = self._shared(wrapper, refs, items, user_args, "references", True)
        elif layer_references is not None:
            raise InputValidationError(f"{self.method_class.__name__} takes no references.", "layer_references")

        bound["additional_forward_args"] = (*items, *user_args)
        result = method.explain(acts if len(acts) > 1 else acts[0], **bound)
        result.method = self.name
        result.extras["layer"] = f"{type(self.layer).__name__}.{'input' if to_input else 'output'}"
        return result

    def attribute(
        self, inputs: TensorOrTuple, *args: Any, return_convergence_delta: bool = False, **kwargs: Any
    ) -> TensorOrTuple | tuple[TensorOrTuple, Tensor]:
        """Captum's convention: the layer attributions, or ``(attributions, delta)``."""
        return super().attribute(inputs, *args, return_convergence_delta=return_convergence_delta, **kwargs)


def _preset(method_name: str, doc: str) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        cls.__doc__ = doc
        cls._method_name = method_name
        return cls

    return decorate


class _LayerPreset(LayerAttribution):
    _method_name = ""

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: nn.Module,
        attribute_to_layer_input: bool = False,
        eval_mode: bool = True,
        **method_kwargs: Any,
    ) -> None:
        super().__init__(self._method_name, forward_func, layer, attribute_to_layer_input, eval_mode, **method_kwargs)


@_preset("integrated_gradients", """Integrated Gradients at a layer (Captum's ``LayerIntegratedGradients``).

    ``LayerIntegratedGradients(forward_func, layer, multiply_by_inputs=True, integrator=None)``;
    ``attribute(inputs, baselines=None, target=None, additional_forward_args=None, n_steps=50,
    method="gausslegendre", internal_batch_size=None, return_convergence_delta=False,
    attribute_to_layer_input=False)``. See `LayerAttribution`.
    """)
class LayerIntegratedGradients(_LayerPreset):
    pass


@_preset("guided_integrated_gradients", """Guided IG at a layer; see `LayerAttribution` and
    `pathattr.GuidedIntegratedGradients` (``n_steps``, ``fraction``, ``max_dist``).""")
class LayerGuidedIntegratedGradients(_LayerPreset):
    pass


@_preset("blur_integrated_gradients", """Blur IG at a layer whose activation has spatial dims (e.g. a conv
    feature map ``[B, C, H, W]``; for token embeddings ``[B, T, E]`` pass ``spatial_dims=(1,)`` to blur along
    the tokens). See `LayerAttribution` and `pathattr.BlurIntegratedGradients`.""")
class LayerBlurIntegratedGradients(_LayerPreset):
    pass


class LayerIG2(LayerAttribution):
    """IG2 at a layer: ``LayerIG2(forward_func, layer, representation, ...)``; ``explain(inputs, references,
    ...)`` with references in input space (token ids ``[R, T]`` or ``[B, R, T]``, or a
    `pathattr.references.ReferenceSet`) or ``layer_references=`` in activation space. See
    `LayerAttribution` and `pathattr.IG2`."""

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: nn.Module,
        representation: Any,
        attribute_to_layer_input: bool = False,
        eval_mode: bool = True,
        **method_kwargs: Any,
    ) -> None:
        super().__init__("ig2", forward_func, layer, attribute_to_layer_input, eval_mode,
                         representation=representation, **method_kwargs)

