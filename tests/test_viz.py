"""Pictures: maps, colour bars, overlays, captions, token views; no backend forced."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")

from pathattr import viz  # noqa: E402
from pathattr.viz import heatmap as heatmap_module  # noqa: E402
from pathattr.viz import text as text_module  # noqa: E402


def _image_and_attr():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 16, 16, generator=g)
    attr = torch.randn(3, 16, 16, generator=g, dtype=torch.float64)
    attr[:, :4, :4] += 5.0
    return image, attr


def test_no_backend_is_forced():
    for module in (heatmap_module, text_module):
        assert "matplotlib.use(" not in inspect.getsource(module)


def test_heatmap_ranges_and_overlay():
    image, attr = _image_and_attr()
    signed = viz.heatmap(attr, "signed", percentile=99)
    absolute = viz.heatmap(attr, "abs")
    assert signed.min() >= -1 and signed.max() <= 1 and (signed < 0).any()
    assert absolute.min() >= 0 and absolute.max() == 1
    assert np.allclose(viz.heatmap(attr, "abs_sum"), absolute)
    for heat in (signed, absolute):
        out = viz.overlay(image, heat)
        assert out.shape == (16, 16, 3) and out.min() >= 0 and out.max() <= 1
    # zero attribution leaves the greyed photo; signed maps use the diverging colours (red for positive)
    grey = viz.overlay(image, np.zeros((16, 16)))
    assert np.allclose(grey[..., 0], grey[..., 1])
    red = viz.overlay(np.ones((16, 16, 3)) * 0.5, np.full((16, 16), 1.0), cmap="RdBu_r")
    assert red[0, 0, 0] > red[0, 0, 2]
    assert "99.5th percentile" in viz.caption("signed") and "signed" in viz.caption("signed")
    with pytest.raises(ValueError):
        viz.heatmap(attr, "bogus")


def test_plot_attribution_has_colour_bars_class_name_and_caption(tmp_path):
    image, attr = _image_and_attr()
    path = tmp_path / "one.png"
    fig = viz.plot_attribution(image, attr, kind="signed", class_name="tabby", probability=0.7, method="IG",
                               note="0.1 s", path=path)
    assert path.stat().st_size > 5000
    texts = [t.get_text() for t in fig.texts]
    assert any("tabby" in t and "0.70" in t for t in texts + [fig._suptitle.get_text()])
    assert any("percentile" in t for t in texts)
    assert len(fig.axes) == 5  # input, map, overlay + two colour bars
    fig = viz.plot_attribution(image.permute(1, 2, 0).numpy(), attr.sum(0), kind="abs")
    assert len(fig.axes) == 5
    matplotlib.pyplot.close(fig)


def test_plot_explanations_keeps_its_signature(tmp_path):
    image, attr = _image_and_attr()
    path = tmp_path / "many.png"
    viz.plot_explanations(image, {"a": attr, "b": -attr}, title="t", path=path, notes={"a": "1 s"})
    assert path.stat().st_size > 5000
    fig = viz.plot_explanations(image, {"a": attr}, reduce="signed", overlay_input=True)
    assert len(fig.axes) == 3  # input, one map, shared colour bar
    matplotlib.pyplot.close(fig)
    viz.plot_curves({"x": [0.0, 0.5, 1.0]}, path=tmp_path / "c.png")
    assert (tmp_path / "c.png").exists()


def test_token_views(tmp_path):
    tokens = ["[CLS]", "a", "<b>", "heart", "##felt", "film", "[SEP]"]
    scores = [0.0, 0.5, -1.0, 0.2, 0.1, 2.0, 0.0]
    special = [True, False, False, False, False, False, True]
    html = viz.tokens_html(tokens, scores, special=special, captions=["class 'pos'"])
    assert "&lt;b&gt;" in html and "<b>" not in html  # escaped
    assert "linear-gradient" in html and "lowers" in html and "raises" in html  # legend
    assert "colour scale &plusmn;2" in html
    assert viz.text.signed_colour(1.0)[0] > viz.text.signed_colour(1.0)[2]
    assert viz.text.signed_colour(-1.0)[2] > viz.text.signed_colour(-1.0)[0]
    assert viz.text.signed_colour(0.0) == (1.0, 1.0, 1.0)
    path = tmp_path / "tokens.png"
    fig = viz.plot_tokens([tokens, tokens[:3]], [scores, scores[:3]], special=[special, special[:3]],
                          captions=["one", "two"], path=path)
    assert path.stat().st_size > 3000 and len(fig.axes) == 1  # the colour bar
    with pytest.raises(ValueError):
        viz.tokens_html(tokens, scores[:2])
