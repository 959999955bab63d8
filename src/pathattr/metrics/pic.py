"""Performance Information Curves (PIC): Softmax Information Curve (SIC) and Accuracy Information Curve (AIC),
compatible with PAIR's reference implementation.

Reference: Kapishnikov, Bolukbasi, Viegas, Terry. "XRAI: Better Attributions Through Regions." ICCV 2019,
arXiv:1906.02825; code ``PAIR-code/saliency``, ``saliency/metrics/pic.py`` (v0.2.1, Apache-2.0).

The "information" of an image is the byte length of its lossless WebP encoding; "blurred" images are made by
Delaunay-linear interpolation of the unrevealed pixels from the revealed ones (not a Gaussian blur). Both need
Pillow (with WebP support) and SciPy, imported lazily: install the ``pic`` extra.

Differences from the reference, all on purpose:

* batched: every image and threshold is interpolated first, then the model sees all of them in chunks of
  ``internal_batch_size`` rows; one Delaunay triangulation per mask serves all channels;
* the random seed mask comes from an explicit ``generator`` (or is passed in), never from ``np.random``;
* our own trapezoid (``np.trapz`` is gone in NumPy 2.4) and a real check that aggregated curves share one
  x-axis (the reference's check is a no-op);
* greyscale images keep their shape when a mask reveals every pixel (the reference returns ``[H, W, 1]``);
* skipped images are reported with their reason instead of raising.

Kept exactly as the reference: the thresholds' quantile rule (``np.quantile``, linear, ``saliency >= q``), the
corner pixels always revealed, the channel-mean fill, float32 rounding of interpolated uint8 pixels, the
normalisation and clipping, the monotone running maximum, and the resolution of duplicate x values when the
curve is resampled (SciPy ``interp1d`` on a stably sorted x: at ``x = 0`` the anchor ``(0, 0)`` wins over a
curve point ``(0, p)``; on the last interval the first point with ``x = 1`` is used).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputValidationError
from ..forward import ModelFunction, TargetType
from ..randomness import as_generator
from ._common import (
    CHANNEL_REDUCTIONS,
    DEPRECATED,
    Metric,
    MetricResult,
    as_target,
    choice,
    chunk_size_for,
    chunks,
    describe,
    guard,
    internal_batch_size_alias,
    non_negative_float,
    positive_int,
    reduce_channels,
    to_tensor,
    trapezoid,
)

#: thresholds suggested by PAIR's notebook (fractions of the most salient pixels revealed)
DEFAULT_THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75)

SKIP_LOW_PREDICTION = "original prediction below min_pred_value"
SKIP_ENTROPY = "fully blurred image not less informative than the original (webp size)"
SKIP_PREDICTION = "prediction on fully blurred image not lower than on the original"


@dataclass(kw_only=True)
class PICResult(MetricResult):
    """Result of :func:`sic` / :func:`aic`.

    Attributes:
        scores: AUC of each image's curve ``[B]`` (NaN for skipped images).
        curve_x: shared x-axis ``[num_data_points + 1]`` (``0, 1/n, ..., (n-1)/n, 1``).
        curves: each image's curve ``[B, num_data_points + 1]`` (NaN rows for skipped images).
        aggregate_curve: pointwise median (or mean) of the kept images' curves ``[num_data_points + 1]``.
        aggregate_auc: trapezoid AUC of ``aggregate_curve`` -- the number PAIR reports (not the mean of AUCs).
        skipped: per image None (kept) or the reason it was skipped.
        entropies: WebP sizes ``[B, T + 2]``: fully blurred, each threshold, original (bytes).
        predictions: model predictions ``[B, T + 2]`` in the same order (NaN where not computed).
        random_mask: the seed masks used ``[B, H, W]`` (bool); save them to reproduce.
        target: class per image ``[B]``.
        thresholds: the thresholds used.
    """

    curve_x: Tensor
    curves: Tensor
    aggregate_curve: Tensor
    aggregate_auc: float
    skipped: list[str | None]
    entropies: Tensor
    predictions: Tensor
    random_mask: Tensor
    target: Tensor
    thresholds: tuple[float, ...]

    @property
    def n_skipped(self) -> int:
        return sum(s is not None for s in self.skipped)

    @property
    def skip_counts(self) -> dict[str, int]:
        """How many images were skipped for each reason."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            if s is not None:
                counts[s] = counts.get(s, 0) + 1
        return counts


# ------------------------------------------------------------------------------------------- building blocks
def _require_pic_dependencies() -> tuple[Any, Any]:
    try:
        from PIL import Image, features
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("PIC metrics need Pillow with WebP support: pip install 'pathattr[pic]'.") from e
    if not features.check("webp"):  # pragma: no cover
        raise ImportError("PIC metrics need Pillow built with WebP support.")
    try:
        from scipy import spatial
    except ImportError as e:  # pragma: no cover
        raise ImportError("PIC metrics need SciPy: pip install 'pathattr[pic]'.") from e
    return Image, spatial


def dependency_versions() -> dict[str, str | None]:
    """Versions that WebP sizes and interpolation depend on (recorded in every PIC result)."""
    import PIL
    import scipy
    from PIL import features

    return {"pillow": PIL.__version__, "libwebp": features.version("webp"), "scipy": scipy.__version__}


def generate_random_mask(
    height: int,
    width: int,
    fraction: float = 0.01,
    generator: torch.Generator | int | None = None,
    batch: int | None = None,
) -> Tensor:
    """Random seed masks with ``floor(height * width * fraction)`` distinct True pixels each.

    Returns ``[height, width]`` bool, or ``[batch, height, width]`` (one independent mask per image) if
    ``batch`` is given. Drawn from ``generator`` (seed 0 if None); the global RNG is never used.
    """
    height = positive_int(height, "height")
    width = positive_int(width, "width")
    fraction = non_negative_float(fraction, "fraction")
    if fraction > 1:
        raise InputValidationError(f"`fraction` must lie in [0, 1], got {fraction}.", "fraction")
    gen = as_generator(generator)
    size = height * width
    count = int(size * fraction)
    n = 1 if batch is None else positive_int(batch, "batch")
    keys = torch.rand((n, size), generator=gen, dtype=torch.float64)
    chosen = keys.argsort(dim=1)[:, :count]
    mask = torch.zeros((n, size), dtype=torch.bool)
    mask.scatter_(1, chosen, True)
    mask = mask.view(n, height, width)
    return mask[0] if batch is None else mask


def estimate_image_entropy(image: np.ndarray) -> int:
    """Byte length of the lossless WebP encoding (quality 100) of a uint8 ``[H, W, C]`` or ``[H, W]`` image."""
    image_module, _ = _require_pic_dependencies()
    buffer = io.BytesIO()
    image_module.fromarray(image).save(buffer, format="webp", lossless=True, quality=100)
    return buffer.getbuffer().nbytes


def create_blurred_image(image: np.ndarray, pixel_mask: np.ndarray) -> np.ndarray:
    """PAIR's interpolated ("blurred") image, shape- and dtype-preserving.

    Pixels where ``pixel_mask`` is True (plus the four corners) are kept; every other pixel of each channel is
    found by linear interpolation on the Delaunay triangulation of the kept pixels (one triangulation for all
    channels), filled with the channel mean outside the hull; integer images are rounded (via float32, as the
    reference).

    Args:
        image: ``[H, W, C]`` or ``[H, W]`` array.
        pixel_mask: ``[H, W]`` bool.
    """
    _, spatial = _require_pic_dependencies()
    from scipy.interpolate import LinearNDInterpolator

    dtype = image.dtype
    grey = image.ndim == 2
    img = image[:, :, None] if grey else image
    mask = np.array(pixel_mask, dtype=bool, copy=True)
    h, w = mask.shape
    mask[[0, 0, h - 1, h - 1], [0, w - 1, 0, w - 1]] = True
    if mask.all():
        return image.copy()
    mean_color = np.mean(img, axis=(0, 1))
    out = img * mask[:, :, None].astype(np.float32)
    known = np.argwhere(mask)
    unknown = np.argwhere(~mask)
    values = img[tuple(known.T)].astype(np.float64)  # [N, C]
    interpolator = LinearNDInterpolator(spatial.Delaunay(known), values, fill_value=np.nan)
    filled = interpolator(unknown)  # [M, C]
    filled = np.where(np.isnan(filled), mean_color[None, :], filled)
    out[tuple(unknown.T)] = filled
    if grey:
        out = out[:, :, 0]
    if issubclass(dtype.type, np.integer):
        out = np.round(out)
    return out.astype(dtype)


def _threshold_masks(saliency: np.ndarray, random_mask: np.ndarray, thresholds: Sequence[float]) -> list[np.ndarray]:
    masks = []
    for t in thresholds:
        q = np.quantile(saliency, 1 - t)
        masks.append(np.logical_or(saliency >= q, random_mask))
    return masks


def pic_curve(
    entropies: Tensor, predictions: Tensor, num_data_points: int = 1000
) -> tuple[Tensor, Tensor]:
    """Resample normalised (entropy, prediction) points into PIC curves, batched over images.

    Args:
        entropies: normalised information per threshold ``[K, T]`` in ``[0, 1]``.
        predictions: normalised (and, if wanted, running-max) predictions ``[K, T]``.
        num_data_points: ``n``; the curve is sampled at ``0, 1/n, ..., (n-1)/n`` and ``(1, 1)`` is appended.

    Returns:
        ``(curve_x [n + 1], curve_y [K, n + 1])`` (float64). The anchors ``(0, 0)`` and ``(1, 1)`` are appended
        after the points and the points are sorted stably by x; at an x value a later duplicate wins, and an
        interval ending at a duplicated x uses the first of them (SciPy ``interp1d`` / ``np.interp``).
    """
    e = entropies.to(torch.float64)
    p = predictions.to(torch.float64)
    k = e.shape[0]
    xs = torch.cat([e, e.new_zeros(k, 1), e.new_ones(k, 1)], dim=1)
    ys = torch.cat([p, p.new_zeros(k, 1), p.new_ones(k, 1)], dim=1)
    xs, order = torch.sort(xs, dim=1, stable=True)
    ys = ys.gather(1, order)
    grid = torch.arange(num_data_points, dtype=torch.float64) / num_data_points
    j = torch.searchsorted(xs.contiguous(), grid.expand(k, -1).contiguous(), right=True) - 1
    j = j.clamp(0, xs.shape[1] - 2)
    x0, x1 = xs.gather(1, j), xs.gather(1, j + 1)
    y0, y1 = ys.gather(1, j), ys.gather(1, j + 1)
    slope = (y1 - y0) / (x1 - x0)
    curve = slope * (grid - x0) + y0
    curve_x = torch.cat([grid, grid.new_ones(1)])
    curve_y = torch.cat([curve, curve.new_ones(k, 1)], dim=1)
    return curve_x, curve_y


def aggregate_pic_curves(
    curve_x: Tensor | Sequence[Tensor], curves: Tensor, method: str = "median"
) -> tuple[Tensor, float]:
    """Aggregate per-image PIC curves into one curve and its AUC (PAIR's ``aggregate_individual_pic_results``).

    Args:
        curve_x: the shared x-axis ``[P]``, or one x-axis per curve (checked to be identical -- the reference's
            check is a no-op).
        curves: ``[K, P]``; rows with NaN (skipped images) are dropped.
        method: ``"median"`` (pointwise; average of the two middle values for an even count, as NumPy) or
            ``"mean"``.

    Returns:
        ``(aggregate_curve [P], auc)`` with the AUC of the aggregate curve (trapezoid).
    """
    method = choice(method, ("median", "mean"), "aggregation")
    if isinstance(curve_x, Tensor):
        xs = list(curve_x) if curve_x.ndim == 2 else [curve_x]
    else:
        xs = [to_tensor(x, "curve_x") for x in curve_x]
    grid = xs[0].to(torch.float64)
    for i, x in enumerate(xs[1:], 1):
        if x.shape != grid.shape or not torch.equal(x.to(torch.float64), grid):
            raise InputValidationError(f"curve {i} has a different x-axis from curve 0.", "curve_x")
    curves = curves.to(torch.float64)
    if curves.ndim != 2 or curves.shape[1] != grid.numel():
        raise InputValidationError(
            f"`curves` must be [K, {grid.numel()}] to match the x-axis, got {tuple(curves.shape)}.", "curves"
        )
    kept = curves[~torch.isnan(curves).any(1)]
    if kept.shape[0] == 0:
        return torch.full_like(grid, float("nan")), float("nan")
    agg = kept.mean(0) if method == "mean" else torch.quantile(kept, 0.5, dim=0)
    return agg, float(trapezoid(agg, grid))


# ------------------------------------------------------------------------------------------- the metric
def _as_uint8_images(images: Any, channels_last: bool) -> np.ndarray:
    """``[B, H, W, C]`` or ``[B, H, W]`` uint8 NumPy array (PAIR's layout)."""
    t = to_tensor(images, "images")
    if t.dtype != torch.uint8:
        raise InputValidationError(
            f"`images` must be uint8 (PIC measures information by WebP size of 8-bit images), got {t.dtype}.",
            "images",
        )
    if t.ndim == 3:
        return t.cpu().numpy()
    if t.ndim != 4:
        raise InputValidationError(
            f"`images` must be [B, C, H, W] (or [B, H, W, C] with channels_last=True) or [B, H, W] greyscale, "
            f"got shape {tuple(t.shape)}.",
            "images",
        )
    arr = t.cpu().numpy() if channels_last else t.permute(0, 2, 3, 1).cpu().numpy()
    if arr.shape[-1] not in (1, 3, 4):
        raise InputValidationError(
            f"`images` have {arr.shape[-1]} channels; WebP needs 1, 3 or 4 (check `channels_last`).", "images"
        )
    return np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def _saliency_maps(saliency: Any, b: int, h: int, w: int, channel_reduction: str, channels_last: bool) -> np.ndarray:
    s = to_tensor(saliency, "saliency")
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if s.ndim == 4:
        if channels_last:
            s = s.permute(0, 3, 1, 2)
        s = reduce_channels(s, channel_reduction)
    if tuple(s.shape) != (b, h, w):
        raise InputValidationError(
            f"`saliency` must be [B, H, W] = {(b, h, w)} or [B, C, H, W] (reduced over C), got {tuple(s.shape)}.",
            "saliency",
        )
    if not bool(torch.isfinite(s).all()):
        raise InputValidationError("`saliency` contains NaN or inf.", "saliency")
    return s.cpu().numpy()


def _default_preprocess(x: Tensor) -> Tensor:
    return x / 255.0


def pic(
    kind: str,
    forward_func: Callable[..., Any],
    images: Any,
    saliency: Any,
    target: TargetType = None,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    random_mask: Any = None,
    random_mask_fraction: float = 0.01,
    generator: torch.Generator | int | None = None,
    min_pred_value: float = 0.8,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    aggregation: str = "median",
    preprocess: Callable[[Tensor], Tensor] | None = None,
    channels_last: bool = False,
    channel_reduction: str = "sum",
    apply_softmax: bool = True,
    internal_batch_size: int | None = None,
    additional_forward_args: Any = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> PICResult:
    """Performance Information Curve of ``kind`` ``"sic"`` or ``"aic"``; see :func:`sic` for the arguments."""
    batch_size = internal_batch_size_alias("pic", internal_batch_size, batch_size)
    target = as_target(target)
    kind = choice(kind, ("sic", "aic"), "kind")
    min_pred_value = non_negative_float(min_pred_value, "min_pred_value")
    channel_reduction = choice(channel_reduction, CHANNEL_REDUCTIONS, "channel_reduction")
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or any(not 0 <= t <= 1 for t in thresholds) or list(thresholds) != sorted(thresholds):
        raise InputValidationError("`thresholds` must be a non-empty ascending sequence in [0, 1].", "thresholds")
    num_data_points = positive_int(num_data_points, "num_data_points")
    aggregation = choice(aggregation, ("median", "mean"), "aggregation")
    _require_pic_dependencies()

    imgs = _as_uint8_images(images, channels_last)
    b, h, w = imgs.shape[:3]
    sal = _saliency_maps(saliency, b, h, w, channel_reduction, channels_last)
    if random_mask is None:
        rmask = generate_random_mask(h, w, random_mask_fraction, generator, batch=b)
        mask_desc: Any = {"fraction": random_mask_fraction, "generator": describe(generator)}
    else:
        rmask = to_tensor(random_mask, "random_mask").to(torch.bool)
        if rmask.ndim == 2:
            rmask = rmask.expand(b, h, w)
        if tuple(rmask.shape) != (b, h, w):
            raise InputValidationError(
                f"`random_mask` must be [H, W] or [B, H, W] = {(b, h, w)}, got {tuple(rmask.shape)}.", "random_mask"
            )
        mask_desc = "given"
    rmask_np = rmask.cpu().numpy()
    preprocess = preprocess or _default_preprocess

    module = model
    model = ModelFunction(forward_func, b, additional_forward_args)
    device, dtype = _device_of(forward_func, module)

    def model_input(batch: np.ndarray) -> Tensor:
        t = torch.from_numpy(batch).to(device=device, dtype=dtype)
        t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
        return preprocess(t)

    row_numel = int(imgs[0].size)
    chunk = chunk_size_for(batch_size, b * (len(thresholds) + 2), row_numel)

    def to_prediction(raw: Any, tgt: Tensor) -> Tensor:
        _check_scores(raw)
        if kind == "aic":
            return (raw.argmax(1) == tgt).double()
        probs = torch.softmax(raw.double(), dim=1) if apply_softmax else raw.double()
        return probs.gather(1, tgt.view(-1, 1)).squeeze(1)

    def predict(batch: np.ndarray, example_index: Tensor) -> Tensor:
        """Prediction of the fixed target for rows ``batch`` (uint8) of examples ``example_index``."""
        out = []
        with torch.no_grad():
            for lo, hi in chunks(batch.shape[0], chunk):
                index = example_index[lo:hi].to(device)
                raw = model.forward((model_input(batch[lo:hi]),), index)
                out.append(to_prediction(raw, model.target[index]))
        return torch.cat(out).cpu()

    all_index = torch.arange(b)
    with guard(forward_func, module):
        # raw outputs on the original images (in chunks) fix the target: None = predicted class
        with torch.no_grad():
            raws = [model.forward((model_input(imgs[lo:hi]),), all_index[lo:hi].to(device))
                    for lo, hi in chunks(b, chunk)]
            raw_original = torch.cat([_check_scores(r) for r in raws])
        if callable(target) and not isinstance(target, Tensor):
            raise InputValidationError("PIC needs a class index target (int, list, tensor or None).", "target")
        # reuse ModelFunction's target validation on the precomputed outputs
        fixed = ModelFunction(lambda *_: raw_original, b)
        fixed.resolve_target(target, (raw_original,))
        model.target = fixed.target
        if not isinstance(model.target, Tensor):
            raise InputValidationError("PIC needs class scores [B, C] with C > 1 from `forward_func`.", "forward_func")
        p1 = to_prediction(raw_original, model.target).cpu()

        blurred0 = np.stack([create_blurred_image(imgs[i], rmask_np[i]) for i in range(b)])
        e1 = np.array([estimate_image_entropy(imgs[i]) for i in range(b)], dtype=np.float64)
        e0 = np.array([estimate_image_entropy(blurred0[i]) for i in range(b)], dtype=np.float64)
        p0 = predict(blurred0, all_index)

        skipped: list[str | None] = []
        for i in range(b):
            if p1[i] < min_pred_value:
                skipped.append(SKIP_LOW_PREDICTION)
            elif e0[i] >= e1[i]:
                skipped.append(SKIP_ENTROPY)
            elif p0[i] >= p1[i]:
                skipped.append(SKIP_PREDICTION)
            else:
                skipped.append(None)
        kept = [i for i in range(b) if skipped[i] is None]

        n_t = len(thresholds)
        entropies = torch.full((b, n_t + 2), float("nan"), dtype=torch.float64)
        predictions = torch.full((b, n_t + 2), float("nan"), dtype=torch.float64)
        entropies[:, 0], entropies[:, -1] = torch.from_numpy(e0), torch.from_numpy(e1)
        predictions[:, 0], predictions[:, -1] = p0, p1
        if kept:
            revealed = []
            for i in kept:
                for m in _threshold_masks(sal[i], rmask_np[i], thresholds):
                    revealed.append(create_blurred_image(imgs[i], m))
            revealed_np = np.stack(revealed)
            e_t = torch.tensor([estimate_image_entropy(im) for im in revealed_np], dtype=torch.float64)
            kept_t = torch.tensor(kept)
            p_t = predict(revealed_np, kept_t.repeat_interleave(n_t))
            entropies[kept_t, 1:-1] = e_t.view(len(kept), n_t)
            predictions[kept_t, 1:-1] = p_t.view(len(kept), n_t)

    curves = torch.full((b, num_data_points + 1), float("nan"), dtype=torch.float64)
    curve_x = torch.cat([torch.arange(num_data_points, dtype=torch.float64) / num_data_points, torch.ones(1)])
    if kept:
        kept_t = torch.tensor(kept)
        e_n = (entropies[kept_t, 1:-1] - entropies[kept_t, :1]) / (entropies[kept_t, -1:] - entropies[kept_t, :1])
        p_n = (predictions[kept_t, 1:-1] - predictions[kept_t, :1]) / (
            predictions[kept_t, -1:] - predictions[kept_t, :1]
        )
        e_n, p_n = e_n.clamp(0, 1), p_n.clamp(0, 1)
        if keep_monotonous:
            p_n = p_n.cummax(1).values
        curve_x, curve_k = pic_curve(e_n, p_n, num_data_points)
        curves[kept_t] = curve_k
    if not kept:
        warnings.warn(
            f"{kind}: every image was skipped ({', '.join(sorted(set(skipped)))}); scores are NaN.",
            RuntimeWarning,
            stacklevel=3,
        )
    scores = trapezoid(curves, curve_x)
    agg, agg_auc = aggregate_pic_curves(curve_x, curves, aggregation)
    hyper = {
        "kind": kind,
        "thresholds": thresholds,
        "min_pred_value": min_pred_value,
        "keep_monotonous": keep_monotonous,
        "num_data_points": num_data_points,
        "aggregation": aggregation,
        "random_mask": mask_desc,
        "prediction": ("softmax probability of the target" if apply_softmax else "output of the target")
        if kind == "sic"
        else "1.0 if argmax == target else 0.0",
        "target": describe(target) if not isinstance(target, Tensor) or target.numel() <= 8 else "per example",
        "preprocess": describe(preprocess),
        "channel_reduction": channel_reduction,
        "information": "lossless WebP byte length (quality 100)",
        "interpolation": "Delaunay-linear (scipy), corners kept, channel-mean fill",
        "internal_batch_size": batch_size,
        **dependency_versions(),
    }
    return PICResult(
        name=kind, scores=scores, direction="higher", hyperparameters=hyper, curve_x=curve_x, curves=curves,
        aggregate_curve=agg, aggregate_auc=agg_auc, skipped=skipped, entropies=entropies, predictions=predictions,
        random_mask=rmask.clone(), target=model.target.cpu(), thresholds=thresholds,
    )


def _check_scores(raw: Any) -> Tensor:
    """The model's output must be class scores ``[n, C]`` (a tuple or dict output gets a clear error)."""
    if not isinstance(raw, Tensor):
        raise InputValidationError(
            f"`forward_func` returned a {type(raw).__name__}; PIC needs class scores [n, C] as one tensor. Wrap the "
            "model to return them, e.g. `lambda x: model(x)[0]` (and pass `model=model`).",
            "forward_func",
        )
    if raw.ndim != 2:
        raise InputValidationError(
            f"`forward_func` returned shape {tuple(raw.shape)}; PIC needs class scores [n, C].", "forward_func"
        )
    return raw


def _device_of(forward_func: Any, module: Any = None) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU and the default dtype if it has none)."""
    given = tuple(module) if isinstance(module, (list, tuple)) else (module,)
    for candidate in (*given, forward_func, getattr(forward_func, "__self__", None)):
        if isinstance(candidate, torch.nn.Module):
            for p in candidate.parameters():
                return p.device, (p.dtype if p.is_floating_point() else torch.get_default_dtype())
    return torch.device("cpu"), torch.get_default_dtype()


_PIC_DOC = """
    Args:
        forward_func: model or callable mapping ``preprocess(images)`` ``[n, C, H, W]`` float to class scores
            ``[n, classes]`` (logits; probabilities with ``apply_softmax=False``).
        images: uint8 ``[B, C, H, W]`` (``[B, H, W, C]`` with ``channels_last=True``) or ``[B, H, W]`` greyscale,
            tensor or array, in 0..255 -- the pixels whose WebP size measures information.
        saliency: ``[B, H, W]``, or ``[B, C, H, W]`` reduced over channels with ``channel_reduction``. Higher =
            more important; apply ``abs`` yourself if wanted (PAIR's notebook uses ``|sum_c A|``:
            ``channel_reduction="abs_of_sum"``).
        target: class per image (int, list, 1-D tensor); None: the class predicted on the original image.
        thresholds: ascending fractions of the most salient pixels revealed (PAIR's 13 by default).
        random_mask: seed masks ``[H, W]`` or ``[B, H, W]`` (bool). Share them across methods for a fair
            comparison. None: drawn from ``generator`` with ``random_mask_fraction`` of the pixels.
        random_mask_fraction: fraction of pixels in generated seed masks (PAIR: 0.01).
        generator: ``torch.Generator`` or int seed for the seed masks (seed 0 if None).
        min_pred_value: images whose original prediction is below it are skipped (default 0.8 as PAIR's
            ``compute_pic_metric``; for AIC any value in ``(0, 1]`` means "skip misclassified images").
        keep_monotonous: use the running maximum of the normalised predictions (PAIR default True).
        num_data_points: resampling points of each curve (PAIR: 1000; ``(1, 1)`` is appended).
        aggregation: ``"median"`` (PAIR's default) or ``"mean"`` curve across images.
        preprocess: maps float ``[n, C, H, W]`` pixel values in ``[0, 255]`` (on the model's device, in its
            parameters' dtype) to the model's input (default ``x / 255``); greyscale images arrive as
            ``[n, 1, H, W]``.
        channels_last: ``images`` (and 4-D ``saliency``) are ``[B, H, W, C]``.
        channel_reduction: how a 4-D ``saliency`` becomes ``[B, H, W]``.
        apply_softmax: SIC only; softmax the outputs (False if ``forward_func`` already returns probabilities).
        internal_batch_size: maximum images per forward call (``batch_size``: its deprecated alias).
        additional_forward_args: extra arguments for ``forward_func``.
        model: the ``nn.Module`` (or modules) ``forward_func`` uses, when it cannot be found from it (e.g. a
            lambda around the model); put in eval mode and restored, and its parameters give the device and
            dtype of the model inputs.

    Formula (PAIR, v0.2.1): ``E(im)`` = WebP size, ``B = interp(img, random_mask)``; for each threshold
    ``t``, ``M = (s >= quantile(s, 1 - t)) | random_mask``, ``e = clip((E(interp(img, M)) - E(B)) / (E(img) -
    E(B)), 0, 1)``, ``p = clip((pred(interp(img, M)) - pred(B)) / (pred(img) - pred(B)), 0, 1)`` (running max if
    ``keep_monotonous``); the points plus ``(0, 0)``, ``(1, 1)`` are linearly resampled on ``i / n`` and ``(1, 1)``
    appended; AUC = trapezoid. Images are skipped (reason in ``result.skipped``) if ``pred(img) <
    min_pred_value``, ``E(B) >= E(img)`` or ``pred(B) >= pred(img)``. **Higher is better**; report
    ``aggregate_auc`` (AUC of the median curve) as PAIR does, with ``n_skipped``.
"""


def sic(
    forward_func: Callable[..., Any], images: Any, saliency: Any, target: TargetType = None, **kwargs: Any
) -> PICResult:
    """Softmax Information Curve (Kapishnikov et al., ICCV 2019): the model's softmax probability of the target,
    normalised between the fully blurred and the original image, against the normalised information of
    progressively revealed images.
    """
    kwargs["internal_batch_size"] = internal_batch_size_alias(
        "sic", kwargs.pop("internal_batch_size", None), kwargs.pop("batch_size", DEPRECATED)
    )
    return pic("sic", forward_func, images, saliency, target, **kwargs)


def aic(
    forward_func: Callable[..., Any], images: Any, saliency: Any, target: TargetType = None, **kwargs: Any
) -> PICResult:
    """Accuracy Information Curve (Kapishnikov et al., ICCV 2019): like :func:`sic` with the prediction 1.0 if
    the model's top class is the target and 0.0 otherwise.
    """
    kwargs["internal_batch_size"] = internal_batch_size_alias(
        "aic", kwargs.pop("internal_batch_size", None), kwargs.pop("batch_size", DEPRECATED)
    )
    return pic("aic", forward_func, images, saliency, target, **kwargs)


sic.__doc__ = (sic.__doc__ or "") + _PIC_DOC
aic.__doc__ = (aic.__doc__ or "") + _PIC_DOC

class SIC(Metric):
    """Class form of :func:`sic`. Higher is better."""

    function = staticmethod(sic)
    higher_is_better = True


class AIC(Metric):
    """Class form of :func:`aic`. Higher is better."""

    function = staticmethod(aic)
    higher_is_better = True


__all__ = [
    "AIC",
    "SIC",
    "DEFAULT_THRESHOLDS",
    "PICResult",
    "aggregate_pic_curves",
    "aic",
    "create_blurred_image",
    "dependency_versions",
    "estimate_image_entropy",
    "generate_random_mask",
    "pic",
    "pic_curve",
    "sic",
]
