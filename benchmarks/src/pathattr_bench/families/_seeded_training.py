"""Shared plumbing of the text, wafer and faces families: seeded training, held-out accuracy, weight caching.

Determinism without the global RNG: model construction and training run inside
:func:`seeded` (a ``torch.random.fork_rng`` scope seeded with the family seed, so dropout and initialisation are
reproducible and the caller's global RNG state is restored afterwards); mini-batch order comes from an explicit
``torch.Generator``; training runs with one intra-op thread (restored afterwards), so the weights do not
depend on the machine's core count. Trained weights are cached as ``{"state_dict", "meta"}`` files loadable with
``torch.load(weights_only=True)``; a cached or committed file is used only when its ``key`` (a digest of the
data, the architecture and the training recipe) matches, and accuracy is always re-measured after loading.
``python -m pathattr_bench.families._seeded_training`` retrains the three default models (seed 0) and rewrites
the committed float16 weights under ``pathattr/bench/data/weights/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import _fit


def digest(*parts: Any) -> str:
    """A short SHA-256 digest of arrays/tensors (by bytes, shape and dtype) and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Tensor):
            part = part.detach().cpu().numpy()
        if isinstance(part, np.ndarray):
            h.update(str((part.shape, part.dtype.str)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run a block with one intra-op torch thread, restoring the caller's thread count afterwards.

    Training these small models is dominated by per-op synchronisation: on a busy 2-core machine two threads
    were 20x slower than one (BBC Kim-CNN, 2 epochs: 44.6 s vs 2.0 s). One thread also makes the float
    reductions, hence the trained weights, independent of the machine's core count.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the global torch RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
) -> float:
    """Train ``model`` with Adam and cross-entropy on ``(x [N, ...], y [N])``; returns the seconds taken.

    Shuffling (and ``augment(batch, generator)``) use a ``torch.Generator`` seeded with ``seed``; dropout uses
    the global RNG, so call this inside :func:`seeded`. Runs :func:`single_threaded`. The model is left in eval
    mode.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    model.train()
    with single_threaded():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                xb = x[idx] if augment is None else augment(x[idx], gen)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(xb), y[idx]).backward()
                opt.step()
    model.eval()
    return time.perf_counter() - start


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (chunks of 256 rows, as these models were measured)."""
    return _fit.accuracy(model, x, y, batch_size=256)


def save_weights(path: Path, model: nn.Module, meta: dict[str, Any], half: bool = False) -> None:
    """Write ``{"state_dict", "meta"}`` atomically (``half`` stores floating tensors as float16)."""
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).clone()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save({"state_dict": state, "meta": meta}, tmp)
    os.replace(tmp, path)


def load_weights(path: Path | Any, model: nn.Module, key: str) -> dict[str, Any] | None:
    """Load a weights file into ``model`` if it exists and its ``meta["key"]`` equals ``key``; returns meta."""
    try:
        with (open(path, "rb") if isinstance(path, Path) else path.open("rb")) as fh:
            blob = torch.load(fh, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        return None
    except Exception:  # a truncated or foreign cache file is ignored (and overwritten by a retrain)
        return None
    meta = blob.get("meta", {}) if isinstance(blob, dict) else {}
    if meta.get("key") != key:
        return None
    reference = model.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in blob["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()
    return dict(meta)


def committed_weights(name: str) -> Any:
    """The packaged weights file ``pathattr/bench/data/weights/<name>`` (a Traversable; may not exist)."""
    return resources.files("pathattr_bench").joinpath("data", "weights", name)


def obtain_model(
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], float],
    *,
    key: str,
    seed: int,
    cache_file: Path,
    committed: str | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Committed weights (if their key matches), else the cache, else train deterministically and cache.

    Args:
        build: makes a fresh model (called inside :func:`seeded`).
        train: trains it in place, returns seconds taken.
        key: digest of data + architecture + recipe that a stored file must match.
        seed: seeds initialisation and training.
        cache_file: where a freshly trained model is written.
        committed: file name under ``pathattr/bench/data/weights/`` to try first (float16-rounded weights).
        retrain: ignore stored weights and train from scratch (the cache is still updated).

    Returns:
        ``(model in eval mode, info)`` with ``info["weights_source"]`` in ``{"committed", "cache", "trained"}``
        and ``info["train_seconds"]``.
    """
    with seeded(seed):
        model = build()
    if not retrain:
        if committed is not None:
            meta = load_weights(committed_weights(committed), model, key)
            if meta is not None:
                return model, {"weights_source": "committed", "train_seconds": meta.get("train_seconds")}
        meta = load_weights(cache_file, model, key)
        if meta is not None:
            return model, {"weights_source": "cache", "train_seconds": meta.get("train_seconds")}
    with seeded(seed):
        model = build()
        seconds = train(model)
    model.eval()
    with contextlib.suppress(OSError):  # a read-only cache is not fatal: the model is retrained next time
        save_weights(cache_file, model, {"key": key, "train_seconds": seconds, "torch": str(torch.__version__)})
    return model, {"weights_source": "trained", "train_seconds": seconds, "cache_file": str(cache_file)}


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of indices ``0..N-1`` into sorted (train, test) index arrays."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = max(1, int(round(test_fraction * len(idx)))) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def per_class_pick(labels: np.ndarray, per_class: int, seed: int, classes: list[int] | None = None) -> np.ndarray:
    """Up to ``per_class`` seeded picks of each class (in class order), as positions into ``labels``."""
    rng = np.random.default_rng(seed)
    out = []
    for c in classes if classes is not None else np.unique(labels).tolist():
        idx = np.flatnonzero(labels == c)
        out.append(np.sort(idx[rng.permutation(len(idx))[:per_class]]))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def export_committed(cache_file: Path, name: str, folder: Path | None = None) -> Path:
    """Copy a trained cache file into the package's ``data/weights/<name>`` with float16 weights (same key)."""
    blob = torch.load(cache_file, map_location="cpu", weights_only=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    target = (folder or Path(str(committed_weights(name))).parent) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "meta": {**blob["meta"], "stored_as": "float16"}}, target)
    return target
