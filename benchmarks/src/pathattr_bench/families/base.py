"""The contract between an evaluation family (data + model) and the benchmark runner.

A family module ``pathattr_bench.families.<name>`` exposes ``load_family(quick: bool = True, seed: int = 0,
data_path: str | None = None, cache_dir: str | None = None) -> Family``. With ``data_path=None`` it builds the
offline default (bundled or generated real data, model trained deterministically or loaded and cached); with a
path it reads the user's copy of the real dataset (e.g. MNIST IDX files, TREC files, the WM-811K pickle, CelebA).
The runner only ever sees :class:`Family`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


class AccuracyError(RuntimeError):
    """A trained or loaded model is below its family's stated accuracy: an error, not a result."""


@dataclass
class Family:
    """Everything the runner needs to explain and evaluate one family.

    Attributes:
        name: family key (``"synthetic"``, ``"mnist"``, ``"imagenet"``, ``"text"``, ``"wafer"``, ``"faces"``).
        model_name: what model this is (e.g. ``"efficientnet-lite0"``, ``"cnn-3x32"``); part of the store key.
        model: ``nn.Module`` in eval mode mapping ``inputs [N, *S]`` to logits ``[N, C]``.
        inputs: explicands ``[N, *S]`` in attribution space (pixels in [0, 1], one-hot wafer maps, token
            embeddings ``[N, L, E]``, tabular features).
        labels: ground-truth class of each explicand ``[N]`` (long).
        reference_pool: candidates for IG2 references / Expected-Gradients baselines ``[M, *S]``.
        reference_labels: class of each pool sample ``[M]`` (long).
        representation: module whose *input* is IG2's representation (the penultimate features), or None.
        accuracy: held-out accuracy of ``model`` (fraction in [0, 1]), measured by the family on held-out data.
        min_accuracy: the stated bar; ``load_family`` raises :class:`AccuracyError` below it.
        n_classes: number of output classes.
        bounds: ``(lo, hi)`` box of valid inputs (used to clip IG2/Guided paths, metric substrates), or None.
        ground_truth: boolean masks of truly important features, ``[N, *S]`` or spatial ``[N, H, W]``, or None.
        token_mask: for text, ``[N, L]`` bool (True = real token, False = padding), else None.
        spatial: True if inputs are channels-first images ``[N, C, H, W]`` (enables Blur IG, pixel metrics).
        baseline: default IG baseline spec (``"zeros"``, a float, a tensor ``[*S]``).
        normal_class: class used for the "reference from a chosen class" recipe (wafer ``none``), else None.
        ig2: IG2 settings for this family (``n_steps``, ``step_size``, ``n_references``, recipe ...).
        info: free-form facts for the report (dataset source, sizes, training time, seed ...).
        budget: optional runner settings that size the work for this family (all optional): ``quick_steps`` /
            ``full_steps`` (path steps of IG, Guided IG, Blur IG, and samples of EG), ``quick_metric_steps`` /
            ``full_metric_steps`` (insertion/deletion steps), ``batch_size`` (explicands per attribution call).
    """

    name: str
    model_name: str
    model: nn.Module
    inputs: Tensor
    labels: Tensor
    reference_pool: Tensor
    reference_labels: Tensor
    representation: nn.Module | None
    accuracy: float
    min_accuracy: float
    n_classes: int
    bounds: tuple[float, float] | None = None
    ground_truth: Tensor | None = None
    token_mask: Tensor | None = None
    spatial: bool = False
    baseline: Any = "zeros"
    normal_class: int | None = None
    ig2: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)

    def check_accuracy(self) -> None:
        """Raise :class:`AccuracyError` if the model is below its stated accuracy."""
        if not self.accuracy >= self.min_accuracy:
            raise AccuracyError(
                f"{self.name}/{self.model_name}: held-out accuracy {self.accuracy:.4f} is below the stated "
                f"minimum {self.min_accuracy:.4f}"
            )
