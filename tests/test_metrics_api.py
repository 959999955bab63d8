"""Cross-cutting metric API: ``internal_batch_size`` (with the deprecated ``batch_size`` alias that warns once),
NumPy targets, ``model=`` for wrapped models (eval mode inside, state restored after), and model outputs that
are not class-score tensors (tuples) giving clear errors instead of crashes."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pathattr.metrics as pm
from conftest import SmallCNN
from pathattr.errors import InputValidationError, PathattrError
from pathattr.metrics import _common

#: every public metric that evaluates a model in chunks
BATCHED = ["deletion", "insertion", "diffid", "completeness_gap", "comprehensiveness", "sufficiency", "log_odds",
           "max_sensitivity", "infidelity", "pic", "sic", "aic", "stability"]


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    return SmallCNN().double().eval()


def _x(b: int = 3) -> torch.Tensor:
    return torch.rand(b, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


class DropoutNet(nn.Module):
    """A CNN with dropout, so results differ between calls unless it is in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.body = SmallCNN().double()
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.body(x))


def _function(name: str):
    from pathattr.metrics import pic

    return pic.pic if name == "pic" else getattr(pm, name)


@pytest.mark.parametrize("name", BATCHED)
def test_every_batched_metric_says_internal_batch_size(name):
    params = inspect.signature(_function(name)).parameters
    if name in ("sic", "aic"):  # keyword arguments forwarded to pic()
        params = inspect.signature(_function("pic")).parameters
    assert "internal_batch_size" in params
    if name != "stability":  # new metric: no legacy name
        assert "batch_size" in params or name in ("sic", "aic")


def test_batch_size_alias_gives_the_same_result_and_warns_once_per_function(monkeypatch):
    monkeypatch.setattr(_common, "_warned_batch_size", set())
    model, x = _cnn(), _x()
    a = x.clone()
    new = pm.deletion(model, x, a, target=0, n_steps=8, internal_batch_size=5)
    with pytest.warns(FutureWarning, match="`batch_size` of pathattr.metrics.deletion is deprecated") as rec:
        old = pm.deletion(model, x, a, target=0, n_steps=8, batch_size=5)
    assert rec[0].filename == __file__  # points at the caller
    torch.testing.assert_close(old.curve, new.curve, rtol=0, atol=0)
    assert old.hyperparameters["internal_batch_size"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second use of the same function: no warning
        pm.deletion(model, x, a, target=0, n_steps=8, batch_size=5)
    with pytest.warns(FutureWarning, match="pathattr.metrics.insertion"):  # other functions warn on their own
        pm.insertion(model, x, a, target=0, n_steps=8, batch_size=5)
    with pytest.warns(FutureWarning, match="pathattr.metrics.completeness_gap"):
        pm.completeness_gap(model, x, a, target=0, batch_size=2)
    with pytest.raises(InputValidationError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pm.infidelity(model, x, a, target=0, internal_batch_size=3, batch_size=4)
    assert err.value.argument == "internal_batch_size"
    # the class form passes the alias through
    with pytest.warns(FutureWarning, match="diffid"):
        pm.DiffID(n_steps=4, batch_size=7)(model, x, a, target=0)
    # positional use of the old position keeps working (it is now internal_batch_size)
    pos = pm.deletion(model, x, a, 0, 8, "zeros", 5)
    torch.testing.assert_close(pos.curve, new.curve, rtol=0, atol=0)


def test_internal_batch_size_does_not_change_results():
    model, x = _cnn(), _x(4)
    a = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = pm.infidelity(model, x, a, target=1, n_samples=6, generator=0)
    for ibs in (1, 5, 64):
        res = pm.infidelity(model, x, a, target=1, n_samples=6, generator=0, internal_batch_size=ibs)
        torch.testing.assert_close(res.scores, ref.scores, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["array", "scalar", "list"])
def test_numpy_targets_are_accepted(kind):
    model, x = _cnn(), _x()
    a = x.clone()
    t = torch.tensor([1, 0, 2])
    target = {"array": t.numpy(), "scalar": np.int64(2), "list": [np.int64(v) for v in t.tolist()]}[kind]
    expected = t if kind != "scalar" else torch.full((3,), 2)
    ref = pm.deletion(model, x, a, target=expected, n_steps=4)
    got = pm.deletion(model, x, a, target=target, n_steps=4)
    torch.testing.assert_close(got.curve, ref.curve, rtol=0, atol=0)
    assert torch.equal(got.target, expected)
    gap = pm.completeness_gap(model, x, a, target=target)
    torch.testing.assert_close(gap.scores, pm.completeness_gap(model, x, a, target=expected).scores)
    infd = pm.infidelity(model, x, a, target=target, n_samples=2)
    torch.testing.assert_close(infd.scores, pm.infidelity(model, x, a, target=expected, n_samples=2).scores)


def test_numpy_target_in_token_metrics_and_sensitivity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5 * 4, 3)).double().eval()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    a = torch.randn(2, 5, dtype=torch.float64)
    got = pm.comprehensiveness(model, x, a, target=np.array([1, 2]))
    ref = pm.comprehensiveness(model, x, a, target=torch.tensor([1, 2]))
    torch.testing.assert_close(got.scores, ref.scores)

    def explain(xx, target):
        return xx * 2

    s = pm.max_sensitivity(explain, x, target=np.array([0, 1]), n_samples=2)
    assert s.target.tolist() == [0, 1]


def test_bad_numpy_target_is_a_clear_error():
    model, x = _cnn(), _x()
    with pytest.raises(PathattrError) as err:
        pm.deletion(model, x, x, target=np.array([0.5, 1.0, 2.0]), n_steps=2)
    assert err.value.argument == "target"


# ----------------------------------------------------------------------------------------------- model=
def _state(m: nn.Module) -> tuple:
    return ([mod.training for mod in m.modules()], [p.requires_grad for p in m.parameters()])


def _model_based_calls(f, model, x, a):
    """Every model-based metric, called on the forward function ``f`` with ``model=model``."""
    imgs = (torch.cat([x, x[:, :1]], 1) * 255).clamp(0, 255).to(torch.uint8)  # 3 channels for WebP
    return {
        "deletion": lambda: pm.deletion(f, x, a, target=0, n_steps=4, model=model).scores,
        "insertion": lambda: pm.insertion(f, x, a, target=0, n_steps=4, model=model).scores,
        "diffid": lambda: pm.diffid(f, x, a, target=0, n_steps=4, model=model).scores,
        "completeness_gap": lambda: pm.completeness_gap(f, x, a, target=0, model=model).scores,
        "infidelity": lambda: pm.infidelity(f, x, a, target=0, n_samples=2, model=model).scores,
        "max_sensitivity": lambda: pm.max_sensitivity(lambda xx, t: xx * 1.0, x, n_samples=2, forward_func=f,
                                                      model=model).target.double(),
        "comprehensiveness": lambda: pm.comprehensiveness(f, x.flatten(2), a.flatten(2), target=0, topk=0.5,
                                                          model=model).scores,
        "sic": lambda: torch.as_tensor(pm.sic(lambda t: f(t[:, :2]), imgs, a[:, 0], target=0, min_pred_value=0.0,
                                              num_data_points=20, model=model).predictions),
    }


@pytest.mark.parametrize("name", ["deletion", "insertion", "diffid", "completeness_gap", "infidelity",
                                  "max_sensitivity", "comprehensiveness", "sic"])
def test_model_argument_puts_a_wrapped_model_in_eval_mode_and_restores_it(name):
    if name == "sic":
        pytest.importorskip("PIL")
        pytest.importorskip("scipy")
    net = DropoutNet().train()
    holder = {"net": net}

    def wrapped(x, *rest):  # the module is reachable only through a dict lookup at call time
        return holder["net"](x.view(x.shape[0], 2, 8, 8), *rest)

    x = _x()
    a = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before = _state(net)
    call = _model_based_calls(wrapped, net, x, a)[name]
    first, second = call(), call()
    torch.testing.assert_close(first, second, rtol=0, atol=0, equal_nan=True)  # dropout off: deterministic
    assert _state(net) == before  # train mode and requires_grad restored
    with torch.no_grad():
        net.eval()
        torch.testing.assert_close(call(), first, rtol=0, atol=0, equal_nan=True)  # == the eval-mode model


def test_model_argument_is_validated():
    model, x = _cnn(), _x()
    with pytest.raises(InputValidationError) as err:
        pm.deletion(model, x, x, n_steps=2, model="resnet")
    assert err.value.argument == "model"


# ----------------------------------------------------------------------------------------------- tuple outputs
def test_sic_with_a_tuple_returning_model_is_a_clear_error():
    pytest.importorskip("PIL")
    pytest.importorskip("scipy")
    model = _cnn()

    def tuple_model(x):
        return model(x[:, :2]), x.sum()

    imgs = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sal = torch.rand(2, 8, 8)
    for fn in (pm.sic, pm.aic):
        with pytest.raises(InputValidationError, match="tuple") as err:
            fn(tuple_model, imgs, sal, target=0, model=model)
        assert err.value.argument == "forward_func"
    # unwrapping it as the message says works
    res = pm.sic(lambda x: tuple_model(x)[0], imgs, sal, target=0, model=model, min_pred_value=0.0,
                 num_data_points=20)
    assert res.scores.shape == (2,)


def test_tuple_outputs_in_other_metrics_are_clear_errors_or_work_with_a_callable_target():
    model, x = _cnn(), _x()

    def tuple_model(xx):
        return model(xx), xx.sum()

    with pytest.raises(InputValidationError) as err:
        pm.deletion(tuple_model, x, x, n_steps=2, model=model)
    assert err.value.argument == "forward_func"
    res = pm.completeness_gap(tuple_model, x, x, target=lambda out: out[0][:, 1], model=model)
    ref = pm.completeness_gap(model, x, x, target=1)
    torch.testing.assert_close(res.scores, ref.scores)
