"""Localisation against a ground-truth region: the pointing game and the energy-based pointing game.

References:
    Zhang, Bargal, Lin, Brandt, Shen, Sclaroff. "Top-down Neural Attention by Excitation Backprop." ECCV 2016,
    arXiv:1608.00507 (pointing game, 15-pixel tolerance).
    Wang et al. "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks." CVPR-W 2020,
    arXiv:1910.01279 (energy-based pointing game).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputValidationError
from ._common import Metric, MetricResult, align_to_mask, as_mask, float_batch, non_negative_float


@dataclass(kw_only=True)
class PointingGameResult(MetricResult):
    """Result of :func:`pointing_game`.

    Attributes:
        scores: 1.0 for a hit, 0.0 for a miss, per example ``[B]``; :meth:`mean` is the accuracy
            ``hits / (hits + misses)``.
        hits: bool ``[B]``.
        max_locations: flat index of the first maximum per example ``[B]`` (row-major over the mask's shape).
    """

    hits: Tensor
    max_locations: Tensor


def _disk_dilate(mask: Tensor, radius: float) -> Tensor:
    """Dilate ``[B, H, W]`` boolean masks by a Euclidean disk of ``radius`` pixels."""
    r = int(radius)
    if r == 0:
        return mask
    offsets = torch.arange(-r, r + 1, dtype=torch.float64)
    disk = (offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) <= radius**2
    weight = disk.to(torch.float32).view(1, 1, 2 * r + 1, 2 * r + 1).to(mask.device)
    out = F.conv2d(mask.to(torch.float32).unsqueeze(1), weight, padding=r)
    return out.squeeze(1) > 0.5


def _prepare(attributions: Any, mask: Any, channel_reduction: str) -> tuple[Tensor, Tensor]:
    m = as_mask(mask, "mask")
    a = float_batch(attributions, "attributions", min_ndim=2).to(m.device)
    a = align_to_mask(a, m, channel_reduction)
    if a.shape != m.shape:
        raise InputValidationError(f"`attributions` {tuple(a.shape)} do not match `mask` {tuple(m.shape)}.", "mask")
    empty = (~m.reshape(m.shape[0], -1).any(1)).nonzero().flatten().tolist()
    if empty:
        raise InputValidationError(f"`mask` of examples {empty[:8]} is empty (no ground-truth region).", "mask")
    return a, m


def pointing_game(
    attributions: Any, mask: Any, *, tolerance: float = 0.0, channel_reduction: str = "sum"
) -> PointingGameResult:
    """Pointing game (Zhang et al., ECCV 2016): a **hit** if the attribution's maximum lies inside the
    ground-truth region, dilated by ``tolerance`` pixels (the paper uses 15). **Higher is better.**

    Tie rule: if the maximum value occurs several times, the example is a hit if **any** maximum lies inside
    the (dilated) region.

    Args:
        attributions: ``[B, H, W]`` (or ``[B, *S]`` for any shape with ``tolerance=0``), or ``[B, C, H, W]``
            reduced over channels with ``channel_reduction`` when the mask is ``[B, H, W]``.
        mask: ground-truth region ``[B, H, W]`` (bool or 0/1), e.g. a filled bounding box or segmentation.
        tolerance: dilation radius in pixels (a Euclidean disk); needs 2-D masks if nonzero.
        channel_reduction: ``"sum"``, ``"abs_sum"``, ``"abs_of_sum"``, ``"mean"`` or ``"max_abs"``.
    """
    tolerance = non_negative_float(tolerance, "tolerance")
    a, m = _prepare(attributions, mask, channel_reduction)
    if tolerance > 0:
        if m.ndim != 3:
            raise InputValidationError("a nonzero `tolerance` needs masks [B, H, W].", "tolerance")
        m = _disk_dilate(m, tolerance)
    b = a.shape[0]
    flat = a.reshape(b, -1)
    is_max = flat == flat.amax(1, keepdim=True)
    hits = (is_max & m.reshape(b, -1)).any(1)
    hyper = {"tolerance": tolerance, "channel_reduction": channel_reduction, "ties": "any maximum inside => hit"}
    return PointingGameResult(
        name="pointing_game", scores=hits.to(torch.float64), direction="higher", hyperparameters=hyper,
        hits=hits, max_locations=flat.argmax(1),
    )


def energy_pointing_game(attributions: Any, mask: Any, *, channel_reduction: str = "sum") -> MetricResult:
    """Energy-based pointing game (Wang et al., Score-CAM, CVPR-W 2020): the share of the positive attribution
    mass that falls inside the ground-truth region (a bounding box in the paper). **Higher is better** (1 = all
    positive energy inside).

    ``EPG = sum_{i in mask} max(A_i, 0) / sum_i max(A_i, 0)``; raises if an example has no positive attribution.

    Args as :func:`pointing_game` (no tolerance). Note ``channel_reduction`` is applied before the positive
    part; use ``"abs_sum"`` to count the magnitude of every channel.
    """
    a, m = _prepare(attributions, mask, channel_reduction)
    b = a.shape[0]
    pos = a.reshape(b, -1).to(torch.float64).clamp_min(0)
    total = pos.sum(1)
    bad = (total == 0).nonzero().flatten().tolist()
    if bad:
        raise InputValidationError(
            f"examples {bad[:8]} have no positive attribution; the energy-based pointing game is undefined.",
            "attributions",
        )
    inside = (pos * m.reshape(b, -1)).sum(1)
    hyper = {"channel_reduction": channel_reduction, "energy": "positive part of the attribution"}
    return MetricResult(name="energy_pointing_game", scores=inside / total, direction="higher", hyperparameters=hyper)


class PointingGame(Metric):
    """Class form of :func:`pointing_game`. Higher is better."""

    function = staticmethod(pointing_game)
    higher_is_better = True


class EnergyPointingGame(Metric):
    """Class form of :func:`energy_pointing_game`. Higher is better."""

    function = staticmethod(energy_pointing_game)
    higher_is_better = True
