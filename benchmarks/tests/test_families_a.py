"""Families synthetic, MNIST and ImageNet: data, loaders, models and their stated accuracy."""

from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest
import torch

from pathattr_bench.families import mnist, synthetic
from pathattr_bench.families._fit import accuracy, config_hash, load_or_train, seeded_init_
from pathattr_bench.families.base import AccuracyError


# ------------------------------------------------------------------------------------------------ synthetic
def test_synthetic_generator_ground_truth_is_exact():
    d = synthetic.make_synthetic(4000, seed=3)
    c, k = synthetic.N_CLASSES, synthetic.N_INFORMATIVE
    assert d.class_features.shape == (c, k)
    assert len(set(d.class_features.flatten().tolist())) == c * k  # disjoint blocks
    # every mask is exactly the block of the example's class
    for i in range(0, 4000, 371):
        expected = torch.zeros(synthetic.N_FEATURES, dtype=torch.bool)
        expected[d.class_features[d.y[i]]] = True
        assert torch.equal(d.mask[i], expected)
    # the class block is shifted by +-shift: its per-class mean is close to shift * sign, the rest close to 0
    for cls in range(c):
        rows = d.x[d.y == cls]
        mean = rows.mean(0)
        block = d.class_features[cls]
        assert torch.allclose(mean[block], synthetic.SHIFT * d.signs[cls], atol=0.15)
        others = torch.ones(synthetic.N_FEATURES, dtype=torch.bool)
        others[block] = False
        assert mean[others].abs().max() < 0.15
    # seeded: same seed same data, different seed different blocks or data
    again = synthetic.make_synthetic(4000, seed=3)
    assert torch.equal(again.x, d.x) and torch.equal(again.mask, d.mask)
    assert not torch.equal(synthetic.make_synthetic(4000, seed=4).x, d.x)


def test_synthetic_family_meets_bar_and_gt_is_learned():
    fam = synthetic.load_family(quick=True)
    assert fam.accuracy >= synthetic.MIN_ACCURACY == fam.min_accuracy
    assert fam.inputs.shape == (32, synthetic.N_FEATURES) and fam.ground_truth.shape == fam.inputs.shape
    assert fam.representation is fam.model.head and not fam.model.training
    assert fam.info["weights_source"] == "bundled"
    # the trained model really uses the ground-truth block: gradient x input mass on it dominates
    x = fam.inputs.clone().requires_grad_(True)
    pred = fam.model(x).argmax(1)
    fam.model(x).gather(1, pred[:, None]).sum().backward()
    ixg = (x.grad * fam.inputs).abs()
    on = (ixg * fam.ground_truth).sum(1) / fam.ground_truth.sum(1)
    off = (ixg * ~fam.ground_truth).sum(1) / (~fam.ground_truth).sum(1)
    assert float((on > off).double().mean()) >= 0.9


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    a = synthetic.TabularMLP()
    b = synthetic.TabularMLP()
    state = torch.random.get_rng_state()
    seeded_init_(a, torch.Generator().manual_seed(5))
    seeded_init_(b, torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG was not used
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    first = a.body[0]
    bound = 1 / np.sqrt(first.in_features)
    assert float(first.weight.detach().abs().max()) <= bound
    assert float(first.weight.detach().abs().max()) > 0.9 * bound  # uniform over the whole range


def test_load_or_train_caches_and_checks_the_config(tmp_path):
    calls = []

    def build():
        return seeded_init_(torch.nn.Linear(2, 2), torch.Generator().manual_seed(0))

    def train(m):
        calls.append(1)
        with torch.no_grad():
            m.weight.fill_(0.5)
        return {"train_seconds": 0.0}

    m1, f1 = load_or_train("t", {"a": 1}, build, train, tmp_path)
    m2, f2 = load_or_train("t", {"a": 1}, build, train, tmp_path)
    assert len(calls) == 1 and f1["weights_source"] == "trained now" and f2["weights_source"] == "cache"
    assert torch.equal(m2.weight, torch.full((2, 2), 0.5))
    load_or_train("t", {"a": 2}, build, train, tmp_path)  # other config: trains again
    assert len(calls) == 2
    assert (tmp_path / f"t-{config_hash({'a': 1})}.pt").is_file()


# ------------------------------------------------------------------------------------------------ IDX files
def _idx_bytes(array: np.ndarray, code: int, dtype: str) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(dtype).tobytes()


@pytest.mark.parametrize("code,dtype", [(0x08, "u1"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0B, ">i2")])
@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_roundtrip(tmp_path, code, dtype, compressed):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 120, size=(3, 4, 5)).astype(dtype)
    raw = _idx_bytes(arr, code, dtype)
    path = tmp_path / ("a.idx.gz" if compressed else "a.idx")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    out = mnist.read_idx(path)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, arr.astype(out.dtype))
    assert out.dtype.byteorder in ("=", "|")


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        mnist.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((4, 2), "u1"), 0x08, "u1")[:-3])
    with pytest.raises(ValueError, match="header says"):
        mnist.read_idx(short)
    with pytest.raises(FileNotFoundError):
        mnist.read_idx(tmp_path / "missing")


def _write_mnist_folder(root, n_train=40, n_test=20, gz=True):
    """Tiny MNIST-format folder: class c = a bright vertical bar at column 2 + 2c (trivially learnable)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype("u1")
        images = np.zeros((n, 28, 28), "u1")
        for i, c in enumerate(labels):
            images[i, 4:24, 2 + 2 * c : 4 + 2 * c] = 255
        for kind, arr, code in (("images-idx3", images, 0x08), ("labels-idx1", labels, 0x08)):
            raw = _idx_bytes(arr, code, "u1")
            name = f"{split}-{kind}-ubyte"
            if gz:
                (root / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (root / name).write_bytes(raw)
    return root


def test_load_idx_dataset_reads_the_four_files(tmp_path):
    root = _write_mnist_folder(tmp_path / "m", gz=False)
    tx, ty, vx, vy = mnist.load_idx_dataset(root)
    assert tx.shape == (40, 1, 28, 28) and vx.shape == (20, 1, 28, 28) and ty.dtype == torch.int64
    assert float(tx.max()) == 1.0 and float(tx.min()) == 0.0
    assert ty[:10].tolist() == list(range(10))
    assert float(tx[3, 0, 10, 2 + 6]) == 1.0 and float(tx[3, 0, 10, 2]) == 0.0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mnist.load_idx_dataset(tmp_path / "nowhere")


def test_user_mnist_folder_trains_and_the_bar_is_enforced(tmp_path):
    """A too-small user dataset gives a model below the bar: AccuracyError, not a result."""
    root = _write_mnist_folder(tmp_path / "m", n_train=20, n_test=20)
    try:
        fam = mnist.load_family(data_path=str(root), cache_dir=str(tmp_path / "cache"))
    except AccuracyError as err:
        assert "below the stated minimum" in str(err)
    else:  # the bars are trivially separable: if it learned them, the family must be complete and correct
        assert fam.accuracy >= 0.97 and fam.info["dataset"].startswith("MNIST IDX")


def test_fashion_mnist_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        mnist.load_family(dataset="fashion", data_path=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="unknown dataset"):
        mnist.load_family(dataset="cifar")


def test_fashion_mnist_reads_idx_folder(tmp_path):
    root = _write_mnist_folder(tmp_path / "f", n_train=20, n_test=10)
    try:
        fam = mnist.load_family(dataset="fashion", data_path=str(root), cache_dir=str(tmp_path / "c"))
    except AccuracyError as err:
        assert "fashion_mnist" in str(err)
    else:
        assert fam.name == "fashion_mnist" and fam.min_accuracy == mnist.MIN_ACCURACY_FASHION


# ------------------------------------------------------------------------------------------------ MNIST
def test_mnist_subset_split_is_seeded_and_disjoint():
    a = mnist.load_mnist_subset(0)
    b = mnist.load_mnist_subset(0)
    assert torch.equal(a[0], b[0]) and a[0].shape == (4000, 1, 28, 28) and a[2].shape == (1000, 1, 28, 28)
    assert torch.bincount(torch.cat([a[1], a[3]])).tolist() == [500] * 10
    c = mnist.load_mnist_subset(1)
    assert not torch.equal(a[3], c[3])


def test_mnist_family_bundled_cnn_meets_97_percent():
    fam = mnist.load_family(quick=True)
    assert fam.info["weights_source"] == "bundled"
    assert fam.accuracy >= 0.97 and fam.min_accuracy == 0.97
    assert fam.inputs.shape == (16, 1, 28, 28) and fam.spatial and fam.bounds == (0.0, 1.0)
    assert float(fam.inputs.min()) >= 0.0 and float(fam.inputs.max()) <= 1.0
    assert fam.reference_pool.shape == (100, 1, 28, 28)
    assert torch.bincount(fam.reference_labels).tolist() == [10] * 10


def test_pretrained_digit_cnn_without_torchvision():
    fam = mnist.load_family(quick=True, model="pretrained")
    assert "torchvision" not in sys.modules
    assert fam.model_name == "digit-recognizer-cnn" and fam.accuracy >= 0.97
    assert fam.representation is fam.model.network.fc_layers[-1]
    # normalisation is inside the wrapper: the model takes [0, 1] pixels
    x = fam.inputs[:2]
    raw = fam.model.network((x - 0.1307) / 0.3081)
    assert torch.allclose(fam.model(x), raw)


def test_shift_augment_translates_exactly():
    x = torch.zeros(6, 1, 28, 28)
    x[:, 0, 10, 12] = 1.0
    g = torch.Generator().manual_seed(0)
    y = mnist.shift_augment(x, g)
    g2 = torch.Generator().manual_seed(0)
    off = torch.randint(0, 5, (2, 6), generator=g2) - 2
    for i in range(6):
        r, c = torch.nonzero(y[i, 0])[0].tolist()
        assert (r, c) == (10 - int(off[0, i]), 12 - int(off[1, i]))
        assert float(y[i].sum()) == 1.0


@pytest.mark.slow
def test_mnist_cnn_retrains_to_the_bar(tmp_path):
    fam = mnist.load_family(quick=True, cache_dir=str(tmp_path), retrain=True)
    assert fam.info["weights_source"] == "trained now"
    assert fam.accuracy >= 0.97


@pytest.mark.slow
def test_synthetic_mlp_retrains_to_the_bar(tmp_path):
    fam = synthetic.load_family(quick=True, cache_dir=str(tmp_path), retrain=True)
    assert fam.info["weights_source"] == "trained now" and fam.accuracy >= synthetic.MIN_ACCURACY


def test_accuracy_helper():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert accuracy(model, x, torch.tensor([0, 1, 1, 1])) == 0.75


# ------------------------------------------------------------------------------------------------ ImageNet
@pytest.fixture(scope="module")
def imagenet_family():
    pytest.importorskip("efficientnet_lite_pytorch")
    from pathattr_bench.families import imagenet

    return imagenet.load_family(quick=True)


def test_imagenet_family_known_photos(imagenet_family):
    from pathattr_bench.families import imagenet

    fam = imagenet_family
    assert fam.accuracy == 1.0 >= imagenet.MIN_ACCURACY  # all five known photos top-1 correct
    assert fam.inputs.shape == (2, 3, 224, 224) and fam.labels.tolist() == [285, 967]
    assert fam.representation is fam.model.classifier
    assert fam.reference_pool.shape[0] == len(fam.info["pool_names"]) >= 10
    # the explicands are in the pool (excluded when drawing) and the pool classes are model predictions
    assert torch.equal(fam.reference_pool[fam.info["pool_names"].index("chelsea")], fam.inputs[0])
    assert int(fam.reference_labels[fam.info["pool_names"].index("coffee")]) == 967


def test_imagenet_user_folder(tmp_path, imagenet_family):
    from PIL import Image

    from pathattr_bench.families import imagenet
    from pathattr_bench.imagenet import imagenet_wnids

    wnids = imagenet_wnids()
    from skimage import data

    for name, cls in (("chelsea", 285), ("coffee", 967)):
        folder = tmp_path / "val" / wnids[cls]
        folder.mkdir(parents=True)
        img = getattr(data, name)()
        Image.fromarray(img).save(folder / f"{name}.png")
        Image.fromarray(img[:, ::-1].copy()).save(folder / f"{name}_flipped.png")
    fam = imagenet.load_family(data_path=str(tmp_path / "val"))
    assert fam.accuracy == 1.0
    assert fam.inputs.shape[0] == 2 and fam.reference_pool.shape[0] == 2
    assert "ImageNet-style folder" in fam.info["dataset"]
