"""Comprehensiveness, sufficiency and log-odds on a bag-of-embeddings model whose logits are computable by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pathattr.metrics as pm
from pathattr.errors import InputValidationError


class BagOfEmbeddings(nn.Module):
    """``logits = W^T sum_t mask_t e_t + c``: deleting or masking token ``t`` removes exactly ``W^T e_t``."""

    def __init__(self, d: int = 4, classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(d, classes, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(classes, generator=g, dtype=torch.float64))

    def forward(self, emb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            emb = emb * mask.unsqueeze(-1).to(emb.dtype)
        return emb.sum(1) @ self.w + self.c


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[2, 4:] = 0  # example 2 has 4 real tokens
    scores = torch.rand(3, 6, generator=g, dtype=torch.float64)
    return BagOfEmbeddings(), emb, mask, scores


def hand_probs(model, emb, keep):
    """Class probabilities of the bag model when only tokens with ``keep`` count."""
    logits = (emb * keep.unsqueeze(-1)).sum(1) @ model.w + model.c
    return torch.softmax(logits.detach(), 1)


def top_tokens(scores, candidate, k):
    n = int(candidate.sum())
    kk = int(n * k + 1e-9)
    ranked = torch.where(candidate, scores, torch.tensor(-float("inf"), dtype=scores.dtype))
    return torch.sort(ranked, descending=True, stable=True).indices[:kk]


def test_comprehensiveness_sufficiency_log_odds_by_hand(case):
    model, emb, mask, scores = case
    k = 0.5
    comp = pm.comprehensiveness(model, emb, scores, attention_mask=mask, topk=k)
    suff = pm.sufficiency(model, emb, scores, attention_mask=mask, topk=k)
    lo = pm.log_odds(model, emb, scores, attention_mask=mask, topk=k)
    full = hand_probs(model, emb, mask.double())
    y = full.argmax(1)
    for i in range(3):
        top = top_tokens(scores[i], mask[i].bool(), k)
        selected = torch.zeros(6, dtype=torch.float64)
        selected[top] = 1
        p_full = full[i, y[i]]
        p_without = hand_probs(model, emb[i : i + 1], (mask[i] * (1 - selected)).unsqueeze(0))[0, y[i]]
        p_only = hand_probs(model, emb[i : i + 1], (mask[i] * selected).unsqueeze(0))[0, y[i]]
        assert float(comp.scores[i]) == pytest.approx(float(p_full - p_without), abs=1e-12)
        assert float(suff.scores[i]) == pytest.approx(float(p_full - p_only), abs=1e-12)
        # replacing by the zero embedding removes the token in a bag model: log-odds = log p_without - log p
        assert float(lo.scores[i]) == pytest.approx(float(torch.log(p_without) - torch.log(p_full)), abs=1e-12)
    assert comp.n_selected[:, 0].tolist() == [3, 3, 2]
    assert comp.higher_is_better is True and suff.higher_is_better is False and lo.higher_is_better is False
    assert torch.equal(comp.target, y)


def test_ideal_tokens_beat_random_and_replace_mode(case):
    model, emb, mask, _ = case
    y = hand_probs(model, emb, mask.double()).argmax(1)
    contribution = (emb @ model.w).detach().gather(2, y.view(3, 1, 1).expand(3, 6, 1)).squeeze(2)
    ideal = pm.comprehensiveness(model, emb, contribution, attention_mask=mask, topk=0.5)
    worst = pm.comprehensiveness(model, emb, -contribution, attention_mask=mask, topk=0.5)
    assert bool((ideal.scores > worst.scores).all())
    # in a bag model, deleting and replacing by the zero embedding are the same
    rep = pm.comprehensiveness(model, emb, contribution, attention_mask=mask, topk=0.5, mode="replace")
    torch.testing.assert_close(rep.scores, ideal.scores, rtol=0, atol=1e-12)


def test_token_ids_special_tokens_multiple_k_and_chunking():
    g = torch.Generator().manual_seed(2)
    table = torch.randn(10, 4, generator=g, dtype=torch.float64)
    bag = BagOfEmbeddings()

    def model(ids, mask):
        return bag(table[ids], mask)

    ids = torch.randint(1, 10, (4, 8), generator=g)
    mask = torch.ones(4, 8, dtype=torch.long)
    special = torch.zeros(4, 8, dtype=torch.bool)
    special[:, 0] = True  # [CLS]
    attr = torch.rand(4, 8, generator=g, dtype=torch.float64)
    attr[:, 0] = 100.0  # would be selected first if allowed
    res = pm.comprehensiveness(model, ids, attr, attention_mask=mask, special_tokens_mask=special,
                               topk=[0.0, 0.3, 1.0], baseline=0)
    assert res.n_selected.tolist() == [[0, 2, 7]] * 4
    assert res.per_k[:, 0].abs().max() == 0  # K = 0: nothing removed
    torch.testing.assert_close(res.scores, res.per_k.mean(1))
    # with every candidate deleted only [CLS] remains
    p_full = torch.softmax(model(ids, mask), 1)
    cls_only = torch.zeros_like(mask)
    cls_only[:, 0] = 1
    p_cls = torch.softmax(model(ids, cls_only), 1)
    expected = (p_full - p_cls).detach().gather(1, res.target.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(res.per_k[:, 2], expected, rtol=0, atol=1e-12)
    chunked = pm.comprehensiveness(model, ids, attr, attention_mask=mask, special_tokens_mask=special,
                                   topk=[0.0, 0.3, 1.0], internal_batch_size=3)
    torch.testing.assert_close(chunked.per_k, res.per_k, rtol=0, atol=1e-12)
    suff0 = pm.sufficiency(model, ids, attr, attention_mask=mask, special_tokens_mask=special, topk=0.0)
    assert suff0.scores.abs().max() == 0  # DIG: K = 0 gives 0
    # embedding attributions [B, L, D] are summed per token
    emb_attr = attr.unsqueeze(-1).expand(4, 8, 4) / 4
    same = pm.comprehensiveness(model, ids, emb_attr, attention_mask=mask, special_tokens_mask=special,
                                topk=[0.0, 0.3, 1.0])
    torch.testing.assert_close(same.per_k, res.per_k)


def test_delete_compacts_tokens_to_the_front():
    seen = []

    def model(x, mask):
        seen.append((x.clone(), mask.clone()))
        return torch.stack([x[..., 0].sum(1), torch.zeros(x.shape[0], dtype=x.dtype)], 1)

    x = torch.arange(1.0, 6.0, dtype=torch.float64).view(1, 5, 1)
    attr = torch.tensor([[0.0, 9.0, 0.0, 8.0, 0.0]])
    pm.comprehensiveness(model, x, attr, attention_mask=torch.ones(1, 5), topk=0.4, pad=-1.0, target=0, model=())
    rows, mask = seen[-1]
    assert rows[0, :, 0].tolist() == [1.0, 3.0, 5.0, -1.0, -1.0]  # tokens 2 and 4 deleted, order kept
    assert mask[0].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_nlp_errors(case):
    model, emb, mask, scores = case
    with pytest.raises(InputValidationError) as e:
        pm.comprehensiveness(model, emb, scores[:, :4], attention_mask=mask)
    assert e.value.argument == "attributions"
    with pytest.raises(InputValidationError) as e:
        pm.sufficiency(model, emb, scores, attention_mask=mask, topk=1.5)
    assert e.value.argument == "topk"
    with pytest.raises(InputValidationError) as e:
        pm.log_odds(model, emb, scores, attention_mask=mask[:, :3])
    assert e.value.argument == "attention_mask"
    with pytest.raises(InputValidationError) as e:
        pm.comprehensiveness(model, emb, scores, attention_mask=mask, mode="mask")
    assert e.value.argument == "mode"
