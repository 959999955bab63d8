"""The committed real photos of the ImageNet family (data/photos.tsv, data/photos/)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch
from PIL import Image

from pathattr_bench.families import imagenet as fam_imagenet
from pathattr_bench.imagenet import imagenet_class_names


def test_table_lists_at_least_50_confident_photos_with_source_and_licence():
    table = fam_imagenet.photo_table()
    assert len(table) >= 50
    assert len({r.file for r in table}) == len(table)
    names = imagenet_class_names()
    folder = resources.files("pathattr_bench").joinpath("data", "photos")
    listed = {r.file for r in table}
    on_disk = {p.name for p in folder.iterdir() if p.name.endswith(".jpg")}
    assert listed == on_disk  # every committed photo is listed, every listed photo is committed
    for r in table:
        assert r.confidence >= fam_imagenet.MIN_CONFIDENCE
        assert 0 <= r.label < 1000 and names[r.label] == r.class_name
        assert r.source.strip() and r.licence.strip()
        with Image.open(folder.joinpath(r.file)) as im:
            assert im.size == (224, 224) and im.mode == "RGB"
    assert len({r.label for r in table}) >= 50  # many different classes, not one class repeated


def test_licences_are_redistributable_ones():
    allowed = ("CC0", "public domain", "Apache-2.0 AND BSD-3-Clause", "GPL-2+")
    assert all(r.licence.startswith(allowed) for r in fam_imagenet.photo_table())


def test_model_still_predicts_the_table_class_on_a_sample():
    from pathattr_bench.families._fit import predict
    from pathattr_bench.imagenet import load_efficientnet_lite0

    table = fam_imagenet.photo_table()
    sample = table[:4] + table[-4:]
    x = fam_imagenet.load_table_photos(sample)
    assert x.shape == (8, 3, 224, 224) and float(x.min()) >= 0 and float(x.max()) <= 1
    pred = predict(load_efficientnet_lite0(), x, batch_size=8)
    assert pred.tolist() == [r.label for r in sample]


@pytest.mark.slow
def test_full_profile_explains_all_table_photos():
    fam = fam_imagenet.load_family(quick=False)
    n = len(fam_imagenet.photo_table())
    assert fam.inputs.shape == (n, 3, 224, 224) and fam.labels.shape == (n,)
    assert fam.reference_pool.shape[0] > n and bool(torch.equal(fam.reference_pool[:n], fam.inputs))
    assert fam.accuracy >= fam_imagenet.MIN_ACCURACY
    assert sum(fam.info["photo_licences"].values()) == n
    assert np.isclose(sum(1 for _ in fam.info["photo_sources"]), n)
