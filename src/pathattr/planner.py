"""The chunk planner: how many rows go into one model call.

Every method evaluates *rows* (examples x baselines x steps, or examples x references at one step of a
sequential path) in chunks of at most ``internal_batch_size`` rows; with ``internal_batch_size=None`` the
automatic plan of :func:`plan_chunks` picks the chunk size by measuring the caller's time per row. This module
depends on nothing else in the package but the error types, so paths and the engine can both use it.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

from torch import Tensor

from .errors import InputValidationError

#: memory cap of the automatic planner: input elements per chunk when ``internal_batch_size`` is None
AUTO_ELEMENT_BUDGET = 1 << 22
#: the automatic planner starts at this many input elements per chunk (at least 4 rows)
AUTO_START_ELEMENTS = 1 << 16
#: it keeps doubling while the time per row is within this factor of the best seen so far
AUTO_TOLERANCE = 1.15
#: ... and then settles on the smallest size whose time per row is within this factor of the best: where the time
#: per row is flat, larger chunks gain nothing and risk much (on CPU, allocations above glibc's mmap ceiling of 32
#: MiB get fresh pages on every call: a small CNN's deletion metric in 256- and 528-row chunks took 1.6-2.0x the
#: time of 16-64-row chunks, 19-35 k page faults and 32-52 ms of kernel time per call, in some processes only)
AUTO_SETTLE_TOLERANCE = 1.05

_best_chunk: dict[tuple, int] = {}
#: unfinished explorations of the automatic planner: key -> (next size, {size: seconds per row}, {size: samples})
_exploration: dict[Hashable, tuple[int, dict[int, float], dict[int, int]]] = {}
#: measurements per chunk size before the automatic planner judges it (the fastest one counts)
AUTO_SAMPLES = 2
#: ... unless the first measurement of a size is already this much slower per row than the best size and lost
#: more than :data:`AUTO_ONE_OFF_SECONDS` against it: more than the one-off cost of a new batch shape (kernel
#: selection, allocation: milliseconds), so it is a real slowdown (EfficientNet-Lite0 on CPU: 27-row chunks cost
#: ~2.5x per row of 8-16-row chunks, ~1.5 s lost per chunk; measuring them twice made the first calls of a process
#: ~1.7x the floor)
AUTO_GIVE_UP = 1.5
AUTO_ONE_OFF_SECONDS = 0.05
#: the automatic planner stops growing the chunk once one chunk takes this long: a larger chunk could only save the
#: per-call overhead (well under 1 ms on CPU, so < 0.5 %), while the exploration of larger chunks costs the first
#: calls of a process (EfficientNet-Lite0 on CPU: 4 rows ~0.23 s, 27 rows ~2.5x slower per row than 4-16)
AUTO_LONG_CHUNK_SECONDS = 0.25


def resolve_chunk_size(internal_batch_size: int | None, n_rows: int, row_numel: int = 1) -> int:
    """Rows per forward call for a fixed plan.

    ``None`` gives the memory cap ``max(1, AUTO_ELEMENT_BUDGET // row_numel)`` rows (about 27 rows of a 224x224
    RGB image, all rows of small tabular inputs); an int must be positive.
    """
    if internal_batch_size is None:
        return max(1, min(n_rows, AUTO_ELEMENT_BUDGET // max(1, row_numel)))
    if isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int) or internal_batch_size < 1:
        raise InputValidationError(
            f"`internal_batch_size` must be a positive int or None, got {internal_batch_size!r}.",
            "internal_batch_size",
        )
    return internal_batch_size


def row_numel(inputs: Sequence[Tensor]) -> int:
    """Scalar input features per row (all inputs together)."""
    return sum(int(t[0].numel()) for t in inputs)


def chunk_ranges(n_rows: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges covering ``range(n_rows)``."""
    for start in range(0, n_rows, chunk_size):
        yield start, min(start + chunk_size, n_rows)


def plan_chunks(
    internal_batch_size: int | None, n_rows: int, numel: int = 1, key: Hashable | None = None
) -> Iterator[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges; with ``internal_batch_size=None`` the sizes adapt to speed.

    The automatic plan measures the wall time the caller spends on each chunk (the code between two iterations). It
    starts at about :data:`AUTO_START_ELEMENTS` input elements per chunk (at least 4 rows) and doubles the size
    while the time per row (the fastest of :data:`AUTO_SAMPLES` chunks of that size, since the first call at a new
    shape pays one-off costs; a size whose first chunk is :data:`AUTO_GIVE_UP` times slower per row than the best
    and lost more than :data:`AUTO_ONE_OFF_SECONDS` is judged at once) stays within :data:`AUTO_TOLERANCE` of the
    best seen, up to the memory cap of :func:`resolve_chunk_size` and until a chunk takes
    :data:`AUTO_LONG_CHUNK_SECONDS`; it then settles on the smallest size tried whose time per row is within
    :data:`AUTO_SETTLE_TOLERANCE` of the best (per-call overhead makes small chunks measurably slower where it
    matters; where the time per row is flat, large chunks only add memory and the risk of a slowdown the exploration
    did not see, such as page faults or activations spilling out of cache). The exploration uses the real work, so
    nothing is computed twice, and the chosen size is remembered per ``key`` (model, row layout) for later calls; a
    call too short to finish the exploration leaves its state under ``key`` and the next call continues it; a whole
    call shorter than the size being explored but longer than every other size measured is measured as a size of its
    own, and if its time per row is beyond :data:`AUTO_TOLERANCE` of the best, the plan settles as above. A leftover
    of at most half a chunk is folded into the last chunk (within the memory cap) rather than paid for with a call.
    Results do not depend on the plan (running sums) up to float rounding; pass an int for bit-identical reruns.
    """
    if internal_batch_size is not None:
        yield from chunk_ranges(n_rows, resolve_chunk_size(internal_batch_size, n_rows, numel))
        return
    cap, size, exploring, resumed = _auto_start(numel, key)
    tried: dict[int, float] = dict(resumed[1]) if resumed else {}
    samples: dict[int, int] = dict(resumed[2]) if resumed else {}
    start = 0
    while start < n_rows:
        stop = min(start + size, n_rows)
        if not exploring and 0 < n_rows - stop <= size // 2 and n_rows - start <= cap:
            stop = n_rows  # fold a small leftover into this chunk instead of paying a call for it
        t0 = time.perf_counter()
        yield start, stop
        rate = (time.perf_counter() - t0) / (stop - start)
        short = exploring and stop - start < size and _measures_short_call(n_rows, start, tried, samples)
        if exploring and (stop - start == size or short):
            # the first call at a new batch shape pays one-off costs (kernel selection, allocations): every size is
            # measured AUTO_SAMPLES times and judged by its fastest measurement
            length = stop - start
            tried[length] = min(rate, tried.get(length, float("inf")))
            samples[length] = samples.get(length, 0) + 1
            best = min(tried.values())
            clear_loss = rate > best * AUTO_GIVE_UP and (rate - best) * length > AUTO_ONE_OFF_SECONDS
            if samples[length] < AUTO_SAMPLES and not clear_loss:
                start = stop
                continue
            slower = tried[length] > best * AUTO_TOLERANCE
            if short and not slower:  # leaves the exploration of `size` to a longer call
                start = stop
                continue
            if not slower and size < cap and tried[size] * size < AUTO_LONG_CHUNK_SECONDS:
                size = min(cap, size * 2)
            else:
                size = min(s for s, r in tried.items() if r <= best * AUTO_SETTLE_TOLERANCE)
                exploring = False
                if key is not None:
                    _best_chunk[key] = size
                    _exploration.pop(key, None)
        start = stop
    if exploring and key is not None:
        _exploration[key] = (size, tried, samples)  # short calls continue the exploration where this one stopped


def _measures_short_call(n_rows: int, start: int, tried: dict[int, float], samples: dict[int, int]) -> bool:
    """Whether an exploring plan measures a whole call shorter than the size it explores: when the call is longer
    than every other size measured so far and has not been measured :data:`AUTO_SAMPLES` times. Calls of a fixed length
    (one example of a small model) would otherwise never show whether one chunk of all their rows is slower per row
    than the best size tried (the small CNN at one example and 50 steps: 16 and 32 rows measured, 64 next, and the
    one 50-row chunk 1.1-1.5x the time of 32 + 18 rows in processes where its activations get fresh pages)."""
    return start == 0 and bool(tried) and n_rows >= max(tried) and samples.get(n_rows, 0) < AUTO_SAMPLES


def _auto_start(numel: int, key: Hashable | None) -> tuple[int, int, bool, tuple | None]:
    """Where the automatic plan for ``key`` starts: ``(memory cap in rows, first chunk size, whether it is still
    exploring, the resumed exploration state or None)``."""
    cap = max(1, AUTO_ELEMENT_BUDGET // max(1, numel))  # memory cap (rows), independent of this call's size
    known = _best_chunk.get(key) if key is not None else None
    first = 1 << max(2, (AUTO_START_ELEMENTS // max(1, numel)).bit_length() - 1)
    resumed = _exploration.get(key) if key is not None and known is None else None
    size = min(cap, known or (resumed[0] if resumed else first))
    return cap, size, known is None and size < cap, resumed


def plan_is_one_chunk(
    internal_batch_size: int | None, n_rows: int, numel: int = 1, key: Hashable | None = None
) -> bool:
    """Whether :func:`plan_chunks` would give the single range ``(0, n_rows)`` and learn nothing from it (no
    measurement of the automatic plan): the caller may then evaluate all rows at once without planning."""
    if internal_batch_size is not None:
        return n_rows <= resolve_chunk_size(internal_batch_size, n_rows, numel)
    cap, size, exploring, resumed = _auto_start(numel, key)
    if exploring:  # only a chunk shorter than the size is not measured, unless it is a call worth measuring
        return n_rows < size and not (resumed and _measures_short_call(n_rows, 0, resumed[1], resumed[2]))
    return n_rows <= size or (n_rows - size <= size // 2 and n_rows <= cap)


def planner_key(model: Any, rows: Sequence[Tensor], kind: str) -> tuple:
    """Cache key of the automatic planner: the model, what is computed and the row layout."""
    return (id(model.forward_func), kind, tuple((tuple(t.shape[1:]), t.dtype, t.device.type) for t in rows))
