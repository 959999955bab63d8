"""PIC (SIC / AIC): parity with PAIR's ``saliency.metrics.pic`` (v0.2.1, patched for NumPy 2) on the same
images, saliency maps, seed masks and thresholds; the building blocks; the reference's pitfalls fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathattr.metrics as pm
from pair_pic_adapter import numpy2_compatible_pic, pair_pic
from pathattr.errors import InputValidationError
from pathattr.metrics.pic import DEFAULT_THRESHOLDS, SKIP_LOW_PREDICTION, pic_curve

pytest.importorskip("PIL")
pytest.importorskip("scipy")


class TextureModel(nn.Module):
    """Three classes; class 0's logit grows with the image's local contrast (texture), so a sharp image is
    class 0 with high confidence and PAIR's interpolated ("blurred") images are not."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(120.0, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        e = (x - local).abs().mean(dim=tuple(range(1, x.ndim)))
        return torch.stack([self.scale * e - 3.0, torch.zeros_like(e), -torch.ones_like(e)], 1)


def make_images(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [B, 3, H, W] images: a smooth colour gradient with a textured square; and the square's mask."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    imgs, masks = [], []
    for _ in range(b):
        base = torch.stack([yy, xx, (yy + xx) / 2]) * 150 + 50
        noise = torch.rand((3, h, w), generator=gen) * 200
        m = torch.zeros(h, w)
        t = int(torch.randint(0, h // 2, (1,), generator=gen))
        left = int(torch.randint(0, w // 2, (1,), generator=gen))
        m[t : t + h // 2, left : left + w // 2] = 1
        imgs.append((base * (1 - m) + noise * m).round().clamp(0, 255).to(torch.uint8))
        masks.append(m.bool())
    return torch.stack(imgs), torch.stack(masks)


def pair_results(model, imgs, saliency, masks, kind, thresholds=DEFAULT_THRESHOLDS, min_pred_value=0.8):
    """PAIR's per-image results (None for skipped images) and its aggregate; ``imgs`` [B, C, H, W] or greyscale
    [B, H, W]."""

    def pred_func(batch):
        t = torch.as_tensor(batch)
        t = (t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)).double() / 255
        with torch.no_grad():
            out = model(t)
        if kind == "sic":
            return torch.softmax(out, 1)[:, 0].tolist()
        return (out.argmax(1) == 0).double().tolist()

    results = []
    with numpy2_compatible_pic() as pic:
        for i in range(imgs.shape[0]):
            try:
                img = imgs[i].numpy() if imgs.ndim == 3 else imgs[i].permute(1, 2, 0).numpy()
                results.append(pic.compute_pic_metric(
                    img, saliency[i].numpy(), masks[i].numpy(), pred_func, list(thresholds),
                    min_pred_value=min_pred_value,
                ))
            except pic.ComputePicMetricError:
                results.append(None)
        kept = [r for r in results if r is not None]
        agg = pic.aggregate_individual_pic_results(kept, method="median")
    return results, agg


@pytest.fixture(scope="module")
def case():
    imgs, texture = make_images(4, 24, 24)
    imgs[3] = imgs[3].float().mean((1, 2), keepdim=True).expand(3, 24, 24).to(torch.uint8)  # flat: skipped
    gen = torch.Generator().manual_seed(1)
    good = texture.double() + 0.3 * torch.rand((4, 24, 24), generator=gen, dtype=torch.float64)
    rand = torch.rand((4, 24, 24), generator=gen, dtype=torch.float64)
    masks = pm.generate_random_mask(24, 24, 0.01, generator=2, batch=4)
    return TextureModel(), imgs, good, rand, masks


@pytest.mark.parametrize("kind", ["sic", "aic"])
def test_pic_matches_pair(case, kind):
    model, imgs, good, rand, masks = case
    for saliency in (good, rand) if kind == "sic" else (good,):
        ours = getattr(pm, kind)(model, imgs, saliency, target=0, random_mask=masks, internal_batch_size=16)
        ref, agg = pair_results(model, imgs, saliency, masks, kind)
        assert [r is None for r in ref] == [s is not None for s in ours.skipped]
        assert ours.skipped[3] == SKIP_LOW_PREDICTION and ours.n_skipped == 1
        for i, r in enumerate(ref):
            if r is None:
                assert bool(torch.isnan(ours.scores[i]))
                continue
            assert float(ours.scores[i]) == pytest.approx(r.auc, abs=1e-3)
            assert np.abs(ours.curves[i].numpy() - np.asarray(r.curve_y)).max() < 1e-3
            np.testing.assert_allclose(ours.curve_x.numpy(), r.curve_x, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ours.predictions[i].numpy(), r.predictions, rtol=0, atol=1e-6)
        assert ours.aggregate_auc == pytest.approx(agg.auc, abs=1e-3)
        assert np.abs(ours.aggregate_curve.numpy() - agg.curve_y).max() < 1e-3
        assert ours.higher_is_better is True
        assert ours.hyperparameters["thresholds"] == DEFAULT_THRESHOLDS
        assert "libwebp" in ours.hyperparameters
        # the case is not degenerate: predictions move between the thresholds
        assert bool((ours.predictions[:3, 1:-1].std(1) > 1e-3).all())


def test_blurred_image_and_entropy_match_pair():
    gen = torch.Generator().manual_seed(4)
    img = (torch.rand((20, 24, 3), generator=gen) * 255).to(torch.uint8).numpy()
    mask = (torch.rand((20, 24), generator=gen) < 0.05).numpy()
    ours = pm.create_blurred_image(img, mask)
    ref = pair_pic.create_blurred_image(img, mask)
    assert ours.dtype == np.uint8 and ours.shape == img.shape
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1  # float32 rounding ties at most
    assert (ours != ref).mean() < 1e-3
    assert pm.estimate_image_entropy(img) == pair_pic.estimate_image_entropy(img)
    grey = img[:, :, 0]
    np.testing.assert_array_equal(pm.create_blurred_image(grey, mask), pair_pic.create_blurred_image(grey, mask))
    # PAIR's greyscale pitfall: an all-True mask returns [H, W, 1]; ours keeps the shape
    full = np.ones_like(mask)
    assert pair_pic.create_blurred_image(grey, full).shape == (20, 24, 1)
    assert pm.create_blurred_image(grey, full).shape == (20, 24)


def test_curve_resampling_resolves_duplicates_like_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    e = torch.tensor([[0.0, 0.0, 0.2, 0.2, 0.5, 1.0, 1.0]], dtype=torch.float64)
    p = torch.tensor([[0.3, 0.4, 0.4, 0.6, 0.7, 0.8, 0.9]], dtype=torch.float64)
    xs, ys = pic_curve(e, p, num_data_points=50)
    f = interpolate.interp1d(x=list(e[0].tolist()) + [0.0, 1.0], y=list(p[0].tolist()) + [0.0, 1.0])
    grid = np.linspace(0, 1, 50, endpoint=False)
    expected = np.append([float(f(v)) for v in grid], 1.0)
    np.testing.assert_allclose(ys[0].numpy(), expected, rtol=0, atol=1e-12)
    assert float(ys[0, 0]) == 0.0  # the appended anchor (0, 0) wins at x = 0


def test_aggregate_checks_the_x_axis():
    grid = torch.linspace(0, 1, 5, dtype=torch.float64)
    curves = torch.rand(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    agg, auc = pm.aggregate_pic_curves(grid, curves, "median")
    torch.testing.assert_close(agg, curves.median(0).values)
    assert auc == pytest.approx(float(np.trapezoid(agg.numpy(), grid.numpy())), abs=1e-12)
    other = grid.clone()
    other[2] = 0.45
    with pytest.raises(InputValidationError) as e:
        pm.aggregate_pic_curves([grid, other, grid], curves)
    assert e.value.argument == "curve_x"


def test_random_mask_is_seeded_and_sized():
    a = pm.generate_random_mask(40, 50, 0.01, generator=3, batch=4)
    b = pm.generate_random_mask(40, 50, 0.01, generator=3, batch=4)
    assert a.shape == (4, 40, 50) and a.dtype == torch.bool
    assert torch.equal(a, b) and a.sum((1, 2)).tolist() == [20] * 4
    assert not torch.equal(a[0], a[1])
    state = np.random.get_state()[1].copy()
    pm.generate_random_mask(10, 10, 0.5, generator=0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global NumPy RNG untouched


def test_pic_errors_and_greyscale(case):
    model, imgs, good, _, masks = case
    with pytest.raises(InputValidationError) as e:
        pm.sic(model, imgs.float(), good)
    assert e.value.argument == "images"
    with pytest.raises(InputValidationError) as e:
        pm.sic(model, imgs, good, thresholds=[0.5, 0.1])
    assert e.value.argument == "thresholds"
    with pytest.raises(InputValidationError) as e:
        pm.sic(model, imgs, good[:, :10])
    assert e.value.argument == "saliency"
    grey = imgs[:2, 0]
    res = pm.sic(model, grey, good[:2], target=0, random_mask=masks[:2], min_pred_value=0.5)
    ref, _ = pair_results(model, grey, good[:2], masks[:2], "sic", min_pred_value=0.5)
    assert sum(r is not None for r in ref) >= 1
    for i, r in enumerate(ref):
        if r is not None:
            assert float(res.scores[i]) == pytest.approx(r.auc, abs=1e-3)


def test_optional_dependencies_are_imported_lazily():
    import subprocess
    import sys

    code = (
        "import sys, pathattr.metrics as pm; "
        "bad = [m for m in ('PIL', 'scipy', 'sklearn', 'quantus') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == ""
