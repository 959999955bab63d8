"""Deterministic training and on-disk caching of the models of the synthetic, MNIST (and ImageNet) families.

Every random draw (weight initialisation, minibatch order, augmentation) goes through an explicit
``torch.Generator`` seeded by the caller; the global RNG is never touched. A trained state dict is cached under
``cache_dir`` (default ``$PATHATTR_CACHE`` or ``~/.cache/pathattr``) with a JSON sidecar holding the training
facts, keyed by a hash of everything that determines the weights. Accuracy is always re-measured after loading.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$PATHATTR_CACHE``, else ``~/.cache/pathattr``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PATHATTR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pathattr"


def bundled_weights(file_name: str) -> Path | None:
    """A state dict shipped in ``pathattr/bench/data`` (with its ``.json`` sidecar), or None if absent."""
    from importlib import resources

    try:
        path = Path(str(resources.files("pathattr_bench").joinpath("data", file_name)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - unusual installs
        return None
    return path if path.is_file() else None


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def seeded_init_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every Linear / Conv layer of ``module`` with PyTorch's default scheme (Kaiming-uniform with
    ``a = sqrt(5)``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases), drawing from
    ``generator`` in module order. Returns ``module``."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            bound = 1.0 / math.sqrt(layer.weight[0].numel())
            with torch.no_grad():
                nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
                if layer.bias is not None:
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return module


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Predicted class of every row of ``x`` ``[N, *S]`` -> ``[N]`` (model evaluated in eval mode, restored)."""
    was_training = model.training
    model.eval()
    try:
        out = [model(x[lo : lo + batch_size]).argmax(1) for lo in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Fraction of ``x`` ``[N, *S]`` classified as ``y`` ``[N]``."""
    if x.shape[0] == 0:
        raise ValueError("accuracy of an empty set")
    return float((predict(model, x, batch_size) == y).double().mean())


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    weight_decay: float = 0.0,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` with Adam and cross-entropy on ``(x [N, *S], y [N])``; minibatch order (and ``augment``)
    drawn from ``generator``; cosine learning-rate decay. Leaves the model in eval mode and returns training
    facts (epochs, seconds, final training loss)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    total = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    last = float("nan")
    epoch_iter: Any = range(epochs)
    if progress:
        try:
            from tqdm.auto import tqdm

            epoch_iter = tqdm(epoch_iter, desc="training", leave=False)
        except ImportError:  # pragma: no cover - tqdm is optional
            pass
    model.train()
    try:
        for _ in epoch_iter:
            order = torch.randperm(n, generator=generator)
            for lo in range(0, n, batch_size):
                idx = order[lo : lo + batch_size]
                xb = x[idx]
                if augment is not None:
                    xb = augment(xb, generator)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), y[idx])
                loss.backward()
                opt.step()
                sched.step()
                last = float(loss.detach())
    finally:
        model.eval()
    seconds = round(time.perf_counter() - start, 2)
    return {"epochs": epochs, "batch_size": batch_size, "lr": lr, "train_seconds": seconds, "final_train_loss": last}


def load_or_train(
    name: str,
    config: dict[str, Any],
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict[str, Any]],
    cache_dir: str | os.PathLike | None = None,
    bundled: Path | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """A model in eval mode plus its training facts, from a stored state dict when possible.

    Looks for ``bundled`` (a state dict shipped in the package, with a ``.json`` sidecar whose ``config_hash``
    must match ``config``), then ``<cache_dir>/<name>-<hash>.pt``; otherwise (or with ``retrain``) builds, trains
    (``train(model)`` returns facts) and writes the cache. The facts say where the weights came from
    (``weights_source``).
    """
    key = config_hash(config)
    path = default_cache_dir(cache_dir) / f"{name}-{key}.pt"
    candidates = [] if retrain else [(p, s) for p, s in ((bundled, "bundled"), (path, "cache")) if p is not None]
    for file, source in candidates:
        meta_file = file.with_suffix(".json")
        if file.is_file() and meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            if meta.get("config_hash") != key:
                continue
            model = build()
            model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
            model.eval()
            return model, {**meta, "weights_source": source}
    model = build()
    facts = train(model)
    model.eval()
    meta = {"config_hash": key, "config": config, **facts}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    except OSError:  # pragma: no cover - read-only cache: the model is still usable
        pass
    return model, {**meta, "weights_source": "trained now"}
