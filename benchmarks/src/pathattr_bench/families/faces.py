"""Faces: the IG2 paper's CelebA family, with an offline face / non-face default.

Default (offline): scikit-image's bundled ``lfw_subset`` (100 grey 25x25 face crops from Labeled Faces in the
Wild + 100 non-face patches of natural images), a face / non-face task; a seeded stratified 70 / 30 split;
a small CNN trained deterministically (flip and shift augmentation) and cached; weights trained with the
default settings ship with the package. There is **no ground truth** for faces (``ground_truth=None``).

User data: :func:`read_celeba` reads CelebA (``img_align_celeba/*.jpg``, ``list_attr_celeba.txt``, optional
``list_eval_partition.txt``) for one binary attribute chosen by name (default ``"Smiling"``); images are
centre-cropped to a square and resized (default 64x64 RGB). Pillow is needed only for this.

Inputs are images ``[N, C, H, W]`` in [0, 1]; IG2's representation is the input of the final linear layer
``model.fc`` (the hidden layer's output), as for the other image families (Zhuo & Ge, TPAMI 2024).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pathattr.errors import InputValidationError

from ..safe_paths import member_path
from . import _seeded_training as st
from ._fit import default_cache_dir
from .base import Family

LFW_CLASSES: tuple[str, ...] = ("non-face", "face")
MIN_ACCURACY_LFW = 0.90
CELEBA_ATTRIBUTE = "Smiling"
CELEBA_SIZE = 64
_LFW_RECIPE = {"epochs": 60, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-4, "test_fraction": 0.3}
_COMMITTED = "faces_lfw_cnn.pt"


class FaceCNN(nn.Module):
    """Conv blocks (conv 3x3 + ReLU + 2x2 max-pool) -> hidden fc + ReLU -> linear classifier ``fc``.

    Args:
        in_channels: 1 (grey) or 3 (RGB).
        size: input side ``H = W``.
        channels: output channels of each block (each block halves the side, rounding down).
        hidden: hidden units; ``fc``'s input (the hidden output) is IG2's representation.
        n_classes: output logits.
    """

    def __init__(self, in_channels: int = 1, size: int = 25, channels: tuple[int, ...] = (8, 16), hidden: int = 32,
                 n_classes: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = in_channels, size
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = c, side // 2
        if side < 1:
            raise InputValidationError(f"size {size} is too small for {len(channels)} pooling blocks.", "size")
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.hidden(self.features(x))))


def flip_shift(batch: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """Augmentation: random horizontal flips and integer shifts up to ``max_shift`` (edge-replicated)."""
    out = batch.clone()
    flip = torch.rand(len(batch), generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    if max_shift > 0:
        dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
        p = max_shift
        padded = nn.functional.pad(out, (p, p, p, p), mode="replicate")
        h, w = out.shape[-2:]
        out = padded[..., p + dy : p + dy + h, p + dx : p + dx + w]
    return out.contiguous()


# --------------------------------------------------------------------------------------------- LFW subset
def read_lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's ``lfw_subset``: ``(images [200, 25, 25] float32 in [0, 1], labels [200])``, 1 = face."""
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - scikit-image is part of the bench extra
        raise ImportError("the default faces family needs scikit-image (pip install scikit-image).") from err
    images = np.asarray(data.lfw_subset(), dtype=np.float32)
    labels = np.r_[np.ones(100, dtype=np.int64), np.zeros(len(images) - 100, dtype=np.int64)]
    return images, labels


# ------------------------------------------------------------------------------------------------- CelebA
CELEBA_IMAGES, CELEBA_ATTRS, CELEBA_PARTITION = "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"


def parse_celeba_attributes(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """``list_attr_celeba.txt`` -> ``(file names, attribute names, values [N, n_attr] int8 in {-1, +1})``.

    Format: a count line, a line of attribute names, then ``<file> v1 ... vA`` rows of +-1.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"CelebA attribute file not found: {p}")
    lines = [ln for ln in p.read_text(encoding="latin-1").splitlines() if ln.strip()]
    if len(lines) < 2:
        raise InputValidationError(f"{p}: expected a count line and an attribute-name line.", "data_path")
    try:
        count = int(lines[0].split()[0])
    except ValueError as err:
        raise InputValidationError(f"{p}: first line must be the number of images, got {lines[0]!r}.",
                                   "data_path") from err
    names = lines[1].split()
    files, rows = [], []
    for n, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if len(parts) != len(names) + 1:
            raise InputValidationError(f"{p}:{n}: expected a file name and {len(names)} values.", "data_path")
        vals = [int(v) for v in parts[1:]]
        if any(v not in (-1, 1) for v in vals):
            raise InputValidationError(f"{p}:{n}: attribute values must be -1 or 1.", "data_path")
        member_path(p.parent / CELEBA_IMAGES, parts[0], f"{p}:{n}")  # refuse names that leave the folder
        files.append(parts[0])
        rows.append(vals)
    if len(files) != count:
        raise InputValidationError(f"{p}: header says {count} images, found {len(files)} rows.", "data_path")
    return files, names, np.asarray(rows, dtype=np.int8).reshape(len(files), len(names))


def _load_celeba_image(path: Path, size: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - Pillow ships with scikit-image / matplotlib
        raise ImportError("reading CelebA images needs Pillow (pip install pillow).") from err
    if not path.is_file():
        raise FileNotFoundError(f"CelebA image not found: {path}")
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0


def read_celeba(path: str | Path, attribute: str = CELEBA_ATTRIBUTE, image_size: int = CELEBA_SIZE,
                max_train: int | None = 2000, max_test: int | None = 400, test_fraction: float = 0.1,
                seed: int = 0) -> dict[str, np.ndarray]:
    """CelebA for one binary attribute: ``{"train_images" [N, 3, S, S] float32 in [0, 1], "train_labels",
    "test_images", "test_labels", "attribute_names"}`` (label 1 = attribute present).

    Held-out = partition 2 (test) of ``list_eval_partition.txt`` when present (partitions 0 and 1 train),
    else a seeded ``test_fraction``; ``max_train`` / ``max_test`` seeded subsamples per split (None = all).

    Raises:
        FileNotFoundError: naming ``img_align_celeba``, ``list_attr_celeba.txt`` or an image that is missing.
        InputValidationError: for an unknown ``attribute`` (the message lists the 40 names).
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"CelebA folder not found: {root} (expected {CELEBA_IMAGES}/ and {CELEBA_ATTRS}).")
    for name in (CELEBA_IMAGES, CELEBA_ATTRS):
        if not (root / name).exists():
            raise FileNotFoundError(f"CelebA folder {root} lacks {name}.")
    files, names, values = parse_celeba_attributes(root / CELEBA_ATTRS)
    if attribute not in names:
        raise InputValidationError(f"unknown CelebA attribute {attribute!r}; choose one of {names}.", "attribute")
    labels = (values[:, names.index(attribute)] > 0).astype(np.int64)
    part_file = root / CELEBA_PARTITION
    if part_file.is_file():
        part = {}
        for line in part_file.read_text(encoding="latin-1").splitlines():
            bits = line.split()
            if len(bits) == 2:
                part[bits[0]] = int(bits[1])
        missing = [f for f in files if f not in part]
        if missing:
            raise InputValidationError(f"{part_file} has no partition for {missing[:3]}...", "data_path")
        split = np.asarray([part[f] for f in files])
        train_idx, test_idx = np.flatnonzero(split != 2), np.flatnonzero(split == 2)
    else:
        train_idx, test_idx = st.stratified_split(labels, test_fraction, seed)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {"attribute_names": np.asarray(names)}
    for prefix, idx, cap in (("train", train_idx, max_train), ("test", test_idx, max_test)):
        if cap is not None and len(idx) > cap:
            idx = np.sort(rng.choice(idx, cap, replace=False))
        if len(idx) == 0:
            raise InputValidationError(f"CelebA {prefix} split of {root} is empty.", "data_path")
        images = np.stack([
            _load_celeba_image(member_path(root / CELEBA_IMAGES, files[i], root / CELEBA_ATTRS), image_size)
            for i in idx
        ])
        out[f"{prefix}_images"] = images.transpose(0, 3, 1, 2).copy()
        out[f"{prefix}_labels"] = labels[idx]
    return out


# ------------------------------------------------------------------------------------------------- family
def load_family(quick: bool = True, seed: int = 0, data_path: str | None = None, cache_dir: str | None = None,
                *, attribute: str = CELEBA_ATTRIBUTE, image_size: int = CELEBA_SIZE,
                retrain: bool = False) -> Family:
    """The faces family: a small CNN on LFW face / non-face (default) or a CelebA attribute.

    Args:
        quick: 5 held-out explicands per class and a 10-per-class reference pool (else 30 and 30); for CelebA
            also the image caps (2,000 train / 400 test, else 20,000 / 2,000).
        seed: seeds the split, subsampling, initialisation, augmentation and training.
        data_path: the CelebA folder; None = scikit-image's ``lfw_subset``.
        cache_dir: where trained weights are cached (default ``$PATHATTR_CACHE`` or ``~/.cache/pathattr``).
        attribute: CelebA attribute to classify (present = class 1).
        image_size: CelebA image side after centre crop and resize.
        retrain: ignore committed/cached weights.

    Returns:
        :class:`Family` with ``inputs [N, C, H, W]`` in [0, 1] and no ground truth. The bar: 90 % held-out
        accuracy on LFW (60 held-out images); on CelebA max(80 %, majority-class rate + 2 points).
    """
    t0 = time.perf_counter()
    if data_path is None:
        images, labels = read_lfw_subset()
        train_idx, test_idx = st.stratified_split(labels, _LFW_RECIPE["test_fraction"], seed)
        x_all = torch.from_numpy(images).unsqueeze(1)
        x_train, y_train = x_all[train_idx], torch.as_tensor(labels[train_idx])
        x_test, y_test = x_all[test_idx], torch.as_tensor(labels[test_idx])
        classes = list(LFW_CLASSES)
        arch = {"in_channels": 1, "size": 25, "channels": (8, 16), "hidden": 32}
        recipe = dict(_LFW_RECIPE)
        min_acc = MIN_ACCURACY_LFW
        source = ("scikit-image lfw_subset (100 LFW faces + 100 non-faces, 25x25 grey; seeded stratified "
                  f"{1 - recipe['test_fraction']:.0%}/{recipe['test_fraction']:.0%} split)")
        name = "lfw"
    else:
        caps = (2000, 400) if quick else (20000, 2000)
        d = read_celeba(data_path, attribute, image_size, *caps, seed=seed)
        x_train, y_train = torch.from_numpy(d["train_images"]), torch.as_tensor(d["train_labels"])
        x_test, y_test = torch.from_numpy(d["test_images"]), torch.as_tensor(d["test_labels"])
        classes = [f"not {attribute}", attribute]
        arch = {"in_channels": 3, "size": image_size, "channels": (16, 32, 64), "hidden": 64}
        batches = math.ceil(len(x_train) / 64)
        recipe = {"epochs": int(min(300, max(8, math.ceil(300 / batches)))), "batch_size": 64, "lr": 2e-3,
                  "weight_decay": 1e-4}
        majority = float(max(y_test.double().mean(), 1 - y_test.double().mean()))
        min_acc = min(0.99, max(0.80, majority + 0.02))
        source = f"CelebA {data_path} (attribute {attribute}; {len(x_train)} train / {len(x_test)} held-out images)"
        name = f"celeba-{attribute}"
    key = st.digest("faces", name, x_train, y_train, arch, recipe, seed)

    def build() -> FaceCNN:
        return FaceCNN(**arch)

    def train(model: nn.Module) -> float:
        return st.train_classifier(model, x_train, y_train, epochs=recipe["epochs"], seed=seed,
                                   batch_size=recipe["batch_size"], lr=recipe["lr"],
                                   weight_decay=recipe["weight_decay"], augment=flip_shift)

    model, how = st.obtain_model(build, train, key=key, seed=seed,
                                 cache_file=default_cache_dir(cache_dir) / f"faces_{name}_cnn_{key}.pt",
                                 committed=_COMMITTED if data_path is None else None, retrain=retrain)
    acc = st.accuracy(model, x_test, y_test)
    y_test_np, y_train_np = y_test.numpy(), y_train.numpy()
    explicand = st.per_class_pick(y_test_np, 5 if quick else 30, seed + 1)
    pool = st.per_class_pick(y_train_np, 10 if quick else 30, seed + 2)
    fam = Family(
        name="faces",
        model_name=f"face-cnn-{'-'.join(str(c) for c in arch['channels'])}-fc{arch['hidden']}",
        model=model,
        inputs=x_test[explicand].clone(),
        labels=y_test[explicand].clone(),
        reference_pool=x_train[pool].clone(),
        reference_labels=y_train[pool].clone(),
        representation=model.fc,
        accuracy=acc,
        min_accuracy=min_acc,
        n_classes=2,
        bounds=(0.0, 1.0),
        ground_truth=None,
        spatial=True,
        baseline="zeros",
        normal_class=None,
        ig2={
            "n_steps": 201 if quick else 401,
            "step_size": 0.05 if quick else 0.025,
            "n_references": 8,
            "recipe": "other_class",
            "representation_side": "input",
            "note": "no reference-notebook settings for faces; path length K*eta ~= 10 in [0, 1] pixel units "
                    "(typical face / non-face distance ~ 7). LFW, 10 quick explicands, 8 references: every GradCF "
                    "flips the class; mean |relative completeness gap| 0.74 (non-face explicands 0.01-0.2, face "
                    "explicands 0.6-1.8: the ReLU/max-pool CNN is steep along the GradPath)",
        },
        info={
            "dataset": source,
            "classes": classes,
            "n_train": int(len(y_train)),
            "n_test": int(len(y_test)),
            "ground_truth": "none (no pixel-level ground truth for faces)",
            "explicand_indices_in_test": explicand.tolist(),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in {**arch, **recipe}.items()},
            "seed": seed,
            "load_seconds": time.perf_counter() - t0,
            **how,
        },
    )
    fam.check_accuracy()
    return fam
