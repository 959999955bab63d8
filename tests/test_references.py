"""Reference selection recipes: never the explicand, classes as requested, seeded, recorded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathattr import references as R
from pathattr.errors import InputValidationError
from pathattr.methods.ig2 import IG2

D = torch.float64


class ArgmaxOfFeatures(nn.Module):
    """Logits = the first 4 features: the predicted class is the argmax of x[:4] (easy to control)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4, bias=False)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[:, :4] = torch.eye(4)
        self.double()

    def forward(self, x):
        return self.fc(x)


def pool_of(n: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 6, generator=g, dtype=D)


def test_other_class_never_returns_the_explicand_and_differs_in_class():
    model = ArgmaxOfFeatures()
    pool = pool_of()
    x = pool[[0, 5, 9]].clone()
    pool[7] = x[1] + 1e-9  # a near duplicate of explicand 1
    refs = R.other_class(model, x, pool, n_references=6, generator=3)
    assert refs.references.shape == (3, 6, 6) and refs.indices.shape == (3, 6)
    pred_x = model(x).argmax(1)
    pred_pool = model(pool).argmax(1)
    assert torch.equal(refs.explicand_classes, pred_x)
    assert torch.equal(refs.classes, pred_pool[refs.indices])
    assert bool((refs.classes != pred_x[:, None]).all())
    for b, own in enumerate((0, 5, 9)):
        assert own not in refs.indices[b].tolist()
        assert 7 not in refs.indices[1].tolist()
        dist = (refs.references[b] - x[b]).abs().amax(1)
        assert float(dist.min()) > 1e-6
    torch.testing.assert_close(refs.references, pool[refs.indices], rtol=0, atol=0)
    assert all(len(set(row.tolist())) == 6 for row in refs.indices)  # without replacement


def test_seeded_determinism_and_generator_independence_from_global_rng():
    model = ArgmaxOfFeatures()
    pool = pool_of()
    x = pool_of(2, seed=9)
    a = R.other_class(model, x, pool, n_references=5, generator=11)
    torch.manual_seed(123)
    b = R.other_class(model, x, pool, n_references=5, generator=11)
    assert torch.equal(a.indices, b.indices)
    c = R.other_class(model, x, pool, n_references=5, generator=12)
    assert not torch.equal(a.indices, c.indices)
    g = torch.Generator().manual_seed(11)
    d = R.other_class(model, x, pool, n_references=5, generator=g)
    assert torch.equal(a.indices, d.indices)


def test_runner_up_classes_are_ranks_two_to_k_plus_one():
    model = ArgmaxOfFeatures()
    pool = pool_of(60)
    x = torch.tensor([[0.9, 0.7, 0.5, 0.1, 0.3, 0.3]], dtype=D)  # ranking 0 > 1 > 2 > 3
    refs = R.runner_up(model, x, pool, k=2, generator=0)  # every pool sample of classes 1 and 2
    pred_pool = model(pool).argmax(1)
    expected = ((pred_pool == 1) | (pred_pool == 2)).nonzero().flatten()
    assert refs.indices[0].tolist() == expected.tolist()
    assert set(refs.classes[0].tolist()) <= {1, 2} and int(refs.explicand_classes[0]) == 0
    one = R.runner_up(model, x, pool, k=1, n_references=3, generator=0)
    assert bool((one.classes == 1).all())
    with pytest.raises(InputValidationError) as err:
        R.runner_up(model, x, pool, k=4)
    assert err.value.argument == "k"


def test_from_class_and_pool_labels():
    model = ArgmaxOfFeatures()
    pool = pool_of()
    x = pool[:2].clone()
    refs = R.from_class(model, x, pool, reference_class=3, n_references=4, generator=1)
    assert bool((refs.classes == 3).all()) and bool((model(refs.references).argmax(-1) == 3).all())
    labels = torch.arange(40) % 2
    lab = R.from_class(model, x, pool, reference_class=1, n_references=5, pool_labels=labels, generator=1)
    assert bool((lab.indices % 2 == 1).all()) and 1 not in lab.indices[1].tolist()  # pool[1] is explicand 1
    via = R.select_references(model, x, pool, "class", reference_class=3, n_references=4, generator=1)
    assert torch.equal(via.indices, refs.indices)


def test_errors_name_the_argument():
    model = ArgmaxOfFeatures()
    pool = pool_of(10)
    x = pool[:1].clone()
    for kwargs, arg in (
        (dict(n_references=50), "n_references"),
        (dict(n_references=0), "n_references"),
        (dict(tolerance=-1.0), "tolerance"),
        (dict(pool_labels=torch.zeros(3)), "pool_labels"),
    ):
        with pytest.raises(InputValidationError) as err:
            R.other_class(model, x, pool, **kwargs)
        assert err.value.argument == arg
    with pytest.raises(InputValidationError) as err:
        R.other_class(model, x, pool[:, :3])
    assert err.value.argument == "pool"
    with pytest.raises(InputValidationError) as err:
        R.select_references(model, x, pool, "nearest")
    assert err.value.argument == "strategy"


def test_reference_set_feeds_ig2_and_is_recorded():
    model = ArgmaxOfFeatures()
    model.eval()
    pool = pool_of()
    x = pool_of(2, seed=4)
    refs = R.other_class(model, x, pool, n_references=3, generator=0)
    e = IG2(model, model.fc).explain(x, refs, n_steps=10)
    assert torch.equal(e.extras["reference_indices"], refs.indices)
    assert torch.equal(e.extras["reference_classes"], refs.classes)
    direct = IG2(model, model.fc).attribute(x, refs.references, n_steps=10)
    torch.testing.assert_close(e.attributions, direct, rtol=0, atol=0)
    assert model.training is False and all(p.requires_grad for p in model.parameters())
