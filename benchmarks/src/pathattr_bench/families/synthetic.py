"""Synthetic tabular XAI benchmark with known ground truth (in the spirit of OpenXAI / XAI-Bench).

Generator (seeded, :func:`make_synthetic`): ``d`` features, ``C`` classes. Each class ``c`` owns a disjoint set
``S_c`` of ``k`` informative features with fixed signs ``s_{c,j} = +-1``; an example of class ``c`` is
``x = noise + shift * s_c * 1[j in S_c]`` with ``noise ~ N(0, I)``. The remaining ``d - C * k`` features are pure
noise that no class uses. The class of an example is therefore decided by which block of features is shifted, and
the **ground-truth relevance mask** of an example of class ``c`` is ``S_c`` (the features whose shift is the
evidence for ``c``). With the default zero baseline (the feature mean), attributions on the informative block of
the explained class should dominate and the pure-noise features should get none.

Model: an MLP ``d -> 64 -> 64 -> C`` (ReLU) trained deterministically (seeded init and minibatch order, Adam, 20
epochs); held-out accuracy bar :data:`MIN_ACCURACY`. IG2's representation is the input of the last layer.

References:
    Agarwal et al. "OpenXAI: Towards a Transparent Evaluation of Model Explanations." NeurIPS 2022 D&B.
    Liu et al. "Synthetic Benchmarks for Scientific Research in Explainable Machine Learning." NeurIPS 2021 D&B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._fit import accuracy, bundled_weights, load_or_train, seeded_init_, train_classifier
from .base import Family

MIN_ACCURACY = 0.95
N_FEATURES = 24
N_CLASSES = 4
N_INFORMATIVE = 4
SHIFT = 2.0


@dataclass
class SyntheticData:
    """Output of :func:`make_synthetic`: features ``x [N, d]``, labels ``y [N]``, ground-truth masks
    ``mask [N, d]`` (bool), the per-class relevant features ``class_features [C, k]`` and signs ``[C, k]``."""

    x: Tensor
    y: Tensor
    mask: Tensor
    class_features: Tensor
    signs: Tensor


def make_synthetic(
    n: int,
    seed: int = 0,
    n_features: int = N_FEATURES,
    n_classes: int = N_CLASSES,
    n_informative: int = N_INFORMATIVE,
    shift: float = SHIFT,
) -> SyntheticData:
    """Draw ``n`` examples of the benchmark (see the module docstring). The feature blocks and signs depend only
    on ``seed`` (one generator), so train and test sets drawn with the same seed share them; the examples are
    drawn from a second stream (``seed`` + 1) so that ``n`` does not change the blocks."""
    if n_classes * n_informative > n_features:
        raise ValueError("n_classes * n_informative must not exceed n_features")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_features, generator=g)
    class_features = perm[: n_classes * n_informative].view(n_classes, n_informative)
    signs = torch.where(torch.rand(n_classes, n_informative, generator=g) < 0.5, -1.0, 1.0)
    gx = torch.Generator().manual_seed(seed + 1_000_003)
    y = torch.randint(n_classes, (n,), generator=gx)
    x = torch.randn(n, n_features, generator=gx)
    mask = torch.zeros(n, n_features, dtype=torch.bool)
    rows = torch.arange(n).unsqueeze(1)
    cols = class_features[y]
    x[rows, cols] += shift * signs[y]
    mask[rows, cols] = True
    return SyntheticData(x=x, y=y, mask=mask, class_features=class_features, signs=signs)


class TabularMLP(nn.Module):
    """``d -> hidden -> hidden -> C`` ReLU MLP; ``head`` is the final linear layer (IG2's representation is its
    input)."""

    def __init__(self, n_features: int = N_FEATURES, n_classes: int = N_CLASSES, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def load_family(
    quick: bool = True, seed: int = 0, data_path: str | None = None, cache_dir: str | None = None,
    retrain: bool = False,
) -> Family:
    """The synthetic family: 4,000 training and 1,000 held-out examples (generator seed ``seed``), the MLP
    (trained and cached), explicands = the first 32 (quick) or 500 (full) held-out examples, reference pool = 256
    training examples. ``data_path`` is not used (the data are generated); ``retrain`` ignores shipped and
    cached weights."""
    if data_path is not None:
        raise ValueError("the synthetic family generates its data; `data_path` must be None.")
    data = make_synthetic(5000, seed)
    train_x, train_y = data.x[:4000], data.y[:4000]
    test_x, test_y, test_mask = data.x[4000:], data.y[4000:], data.mask[4000:]
    config = {"family": "synthetic", "seed": seed, "n": 5000, "d": N_FEATURES, "C": N_CLASSES,
              "k": N_INFORMATIVE, "shift": SHIFT, "hidden": 64, "epochs": 20, "batch": 256, "lr": 5e-3, "v": 1}

    def build() -> nn.Module:
        return seeded_init_(TabularMLP(), torch.Generator().manual_seed(seed + 17))

    def train(model: nn.Module) -> dict:
        return train_classifier(model, train_x, train_y, epochs=20, batch_size=256, lr=5e-3,
                                generator=torch.Generator().manual_seed(seed + 29))

    bundled = bundled_weights("synthetic_mlp.pt") if seed == 0 else None
    model, facts = load_or_train("synthetic-mlp", config, build, train, cache_dir, bundled=bundled, retrain=retrain)
    acc = accuracy(model, test_x, test_y)
    n_explain = 32 if quick else 500
    family = Family(
        name="synthetic",
        model_name="mlp-64x64",
        model=model,
        inputs=test_x[:n_explain].clone(),
        labels=test_y[:n_explain].clone(),
        reference_pool=train_x[:256].clone(),
        reference_labels=train_y[:256].clone(),
        representation=model.head,
        accuracy=acc,
        min_accuracy=MIN_ACCURACY,
        n_classes=N_CLASSES,
        bounds=None,
        ground_truth=test_mask[:n_explain].clone(),
        spatial=False,
        baseline="zeros",
        ig2={"n_steps": 16 if quick else 64, "n_references": 4 if quick else 8, "recipe": "other_class"},
        info={
            "dataset": f"generated: {N_CLASSES} classes, {N_FEATURES} features, {N_INFORMATIVE} informative per "
            f"class (shift {SHIFT}), {N_FEATURES - N_CLASSES * N_INFORMATIVE} pure-noise features; 4000 train / "
            "1000 held-out",
            "class_features": data.class_features.tolist(),
            "held_out": int(test_x.shape[0]),
            "explicands": n_explain,
            **{k: v for k, v in facts.items() if k != "config"},
        },
    )
    family.check_accuracy()
    return family
