"""Shared pieces of the speed benchmarks: the benchmark models and inputs, interleaved timing, the machine line."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# ----------------------------------------------------------------------------------------------- models


class SmallCNN(nn.Module):
    """Two conv blocks + linear head on 3x32x32 inputs (a CIFAR-sized CNN)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def make_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A benchmark model in eval mode and its per-example input shape."""
    torch.manual_seed(0)
    if name == "mlp":
        layers = [nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)]
        return nn.Sequential(*layers).eval(), (64,)
    if name == "cnn":
        return SmallCNN().eval(), (3, 32, 32)
    if name == "efficientnet":
        from ..imagenet import load_efficientnet_lite0

        return load_efficientnet_lite0(), (3, 224, 224)
    raise ValueError(f"unknown model {name!r}")


def representation_of(name: str, model: nn.Module) -> nn.Module:
    """The layer IG2 compares representations at (the input of the final linear layer)."""
    return model.classifier if name == "efficientnet" else (model.fc if name == "cnn" else model[-1])


def make_inputs(name: str, shape: tuple[int, ...], n: int, seed: int = 1) -> torch.Tensor:
    """``n`` inputs: for EfficientNet the bundled photo ``chelsea`` with per-example brightness, else uniform."""
    g = torch.Generator().manual_seed(seed)
    if name == "efficientnet":
        try:
            from ..imagenet import load_photo

            photo = load_photo("chelsea")
            return photo.unsqueeze(0).repeat(n, 1, 1, 1) * (0.9 + 0.1 * torch.rand(n, 1, 1, 1, generator=g))
        except Exception:  # pragma: no cover - photo packages missing
            pass
    return torch.rand(n, *shape, generator=g)


# ----------------------------------------------------------------------------------------------- timing


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


#: a measurement lasts at least this long (short functions run several times in a row; the shared machine's
#: scheduler slices are ~10 ms) ...
MIN_MEASURE_SECONDS = 0.1
#: ... with at most this many calls
MAX_INNER = 50
#: CPU-time medians of the last :func:`interleaved_medians` call (process time of all threads)
LAST_CPU: dict[str, float] = {}


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each function over ``repeats`` rounds after one warm-up round; in every round the
    functions run in turn, so a change of machine load affects all of them alike. A function faster than
    :data:`MIN_MEASURE_SECONDS` runs several times per measurement (count fixed in the warm-up round). The
    medians of the process CPU time (all threads; less sensitive to other processes) go to :data:`LAST_CPU`."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    inner = dict.fromkeys(fns, 1)
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(inner[name]):
                fn()
            wall = time.perf_counter() - t0
            if round_:
                times[name].append(wall / inner[name])
                cpu[name].append((time.process_time() - c0) / inner[name])
            else:  # short functions repeat inside a measurement (>= MIN_MEASURE_SECONDS): scheduler noise
                inner[name] = max(1, min(MAX_INNER, math.ceil(MIN_MEASURE_SECONDS / max(wall, 1e-6))))
    LAST_CPU.clear()
    LAST_CPU.update({k: statistics.median(v) for k, v in cpu.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def forward_backward(model: nn.Module, x: torch.Tensor, target: int = 0) -> None:
    """One plain batched forward+backward w.r.t. the input: the unit of the floor."""
    x = x.detach().requires_grad_(True)
    out = model(x)[:, target].sum()
    torch.autograd.grad(out, x)


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"Python {platform.python_version()}; {platform.system()} {platform.release()}; "
        f"RAM {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
    )
