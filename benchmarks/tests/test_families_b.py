"""Evaluation families text (Kim-CNN on BBC News / TREC), wafer (synthetic WM-811K / LSWMD.pkl), faces (LFW / CelebA).

Fast tests load the default families from the committed weights and check their held-out accuracy, the Family
contract, determinism, the data generators and every user-file loader on tiny files written to tmp_path.
The slow test retrains the three default models from scratch twice and checks bit-identical weights.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pathattr.errors import InputValidationError
from pathattr_bench.families import _seeded_training as st
from pathattr_bench.families import faces, text, wafer
from pathattr_bench.families.base import AccuracyError, Family

MODULES = {"text": text, "wafer": wafer, "faces": faces}


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> dict[str, Family]:
    cache = tmp_path_factory.mktemp("family_cache")
    return {name: m.load_family(quick=True, seed=0, cache_dir=str(cache)) for name, m in MODULES.items()}


def _penultimate(family: Family, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = family.representation.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    try:
        with torch.no_grad():
            family.model(x)
    finally:
        handle.remove()
    return seen[0]


# ------------------------------------------------------------------------------------------ default families
@pytest.mark.parametrize("name", list(MODULES))
def test_default_family_meets_its_bar_and_contract(families, name):
    fam = families[name]
    assert fam.name == name
    assert fam.info["weights_source"] == "committed", "committed weights no longer match the data pipeline"
    assert fam.min_accuracy == {"text": 0.85, "wafer": 0.90, "faces": 0.90}[name]
    assert fam.accuracy >= fam.min_accuracy
    assert not fam.model.training
    assert all(not m.training for m in fam.model.modules())
    n = len(fam.inputs)
    assert n > 0 and fam.labels.shape == (n,) and fam.labels.dtype == torch.long
    assert len(fam.reference_pool) == len(fam.reference_labels) > 0
    assert int(fam.labels.max()) < fam.n_classes and int(fam.reference_labels.max()) < fam.n_classes
    with torch.no_grad():
        out1, out2 = fam.model(fam.inputs), fam.model(fam.inputs)
    assert out1.shape == (n, fam.n_classes) and torch.isfinite(out1).all()
    assert torch.equal(out1, out2)  # eval mode: dropout off
    lo, hi = fam.bounds
    assert fam.inputs.min() >= lo and fam.inputs.max() <= hi
    assert fam.reference_pool.min() >= lo and fam.reference_pool.max() <= hi
    # the representation module's input is the penultimate (pooled / hidden) features, of the expected width
    width = {"text": 300, "wafer": 128, "faces": 32}[name]
    assert _penultimate(fam, fam.inputs).shape == (n, width)
    for key in ("n_steps", "step_size", "n_references", "recipe", "representation_side"):
        assert key in fam.ig2
    assert fam.ig2["n_steps"] * fam.ig2["step_size"] == pytest.approx(
        {"text": 5.05, "wafer": 50.25, "faces": 10.05}[name])
    # enough references for the recipe
    if fam.ig2["recipe"] == "class":
        assert int((fam.reference_labels == fam.normal_class).sum()) >= fam.ig2["n_references"]
    else:
        for c in fam.labels.unique():
            assert int((fam.reference_labels != c).sum()) >= fam.ig2["n_references"]
    assert isinstance(fam.info["dataset"], str) and fam.info["n_test"] > 0


def test_default_families_are_deterministic(families, tmp_path):
    for name, module in MODULES.items():
        again = module.load_family(quick=True, seed=0, cache_dir=str(tmp_path))
        fam = families[name]
        assert torch.equal(again.inputs, fam.inputs) and torch.equal(again.labels, fam.labels)
        assert torch.equal(again.reference_pool, fam.reference_pool)
        with torch.no_grad():
            assert torch.equal(again.model(fam.inputs), fam.model(fam.inputs))
        assert again.accuracy == fam.accuracy


def test_text_family_embeddings_and_tokens(families):
    fam = families["text"]
    task = text.build_text_task(seed=0)
    assert task.accuracy == fam.accuracy
    n, length, dim = fam.inputs.shape
    assert (length, dim) == (text.BBC_MAX_LEN, text.EMBED_DIM) and fam.n_classes == 5
    assert fam.token_mask.shape == (n, length) and fam.token_mask.dtype == torch.bool
    weight = task.classifier.embedding.weight.detach()
    assert fam.bounds == (float(weight.min()), float(weight.max()))
    assert torch.count_nonzero(weight[0]) == 0  # padding embedding is the zero vector
    # the embedding-space model is the token classifier after the lookup
    ids = task.test_ids[:7]
    with torch.no_grad():
        assert torch.allclose(task.classifier(ids), fam.model(task.embed(ids)))
    assert [len(t) for t in fam.info["tokens"]] == fam.token_mask.sum(1).tolist()
    # an attention mask puts the padding (zero) embedding at masked positions
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[:, 40:] = False
    cut = fam.inputs[:2].clone()
    cut[:, 40:] = 0
    with torch.no_grad():
        assert torch.equal(fam.model(fam.inputs[:2], mask), fam.model(cut))
        assert torch.equal(fam.model(fam.inputs[:2], torch.ones_like(mask)), fam.model(fam.inputs[:2]))
    with pytest.raises(InputValidationError):
        fam.model(fam.inputs[:2], mask[:, :10])
    assert fam.info["classes"] == ["business", "entertainment", "politics", "sports", "tech"]
    assert (fam.labels.bincount(minlength=5) == 2).all()
    # held-out and training texts are disjoint
    assert not set(task.data.test_texts) & set(task.data.train_texts)


def test_token_scores_sum_over_embedding_and_zero_padding():
    attr = torch.arange(2 * 4 * 3, dtype=torch.float64).reshape(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    scores = text.token_scores(attr, mask)
    expected = attr.sum(2)
    expected[0, 2:] = 0
    assert torch.equal(scores, expected)
    with pytest.raises(InputValidationError) as err:
        text.token_scores(attr, mask[:, :3])
    assert err.value.argument == "token_mask"


def test_tokenizer_and_vocabulary():
    assert text.tokenize("The UK's GDP rose 2.5% -- Analysts' view!") == ["the", "uk's", "gdp", "rose", "2", "5",
                                                                           "analysts", "view"]
    vocab = text.Vocabulary.build([["b", "a", "b", "c"], ["a", "b", "d"]], max_size=4, min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "b", "a"]
    ids, mask = vocab.encode([["a", "zzz"], ["b"] * 5], max_len=3)
    assert ids.tolist() == [[3, 1, 0], [2, 2, 2]]
    assert mask.tolist() == [[True, True, False], [True, True, True]]


def test_wafer_family_masks_and_references(families):
    fam = families["wafer"]
    x = fam.inputs
    assert x.shape == (8, 3, wafer.GRID, wafer.GRID) and fam.spatial
    assert torch.equal(x.sum(1), torch.ones(8, wafer.GRID, wafer.GRID))  # one-hot
    assert fam.labels.tolist() == list(range(8)) and fam.normal_class == wafer.CLASSES.index("none") == 8
    gt = fam.ground_truth
    assert gt.shape == (8, wafer.GRID, wafer.GRID) and gt.dtype == torch.bool
    assert not (gt & (x[:, 0] > 0)).any()  # masks lie on the wafer
    assert gt.flatten(1).any(1).all()  # every fault explicand has a defect region
    normal = fam.reference_pool[fam.reference_labels == fam.normal_class]
    assert len(normal) == 10 and fam.ig2["reference_class"] == 8


def test_faces_family_images(families):
    fam = families["faces"]
    assert fam.inputs.shape == (10, 1, 25, 25) and fam.spatial and fam.ground_truth is None
    assert fam.info["classes"] == ["non-face", "face"] and fam.info["n_test"] == 60
    assert (fam.labels.bincount() == 5).all()


# ----------------------------------------------------------------------------------------------- generator
def test_wafer_generator_is_seeded_and_realistic():
    labels = np.repeat(np.arange(len(wafer.CLASSES)), 20)
    maps, masks = wafer.generate_wafer_maps(labels, grid=32, seed=5)
    maps2, masks2 = wafer.generate_wafer_maps(labels, grid=32, seed=5)
    maps3, _ = wafer.generate_wafer_maps(labels, grid=32, seed=6)
    assert np.array_equal(maps, maps2) and np.array_equal(masks, masks2) and not np.array_equal(maps, maps3)
    assert maps.dtype == np.uint8 and set(np.unique(maps)) == {0, 1, 2}
    disc = maps[0] != wafer.OFF
    assert (maps != wafer.OFF).all(axis=0).sum() == disc.sum()  # same disc on every map
    assert not (masks & ~disc).any()
    fail = maps == wafer.FAIL
    by = {name: i for i, name in enumerate(wafer.CLASSES)}
    assert not masks[labels == by["none"]].any()
    background = fail[labels == by["none"]].sum((1, 2)) / disc.sum()  # rate ~ U(0, 5 %), binomial noise
    assert background.max() < 0.08 and 0.01 < background.mean() < 0.04
    for name in ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Scratch"):
        sel = labels == by[name]
        inside = (fail[sel] & masks[sel]).sum() / masks[sel].sum()
        outside = (fail[sel] & ~masks[sel] & disc).sum() / (~masks[sel] & disc).sum()
        assert inside > 0.65 and outside < 0.05, name
    assert fail[labels == by["Near-full"]].sum((1, 2)).min() > 0.7 * disc.sum()
    random_rate = fail[labels == by["Random"]].sum((1, 2)) / disc.sum()
    assert (random_rate > 0.12).all() and (random_rate < 0.4).all()
    # Center sits at the centre, Edge-Loc on the rim, Loc in between
    yy, xx = np.mgrid[0:32, 0:32] - 15.5
    rho = np.hypot(yy, xx) / 15.5
    mean_rho = {n: (masks[labels == by[n]] * rho).sum((1, 2)) / masks[labels == by[n]].sum((1, 2))
                for n in ("Center", "Loc", "Edge-Loc")}
    assert mean_rho["Center"].max() < mean_rho["Edge-Loc"].min()
    assert np.median(mean_rho["Center"]) < np.median(mean_rho["Loc"]) < np.median(mean_rho["Edge-Loc"])
    with pytest.raises(InputValidationError):
        wafer.generate_wafer_maps([9])


def test_one_hot_and_resize():
    maps = np.array([[[0, 1], [2, 1]]], dtype=np.uint8)
    oh = wafer.one_hot(maps)
    assert oh.shape == (1, 3, 2, 2) and oh.dtype == torch.float32
    assert oh[0, :, 1, 0].tolist() == [0, 0, 1] and oh[0, :, 0, 0].tolist() == [1, 0, 0]
    with pytest.raises(InputValidationError):
        wafer.one_hot(np.full((1, 2, 2), 3))
    m = np.arange(12).reshape(3, 4)
    assert wafer.resize_nearest(m, 6).shape == (6, 6)
    assert np.array_equal(wafer.resize_nearest(np.arange(4).reshape(2, 2), 4),
                          np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))
    assert np.array_equal(wafer.resize_nearest(np.arange(16).reshape(4, 4), 2), np.array([[5, 7], [13, 15]]))


# -------------------------------------------------------------------------------------------- caching, RNG
def test_obtain_model_caches_and_respects_key(tmp_path):
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()

    def build():
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))

    def train(model):
        return st.train_classifier(model, x, y, epochs=3, seed=1, batch_size=16)

    cache = tmp_path / "m.pt"
    state = torch.get_rng_state()
    m1, how1 = st.obtain_model(build, train, key="k1", seed=3, cache_file=cache)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    m2, how2 = st.obtain_model(build, train, key="k1", seed=3, cache_file=cache)
    assert (how1["weights_source"], how2["weights_source"]) == ("trained", "cache")
    assert not m2.training
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    m3, how3 = st.obtain_model(build, train, key="k2", seed=3, cache_file=cache)  # stale key -> retrain
    assert how3["weights_source"] == "trained"
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(a, b)  # same seed, same recipe -> bit-identical
    cache.write_bytes(b"garbage")
    assert st.obtain_model(build, train, key="k2", seed=3, cache_file=cache)[1]["weights_source"] == "trained"


def test_faces_retrain_is_deterministic_and_leaves_global_rng(tmp_path):
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    a = faces.load_family(cache_dir=str(tmp_path / "a"), retrain=True)
    b = faces.load_family(cache_dir=str(tmp_path / "b"), retrain=True)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    assert a.info["weights_source"] == "trained" and a.accuracy >= 0.9
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(p, q)
    c = faces.load_family(cache_dir=str(tmp_path / "a"))
    assert c.info["weights_source"] in ("committed", "cache")


def test_accuracy_error_below_the_bar(monkeypatch, tmp_path):
    monkeypatch.setattr(faces, "MIN_ACCURACY_LFW", 1.01)
    with pytest.raises(AccuracyError, match="below the stated minimum"):
        faces.load_family(cache_dir=str(tmp_path))


# ----------------------------------------------------------------------------------------------------- TREC
_TREC_TEMPLATES = {
    "ABBR": ["what does {a} stand for", "what is the abbreviation for {a}", "what is the acronym {a}"],
    "DESC": ["why do {a} {b}", "how does {a} work", "what is the definition of {a}"],
    "ENTY": ["what color is {a}", "what animal {b} {a}", "what instrument does {a} play"],
    "HUM": ["who invented {a}", "who was the first {a}", "who wrote {a}"],
    "LOC": ["where is {a}", "what country has {a}", "where can i find {a}"],
    "NUM": ["how many {a} are there", "when did {a} {b}", "how much does {a} cost"],
}
_FILLER = ["the telephone", "caf\xe9 society", "nasa", "the moon", "rivers", "penguins", "the beatles", "gold",
           "the constitution", "bread", "tennis", "volcanoes", "the euro", "dna", "jazz", "ice hockey"]


def _write_trec(path: Path, n_per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for coarse, templates in _TREC_TEMPLATES.items():
        for i in range(n_per_class):
            q = templates[i % len(templates)].format(a=_FILLER[rng.integers(len(_FILLER))],
                                                       b=_FILLER[rng.integers(len(_FILLER))].split()[-1])
            lines.append(f"{coarse}:fine{i % 2} {q} {seed}x{i} ?")  # distinct questions (the reader drops repeats)
    order = rng.permutation(len(lines))
    path.write_bytes(("\n".join(lines[i] for i in order) + "\n").encode("latin-1"))


def test_trec_reader(tmp_path):
    _write_trec(tmp_path / text.TREC_TRAIN, 30, 0)
    _write_trec(tmp_path / text.TREC_TEST, 5, 1)
    data = text.read_trec(tmp_path)
    assert data.classes == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert len(data.train_texts) == 180 and len(data.test_texts) == 30
    assert any("caf\xe9" in t for t in data.train_texts)  # Latin-1 decoded
    assert all(t.endswith("?") for t in data.train_texts)
    assert np.bincount(data.test_labels).tolist() == [5] * 6
    fine = text.read_trec(tmp_path, fine=True)
    assert "ABBR:fine0" in fine.classes and len(fine.classes) == 12
    single = text.read_trec(tmp_path / text.TREC_TRAIN, test_fraction=0.2, seed=3)
    assert len(single.train_texts) + len(single.test_texts) == 180 and len(single.test_texts) == 36
    q, labels = text.parse_trec(tmp_path / text.TREC_TEST)
    assert len(q) == 30 and set(labels) == set(data.classes)


def test_trec_reader_errors(tmp_path):
    _write_trec(tmp_path / text.TREC_TRAIN, 3, 0)
    with pytest.raises(FileNotFoundError, match="TREC_10.label"):
        text.read_trec(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        text.read_trec(tmp_path / "nowhere")
    bad = tmp_path / "bad.label"
    bad.write_text("DESC:manner How did it go ?\nno label here\n", encoding="latin-1")
    with pytest.raises(InputValidationError, match="bad.label:2"):
        text.parse_trec(bad)


def test_trec_family_end_to_end(tmp_path):
    _write_trec(tmp_path / text.TREC_TRAIN, 60, 0)
    _write_trec(tmp_path / text.TREC_TEST, 10, 1)
    fam = text.load_family(data_path=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert fam.n_classes == 6 and fam.accuracy >= 0.85 and fam.info["weights_source"] == "trained"
    assert fam.inputs.shape[1] == fam.info["max_len"] < text.BBC_MAX_LEN
    assert not fam.token_mask.all() and fam.token_mask[:, 0].all()  # short questions are padded
    assert torch.count_nonzero(fam.inputs[~fam.token_mask]) == 0  # padding embeds to zero
    again = text.load_family(data_path=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert again.info["weights_source"] == "cache" and again.accuracy == fam.accuracy


# ------------------------------------------------------------------------------------------------- WM-811K
def _wm_columns(rng: np.random.Generator):
    maps, types_, splits = [], [], []
    for i in range(24):
        label = wafer.CLASSES[i % 9]
        h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
        maps.append(rng.integers(0, 3, (h, w)).astype(np.uint8))
        types_.append(np.array([[label]]) if i < 18 else np.array([]))  # last 6 unlabelled
        splits.append(np.array([["Training" if i % 3 else "Test"]]))
    return maps, types_, splits


def test_wm811k_columns_parsing():
    maps, types_, splits = _wm_columns(np.random.default_rng(0))
    out = wafer.wm811k_from_columns(maps, types_, splits, grid=16)
    assert out["train_maps"].shape == (12, 16, 16) and out["test_maps"].shape == (6, 16, 16)
    assert out["train_maps"].dtype == np.uint8
    expected_train = [i % 9 for i in range(18) if i % 3]
    assert out["train_labels"].tolist() == expected_train
    assert np.array_equal(out["test_maps"][0], wafer.resize_nearest(maps[0], 16))
    capped = wafer.wm811k_from_columns(maps, types_, splits, grid=16, max_per_class={"Training": 1, "Test": 1})
    assert np.bincount(capped["train_labels"], minlength=9).max() == 1
    with pytest.raises(InputValidationError, match="unknown failureType"):
        wafer.wm811k_from_columns(maps[:1], [np.array([["Blob"]])], splits[:1])


def test_wm811k_missing_file_and_missing_pandas(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHATTR_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="LSWMD.pkl"):
        wafer.read_wm811k(tmp_path)
    with pytest.raises(FileNotFoundError, match="LSWMD.pkl"):
        wafer.load_family(data_path=str(tmp_path))
    (tmp_path / "LSWMD.pkl").write_bytes(b"\x80\x02}q\x00.")  # an empty dict: no pandas needed, no columns
    with pytest.raises(InputValidationError, match="lacks the WM-811K column"):
        wafer.read_wm811k(tmp_path)
    # a DataFrame pickle (GLOBAL pandas.core.frame.DataFrame) without pandas installed
    (tmp_path / "LSWMD.pkl").write_bytes(b"\x80\x02cpandas.core.frame\nDataFrame\nq\x00)\x81q\x01.")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="needs pandas"):
        wafer.read_wm811k(tmp_path)


class _Exploit:
    """Unpickling runs ``os.system('touch <marker>')``: what a crafted LSWMD.pkl from a mirror could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


class _EvalExploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "nested", "pandas.eval"])
def test_wm811k_malicious_pickle_runs_no_code_and_names_the_file(tmp_path, monkeypatch, payload):
    monkeypatch.setenv("PATHATTR_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    pkl = tmp_path / "LSWMD.pkl"
    if payload == "os.system":
        obj = _Exploit(marker)
    elif payload == "builtins.eval":
        obj = _EvalExploit(marker)
    elif payload == "nested":  # hidden inside an otherwise valid table
        obj = {"waferMap": [np.zeros((3, 3), np.uint8), _Exploit(marker)], "failureType": ["none", "none"],
               "trianTestLabel": ["Training", "Test"]}
    else:  # a pandas function that evaluates expressions is not a data class either
        obj = None
    data = pickle.dumps(obj, protocol=2) if obj is not None else \
        b"\x80\x02cpandas\neval\nq\x00X\x03\x00\x00\x001+1q\x01\x85q\x02Rq\x03."
    pkl.write_bytes(data)
    for call in (lambda: wafer.read_wm811k(pkl), lambda: wafer.read_wm811k(tmp_path),
                 lambda: wafer.load_family(data_path=str(tmp_path), cache_dir=str(tmp_path / "cache")),
                 lambda: wafer.convert_wm811k(pkl, tmp_path / "out.npz")):
        with pytest.raises(wafer.UnsafePickleError) as err:
            call()
        assert str(pkl) in str(err.value) and err.value.argument == "data_path"
        assert "refusing" in str(err.value)
    assert not marker.exists()
    assert not (tmp_path / "out.npz").exists()


def _wm_table(n_per_class: int = 12, n_test: int = 2):
    rng = np.random.default_rng(1)
    maps, types_, splits = [], [], []
    for i in range(9 * n_per_class):
        c = i % 9
        m, _ = wafer.generate_wafer_maps([c], grid=int(rng.integers(26, 40)), seed=i)
        maps.append(m[0])
        types_.append(np.array([[wafer.CLASSES[c]]]))
        splits.append(np.array([["Test" if i >= 9 * (n_per_class - n_test) else "Training"]]))
    maps.append(np.ones((30, 31), np.uint8))  # an unlabelled row
    types_.append(np.array([], dtype=object))
    splits.append(np.array([], dtype=object))
    return maps, types_, splits


def test_wm811k_plain_pickle_is_converted_once_to_a_safe_npz(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    maps, types_, splits = _wm_table()
    pkl = tmp_path / "LSWMD.pkl"
    pkl.write_bytes(pickle.dumps({"waferMap": maps, "failureType": types_, "trianTestLabel": splits}, protocol=4))
    direct = wafer.wm811k_from_columns(maps, types_, splits, grid=32)
    first = wafer.read_wm811k(pkl, grid=32, cache_dir=str(cache))
    npz = wafer.converted_path(pkl, str(cache))
    assert npz.is_file()
    with np.load(npz, allow_pickle=False) as z:  # no object arrays: loads without pickles
        assert sorted(z.files) == sorted(wafer._NPZ_KEYS)
    monkeypatch.setattr(wafer, "_read_pickle_table", lambda p: pytest.fail("the pickle was read again"))
    second = wafer.read_wm811k(tmp_path, grid=32, cache_dir=str(cache))
    explicit = wafer.convert_wm811k  # the converter is also public: an LSWMD.npz in the folder is read directly
    monkeypatch.undo()
    explicit(pkl, tmp_path / "LSWMD.npz")
    pkl.unlink()
    third = wafer.read_wm811k(tmp_path, grid=32)
    for out in (first, second, third):
        assert out.keys() == direct.keys()
        for k in direct:
            assert np.array_equal(out[k], direct[k]), k


def test_wm811k_npz_with_object_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "LSWMD.npz", wafer_map_data=np.zeros(4, np.uint8), wafer_map_shapes=np.array([[2, 2]]),
             failure_type=np.array([None], dtype=object), split=np.array(["Training"]))
    with pytest.raises(InputValidationError) as err:
        wafer.read_wm811k(tmp_path)
    assert "LSWMD.npz" in str(err.value)


def test_legacy_pandas_unpickler_remaps_moved_modules(monkeypatch):
    moved = types.ModuleType("pandas.core.indexes.base")

    class Index:
        pass

    moved.Index = Index
    for name in ("pandas", "pandas.core", "pandas.core.indexes"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "pandas.core.indexes.base", moved)
    legacy = b"\x80\x02cpandas.indexes.base\nIndex\nq\x00)\x81q\x01."  # GLOBAL pandas.indexes.base.Index()
    import io

    obj = wafer._LegacyPandasUnpickler(io.BytesIO(legacy), encoding="latin1").load()
    assert isinstance(obj, Index)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(legacy)


def test_wm811k_pickle_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    maps, types_, splits = _wm_table()
    frame = pd.DataFrame({"waferMap": maps, "failureType": types_, "trianTestLabel": splits,
                          "dieSize": np.arange(len(maps), dtype=np.float64), "lotName": ["lot1"] * len(maps)})
    for protocol in (2, 4, 5):
        frame.to_pickle(tmp_path / "LSWMD.pkl", protocol=protocol)
        out = wafer.read_wm811k(tmp_path / "LSWMD.pkl", grid=32, cache_dir=str(tmp_path / f"cache{protocol}"))
        assert out["train_maps"].shape == (90, 32, 32) and out["test_labels"].tolist() == list(range(9)) * 2


# -------------------------------------------------------------------------------------------------- CelebA
_CELEBA_NAMES = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
]


def _write_celeba(root: Path, n: int, partition: bool = True) -> np.ndarray:
    from PIL import Image

    (root / faces.CELEBA_IMAGES).mkdir(parents=True)
    rng = np.random.default_rng(0)
    values = np.where(rng.random((n, 40)) < 0.5, 1, -1)
    smiling = _CELEBA_NAMES.index("Smiling")
    rows, parts = [], []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        level = 200 if values[i, smiling] > 0 else 50  # a learnable "attribute": brightness
        img = np.clip(level + rng.normal(0, 20, (22, 18, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / faces.CELEBA_IMAGES / name, quality=95)
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values[i]))
        parts.append(f"{name} {0 if i < n * 0.6 else (1 if i < n * 0.75 else 2)}")
    (root / faces.CELEBA_ATTRS).write_text(f"{n}\n" + " ".join(_CELEBA_NAMES) + "\n" + "\n".join(rows) + "\n")
    if partition:
        (root / faces.CELEBA_PARTITION).write_text("\n".join(parts) + "\n")
    return values


def test_celeba_reader(tmp_path):
    values = _write_celeba(tmp_path, 20)
    files, names, parsed = faces.parse_celeba_attributes(tmp_path / faces.CELEBA_ATTRS)
    assert names == _CELEBA_NAMES and files[0] == "000001.jpg" and np.array_equal(parsed, values)
    d = faces.read_celeba(tmp_path, attribute="Smiling", image_size=12)
    assert d["train_images"].shape == (15, 3, 12, 12) and d["test_images"].shape == (5, 3, 12, 12)
    smiling = _CELEBA_NAMES.index("Smiling")
    assert d["test_labels"].tolist() == (values[15:, smiling] > 0).astype(int).tolist()
    bright = d["test_images"].mean(axis=(1, 2, 3)) > 0.5
    assert bright.tolist() == (d["test_labels"] == 1).tolist()
    assert d["train_images"].min() >= 0 and d["train_images"].max() <= 1
    male = faces.read_celeba(tmp_path, attribute="Male", image_size=8, max_train=4, max_test=2)
    assert len(male["train_labels"]) == 4 and len(male["test_labels"]) == 2


@pytest.mark.parametrize("bad", ["../secret.jpg", "/etc/passwd", "sub/../../secret.jpg", "..\\secret.jpg",
                                 "C:\\secret.jpg", "link.jpg"])
def test_celeba_index_cannot_name_files_outside_the_folder(tmp_path, bad):
    from PIL import Image

    root = tmp_path / "celeba"
    values = _write_celeba(root, 6)
    secret = tmp_path / "secret.jpg"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(secret)
    if bad == "link.jpg":  # a symbolic link inside the folder that leads out of it
        (root / faces.CELEBA_IMAGES / "link.jpg").symlink_to(secret)
    attrs = root / faces.CELEBA_ATTRS
    lines = attrs.read_text().splitlines()
    lines[2] = bad + " " + " ".join(f"{v:2d}" for v in values[0])
    attrs.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputValidationError) as err:
        faces.read_celeba(root, attribute="Smiling", image_size=8, max_train=None, max_test=None)
    assert faces.CELEBA_ATTRS in str(err.value) and repr(bad) in str(err.value)


def test_imagenet_label_list_cannot_name_files_outside_the_folder(tmp_path):
    from PIL import Image

    from pathattr_bench.imagenet import imagenet_wnids, load_image_folder

    root = tmp_path / "val"
    root.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(root / "a.png")
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "outside.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("a.png 1\n")
    assert [lab for _, lab, _ in load_image_folder(root, labels, size=8)] == [1]
    for bad in ("../outside.png", str(tmp_path / "outside.png"), "x/../../outside.png"):
        labels.write_text(f"a.png 1\n{bad} 2\n")
        with pytest.raises(InputValidationError) as err:
            list(load_image_folder(root, labels, size=8))
        assert str(labels) in str(err.value) and err.value.argument == "labels_file"
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    labels.write_text("link.png 3\n")
    with pytest.raises(InputValidationError):
        list(load_image_folder(root, labels, size=8))
    labels.write_text("a.png n99999999\n")
    with pytest.raises(InputValidationError, match="unknown label"):
        list(load_image_folder(root, labels, size=8))
    wnid = imagenet_wnids()[5]  # class-folder layout: a linked image that leads out is refused too
    (root / wnid).mkdir()
    (root / wnid / "in.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(InputValidationError):
        list(load_image_folder(root, size=8))


def test_celeba_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        faces.read_celeba(tmp_path)
    (tmp_path / faces.CELEBA_IMAGES).mkdir()
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"):
        faces.load_family(data_path=str(tmp_path))
    root = tmp_path / "c"
    _write_celeba(root, 6, partition=False)
    with pytest.raises(InputValidationError, match="Smile'"):
        faces.read_celeba(root, attribute="Smile")
    (root / faces.CELEBA_IMAGES / "000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000003.jpg"):
        faces.read_celeba(root, image_size=8)
    bad = tmp_path / "attrs.txt"
    bad.write_text("2\nA B\nx.jpg 1 -1\n")
    with pytest.raises(InputValidationError, match="header says 2"):
        faces.parse_celeba_attributes(bad)


def test_celeba_family_end_to_end(tmp_path):
    _write_celeba(tmp_path / "celeba", 48)
    fam = faces.load_family(data_path=str(tmp_path / "celeba"), cache_dir=str(tmp_path / "cache"), image_size=16)
    assert fam.inputs.shape[1:] == (3, 16, 16) and fam.n_classes == 2
    assert fam.info["classes"] == ["not Smiling", "Smiling"] and fam.accuracy >= fam.min_accuracy >= 0.8
    assert fam.ground_truth is None and fam.info["weights_source"] == "trained"


# ----------------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODULES))
def test_default_models_retrain_deterministically(name, tmp_path):
    module = MODULES[name]
    a = module.load_family(cache_dir=str(tmp_path / "a"), retrain=True)
    b = module.load_family(cache_dir=str(tmp_path / "b"), retrain=True)
    assert a.info["weights_source"] == b.info["weights_source"] == "trained"
    assert a.accuracy >= a.min_accuracy and a.accuracy == b.accuracy
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(p, q)
    committed = module.load_family(cache_dir=str(tmp_path / "c"))
    assert committed.info["weights_source"] == "committed"
    assert abs(committed.accuracy - a.accuracy) <= 0.02  # float16-rounded copy of the same model
