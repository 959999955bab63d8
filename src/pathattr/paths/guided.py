"""The Guided IG path (Kapishnikov et al., "Guided Integrated Gradients: An Adaptive Path Method for Removing
Noise", CVPR 2021, arXiv 2106.09788), batched over paths.

The path starts at the baseline ``b`` and ends at the input ``x``. At step ``t`` (``alpha = (t + 1) / m``) one
gradient ``G`` is evaluated at the current point ``z``; then, without further model calls, the features with the
smallest ``|G|`` are moved toward the input until the L1 distance to ``x`` has shrunk to ``L (1 - alpha)``
(``L = |x - b|_1``). Every feature's progress ``(z_i - b_i) / (x_i - b_i)`` is kept inside the band
``[alpha - max_dist, alpha + max_dist]``. The attribution is the left Riemann sum ``sum_t G_t * (z_{t+1} - z_t)``
(or any other integrator fed with the recorded gradients, outputs and steps).

The semantics are those of PAIR-code/saliency's ``guided_ig_impl`` (v0.2.1), including its selection rule with
ties: in each inner iteration the threshold is the ``lower`` quantile ``fraction`` of ``|G|`` over **all** ``N``
features, features already at the band ceiling counting as ``+inf``; every not-yet-saturated feature with
``|G|`` at or below the threshold is selected. The implementation is ours, vectorised over ``P`` paths: each
path keeps its own point, ranking and inner-loop state; the loop over inner iterations runs until every path has
finished its step (at most ``N + 1`` iterations, see :func:`guided_ig_step`) and costs one k-th-smallest
selection over ``[P, N]`` per iteration (no sort). Feature-wise work runs in torch (in place, on any device) or,
on CPU, on NumPy views of the same memory (paths of at least :data:`NUMPY_PATHWISE_MIN_FEATURES` features one at a
time, so that a path's arrays stay in the caches); per-path scalars are kept on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputValidationError, NonFiniteError
from .base import SequentialPath, StepEvaluation

#: CPU steps on at most this many path elements (P x N) use the NumPy backend (default: every CPU step). NumPy's
#: single-threaded kernels beat torch's on this work: a step is ~60 passes over ``[P, N]`` float64 arrays, each a
#: separate torch parallel region whose thread barrier costs far more than the pass itself on a busy machine
#: (measured on 2 shared cores, 224x224x3 features: 7-12 ms per step with NumPy, 40-65 ms with torch).
NUMPY_MAX_ELEMENTS = 1 << 62
#: the NumPy step of several paths with at least this many features each steps one path at a time: a step makes
#: ~60 passes over its ``[P, N]`` arrays (~113 bytes per element in all), and one path's arrays stay in the CPU's
#: caches between passes where a batch of large paths streams from memory (measured on 2 shared EPYC cores with
#: ``pathattr_bench.speed.guided_step``: 0.63-0.69x the time per step for 4 paths of 224x224x3 features, 0.65-0.81x
#: for 8 of 50176, about the same for 8 of 16384; 16 paths of 12288 took 3.6 ms batched, 7.2 ms path by path)
NUMPY_PATHWISE_MIN_FEATURES = 1 << 14
#: tolerance of the "target L1 distance reached" test (PAIR's ``EPSILON``; ``math.isclose`` semantics)
EPSILON = 1e-9


def check_guided_arguments(n_steps: int, fraction: float, max_dist: float) -> None:
    """Validate Guided IG's hyperparameters (raises :class:`InputValidationError` naming the argument)."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise InputValidationError(f"`n_steps` must be a positive int, got {n_steps!r}.", "n_steps")
    for name, value in (("fraction", fraction), ("max_dist", max_dist)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise InputValidationError(f"`{name}` must be a number in [0, 1], got {value!r}.", name)


def guided_ig_step(
    point: Tensor,
    inputs: Tensor,
    baselines: Tensor,
    gradients: Tensor,
    l1_total: Tensor,
    step: int,
    n_steps: int,
    fraction: float = 0.25,
    max_dist: float = 0.02,
    diff: Tensor | None = None,
    safe_diff: Tensor | None = None,
    check_finite: bool = True,
    backend: str = "auto",
    workspace: dict | None = None,
) -> tuple[Tensor, int]:
    """One Guided IG step for ``P`` independent paths (pure function).

    Args:
        point: ``[P, N]`` current point ``z_t`` of every path (float64).
        inputs: ``[P, N]`` input end ``x`` of every path.
        baselines: ``[P, N]`` baseline end ``b`` of every path.
        gradients: ``[P, N]`` gradient ``G_t`` of the target output at ``point`` (any float dtype; only ``|G|``
            ranks features, and the ranking is exact in the gradient's own dtype).
        l1_total: ``[P]`` ``|x - b|_1`` per path.
        step: ``t`` in ``0 .. n_steps - 1``.
        n_steps: number of steps ``m``.
        fraction: share ``q`` of **all** ``N`` features selected per inner iteration (``lower`` quantile).
        max_dist: half-width ``delta`` of the progress band, in alpha units (0: IG, 1: unbounded Guided IG).
        diff, safe_diff: optional precomputed ``x - b`` and ``x - b`` with zeros replaced by ones.
        check_finite: check that ``gradients`` are finite (skip only if the caller already did).
        backend: ``"auto"`` (NumPy views for small CPU problems, at most :data:`NUMPY_MAX_ELEMENTS` elements,
            where its per-call overhead is far below torch's; torch otherwise), ``"numpy"`` or ``"torch"``.
            Both give the same results.
        workspace: optional dict in which the NumPy backend keeps its scratch arrays between calls (pass the
            same dict at every step of a path; fresh memory is costly, ~1 page fault per 4 KiB).

    Returns:
        the next point ``z_{t+1}`` (``[P, N]``, same dtype as ``point``) and the number of inner iterations used.

    Algorithm (per path; all paths at once): with ``alpha = (t + 1) / m``, ``lo = max(alpha - delta, 0)``,
    ``hi = min(alpha + delta, 1)``, ``z_lo = b + lo (x - b)``, ``z_hi = b + hi (x - b)`` and
    ``target = L (1 - alpha)``:

    1. features whose progress is below ``lo`` are set to ``z_lo`` (features with ``x_i = b_i`` never lag);
    2. repeat until done: if ``|z - x|_1`` is within ``1e-9`` of ``target`` stop; mark features with
       ``z_i = z_hi_i`` as ``+inf`` in a copy of ``|G|``; ``tau`` = the ``floor(q (N - 1))``-th smallest entry
       of that copy; ``S`` = unmarked features with ``|G_i| <= tau``; ``gamma = (|z - x|_1 - target) / room(S)``
       with ``room(S) = sum_S |z_i - z_hi_i|``; if ``gamma > 1`` set ``z_S = z_hi_S`` and repeat, else move
       ``z_S += gamma (z_hi_S - z_S)`` and stop.

    Termination (proof sketch of the bound ``N + 1`` on inner iterations per step): an iteration either stops
    the path or saturates a non-empty ``S``. ``S`` is non-empty while an unmarked feature exists: if fewer than
    ``floor(q (N - 1)) + 1`` features are unmarked, ``tau = +inf`` and ``S`` is every unmarked feature, otherwise
    ``tau`` is the value of an unmarked feature, which is then in ``S``. Saturated features are marked in the
    next iteration and marks persist within the step (a saturated feature stays at ``z_hi``), so the number of
    unmarked features strictly decreases, from at most ``N``; after at most ``N`` saturating iterations none is
    left, ``room = 0`` and the path stops (PAIR would loop forever there; it can only be reached through rounding,
    because saturating everything gives ``|z - x|_1 = L (1 - hi) <= target``). Finite gradients are required:
    a NaN threshold selects nothing, which is why non-finite gradients raise :class:`NonFiniteError` first.
    """
    if check_finite and not bool(torch.isfinite(gradients).all()):
        raise NonFiniteError(
            f"Guided IG step {step}: the gradient contains NaN or inf; the path cannot rank features "
            "(PAIR's reference implementation loops forever here).",
            "inputs",
        )
    n_paths, n = point.shape
    alpha = (step + 1.0) / n_steps
    a_lo = max(alpha - max_dist, 0.0)
    a_hi = min(alpha + max_dist, 1.0)
    if diff is None:
        diff = inputs - baselines
    if safe_diff is None:
        safe_diff = torch.where(diff == 0, 1.0, diff)
    (l1_host,) = _host_arrays(workspace, "l1_total", (l1_total,))
    goal = l1_host * (1 - (step + 1) / n_steps)  # target L1 distance per path
    kth = int(math.floor((n - 1) * float(fraction)))  # 0-based rank of numpy's quantile(method="lower")
    if backend == "auto":  # NumPy's per-call overhead is far below torch's; torch's threads win on large arrays
        use_numpy = (point.device.type == "cpu" and gradients.device.type == "cpu"
                     and point.numel() <= NUMPY_MAX_ELEMENTS
                     and gradients.dtype in (torch.float32, torch.float64) and point.dtype == torch.float64)
    else:
        use_numpy = backend == "numpy"
    if use_numpy and n_paths == 1 and n < SINGLE_PATH_MAX_FEATURES and backend == "auto":
        x, b, d, safe = (a[0] for a in _host_arrays(workspace, "ends", (inputs, baselines, diff, safe_diff)))
        z, iterations = _single_path_step(point.detach().numpy()[0], x, b, d, safe, gradients.detach().numpy()[0],
                                          a_lo, a_hi, float(goal[0]), kth)
        return torch.from_numpy(z).unsqueeze(0), iterations
    if use_numpy and n_paths > 1 and n >= NUMPY_PATHWISE_MIN_FEATURES:  # the same arithmetic, in the caches
        return _numpy_step_pathwise(point, inputs, baselines, diff, safe_diff, gradients, a_lo, a_hi, goal, kth,
                                    workspace)
    ops: _Ops = _NumpyOps(workspace) if use_numpy else _TorchOps()
    state = ops.start(point, inputs, baselines, diff, safe_diff, gradients, a_lo, a_hi)
    iterations = _inner_loop(ops, state, goal, kth, n)
    return ops.finish(state), iterations


def _numpy_step_pathwise(point: Tensor, inputs: Tensor, baselines: Tensor, diff: Tensor, safe_diff: Tensor,
                         gradients: Tensor, a_lo: float, a_hi: float, goal: np.ndarray, kth: int,
                         workspace: dict | None) -> tuple[Tensor, int]:
    """The NumPy step of :func:`guided_ig_step` one path at a time, each written into its row of the new point
    with the scratch arrays of one path (a path's step depends on its own row only: the points of one batch)."""
    new = torch.empty_like(point)
    out = new.numpy()
    path_ws = None if workspace is None else workspace.setdefault("pathwise", {})
    iterations = 0
    for p in range(point.shape[0]):
        row = slice(p, p + 1)
        ops = _NumpyOps(path_ws, out=out[row])
        state = ops.start(point[row], inputs[row], baselines[row], diff[row], safe_diff[row], gradients[row],
                          a_lo, a_hi)
        iterations = max(iterations, _inner_loop(ops, state, goal[row], kth, point.shape[1]))
        ops.finish(state)
    return new, iterations


def _host_arrays(workspace: dict | None, name: str, tensors: tuple[Tensor, ...]) -> tuple[np.ndarray, ...]:
    """NumPy arrays of ``tensors`` (views on CPU), kept in ``workspace[name]`` while the same tensor objects come
    back: a path passes the same ends and ``|x - b|_1`` at every step."""
    cached = workspace.get(name) if workspace is not None else None
    if cached is not None and len(cached[0]) == len(tensors) and all(a is t for a, t in zip(cached[0], tensors)):
        return cached[1]
    arrays = tuple(t.detach().cpu().numpy() for t in tensors)
    if workspace is not None:
        workspace[name] = (tensors, arrays)
    return arrays


def _inner_loop(ops: _Ops, state: dict, goal: np.ndarray, kth: int, n: int) -> int:
    """The inner iterations of one step; per-path scalars are NumPy arrays, features stay in the backend."""
    n_paths = goal.shape[0]
    if n_paths == 1:
        return _inner_loop_one(ops, state, float(goal[0]), kth, n)
    current = state["current"]
    largest = ops.largest(state)
    done = np.zeros(n_paths, dtype=bool)
    iterations = 0
    for iterations in range(1, n + 2):  # noqa: B007 - at most N + 1 iterations, see guided_ig_step
        done |= np.abs(current - goal) <= np.maximum(EPSILON * np.maximum(np.abs(current), np.abs(goal)), EPSILON)
        if done.all():
            break
        tau = ops.kth_smallest(state, kth)
        # S = unmarked features with |G| <= tau (tau = +inf: every unmarked one); finished paths select nothing
        limit = np.where(np.isinf(tau), largest, tau)
        limit[done] = -1.0
        room_s = ops.select(state, limit)
        positive = room_s > 0
        g = np.where(positive, (current - goal) / np.where(positive, room_s, 1.0), np.inf)
        partial = ~done & positive & (g <= 1)
        grow = ~done & positive & (g > 1)
        stalled = ~done & ~positive  # nothing left to move: stop (only reachable through rounding)
        if partial.any():  # (4b) partial move of S by gamma, applied in finish(); the path's step ends
            ops.mark_partial(state, partial, np.maximum(g, 0.0))
        done |= partial | stalled
        if grow.any():  # (4a) saturate S and iterate
            ops.saturate(state, grow)
            current = current - np.where(grow, room_s, 0.0)
        if done.all():
            break
    return iterations


_TRUE = np.ones(1, dtype=bool)


def _inner_loop_one(ops: _Ops, state: dict, goal: float, kth: int, n: int) -> int:
    """:func:`_inner_loop` for a single path with Python floats for the per-path scalars (the same IEEE double
    operations in the same order, so the same results): about 40 NumPy calls on length-1 arrays per inner
    iteration were most of a step's cost on small models (one example, 64 features: ~80 us of ~130 us)."""
    current = float(state["current"][0])
    largest = ops.largest(state)
    iterations = 0
    for iterations in range(1, n + 2):  # noqa: B007 - at most N + 1 iterations, see guided_ig_step
        if abs(current - goal) <= max(EPSILON * max(abs(current), abs(goal)), EPSILON):
            break
        tau = float(ops.kth_smallest(state, kth)[0])
        limit = largest if math.isinf(tau) else tau
        room_s = float(ops.select(state, np.array([limit]))[0])
        if not room_s > 0:  # nothing left to move: stop (only reachable through rounding)
            break
        g = (current - goal) / room_s
        if g <= 1:  # (4b) partial move of S by gamma, applied in finish(); the path's step ends
            ops.mark_partial(state, _TRUE, np.maximum(np.array([g]), 0.0))
            break
        ops.saturate(state, _TRUE)  # (4a) saturate S and iterate
        current = current - room_s
    return iterations


#: a single CPU path with fewer features than this takes :func:`_single_path_step` (small problems are bound by
#: the number of NumPy calls, not by memory traffic)
SINGLE_PATH_MAX_FEATURES = 1 << 14


def _single_path_step(z0: np.ndarray, x: np.ndarray, b: np.ndarray, d: np.ndarray, safe: np.ndarray,
                      gradient: np.ndarray, a_lo: float, a_hi: float, goal: float, kth: int) -> tuple[np.ndarray, int]:
    """:func:`guided_ig_step` for one path in NumPy on 1-D arrays (point, ends, ``x - b``, its zero-free copy,
    gradient) with as few calls as the algorithm allows; returns the new point (a new array) and the inner
    iterations. The same IEEE operations in the same order as :class:`_NumpyOps` with :func:`_inner_loop_one`, so
    the same point, without scratch-buffer bookkeeping: about 25 NumPy calls per step instead of about 45. On small
    models a step costs its number of calls, and every further kind of call also slows the model's next call down
    (its code is pushed out of the CPU's caches: measured 2 us per call on small models)."""
    n = z0.shape[0]
    z_hi = d * a_hi
    z_hi += b  # PAIR: b + (x - b) * alpha, same rounding
    z = z0.copy()
    if a_lo > 0:  # (1) laggards up to the band floor (features with x_i == b_i have z_i == b_i == z_lo_i)
        progress = z0 - b
        progress /= safe
        lag = progress < a_lo
        if lag.any():
            z_lo = d * a_lo
            z_lo += b
            np.copyto(z, z_lo, where=lag)
    room = np.subtract(z, z_hi)
    np.abs(room, out=room)  # 0 exactly where z == z_hi
    ranked = np.abs(gradient)  # PAIR's selection copy, +inf on marked features
    np.copyto(ranked, np.inf, where=room == 0)
    work = np.subtract(z, x)
    np.abs(work, out=work)
    current = float(work.sum())
    largest = _LARGEST[ranked.dtype]
    as_ranked = ranked.dtype.type
    iterations = 0
    for iterations in range(1, n + 2):  # noqa: B007 - at most N + 1 iterations, see guided_ig_step
        if abs(current - goal) <= max(EPSILON * max(abs(current), abs(goal)), EPSILON):
            break
        tau = float(np.partition(ranked, kth)[kth])
        mask = ranked <= as_ranked(largest if math.isinf(tau) else tau)
        np.multiply(room, mask, out=work)
        room_s = float(work.sum())
        if not room_s > 0:  # nothing left to move: stop (only reachable through rounding)
            break
        g = (current - goal) / room_s
        if g <= 1:  # (4b) partial move of S by gamma; the step ends
            moved = np.subtract(z_hi, z, out=work)
            moved *= max(g, 0.0)
            moved += z  # PAIR: z + (z_hi - z) * gamma
            np.copyto(z, moved, where=mask)
            break
        np.copyto(z, z_hi, where=mask)  # (4a) saturate S and iterate
        np.copyto(ranked, np.inf, where=mask)
        current = current - room_s
    return z, iterations


class _Ops:
    """Feature-wise operations of a Guided IG step on ``[P, N]`` arrays (NumPy on CPU, torch elsewhere)."""

    def start(self, point, inputs, baselines, diff, safe_diff, gradients, a_lo: float, a_hi: float) -> dict:
        raise NotImplementedError

    def largest(self, state: dict) -> float:
        raise NotImplementedError

    def kth_smallest(self, state: dict, k: int) -> np.ndarray:
        raise NotImplementedError

    def select(self, state: dict, limit: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def mark_partial(self, state: dict, rows: np.ndarray, gamma: np.ndarray) -> None:
        raise NotImplementedError

    def saturate(self, state: dict, rows: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self, state: dict) -> Tensor:
        raise NotImplementedError


#: arrays with fewer elements use NumPy's masked kernels directly (the bit selection pays off above this size)
BIT_SELECT_MIN_ELEMENTS = 1 << 14
_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_INT = {2: np.int16, 4: np.int32, 8: np.int64}


def _bits(a: np.ndarray) -> np.ndarray:
    """The IEEE bit pattern of a float array as an unsigned-int view (no copy)."""
    return a.view(_UINT[a.dtype.itemsize])


def _ones_where(mask: np.ndarray, itemsize: int, out: np.ndarray | None = None) -> np.ndarray:
    """All-ones words where ``mask`` is True, zeros elsewhere (unsigned ints of ``itemsize`` bytes)."""
    signed = np.empty(mask.shape, _INT[itemsize]) if out is None else out.view(_INT[itemsize])
    np.copyto(signed, mask, casting="unsafe")
    np.negative(signed, out=signed)  # signed: SIMD negation (NumPy's unsigned negation is slow)
    return signed.view(_UINT[itemsize])


def _select_into(out: np.ndarray, value: np.ndarray | float, mask: np.ndarray, ones: np.ndarray | None = None,
                 scratch: np.ndarray | None = None) -> None:
    """``out[mask] = value[mask]`` (``value`` an array like ``out`` or a scalar), bit-exact and branch-free.

    NumPy's masked kernels (``putmask``, ``copyto(where=)``, ``where``) branch per element and run ~10x slower
    than plain arithmetic on the random-looking masks of a Guided IG step; ``out ^ ((value ^ out) & ones)``
    selects the same bits with SIMD integer operations. ``ones``/``scratch``: optional preallocated arrays.
    """
    if out.size < BIT_SELECT_MIN_ELEMENTS:  # small: one masked kernel beats five calls (Python overhead)
        np.copyto(out, value, where=mask)
        return
    bits = _bits(out)
    ones = _ones_where(mask, out.dtype.itemsize) if ones is None else ones
    v = _bits(np.asarray(value, dtype=out.dtype))
    t = np.bitwise_xor(v, bits, out=None if scratch is None else _bits(scratch))
    np.bitwise_and(t, ones, out=t)
    np.bitwise_xor(bits, t, out=bits)


_LARGEST = {np.dtype(t): float(np.finfo(t).max) for t in (np.float32, np.float64)}


class _NumpyOps(_Ops):
    """CPU backend: NumPy views of the tensors, scratch arrays reused across steps (``workspace``), masked
    updates as branch-free bit selections."""

    def __init__(self, workspace: dict | None = None, out: np.ndarray | None = None) -> None:
        self.ws = {} if workspace is None else workspace
        self.out = out  # where the new point goes (default: a new array)

    def buf(self, name: str, shape: tuple, dtype) -> np.ndarray:
        a = self.ws.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self.ws[name] = np.empty(shape, dtype)
        return a

    def start(self, point, inputs, baselines, diff, safe_diff, gradients, a_lo, a_hi):
        z0 = point.detach().numpy()
        x, b, d, safe = _host_arrays(self.ws, "ends", (inputs, baselines, diff, safe_diff))
        shape = z0.shape
        z_hi = np.multiply(d, a_hi, out=self.buf("z_hi", shape, z0.dtype))
        z_hi += b  # PAIR: b + (x - b) * alpha, same rounding
        if self.out is None:  # the new point (returned; never a scratch array)
            z = z0.copy()
        else:
            z = self.out
            np.copyto(z, z0)
        work = self.buf("work", shape, z0.dtype)
        scratch = self.buf("scratch", shape, z0.dtype)
        ones = self.buf("ones", shape, np.uint64)
        if a_lo > 0:  # (1) laggards up to the band floor (features with x_i == b_i have z_i == b_i == z_lo_i)
            np.subtract(z0, b, out=work)
            work /= safe
            lag = np.less(work, a_lo, out=self.buf("mask", shape, np.bool_))
            np.multiply(d, a_lo, out=work)
            work += b
            _select_into(z, work, lag, _ones_where(lag, 8, ones) if lag.size >= BIT_SELECT_MIN_ELEMENTS else None,
                         scratch)
        room = np.subtract(z, z_hi, out=self.buf("room", shape, z0.dtype))
        np.abs(room, out=room)  # 0 exactly where z == z_hi (IEEE: a - b == 0 iff a == b)
        g = gradients.detach().numpy()
        ranked = np.abs(g, out=self.buf("ranked", shape, g.dtype))  # PAIR's selection copy, +inf on marked
        marked = np.equal(room, 0, out=self.buf("mask", shape, np.bool_))
        if marked.any():  # mostly none: only features with x == b, and features at x once the band reaches it
            marked_ones = None if marked.size < BIT_SELECT_MIN_ELEMENTS else self.ones_for(marked, ranked.dtype)
            _select_into(ranked, np.inf, marked, marked_ones, self.buf("scratch_r", shape, g.dtype))
        np.subtract(z, x, out=work)
        np.abs(work, out=work)
        return {"z": z, "z_hi": z_hi, "room": room, "ranked": ranked, "current": work.sum(1), "work": work,
                "scratch": scratch, "ones": ones, "moving": None, "gamma": np.zeros(shape[0])}

    def ones_for(self, mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """:func:`_ones_where` of ``mask`` for arrays of ``dtype``, in a kept buffer (no fresh memory)."""
        itemsize = np.dtype(dtype).itemsize
        name = "ones" if itemsize == 8 else f"ones{itemsize}"  # 64-bit: the step's own ones array
        return _ones_where(mask, itemsize, self.buf(name, mask.shape, _UINT[itemsize]))

    def largest(self, state):
        return _LARGEST[state["ranked"].dtype]

    def kth_smallest(self, state, k):
        ranked = state["ranked"]
        part = self.buf("partition", ranked.shape, ranked.dtype)  # in place on a kept copy: no fresh memory
        np.copyto(part, ranked)
        part.partition(k, axis=1)
        return part[:, k].astype(np.float64)

    def select(self, state, limit):
        ranked = state["ranked"]
        mask = np.less_equal(ranked, limit.astype(ranked.dtype)[:, None], out=self.buf("mask", ranked.shape, np.bool_))
        state["mask"] = mask
        if mask.size < BIT_SELECT_MIN_ELEMENTS:
            np.multiply(state["room"], mask, out=state["work"])
            return state["work"].sum(1)
        ones = _ones_where(mask, 8, state["ones"])
        # sum of room over the selection: room * mask, exactly (room >= 0, so unselected entries are +0.0)
        np.bitwise_and(_bits(state["room"]), ones, out=_bits(state["work"]))
        return state["work"].sum(1)

    def mark_partial(self, state, rows, gamma):
        mask = state["mask"]  # reused by the next select: what is kept is a copy
        if state["moving"] is None:
            state["moving"] = mask.copy() if rows.all() else mask & rows[:, None]
        else:
            state["moving"] |= mask & rows[:, None]
        state["gamma"][rows] = gamma[rows]

    def saturate(self, state, rows):
        every = bool(rows.all())
        grow = state["mask"] if every else state["mask"] & rows[:, None]
        ranked = state["ranked"]
        if grow.size < BIT_SELECT_MIN_ELEMENTS:
            _select_into(state["z"], state["z_hi"], grow)
            _select_into(ranked, np.inf, grow)
            return
        ones = state["ones"] if every else _ones_where(grow, 8, state["ones"])  # select() left the mask's there
        _select_into(state["z"], state["z_hi"], grow, ones, state["scratch"])
        # the same selection for the ranking's words: the low half of each 64-bit word of ``ones`` (a view)
        ones_r = ones if ranked.itemsize == 8 else ones.view(_UINT[ranked.itemsize])[:, ::8 // ranked.itemsize]
        _select_into(ranked, np.inf, grow, ones_r, self.buf("scratch_r", grow.shape, ranked.dtype))

    def finish(self, state):
        z = state["z"]
        if state["moving"] is not None:
            moved = np.subtract(state["z_hi"], z, out=state["work"])
            moved *= state["gamma"][:, None]
            moved += z  # PAIR: z + (z_hi - z) * gamma
            big = z.size >= BIT_SELECT_MIN_ELEMENTS
            _select_into(z, moved, state["moving"], _ones_where(state["moving"], 8, state["ones"]) if big else None,
                         state["scratch"])
        return torch.from_numpy(z)


class _TorchOps(_Ops):
    """Device backend: in-place torch operations on a few ``[P, N]`` buffers."""

    def start(self, point, inputs, baselines, diff, safe_diff, gradients, a_lo, a_hi):
        z_hi = torch.mul(diff, a_hi).add_(baselines)  # PAIR: b + (x - b) * alpha, same rounding
        work = torch.empty_like(point)
        mask = torch.empty(point.shape, dtype=torch.bool, device=point.device)
        if a_lo > 0:  # (1) laggards up to the band floor (features with x_i == b_i have z_i == b_i == z_lo_i)
            torch.sub(point, baselines, out=work).div_(safe_diff)
            torch.lt(work, a_lo, out=mask)
            torch.mul(diff, a_lo, out=work).add_(baselines)
            z = torch.where(mask, work, point)  # a new tensor: ``point`` is left unchanged
        else:
            z = point.clone()
        room = torch.sub(z, z_hi).abs_()  # 0 exactly where z == z_hi (IEEE: a - b == 0 iff a == b)
        ranked = gradients.abs()
        if ranked.dtype not in (torch.float32, torch.float64):
            ranked = ranked.float()  # exact for half types; NumPy and kthvalue need single or double
        ranked.masked_fill_(room == 0, float("inf"))  # PAIR's selection copy, +inf marks
        current = torch.sub(z, inputs, out=work).abs_().sum(1).cpu().numpy()
        return {"z": z, "z_hi": z_hi, "room": room, "ranked": ranked, "current": current, "work": work,
                "mask": mask, "moving": None, "gamma": np.zeros(z.shape[0])}

    def largest(self, state):
        return float(torch.finfo(state["ranked"].dtype).max)

    def kth_smallest(self, state, k):
        ranked = state["ranked"]
        if ranked.device.type == "cpu":  # NumPy's selection is much faster than torch.kthvalue on CPU
            return np.partition(ranked.numpy(), k, axis=1)[:, k].astype(np.float64)
        return torch.kthvalue(ranked, k + 1, dim=1).values.cpu().numpy().astype(np.float64)

    def _tensor(self, a: np.ndarray, like: Tensor) -> Tensor:
        return torch.from_numpy(a).to(device=like.device, dtype=like.dtype if a.dtype != bool else torch.bool)

    def select(self, state, limit):
        ranked, mask = state["ranked"], state["mask"]
        torch.le(ranked, self._tensor(limit, ranked).unsqueeze(1), out=mask)
        return torch.mul(state["room"], mask, out=state["work"]).sum(1).cpu().numpy()

    def mark_partial(self, state, rows, gamma):
        part = state["mask"] & self._tensor(rows, state["mask"]).unsqueeze(1)
        state["moving"] = part if state["moving"] is None else state["moving"] | part
        state["gamma"][rows] = gamma[rows]

    def saturate(self, state, rows):
        grow = state["mask"] & self._tensor(rows, state["mask"]).unsqueeze(1)
        z = state["z"]
        torch.where(grow, state["z_hi"], z, out=z)
        state["ranked"].masked_fill_(grow, float("inf"))

    def finish(self, state):
        z, work = state["z"], state["work"]
        if state["moving"] is not None:
            gamma = self._tensor(state["gamma"], z).unsqueeze(1)
            torch.sub(state["z_hi"], z, out=work).mul_(gamma).add_(z)  # PAIR: z + (z_hi - z) * gamma
            torch.where(state["moving"], work, z, out=z)
        return z


def flatten_features(tensors: Sequence[Tensor], rows: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Concatenate per-input tensors ``[rows, *S_i]`` into one ``[rows, N]`` matrix (a view where possible)."""
    if len(tensors) == 1:
        flat = tensors[0].reshape(rows, -1)
        return flat if flat.dtype == dtype else flat.to(dtype)
    return torch.cat([t.reshape(rows, -1).to(dtype) for t in tensors], 1)


def unflatten_features(flat: Tensor, like: Sequence[Tensor], dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
    """Split ``[rows, N]`` back into tensors shaped like ``like`` (``[*, *S_i]``), cast to ``dtype``."""
    if len(like) == 1:
        t = like[0]
        dtype = t.dtype if dtype is None else dtype
        part = flat.reshape(flat.shape[0], *t.shape[1:])
        return (part if part.dtype == dtype else part.to(dtype),)
    out, start = [], 0
    for t in like:
        size = math.prod(t.shape[1:])
        part = flat[:, start : start + size].reshape(flat.shape[0], *t.shape[1:])
        out.append(part.to(t.dtype if dtype is None else dtype))
        start += size
    return tuple(out)


class GuidedPath(SequentialPath):
    """State of ``P`` Guided IG paths advanced one step at a time (a :class:`~pathattr.paths.base.SequentialPath`).

    Args:
        inputs: ``[P, N]`` input end of every path (flattened features, any float dtype; kept in float64).
        baselines: ``[P, N]`` baseline end of every path.
        n_steps: number of steps ``m`` (one gradient each).
        fraction: share of all features selected per inner iteration.
        max_dist: half-width of the progress band around the straight line, in alpha units.
        like: per model input a tensor ``[*, *S_i]`` giving its shape and dtype (the ``N`` features are the
            inputs' features concatenated); None: one input ``[P, N]`` in the dtype of ``inputs``.
        example: ``[P]`` example of every path (default: path ``p`` explains example ``p``).

    ``point`` is the current point ``[P, N]`` (float64); :meth:`advance` consumes the gradient at ``point`` and
    returns the displacement ``z_{t+1} - z_t``. Paths whose input equals their baseline (``active`` False)
    never move.
    """

    direction = 1
    dtype = torch.float64

    def __init__(self, inputs: Tensor, baselines: Tensor, n_steps: int, fraction: float, max_dist: float,
                 like: Sequence[Tensor] | None = None, example: Tensor | None = None) -> None:
        check_guided_arguments(n_steps, fraction, max_dist)
        self.inputs = inputs.detach().to(torch.float64)
        self.baselines = baselines.detach().to(torch.float64)
        self.point = self.baselines.clone()
        self.diff = self.inputs - self.baselines
        self.safe_diff = torch.where(self.diff == 0, 1.0, self.diff)
        self.n_steps = n_steps
        self.fraction = float(fraction)
        self.max_dist = float(max_dist)
        self.l1_total = self.diff.abs().sum(1)
        self.active = self.l1_total > 0
        self.step = 0
        self.max_inner_iterations = 0
        self._workspace: dict = {}  # scratch arrays of the NumPy step backend, reused at every step
        self.like: tuple[Tensor, ...] = (inputs.detach()[:1],) if like is None else tuple(like)
        self.example = torch.arange(inputs.shape[0], device=inputs.device) if example is None else example
        n = self.inputs.shape[1]
        #: one small CPU path: NumPy views of its ends for :func:`_single_path_step`, called without the tensor
        #: plumbing of :func:`guided_ig_step` (the same point)
        self._single = None
        if self.inputs.shape[0] == 1 and n < SINGLE_PATH_MAX_FEATURES and self.inputs.device.type == "cpu":
            self._single = (tuple(t.numpy()[0] for t in (self.inputs, self.baselines, self.diff, self.safe_diff)),
                            float(self.l1_total[0]), int(math.floor((n - 1) * self.fraction)))

    @property
    def n_paths(self) -> int:
        return self.point.shape[0]

    def example_index(self, path_index: Tensor) -> Tensor:
        return self.example[path_index]

    def points(self, rows: Tensor | None) -> tuple[Tensor, ...]:
        """Current points of ``rows`` (all if None), shaped and typed like the model inputs."""
        return unflatten_features(self.point if rows is None else self.point[rows], self.like)

    def advance(self, evaluation: StepEvaluation | Tensor, rows: Tensor | None = None,
                check_finite: bool | None = None) -> tuple[Tensor, ...]:
        """Move the paths ``rows`` (all if None; must be the same rows at every step) one step.

        Args:
            evaluation: the engine's evaluation at the current points of those paths (its gradients), or their
                gradient as one ``[len(rows), N]`` tensor.
            check_finite: check the gradients (default: only a raw tensor; the engine's model wrapper has
                already checked its evaluations).
        Returns:
            the displacement ``z_{t+1} - z_t`` (float64), one ``[len(rows), *S_i]`` tensor per input.
        """
        if isinstance(evaluation, Tensor):
            gradients = evaluation
        else:
            grads = evaluation.gradients
            assert grads is not None
            gradients = flatten_features(grads, grads[0].shape[0], grads[0].dtype)
        if check_finite is None:
            check_finite = isinstance(evaluation, Tensor)
        if self.step >= self.n_steps:
            raise RuntimeError("the Guided IG path has already reached the input")
        if rows is not None and rows.numel() == self.point.shape[0]:
            rows = None  # every path: no gather / scatter copies
        if self._single is not None and rows is None and gradients.device.type == "cpu" \
                and gradients.dtype in (torch.float32, torch.float64) and self.point.device.type == "cpu":
            return self._advance_single(gradients, check_finite)
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        z = pick(self.point)
        new, iterations = guided_ig_step(
            z, pick(self.inputs), pick(self.baselines), gradients, pick(self.l1_total),
            self.step, self.n_steps, self.fraction, self.max_dist, pick(self.diff), pick(self.safe_diff),
            check_finite, workspace=self._workspace,
        )
        self.max_inner_iterations = max(self.max_inner_iterations, iterations)
        self.step += 1
        if rows is None:
            self.point = new
        else:
            self.point[rows] = new
        if rows is None and new.device.type == "cpu" and z.device.type == "cpu":  # one NumPy pass, no barrier
            disp = torch.from_numpy(np.subtract(new.numpy(), z.numpy()))
        else:
            disp = new.sub_(z) if rows is not None else new - z
        return unflatten_features(disp, self.like, torch.float64)

    def _advance_single(self, gradients: Tensor, check_finite: bool) -> tuple[Tensor, ...]:
        """:meth:`advance` of one small CPU path: :func:`guided_ig_step`'s arithmetic (its single-path case) on
        the NumPy views kept at construction."""
        if check_finite and not bool(torch.isfinite(gradients).all()):
            guided_ig_step(self.point, self.inputs, self.baselines, gradients, self.l1_total, self.step,
                           self.n_steps, check_finite=True)  # raises the step's NonFiniteError
        (x, b, d, safe), l1_total, kth = self._single  # type: ignore[misc]
        step, n_steps = self.step, self.n_steps
        alpha = (step + 1.0) / n_steps
        z0 = self.point.numpy()[0]
        z, iterations = _single_path_step(
            z0, x, b, d, safe, gradients.detach().numpy()[0], max(alpha - self.max_dist, 0.0),
            min(alpha + self.max_dist, 1.0), l1_total * (1 - (step + 1) / n_steps), kth,
        )
        self.max_inner_iterations = max(self.max_inner_iterations, iterations)
        self.step = step + 1
        self.point = torch.from_numpy(z).unsqueeze(0)
        return unflatten_features(torch.from_numpy(np.subtract(z, z0)).unsqueeze(0), self.like, torch.float64)


__all__ = [
    "EPSILON",
    "NUMPY_MAX_ELEMENTS",
    "NUMPY_PATHWISE_MIN_FEATURES",
    "GuidedPath",
    "check_guided_arguments",
    "flatten_features",
    "guided_ig_step",
    "unflatten_features",
]
