"""Agreement with a known ground truth: explanations (OpenXAI-style) and masks of important features.

References:
    Agarwal et al. "OpenXAI: Towards a Transparent Evaluation of Model Explanations." NeurIPS 2022 Datasets and
    Benchmarks (feature / rank / sign agreement, rank correlation; code ``AI4LIFE-GROUP/OpenXAI``).
    Liu et al. "Synthetic Benchmarks for Scientific Research in Explainable Machine Learning." NeurIPS 2021
    Datasets and Benchmarks (XAI-Bench).

Two kinds of ground truth:

* a ground-truth **explanation** ``g`` (e.g. ``m * w`` of a logistic model on OpenXAI-style data):
  :func:`feature_agreement`, :func:`rank_agreement` (optionally with signs) and :func:`rank_correlation`;
* a ground-truth **mask** ``m`` (True = important): :func:`auroc`, :func:`average_precision`,
  :func:`top_k_precision`, treating the attribution as a score that should rank the mask's features first.

Every function is batched over examples (one score per example), takes tensors or NumPy arrays, and breaks
ties in a top-k selection by flat index (lower first; ``torch.sort(stable=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InputValidationError
from ._common import (
    Metric,
    MetricResult,
    align_to_mask,
    as_mask,
    average_ranks,
    float_batch,
    resolve_k,
    sort_descending,
    spearman,
)


@dataclass(kw_only=True)
class GroundTruthResult(MetricResult):
    """Result of a ground-truth metric.

    Attributes:
        scores: one score per example ``[B]`` (float64).
        k: the number of top features used (None where all features are used).
    """

    k: int | None = None


def _pair(attributions: Any, ground_truth: Any) -> tuple[Tensor, Tensor]:
    a = float_batch(attributions, "attributions", min_ndim=1)
    g = float_batch(ground_truth, "ground_truth", min_ndim=1).to(a.device)
    if a.shape != g.shape:
        raise InputValidationError(
            f"`attributions` {tuple(a.shape)} and `ground_truth` {tuple(g.shape)} must have the same shape.",
            "ground_truth",
        )
    b = a.shape[0]
    return a.reshape(b, -1).to(torch.float64), g.reshape(b, -1).to(torch.float64)


def _top_k(values: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest entries of each row, in rank order ``[B, k]`` (ties: lower index first)."""
    return sort_descending(values)[:, :k]


def _agreement(attributions: Any, ground_truth: Any, k: Any, rank: bool, sign: bool, name: str) -> GroundTruthResult:
    a, g = _pair(attributions, ground_truth)
    n = a.shape[1]
    k = resolve_k(k, n)
    top_a = _top_k(a.abs(), k)
    top_g = _top_k(g.abs(), k)
    # rank: same feature at the same position; else: is each top-k feature of A among the top-k of G?
    same = top_a == top_g if rank else (top_a.unsqueeze(2) == top_g.unsqueeze(1)).any(2)
    if sign:
        same = same & (torch.sign(a.gather(1, top_a)) == torch.sign(g.gather(1, top_a)))
    scores = same.to(torch.float64).mean(1)
    hyper = {"k": k, "n_features": n, "ranking": "by |value|, ties: lower index first", "sign": sign}
    return GroundTruthResult(name=name, scores=scores, direction="higher", hyperparameters=hyper, k=k)


def feature_agreement(attributions: Any, ground_truth: Any, k: int | float = 0.25) -> GroundTruthResult:
    """Feature agreement (OpenXAI FA): the fraction of the ``k`` features with the largest ``|attribution|``
    that are also among the ``k`` features with the largest ``|ground truth|``. **Higher is better** (1 = same
    top-k set).

    ``FA = |top_k(|A|) ∩ top_k(|G|)| / k``.

    Args:
        attributions: ``[B, *S]`` tensor or array.
        ground_truth: ground-truth explanation ``[B, *S]`` (e.g. ``m * w`` for OpenXAI's logistic model).
        k: number of top features (int) or a fraction of all features (float in ``(0, 1]``, ``floor(k N)``, at
            least 1).
    """
    return _agreement(attributions, ground_truth, k, rank=False, sign=False, name="feature_agreement")


def rank_agreement(attributions: Any, ground_truth: Any, k: int | float = 0.25) -> GroundTruthResult:
    """Rank agreement (OpenXAI RA): the fraction of rank positions ``j < k`` at which the ``j``-th most important
    feature by ``|attribution|`` is the ``j``-th most important by ``|ground truth|``. **Higher is better.**

    Args as :func:`feature_agreement`.
    """
    return _agreement(attributions, ground_truth, k, rank=True, sign=False, name="rank_agreement")


def sign_agreement(attributions: Any, ground_truth: Any, k: int | float = 0.25) -> GroundTruthResult:
    """Sign agreement (OpenXAI SA): like :func:`feature_agreement`, a top-k feature counts only if its
    attribution has the ground truth's sign. **Higher is better.**"""
    return _agreement(attributions, ground_truth, k, rank=False, sign=True, name="sign_agreement")


def signed_rank_agreement(attributions: Any, ground_truth: Any, k: int | float = 0.25) -> GroundTruthResult:
    """Signed rank agreement (OpenXAI SRA): like :func:`rank_agreement`, with matching signs. **Higher is
    better.**"""
    return _agreement(attributions, ground_truth, k, rank=True, sign=True, name="signed_rank_agreement")


def rank_correlation(attributions: Any, ground_truth: Any, absolute: bool = True) -> GroundTruthResult:
    """Rank correlation (OpenXAI RC): Spearman correlation over all features between the attribution and the
    ground truth (of their absolute values if ``absolute``, OpenXAI's choice). Ties get average ranks (SciPy
    ``spearmanr``). **Higher is better**; raises if a row is constant (the correlation is undefined).
    """
    a, g = _pair(attributions, ground_truth)
    if absolute:
        a, g = a.abs(), g.abs()
    rho = spearman(a, g)
    if bool(torch.isnan(rho).any()):
        bad = torch.isnan(rho).nonzero().flatten().tolist()
        raise InputValidationError(
            f"rank correlation is undefined for examples {bad[:8]}: the attribution or the ground truth is constant.",
            "attributions",
        )
    hyper = {"absolute": absolute, "n_features": a.shape[1], "ties": "average ranks"}
    return GroundTruthResult(name="rank_correlation", scores=rho, direction="higher", hyperparameters=hyper)


# ------------------------------------------------------------------------------------------- masks
def _scores_and_labels(
    attributions: Any, mask: Any, channel_reduction: str, absolute: bool
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    m = as_mask(mask, "mask")
    a = float_batch(attributions, "attributions", min_ndim=2).to(m.device)
    a = align_to_mask(a, m, channel_reduction)
    if a.shape != m.shape:
        raise InputValidationError(f"`attributions` {tuple(a.shape)} do not match `mask` {tuple(m.shape)}.", "mask")
    b = a.shape[0]
    s = a.reshape(b, -1).to(torch.float64)
    if absolute:
        s = s.abs()
    y = m.reshape(b, -1)
    n_pos = y.sum(1)
    bad = ((n_pos == 0) | (n_pos == y.shape[1])).nonzero().flatten().tolist()
    if bad:
        raise InputValidationError(
            f"`mask` of examples {bad[:8]} is all False or all True; the metric needs both important and "
            "unimportant features.",
            "mask",
        )
    hyper = {"channel_reduction": channel_reduction, "absolute": absolute, "n_features": s.shape[1]}
    return s, y, hyper


def auroc(attributions: Any, mask: Any, *, channel_reduction: str = "sum", absolute: bool = False) -> GroundTruthResult:
    """Area under the ROC curve of the attribution as a score for the ground-truth mask, per example.
    **Higher is better** (1: every masked feature outranks every unmasked one; 0.5: chance).

    ``AUROC = (sum of the ranks of the positives - P (P + 1) / 2) / (P N)`` (Mann-Whitney U, ties get average
    ranks, i.e. count one half, as ``sklearn.metrics.roc_auc_score``).

    Args:
        attributions: ``[B, *S]``, or ``[B, C, *S]`` reduced over channels with ``channel_reduction`` when the
            mask is ``[B, *S]``.
        mask: ground-truth mask ``[B, *S]`` (bool or 0/1); True = important. Each example needs both classes.
        channel_reduction: ``"sum"``, ``"abs_sum"``, ``"abs_of_sum"``, ``"mean"`` or ``"max_abs"``.
        absolute: score features by ``|attribution|``.
    """
    s, y, hyper = _scores_and_labels(attributions, mask, channel_reduction, absolute)
    ranks = average_ranks(s)
    p = y.sum(1).to(torch.float64)
    n = y.shape[1] - p
    u = (ranks * y).sum(1) - p * (p + 1) / 2
    return GroundTruthResult(name="auroc", scores=u / (p * n), direction="higher", hyperparameters=hyper)


def average_precision(
    attributions: Any, mask: Any, *, channel_reduction: str = "sum", absolute: bool = False
) -> GroundTruthResult:
    """Average precision of the attribution as a score for the ground-truth mask, per example (step-wise, as
    ``sklearn.metrics.average_precision_score``: ``AP = sum_n (R_n - R_{n-1}) P_n`` over distinct score
    thresholds, tied scores entering together). **Higher is better** (1 = perfect ranking; a random ranking
    gives about the share of positives). Args as :func:`auroc`.
    """
    s, y, hyper = _scores_and_labels(attributions, mask, channel_reduction, absolute)
    sorted_s, order = torch.sort(s, dim=1, descending=True, stable=True)
    yy = y.gather(1, order).to(torch.float64)
    tp = yy.cumsum(1)
    count = torch.arange(1, s.shape[1] + 1, dtype=torch.float64, device=s.device).expand_as(tp)
    last = torch.ones_like(yy, dtype=torch.bool)
    last[:, :-1] = sorted_s[:, 1:] != sorted_s[:, :-1]  # end of a group of tied scores = a threshold
    p = tp[:, -1:]
    precision = tp / count
    recall = tp / p
    # recall increments between consecutive thresholds
    recall_at = torch.where(last, recall, torch.zeros_like(recall))
    prev = torch.where(last, recall, torch.full_like(recall, -1.0))
    # previous threshold's recall: running max of recalls at thresholds, shifted by one threshold
    running = prev.cummax(1).values
    shifted = torch.zeros_like(running)
    shifted[:, 1:] = running[:, :-1].clamp_min(0)
    ap = torch.where(last, (recall_at - shifted) * precision, torch.zeros_like(precision)).sum(1)
    return GroundTruthResult(name="average_precision", scores=ap, direction="higher", hyperparameters=hyper)


def top_k_precision(
    attributions: Any, mask: Any, k: int | float, *, channel_reduction: str = "sum", absolute: bool = False
) -> GroundTruthResult:
    """Top-k precision: the fraction of the ``k`` highest-attributed features that lie in the ground-truth mask
    (ties: lower flat index first). **Higher is better.**

    Args:
        attributions, mask, channel_reduction, absolute: as :func:`auroc`.
        k: number of features (int) or a fraction of all features (float in ``(0, 1]``).
    """
    s, y, hyper = _scores_and_labels(attributions, mask, channel_reduction, absolute)
    k = resolve_k(k, s.shape[1])
    top = _top_k(s, k)
    scores = y.gather(1, top).to(torch.float64).mean(1)
    return GroundTruthResult(
        name="top_k_precision", scores=scores, direction="higher", hyperparameters={**hyper, "k": k}, k=k
    )


# ------------------------------------------------------------------------------------------- class forms
class FeatureAgreement(Metric):
    """Class form of :func:`feature_agreement`. Higher is better."""

    function = staticmethod(feature_agreement)
    higher_is_better = True


class RankAgreement(Metric):
    """Class form of :func:`rank_agreement`. Higher is better."""

    function = staticmethod(rank_agreement)
    higher_is_better = True


class AUROC(Metric):
    """Class form of :func:`auroc`. Higher is better."""

    function = staticmethod(auroc)
    higher_is_better = True


class AveragePrecision(Metric):
    """Class form of :func:`average_precision`. Higher is better."""

    function = staticmethod(average_precision)
    higher_is_better = True


class TopKPrecision(Metric):
    """Class form of :func:`top_k_precision`. Higher is better."""

    function = staticmethod(top_k_precision)
    higher_is_better = True
