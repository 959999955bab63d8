"""GradPath and GradCF (Zhuo & Ge, "IG2: Integrated Gradient on Iterative Gradient Path for Feature
Attribution", IEEE TPAMI 46(11), 2024, arXiv 2406.10852), batched over examples x references.

GradPath is normalised gradient **descent** on the representation distance ``D_r(z) = dist(phi(z), phi(x^r))``
from the explicand ``x`` towards each reference ``x^r``::

    gamma_0 = x
    gamma_{j+1} = clip_[lo, hi](gamma_j - eta * u_j / max(|u_j|_2, eps)),   u_j = grad_z D_r(gamma_j)

for exactly ``n_steps`` steps (``step_rule="fixed"``, the reference; ``"damped_newton"`` is pathattr's convergent
rule, see :data:`STEP_RULES`); ``GradCF^r = gamma_K`` is the counterfactual baseline. A path whose representation
difference is float noise stops where it is (:func:`at_noise_floor`). Every path (one per example x reference, a
*row*) is independent, so rows are batched and chunked freely (``internal_batch_size`` = rows per forward call);
different chunkings round differently, so results agree to float round-off, amplified along the path by the
fixed rule on real networks (docs/ig2.md).

:class:`GradPath` is the :class:`~pathattr.paths.base.SequentialPath` that :class:`pathattr.IG2` integrates on the
engine (:func:`pathattr.engine.integrate_sequential_path`): one forward per step captures the representation with
a hook on the model (or calls the representation callable) and gives both the counterfactual gradient ``u_j`` and,
on request, the target-output gradient ``g_j`` at the same point (two backward passes through the retained graph).
:func:`gradpath` is the pure function that returns GradCF, the optional path points and the representation
distance along each path.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..engine import walk_sequential_path
from ..errors import InputValidationError, NoGradientError, NonFiniteError, all_finite, check_finite
from ..forward import Cost as _Cost
from ..forward import ModelFunction, TargetType, find_modules, model_guard, track_cost
from ..planner import plan_chunks, planner_key, row_numel
from .base import SequentialPath, StepEvaluation

DistanceType = Callable[[Tensor, Tensor], Tensor]
RepresentationType = nn.Module | str | Callable[[Tensor], Tensor]

#: default ``eps`` of ``W = max(|u|, eps)`` per dtype (the reference has none and returns NaN)
DEFAULT_EPS = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-3}


def default_eps(dtype: torch.dtype) -> float:
    """The ``eps`` used for ``dtype`` when none is given: 1e-12 (float64), 1e-6 (float32), 1e-3 (half)."""
    return DEFAULT_EPS.get(dtype, 1e-6)


#: step rules of GradPath: ``"fixed"`` (the reference: every unclipped step has length ``eta``) and
#: ``"damped_newton"`` (pathattr's well-posed rule, a monotone descent: length ``min(eta, D / |u|)``, the Newton
#: step on the distance; a point that raised the distance is rejected, the path returns and steps again along the
#: same line to the minimum of the quadratic through both points, at most half as far), so the path converges
#: instead of oscillating around the representation minimum
STEP_RULES = ("fixed", "damped_newton")

#: a path stops (stays exactly where it is, for good) once its representation difference is float noise:
#: ``|phi(z) - rho|_2 <= tol * (|phi(z)|_2 + |rho|_2)`` with ``tol = max(4 eps, min(NOISE_FLOOR_ULPS eps,
#: NOISE_FLOOR_CAP))`` for the dtype's ``eps`` (issue 14 item 3: with a reference equal to the explicand the
#: difference is ~1e-17 of round-off, which a normalised step would blow up to eta). The cap keeps half-precision
#: paths moving: 256 eps is 0.25 (float16) or 2.0 (bfloat16) relative, which stopped every such path at x.
NOISE_FLOOR_ULPS = 256.0
NOISE_FLOOR_CAP = 1e-4


def noise_floor_tolerance(dtype: torch.dtype, ulps: float = NOISE_FLOOR_ULPS) -> float:
    """Relative representation difference that counts as float noise in ``dtype`` (see :data:`NOISE_FLOOR_CAP`):
    5.7e-14 (float64), 2.9e-5 (float32), 3.9e-3 (float16), 3.1e-2 (bfloat16)."""
    eps = torch.finfo(dtype).eps
    return max(4.0 * eps, min(ulps * eps, NOISE_FLOOR_CAP))


def at_noise_floor(h: Tensor, rho: Tensor, ulps: float = NOISE_FLOOR_ULPS) -> Tensor:
    """``[n]`` bool: the representation difference of each row is at the float noise of ``h``'s dtype."""
    rho64 = rho.detach().reshape(rho.shape[0], -1).to(torch.float64)
    return _at_floor64(h, rho64, torch.linalg.vector_norm(rho64, dim=1), noise_floor_tolerance(h.dtype, ulps))


def _at_floor64(h: Tensor, rho64: Tensor, rho_norm: Tensor, tol: float) -> Tensor:
    """:func:`at_noise_floor` with ``rho`` as float64 rows ``[n, F]``, their norms and the tolerance given."""
    h64 = h.detach().reshape(h.shape[0], -1).to(torch.float64)
    return torch.linalg.vector_norm(h64 - rho64, dim=1) <= tol * (torch.linalg.vector_norm(h64, dim=1) + rho_norm)


def squared_l2(h: Tensor, rho: Tensor) -> Tensor:
    """Default representation distance: ``sum((h - rho)^2)`` over all features of each row -> ``[n]``."""
    return (h - rho).reshape(h.shape[0], -1).pow(2).sum(1)


#: the paper's ImageNet step: eta = 512 on 0..255 pixels of 299x299x3 inputs
PAPER_ETA, PAPER_SCALE, PAPER_DIM = 512.0, 255.0, 299 * 299 * 3


def equivalent_step_size(
    dim: int, eta: float = PAPER_ETA, scale: float = PAPER_SCALE, paper_dim: int = PAPER_DIM
) -> float:
    """The step with the same per-feature RMS move ``eta / sqrt(d)`` in [0, 1] units on ``dim`` features:
    ``eta / scale * sqrt(dim / paper_dim)`` (1.504 for 224x224x3)."""
    return eta / scale * math.sqrt(dim / paper_dim)


# ----------------------------------------------------------------------------------------------- representation
_NOT_CALLED = object()  # what the capture holds until the module's hook runs


class RepresentationCapture:
    """Captures the representation ``phi(z)`` during the model's own forward pass.

    Args:
        forward_func: the model (used to resolve a dotted layer name and to check that a module belongs to it).
        representation: an ``nn.Module`` inside the model (its input, or output with ``side="output"``, is
            captured by a forward hook that is removed after every call, also on exceptions), a dotted module
            name (``"classifier"``, ``"network._fc"``), or a callable ``z -> features`` evaluated as a second
            computation on the same ``z`` (only when the representation is not a module of the model).
        side: ``"input"`` (default, the reference's choice: the input of the final linear layer) or
            ``"output"``.
    """

    def __init__(self, forward_func: Any, representation: RepresentationType, side: str = "input") -> None:
        if side not in ("input", "output"):
            raise InputValidationError(
                f"`representation_side` must be 'input' or 'output', got {side!r}.", "representation_side"
            )
        self.side = side
        self._slot: list | None = None  # set while attached (:meth:`attached`)
        roots = find_modules(forward_func)
        if isinstance(representation, str):
            module = None
            for root in roots:
                with contextlib.suppress(AttributeError):
                    module = root.get_submodule(representation)
                    break
            if module is None:
                raise InputValidationError(
                    f"`representation` {representation!r} names no submodule of the model.", "representation"
                )
            representation = module
        if isinstance(representation, nn.Module):
            if roots and not any(m is representation for root in roots for m in root.modules()):
                raise InputValidationError(
                    f"`representation` ({type(representation).__name__}) is not a submodule of `forward_func`; "
                    "pass a module of the model (e.g. `model.classifier`) or a callable z -> features.",
                    "representation",
                )
            self.module: nn.Module | None = representation
            self.function: Callable[[Tensor], Tensor] | None = None
        elif callable(representation):
            self.module = None
            self.function = representation
        else:
            raise InputValidationError(
                f"`representation` must be an nn.Module, a module name or a callable, got "
                f"{type(representation).__name__}.",
                "representation",
            )

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Keep the capture hook on the module for a whole walk (one hook instead of one per :meth:`forward`);
        removed on exit, also on exceptions. A no-op for a callable representation or when already attached."""
        if self.module is None or self._slot is not None:
            yield
            return
        slot: list = [None]
        with self._hook(slot, keep_last=True):
            self._slot = slot
            try:
                yield
            finally:
                self._slot = None

    def describe(self) -> str:
        if self.module is not None:
            return f"{type(self.module).__name__}.{self.side}"
        return getattr(self.function, "__name__", type(self.function).__name__)

    @contextlib.contextmanager
    def _hook(self, store: list, keep_last: bool = False) -> Iterator[None]:
        """Hook the module: every call appends what it captures to ``store`` (``keep_last``: overwrites
        ``store[0]``)."""
        assert self.module is not None
        put = functools.partial(store.__setitem__, 0) if keep_last else store.append
        if self.side == "input":
            handle = self.module.register_forward_pre_hook(lambda mod, args: put(args[0] if args else None))
        else:
            handle = self.module.register_forward_hook(lambda mod, args, out: put(out))
        try:
            yield
        finally:
            handle.remove()

    def forward(self, model: ModelFunction, points: Tensor, example_index: Tensor) -> tuple[Any, Tensor]:
        """Raw model output and the representation ``[n, ...]`` of rows ``points`` (one model forward)."""
        if self.module is None:
            out = model.forward((points,), example_index)
            h = self.function(points)  # type: ignore[misc]
            if not isinstance(h, Tensor) or h.ndim == 0 or h.shape[0] != points.shape[0]:
                raise InputValidationError(
                    f"the `representation` callable must return a tensor [n, ...] for n = {points.shape[0]} rows.",
                    "representation",
                )
            return out, h
        slot = self._slot
        if slot is not None:  # attached for the walk: the hook overwrites slot[0]
            slot[0] = _NOT_CALLED
            out = model.forward((points,), example_index)
            h = slot[0]
            slot[0] = None
        else:
            store: list = []
            with self._hook(store):
                out = model.forward((points,), example_index)
            h = store[-1] if store else _NOT_CALLED
        if h is _NOT_CALLED:
            raise InputValidationError(
                f"`representation` ({type(self.module).__name__}) was never called by the model's forward; "
                "choose a module the forward pass runs through.",
                "representation",
            )
        if isinstance(h, (tuple, list)):
            h = h[0]
        if not isinstance(h, Tensor) or h.ndim == 0 or h.shape[0] != points.shape[0]:
            raise InputValidationError(
                f"the {self.side} of `representation` is not a tensor with one row per model row.", "representation"
            )
        return out, h


# ----------------------------------------------------------------------------------------------- one step
def gradpath_step(
    points: Tensor, cf_gradients: Tensor, step_size: Tensor | float, bounds: tuple[float, float] | None, eps: float,
    distance: Tensor | None = None, frozen: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One GradPath step for ``n`` rows (pure function).

    Args:
        points: ``[n, *S]`` current points ``gamma_j``.
        cf_gradients: ``[n, *S]`` counterfactual gradients ``u_j = grad D_r(gamma_j)``.
        step_size: ``eta``, a float or ``[n]`` (L2 length of an unclipped step, over all features of a row).
        bounds: ``(lo, hi)`` box the new points are clipped to, or None.
        eps: ``W = max(|u|_2, eps)``; a zero gradient gives a zero step.
        distance: ``[n]`` ``D_r(gamma_j)``: if given, the step length is ``min(eta, D / |u|)`` (a Newton step on
            ``D``: the first-order model ``D - t |u|`` reaches 0 at ``t = D / |u|``); None: ``eta`` (reference).
        frozen: ``[n]`` bool, rows that do not move at all (``gamma_{j+1} = gamma_j`` exactly).

    Returns:
        ``gamma_{j+1}`` ``[n, *S]`` and ``|u_j|_2`` ``[n]``.
    """
    n = points.shape[0]
    norm = torch.linalg.vector_norm(cf_gradients.reshape(n, -1), dim=1)
    ready = isinstance(step_size, Tensor) and step_size.dtype == norm.dtype and step_size.device == norm.device
    eta = step_size if ready else torch.as_tensor(step_size, dtype=norm.dtype, device=norm.device)
    if distance is not None:
        newton = distance.detach().to(norm.dtype).clamp_min(0) / norm.clamp_min(torch.finfo(norm.dtype).tiny)
        eta = torch.minimum(eta, newton)
    scale = eta / norm.clamp_min(eps)
    if frozen is not None:
        scale = scale.masked_fill(frozen, 0.0)
    scale = scale.view(-1, *([1] * (points.ndim - 1)))
    new = points - cf_gradients * (scale if scale.dtype == points.dtype else scale.to(points.dtype))
    if bounds is not None:
        new = new.clamp(bounds[0], bounds[1])
    if frozen is not None and bool(frozen.any()):
        new = torch.where(frozen.view(-1, *([1] * (points.ndim - 1))), points, new)
    return new, norm


def check_gradpath_arguments(n_steps: Any, step_size: Any, bounds: Any, eps: Any) -> None:
    """Validate GradPath's hyperparameters (raises :class:`InputValidationError` naming the argument)."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise InputValidationError(f"`n_steps` must be a positive int, got {n_steps!r}.", "n_steps")
    if step_size is not None and (
        isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0
        or step_size == float("inf")
    ):
        raise InputValidationError(
            f"`step_size` must be None (|x - ref| / n_steps) or a positive finite number, got {step_size!r}.",
            "step_size",
        )
    if bounds is not None:
        ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds
        )
        if not ok or not float(bounds[0]) < float(bounds[1]):
            raise InputValidationError(f"`bounds` must be (lo, hi) numbers with lo < hi, got {bounds!r}.", "bounds")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0):
        raise InputValidationError(f"`eps` must be a positive number or None, got {eps!r}.", "eps")


def resolve_references(inputs: Tensor, references: Any) -> Tensor:
    """Validate ``references`` (``[R, *S]`` shared or ``[B, R, *S]`` per example, or a
    :class:`pathattr.references.ReferenceSet`) and return them as ``[B or 1, R, *S]``."""
    refs = getattr(references, "references", references)
    if not isinstance(refs, Tensor):
        raise InputValidationError(
            f"`references` must be a tensor [R, *S] or [B, R, *S], got {type(refs).__name__}.", "references"
        )
    shape = tuple(inputs.shape[1:])
    if refs.ndim == inputs.ndim and tuple(refs.shape[1:]) == shape:
        refs = refs.unsqueeze(0)
    elif not (
        refs.ndim == inputs.ndim + 1 and tuple(refs.shape[2:]) == shape and refs.shape[0] in (1, inputs.shape[0])
    ):
        raise InputValidationError(
            f"`references` has shape {tuple(refs.shape)}; expected [R, *S] or [B, R, *S] with S = {shape} and "
            f"B = {inputs.shape[0]}.",
            "references",
        )
    if refs.shape[1] == 0:
        raise InputValidationError("`references` is empty (R = 0); pass at least one reference.", "references")
    if not refs.is_floating_point():
        raise InputValidationError(f"`references` must be floating point, got {refs.dtype}.", "references")
    if not bool(torch.isfinite(refs).all()):
        raise NonFiniteError("`references` contains NaN or inf.", "references")
    return refs.to(dtype=inputs.dtype, device=inputs.device)


def _check_finite_fast(t: Tensor, what: str) -> None:
    """Raise :class:`NonFiniteError` if ``t`` holds NaN or inf (:func:`~pathattr.errors.all_finite`)."""
    if not all_finite(t):
        raise NonFiniteError(f"{what} contains NaN or inf; the model is not differentiable there.", "inputs")


# ----------------------------------------------------------------------------------------------- the path
class GradPath(SequentialPath):
    """``P`` GradPaths (examples x references) from the explicands to GradCF: the sequential path of IG2.

    Walks from the input end (``direction = -1``). Each step's evaluation is one forward per chunk that captures
    the representation and gives the counterfactual gradient ``u_j`` (and, when the engine integrates, the target
    gradient ``g_j`` at the same point: two backward passes through the retained graph); :meth:`advance` takes the
    normalised, clipped descent step. The last point (GradCF) is evaluated with ``f_c``, the predicted class and
    ``D_r`` (``extras["prediction"]``, ``extras["distance"]``).

    Args:
        capture: how the representation is obtained.
        start: ``[P, *S]`` explicand of every path (``gamma_0``).
        rho: ``[P, ...]`` representation of every path's reference (no graph).
        example_index: ``[P]`` example of every path.
        n_steps: ``K``.
        step_size: ``[P]`` ``eta`` per path.
        bounds: clip box or None.
        eps: normaliser floor.
        distance: ``(h, rho) -> [n]`` representation distance.
        record_path: keep every point (``path``, ``K + 1`` tensors ``[P, *S]``).
        step_rule: ``"fixed"`` (reference: length ``eta``) or ``"damped_newton"`` (a monotone descent: length
            ``min(eta, D / |u|)``, a point that raised the distance rejected and the step along the same line
            shortened; see :meth:`_damped_newton`).

    Every rule stops a path for good once its representation difference is float noise
    (:func:`at_noise_floor`): such a path stays exactly where it is (``stopped``).

    Per step it records ``distances`` (``D_r(gamma_j)``), ``cf_norms`` (``|u_j|``) and, when the target was
    evaluated, ``step_outputs`` (``f_c(gamma_j)``), each a list of ``[P]`` tensors.
    """

    direction = -1

    def __init__(
        self, capture: RepresentationCapture, start: Tensor, rho: Tensor, example_index: Tensor, n_steps: int,
        step_size: Tensor, bounds: tuple[float, float] | None, eps: float, distance: DistanceType = squared_l2,
        record_path: bool = False, step_rule: str = "fixed",
    ) -> None:
        if step_rule not in STEP_RULES:
            raise InputValidationError(f"`step_rule` must be one of {STEP_RULES}, got {step_rule!r}.", "step_rule")
        self.step_rule = step_rule
        self.cap = step_size.clone()  # damped_newton: eta per path, half the last rejected step after a rejection
        self.stopped = torch.zeros(start.shape[0], dtype=torch.bool, device=start.device)
        self.anchor_point, self.anchor_distance, self.anchor_norm = start, None, None  # damped_newton state
        self.last_step = torch.zeros(start.shape[0], dtype=torch.float64 if start.dtype == torch.float64 else
                                     torch.float32, device=start.device)
        self.curvature = torch.zeros_like(self.last_step)
        self.line_curvature = torch.zeros_like(self.last_step)
        self.accepted: list[Tensor] = []  # damped_newton: per step, whether the evaluated point was kept
        self.rejections = torch.zeros(start.shape[0], dtype=torch.long, device=start.device)
        self.capture, self.rho, self.example, self.n_steps = capture, rho, example_index, n_steps
        self.step_size, self.bounds, self.eps, self.distance = step_size, bounds, eps, distance
        self.point = start.detach().clone()
        self._rho_stats: tuple[Tensor, Tensor, float] | None = None  # float64 rows and norms of rho, tolerance
        self.dtype = start.dtype
        self.step = 0
        self.distances: list[Tensor] = []
        self.cf_norms: list[Tensor] = []
        self.step_outputs: list[Tensor] = []
        self.path: list[Tensor] | None = [self.point] if record_path else None

    @property
    def n_paths(self) -> int:
        return self.point.shape[0]

    def example_index(self, path_index: Tensor) -> Tensor:
        return self.example[path_index]

    def points(self, rows: Tensor | None) -> tuple[Tensor, ...]:
        return (self.point if rows is None else self.point[rows],)

    def _distance(self, h: Tensor, rho: Tensor) -> Tensor:
        d = self.distance(h, rho)
        if not isinstance(d, Tensor) or d.shape != (h.shape[0],):
            raise InputValidationError(
                f"`distance` must return one value per row (shape [{h.shape[0]}]).", "distance"
            )
        return d

    def evaluate(
        self, model: ModelFunction, rows: Tensor, points: tuple[Tensor, ...], example_index: Tensor, gradient: bool,
        final: bool,
    ) -> StepEvaluation:
        """One forward of a chunk: ``u`` and ``D_r`` (a step), or ``f_c``, prediction and ``D_r`` (GradCF); the
        target gradient ``g`` if ``gradient``."""
        rho = self.rho if rows.numel() == self.rho.shape[0] else self.rho[rows]  # every path: rows = arange
        if final:
            z = points[0].detach()
            with torch.set_grad_enabled(gradient):
                if gradient:
                    z = z.requires_grad_(True)
                out, h = self.capture.forward(model, z, example_index)
                values = model.select(out, example_index)
                g = model.backward(values, (z,)) if gradient else None
            pred = torch.full((z.shape[0],), -1, dtype=torch.long, device=z.device)
            if isinstance(out, Tensor) and out.ndim == 2:
                pred = out.detach().argmax(1)
            return StepEvaluation(g, values.detach(), {"distance": self._distance(h.detach(), rho), "prediction": pred})
        z = points[0].detach().requires_grad_(True)
        out, h = self.capture.forward(model, z, example_index)
        d = self._distance(h, rho)
        u = self._cf_gradient(model, d, z, out, retain=gradient, check=not gradient)
        extras = {"cf_gradient": u, "distance": d.detach(), "at_floor": self._at_floor(h, rows)}
        if not gradient:
            return StepEvaluation(None, None, extras)
        values = model.select(out, example_index, check=False)
        g = self._target_gradient(model, values, z)
        outputs = values.detach()
        if not all_finite(outputs, u, g):  # one test for the step; the exact ones name what failed
            check_finite(outputs, "forward_func", "outputs")
            _check_finite_fast(u, f"GradPath step {self.step}: the gradient of the representation distance")
            _check_finite_fast(g, f"GradPath step {self.step}: the gradient of the target output")
        return StepEvaluation((g,), outputs, extras)

    @contextlib.contextmanager
    def walking(self) -> Iterator[None]:
        """The representation hook stays on the module for the whole walk."""
        with self.capture.attached():
            yield

    def _at_floor(self, h: Tensor, rows: Tensor) -> Tensor:
        """:func:`at_noise_floor` of rows ``rows`` with the references' float64 rows and norms computed once."""
        if self._rho_stats is None:
            rho64 = self.rho.detach().reshape(self.rho.shape[0], -1).to(torch.float64)
            self._rho_stats = (rho64, torch.linalg.vector_norm(rho64, dim=1), noise_floor_tolerance(h.dtype))
        rho64, rho_norm, tol = self._rho_stats
        if h.shape[0] != rho64.shape[0]:
            rho64, rho_norm = rho64[rows], rho_norm[rows]
        return _at_floor64(h, rho64, rho_norm, tol)

    def advance(self, evaluation: StepEvaluation, rows: Tensor | None) -> tuple[Tensor, ...]:
        """``gamma_{j+1} = clip(gamma_j - eta u_j / max(|u_j|, eps))``; returns ``gamma_j - gamma_{j+1}``."""
        if self.step >= self.n_steps:
            raise RuntimeError("GradPath has already taken all its steps")
        d = evaluation.extras["distance"]
        u = evaluation.extras["cf_gradient"]
        self.stopped = self.stopped | evaluation.extras["at_floor"]
        if self.step_rule == "damped_newton":
            new, norm = self._damped_newton(d, u)
        else:
            new, norm = gradpath_step(self.point, u, self.cap, self.bounds, self.eps, None, self.stopped)
        self.distances.append(d)
        self.cf_norms.append(norm)
        if evaluation.outputs is not None:
            self.step_outputs.append(evaluation.outputs)
        disp = self.point - new
        self.point = new
        self.step += 1
        if self.path is not None:
            self.path.append(new)
        return (disp,)

    def _damped_newton(self, d: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """One step of the well-posed rule (a monotone descent on ``D`` with a backtracking line search; no extra
        model evaluation).

        From an accepted point the step length is ``min(cap, D / |u|)``: the Newton step on ``D`` (the root of the
        first-order model ``D - t |u|``). A point whose distance is above that of the last accepted point (the
        *anchor*) is rejected: the path returns to the anchor (the out-and-back segments cancel under the
        trapezoid / adaptive segment rules) and steps again along the same direction with length
        ``min(t / 2, |u| / (2 c))``, where ``t`` is the rejected step and ``c = (D_trial - D_anchor + t |u|) / t^2``
        the curvature of ``D`` measured along it (the minimum of the quadratic through both points). The cap stays
        at ``t / 2`` afterwards.
        """
        n = d.shape[0]
        tiny = torch.finfo(d.dtype).tiny
        norm = torch.linalg.vector_norm(u.reshape(n, -1), dim=1).to(d.dtype)
        if self.anchor_distance is None:
            worse = torch.zeros_like(self.stopped)
            self.anchor_point, self.anchor_distance, self.anchor_norm = self.point, d, norm
        else:
            # a path that has just returned to its anchor is at the anchor: never rejected there
            worse = (d > self.anchor_distance) & ~self.stopped & (self.last_step > 0)
            curv = (d - self.anchor_distance + self.last_step * self.anchor_norm) / self.last_step.clamp_min(
                tiny).square()
            self.curvature = torch.where(worse, curv, torch.zeros_like(curv))
            self.cap = torch.where(worse, 0.5 * self.last_step, self.cap)
            accept = ~worse
            view = (-1, *([1] * (self.point.ndim - 1)))
            self.anchor_point = torch.where(accept.view(view), self.point, self.anchor_point)
            self.anchor_distance = torch.where(accept, d, self.anchor_distance)
            self.anchor_norm = torch.where(accept, norm, self.anchor_norm)
        self.accepted.append(~worse)
        self.rejections += worse.long()
        eta = torch.minimum(self.cap.to(d.dtype), d.clamp_min(0) / norm.clamp_min(tiny))
        # back at the anchor after a rejection: the minimum of the quadratic along the rejected line
        quad = norm / (2 * self.line_curvature.clamp_min(tiny))
        eta = torch.where(self.line_curvature > 0, torch.minimum(eta, quad), eta)
        self.line_curvature = self.curvature  # used at the next evaluation (the anchor) of a rejected path
        new, _ = gradpath_step(self.point, u, eta, self.bounds, self.eps, None, self.stopped | worse)
        if bool(worse.any()):
            new = torch.where(worse.view(-1, *([1] * (new.ndim - 1))), self.anchor_point, new)
        step = torch.linalg.vector_norm((new - self.point).reshape(n, -1), dim=1).to(d.dtype)
        self.last_step = torch.where(worse, torch.zeros_like(step), step)  # the way back is no trial
        return new, norm

    def _target_gradient(self, model: ModelFunction, values: Tensor, z: Tensor) -> Tensor:
        """``grad f_c`` at ``z`` (second backward through the retained graph); the caller checks it for NaN / inf."""
        if not values.requires_grad:
            return model.backward(values, (z,))[0]  # raises NoGradientError with the library's message
        model.cost.backward_calls += 1
        model.cost.backward_rows += int(z.shape[0])
        (g,) = torch.autograd.grad(values.sum(), z, allow_unused=True)
        if g is None:
            return model.backward(values, (z,))[0]
        return g

    def _cf_gradient(self, model: ModelFunction, d: Tensor, z: Tensor, out: Any, retain: bool,
                     check: bool = True) -> Tensor:
        if not d.requires_grad:
            if not (isinstance(out, Tensor) and out.requires_grad):
                raise NoGradientError(
                    "neither the representation nor the model output depends on `inputs` (no gradient flows back; "
                    "is the model run under torch.no_grad() or torch.inference_mode(), or does it detach its "
                    "inputs?); GradPath cannot move.",
                    "inputs",
                )
            return torch.zeros_like(z)  # the representation does not depend on z: every path stays put
        model.cost.backward_calls += 1
        model.cost.backward_rows += int(z.shape[0])
        (u,) = torch.autograd.grad(d.sum(), z, retain_graph=retain, allow_unused=True)
        if u is None:
            return torch.zeros_like(z)
        if check:
            _check_finite_fast(u, f"GradPath step {self.step}: the gradient of the representation distance")
        return u


def representations(
    model: ModelFunction, capture: RepresentationCapture, rows: Tensor, example_index: Tensor | None,
    internal_batch_size: int | None,
) -> Tensor:
    """``phi`` of ``rows`` ``[n, *S]`` without gradients, in chunks -> ``[n, ...]``."""
    parts = []
    key = planner_key(model, (rows,), "ig2-rho")
    with torch.no_grad():
        for a, b in plan_chunks(internal_batch_size, rows.shape[0], row_numel((rows,)), key):
            ex = None if example_index is None else example_index[a:b]
            _, h = capture.forward(model, rows[a:b], ex)
            parts.append(h.detach())
    return torch.cat(parts)


def reference_representations(
    model: ModelFunction, capture: RepresentationCapture, refs: Tensor, batch: int, internal_batch_size: int | None
) -> Tensor:
    """``phi(x^r)`` for every path ``[B * R, ...]`` (computed once per reference when they are shared and no
    per-example forward arguments exist)."""
    r = refs.shape[1]
    shared = refs.shape[0] == 1 and not model._args
    if shared:
        rho = representations(model, capture, refs[0], None, internal_batch_size)
        return rho.repeat(batch, *([1] * (rho.ndim - 1)))
    full = refs.expand(batch, *refs.shape[1:]).reshape(batch * r, *refs.shape[2:])
    example = torch.arange(batch * r, device=refs.device) // r
    return representations(model, capture, full, example, internal_batch_size)


def path_step_sizes(x_rows: Tensor, ref_rows: Tensor, n_steps: int, step_size: float | None) -> Tensor:
    """``eta`` per path ``[P]``: ``|x - x^r|_2 / n_steps`` if ``step_size`` is None, else the constant."""
    if step_size is None:
        return torch.linalg.vector_norm((x_rows - ref_rows).reshape(x_rows.shape[0], -1), dim=1) / n_steps
    return torch.full((x_rows.shape[0],), float(step_size), dtype=x_rows.dtype, device=x_rows.device)


# ----------------------------------------------------------------------------------------------- pure function
@dataclass
class GradPathResult:
    """GradPath for ``B`` explicands x ``R`` references.

    Attributes:
        gradcf: ``[B, R, *S]`` the counterfactual baselines ``GradCF^r = gamma_K``.
        distance: ``[B, R, K + 1]`` representation distance ``D_r(gamma_j)``, ``j = 0 .. K``.
        step_size: ``[B, R]`` the ``eta`` of every path.
        path: ``[B, R, K + 1, *S]`` every path point (only with ``return_path=True``).
        outputs: ``[B, R]`` target output at GradCF; ``predictions`` ``[B, R]`` its argmax class.
        cost: forward/backward passes and wall time.
    """

    gradcf: Tensor
    distance: Tensor
    step_size: Tensor
    path: Tensor | None
    outputs: Tensor
    predictions: Tensor
    cost: _Cost


def gradpath(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    references: Any,
    representation: RepresentationType,
    representation_side: str = "input",
    n_steps: int = 201,
    step_size: float | None = None,
    bounds: tuple[float, float] | None = None,
    eps: float | None = None,
    distance: DistanceType | None = None,
    target: TargetType = None,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    return_path: bool = False,
    eval_mode: bool = True,
    step_rule: str = "fixed",
) -> GradPathResult:
    """GradPath search alone (no attribution): GradCF, the distance along each path and optionally the path.

    Each step costs one forward and one backward per row (the target gradient is not needed here). Arguments
    as in :meth:`pathattr.IG2.explain` (``step_rule`` defaults to the reference's ``"fixed"`` here); ``target``
    only selects the output reported at GradCF.
    """
    check_gradpath_arguments(n_steps, step_size, bounds, eps)
    if isinstance(inputs, tuple):
        raise InputValidationError("gradpath takes a single input tensor, not a tuple.", "inputs")
    from ..forward import as_tuple

    (x,) = as_tuple(inputs)
    capture = RepresentationCapture(forward_func, representation, representation_side)
    refs = resolve_references(x, references)
    batch, r = x.shape[0], refs.shape[1]
    cost = _Cost()
    model = ModelFunction(forward_func, batch, additional_forward_args, cost)
    with model_guard(forward_func, eval_mode), track_cost(cost, x.device):
        f_x = model.resolve_target(target, (x,))
        n = batch * r
        example = torch.arange(n, device=x.device) // r
        x_rows = x.repeat_interleave(r, 0)
        ref_rows = refs.expand(batch, *refs.shape[1:]).reshape(n, *x.shape[1:])
        rho = reference_representations(model, capture, refs, batch, internal_batch_size)
        eta = path_step_sizes(x_rows, ref_rows, n_steps, step_size)
        path = GradPath(
            capture, x_rows, rho, example, n_steps, eta, tuple(map(float, bounds)) if bounds else None,
            float(eps) if eps is not None else default_eps(x.dtype), distance or squared_l2, return_path,
            step_rule,
        )
        end = walk_sequential_path(model, path, internal_batch_size, (x,), f_x.repeat_interleave(r)).end
        assert end is not None
        distances = [*path.distances, end.extras["distance"]]
        outs, pred = end.outputs, end.extras["prediction"]
    shape = x.shape[1:]
    return GradPathResult(
        gradcf=path.point.reshape(batch, r, *shape),
        distance=torch.stack(distances, 1).reshape(batch, r, n_steps + 1),
        step_size=eta.reshape(batch, r),
        path=None if path.path is None else torch.stack(path.path, 1).reshape(batch, r, n_steps + 1, *shape),
        outputs=outs.reshape(batch, r),
        predictions=pred.reshape(batch, r),
        cost=cost,
    )


__all__ = [
    "DEFAULT_EPS",
    "GradPath",
    "GradPathResult",
    "NOISE_FLOOR_ULPS",
    "RepresentationCapture",
    "STEP_RULES",
    "at_noise_floor",
    "check_gradpath_arguments",
    "default_eps",
    "equivalent_step_size",
    "gradpath",
    "gradpath_step",
    "squared_l2",
]
