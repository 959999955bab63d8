"""Speed and memory benchmark: pathattr against its peers and against the floor.

Run ``python -m pathattr.bench.speed`` (or ``pathattr bench speed``); results go to ``docs/performance.md``.

*Floor*: the cost a perfect implementation would pay, i.e. the same number of plain batched forward+backward
rows at the fastest batch size for that model, measured on the same machine in the same run. Every timing is
the median of ``--repeats`` runs after one warm-up run. Ratios: ``ours / peer`` and ``ours / floor``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pathattr

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
        from .imagenet import load_efficientnet_lite0

        return load_efficientnet_lite0(), (3, 224, 224)
    raise ValueError(f"unknown model {name!r}")


def make_inputs(name: str, shape: tuple[int, ...], n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if name == "efficientnet":
        try:
            from .imagenet import load_photo

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


def forward_backward(model: nn.Module, x: torch.Tensor, target: int = 0) -> None:
    """One plain batched forward+backward w.r.t. the input: the unit of the floor."""
    x = x.detach().requires_grad_(True)
    out = model(x)[:, target].sum()
    torch.autograd.grad(out, x)


@dataclass
class Floor:
    """Per-row forward+backward seconds at each batch size; the floor uses the fastest."""

    per_row: dict[int, float] = field(default_factory=dict)

    @property
    def best_batch(self) -> int:
        return min(self.per_row, key=self.per_row.get)

    @property
    def best_per_row(self) -> float:
        return min(self.per_row.values())

    def seconds(self, rows: int) -> float:
        return rows * self.best_per_row


def measure_floor(model: nn.Module, shape: tuple[int, ...], sizes: list[int], repeats: int) -> Floor:
    floor = Floor()
    for n in sizes:
        x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(2))
        for p in model.parameters():
            p.requires_grad_(False)
        floor.per_row[n] = median_seconds(lambda x=x: forward_backward(model, x), repeats) / n
        for p in model.parameters():
            p.requires_grad_(True)
    return floor


# ----------------------------------------------------------------------------------------------- cases


@dataclass
class Row:
    model: str
    method: str
    batch: int
    n_steps: int
    ours: float
    peer_name: str = ""
    peer: float | None = None
    peer_best: float | None = None
    floor: float | None = None
    note: str = ""

    def cells(self) -> list[str]:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        def r(a: float | None, b: float | None) -> str:
            return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"

        return [
            self.model, self.method, str(self.batch), str(self.n_steps), f(self.ours / self.batch),
            self.peer_name or "-", f(None if self.peer is None else self.peer / self.batch),
            r(self.ours, self.peer), r(self.ours, self.peer_best), r(self.ours, self.floor), r(self.peer, self.floor),
            self.note,
        ]


HEADER = [
    "model", "method", "N", "steps", "ours s/expl", "peer", "peer s/expl", "ours/peer", "ours/peer-best",
    "ours/floor", "peer/floor", "note",
]


def ig_cases(model_name: str, model: nn.Module, shape, floor: Floor, batches, n_steps: int, repeats: int) -> list[Row]:
    from captum.attr import IntegratedGradients as CaptumIG

    rows = []
    for n in batches:
        x = make_inputs(model_name, shape, n)
        for method in ("gausslegendre", "riemann_trapezoid"):
            ig = pathattr.IntegratedGradients(model)
            ours = median_seconds(
                lambda x=x, m=method, ig=ig: ig.attribute(x, target=0, n_steps=n_steps, method=m), repeats
            )
            peer = median_seconds(
                lambda x=x, m=method: CaptumIG(model).attribute(x, target=0, n_steps=n_steps, method=m), repeats
            )
            best = peer
            for ibs in sorted({max(n, b) for b in (8, 16, 32, 64)}):
                if ibs >= n * n_steps:
                    continue
                best = min(best, median_seconds(
                    lambda x=x, m=method, i=ibs: CaptumIG(model).attribute(
                        x, target=0, n_steps=n_steps, method=m, internal_batch_size=i
                    ),
                    repeats,
                ))
            rows.append(Row(model_name, f"IG {method}", n, n_steps, ours, "Captum IG", peer, best,
                            floor.seconds(n * n_steps), "ours: default planner; peer: default and best ibs"))
    return rows


def scaling_rows(model_name: str, model: nn.Module, shape, floor: Floor, repeats: int, quick: bool) -> list[Row]:
    rows = []
    batches = (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32, 64)
    steps = (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32, 64)
    for n in batches:
        x = make_inputs(model_name, shape, n)
        t = median_seconds(lambda x=x: pathattr.IntegratedGradients(model).attribute(x, target=0, n_steps=16), repeats)
        rows.append(Row(model_name, "IG scaling in N", n, 16, t, floor=floor.seconds(n * 16)))
    x = make_inputs(model_name, shape, 4)
    for s in steps:
        t = median_seconds(
            lambda s=s: pathattr.IntegratedGradients(model).attribute(x, target=0, n_steps=s, method="riemann_right"),
            repeats,
        )
        rows.append(Row(model_name, "IG scaling in steps", 4, s, t, floor=floor.seconds(4 * s)))
    return rows


def memory_probe(model_name: str, batch: int, n_steps: int, ibs: int | None) -> dict[str, float]:
    """Peak resident memory increase (MiB) of one IG call, measured in a fresh subprocess."""
    code = (
        "import resource, json, torch, pathattr\n"
        "from pathattr.bench.speed import make_model, make_inputs\n"
        "torch.set_num_threads(2)\n"
        f"m, shape = make_model({model_name!r}); x = make_inputs({model_name!r}, shape, {batch})\n"
        "ig = pathattr.IntegratedGradients(m); ig.attribute(x[:1], target=0, n_steps=2, internal_batch_size=1)\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"ig.attribute(x, target=0, n_steps={n_steps}, internal_batch_size={ibs!r})\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'peak_increase_mib': (peak - base) / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- report


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


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathattr bench speed", description=__doc__)
    parser.add_argument("--models", default="mlp,cnn,efficientnet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats (a smoke run)")
    parser.add_argument("--out", default="docs/performance.md")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    started = time.time()
    sections: list[str] = []
    all_rows: list[Row] = []
    for name in args.models.split(","):
        model, shape = make_model(name)
        big = name == "efficientnet"
        sizes = [1, 2, 4, 8, 16, 32] if big else [1, 4, 16, 64, 256, 1024]
        floor = measure_floor(model, shape, sizes, repeats)
        sections.append(
            f"**{name}** floor: best {floor.best_per_row * 1e3:.2f} ms per forward+backward row at batch "
            f"{floor.best_batch} (" + ", ".join(f"{b}: {v * 1e3:.2f}" for b, v in floor.per_row.items()) + " ms/row)"
        )
        n_steps = 16 if big and args.quick else 32
        batches = (1, 4) if big else (1, 8, 32)
        all_rows += ig_cases(name, model, shape, floor, batches, n_steps, repeats)
        if not big:
            all_rows += scaling_rows(name, model, shape, floor, repeats, args.quick)
        for extra in EXTRA_CASES:
            all_rows += extra(name, model, shape, floor, repeats, args.quick)
    memory = []
    for ibs in (8, 32, 128):
        memory.append((ibs, memory_probe("cnn", 16, 32, ibs)["peak_increase_mib"]))
    elapsed = time.time() - started
    command = "python -m pathattr.bench.speed " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [
        "# Performance",
        "",
        f"Machine: {machine_description()}.",
        "",
        f"Command: `{command.strip()}` (took {elapsed / 60:.1f} min). Medians of {repeats} runs after a warm-up.",
        "Seconds are per explanation (per example). *floor* = the same number of plain batched forward+backward",
        "rows at the model's fastest batch size, measured in this run.",
        "",
        *[f"- {s}" for s in sections],
        "",
        table(all_rows),
        "",
        "Peak resident memory increase of IG (small CNN, N=16, 32 steps) against `internal_batch_size`:",
        "",
        "| internal_batch_size | peak increase (MiB) |",
        "|---|---|",
        *[f"| {i} | {m:.1f} |" for i, m in memory],
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(text))
    print("\n".join(text))
    return 0


#: further benchmark cases (Guided IG, Blur IG, IG2, metrics) register here:
#: ``fn(model_name, model, shape, floor, repeats, quick) -> list[Row]``
EXTRA_CASES: list[Callable[..., list[Row]]] = []


if __name__ == "__main__":
    sys.exit(main())
