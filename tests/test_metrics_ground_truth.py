"""Ground-truth agreement and localisation: closed-form cases, sklearn parity, argument errors."""

from __future__ import annotations

import pytest
import torch

import pathattr.metrics as pm
from pathattr.errors import InputValidationError


def test_feature_and_rank_agreement_closed_form():
    g = torch.tensor([[5.0, -4.0, 3.0, 2.0, 1.0, 0.5]])
    assert pm.feature_agreement(g, g, k=3).scores.item() == 1.0
    assert pm.rank_agreement(g, g, k=3).scores.item() == 1.0
    # same top-3 set {0,1,2} in another order: FA 1, RA 1/3 (only position 2 agrees)
    a = torch.tensor([[4.0, 5.0, 3.0, 0.0, 0.1, 0.2]])
    assert pm.feature_agreement(a, g, k=3).scores.item() == 1.0
    assert pm.rank_agreement(a, g, k=3).scores.item() == pytest.approx(1 / 3)
    # two of three top features shared
    b = torch.tensor([[5.0, 0.0, 3.0, 4.0, 0.0, 0.0]])
    assert pm.feature_agreement(b, g, k=3).scores.item() == pytest.approx(2 / 3)
    # signs: feature 1 has the wrong sign in `a`
    assert pm.sign_agreement(a, g, k=3).scores.item() == pytest.approx(2 / 3)
    assert pm.signed_rank_agreement(a, g, k=3).scores.item() == pytest.approx(1 / 3)
    # fractional k: floor(0.5 * 6) = 3
    assert pm.feature_agreement(b, g, k=0.5).k == 3
    # rank correlation: a monotone transform gives 1, the reversed order -1
    x = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.3]])
    assert pm.rank_correlation(x**3, x).scores.item() == pytest.approx(1.0)
    assert pm.rank_correlation(-x, x, absolute=False).scores.item() == pytest.approx(-1.0)


def test_rank_correlation_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (3, 20), generator=gen).double()
    b = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    ours = pm.rank_correlation(a, b, absolute=False).scores
    for i in range(3):
        assert float(ours[i]) == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_auroc_and_average_precision_oracles_and_sklearn_parity():
    metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(6, 10, 10, generator=gen) < 0.3
    perfect = mask.double() + 0.01 * torch.rand(6, 10, 10, generator=gen, dtype=torch.float64)
    assert torch.allclose(pm.auroc(perfect, mask).scores, torch.ones(6, dtype=torch.float64))
    assert torch.allclose(pm.average_precision(perfect, mask).scores, torch.ones(6, dtype=torch.float64))
    inverted = pm.auroc(-perfect, mask).scores
    assert torch.allclose(inverted, torch.zeros(6, dtype=torch.float64))
    # random attributions: about 0.5 (averaged over many masks)
    big_mask = torch.rand(200, 400, generator=gen) < 0.3
    rand = torch.rand(200, 400, generator=gen, dtype=torch.float64)
    assert pm.auroc(rand, big_mask).mean() == pytest.approx(0.5, abs=0.01)
    assert pm.average_precision(rand, big_mask).mean() == pytest.approx(0.3, abs=0.02)
    # sklearn parity, with ties (quantised scores)
    scores = torch.randint(0, 5, (6, 10, 10), generator=gen).double()
    ours_auc = pm.auroc(scores, mask).scores
    ours_ap = pm.average_precision(scores, mask).scores
    for i in range(6):
        y, s = mask[i].flatten().numpy(), scores[i].flatten().numpy()
        assert float(ours_auc[i]) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        assert float(ours_ap[i]) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)


def test_channel_reduction_and_top_k_precision():
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2, :2] = True
    attr = torch.zeros(2, 3, 4, 4)
    attr[0, :, :2, :2] = 1.0  # 4 masked pixels first
    attr[1, :, 2:, 2:] = 1.0  # 4 unmasked pixels first
    res = pm.top_k_precision(attr, mask, k=4)
    assert res.scores.tolist() == [1.0, 0.0]
    assert res.k == 4 and res.higher_is_better is True
    # ties: lower flat index first, so example 1 adds pixels (0,0), (0,1) (masked), (0,2), (0,3)
    assert pm.top_k_precision(attr, mask, k=8).scores.tolist() == [0.5, 0.25]
    # example 1: 4 positives at 0 never beat the 4 negatives at 3 and tie with the 8 at 0: (4*8/2) / (4*12)
    assert pm.auroc(attr, mask).scores.tolist() == pytest.approx([1.0, 1 / 3])
    with pytest.raises(InputValidationError) as e:
        pm.auroc(attr, torch.zeros(2, 4, 4, dtype=torch.bool))
    assert e.value.argument == "mask"
    with pytest.raises(InputValidationError) as e:
        pm.top_k_precision(attr, mask, k=17)
    assert e.value.argument == "k"
    with pytest.raises(InputValidationError):
        pm.auroc(attr[:, :, :3], mask)


def test_pointing_game_hits_misses_ties_and_tolerance():
    mask = torch.zeros(3, 20, 20, dtype=torch.bool)
    mask[:, 5:10, 5:10] = True
    attr = torch.zeros(3, 20, 20)
    attr[0, 7, 7] = 1.0  # inside: hit
    attr[1, 15, 15] = 1.0  # far outside: miss
    attr[2, 12, 7] = 1.0  # 3 pixels below the box: miss without tolerance, hit with 3
    res = pm.pointing_game(attr, mask)
    assert res.hits.tolist() == [True, False, False] and res.mean() == pytest.approx(1 / 3)
    assert res.max_locations.tolist() == [7 * 20 + 7, 15 * 20 + 15, 12 * 20 + 7]
    assert pm.pointing_game(attr, mask, tolerance=3).hits.tolist() == [True, False, True]
    assert pm.pointing_game(attr, mask, tolerance=2.9).hits.tolist() == [True, False, False]
    # tie rule: any maximum inside the region is a hit
    tie = torch.zeros(1, 20, 20)
    tie[0, 0, 0] = tie[0, 6, 6] = 2.0
    assert pm.pointing_game(tie, mask[:1]).hits.tolist() == [True]
    assert pm.PointingGame(tolerance=15)(attr, mask).hits.all()


def test_energy_pointing_game_closed_form():
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2, :] = True  # top half
    attr = torch.zeros(2, 4, 4)
    attr[0, 0, 0], attr[0, 3, 3], attr[0, 1, 1] = 3.0, 1.0, -5.0  # negative mass ignored: 3 / 4
    attr[1] = 1.0
    res = pm.energy_pointing_game(attr, mask)
    assert res.scores.tolist() == pytest.approx([0.75, 0.5])
    with pytest.raises(InputValidationError) as e:
        pm.energy_pointing_game(-attr.abs(), mask)
    assert e.value.argument == "attributions"
    # channel axis reduced (sum) when the mask has none
    assert pm.energy_pointing_game(attr.unsqueeze(1).expand(2, 3, 4, 4), mask).scores.tolist() == pytest.approx(
        [0.75, 0.5]
    )
