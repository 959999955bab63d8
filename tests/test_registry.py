"""The one method registry (``pathattr.methods.registry``): every public method class declares itself there, and
the Quantus adapter reads it (any registered name works as ``method=``). The harness's use of it is tested in
``benchmarks/tests/test_bench_runner.py`` (library tests run without the harness)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pathattr
import pathattr.metrics as pm
from conftest import SmallCNN
from pathattr import methods
from pathattr.errors import InputValidationError
from pathattr.methods.base import AttributionMethod
from pathattr.methods.registry import METHODS, get_method_class, register
from pathattr.metrics.quantus_adapter import method_names, resolve_method

#: public method classes that are deliberately not in the registry (wrappers of another method)
WRAPPERS = {"NoiseTunnel"}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_every_public_method_class_is_registered_once():
    public = {name: obj for name, obj in vars(methods).items()
              if isinstance(obj, type) and issubclass(obj, AttributionMethod) and obj is not AttributionMethod}
    registered = {e.cls for e in METHODS.values()}
    missing = {name for name, cls in public.items() if cls not in registered} - WRAPPERS
    assert not missing, f"public method classes missing from the registry: {missing}"
    assert len(registered) == len(METHODS)  # one name per class
    for name, entry in METHODS.items():
        assert entry.name == name == entry.cls.name
        assert entry.paper and isinstance(entry.needs_references, bool) and isinstance(entry.sequential, bool)
        assert get_method_class(name) is entry.cls
        assert getattr(pathattr, entry.cls.__name__) is entry.cls  # exported at the top level too
    for name in ("integrated_gradients", "saliency", "ig2", "guided_integrated_gradients"):
        assert name in METHODS
    assert METHODS["ig2"].needs_references and METHODS["ig2"].sequential


def test_registry_rejects_a_second_class_under_a_taken_name_and_lists_choices():
    with pytest.raises(ValueError, match="already registered"):
        register("saliency", paper="x")(type("Other", (), {}))
    with pytest.raises(InputValidationError, match="integrated_gradients") as e:
        get_method_class("nope")
    assert e.value.argument == "method"


def test_quantus_adapter_accepts_every_registered_name():
    names = method_names()
    for name, entry in METHODS.items():
        assert names[name] is entry.cls and names[entry.cls.__name__] is entry.cls
    with pytest.raises(InputValidationError, match="registered method") as e:
        resolve_method("nope", Net())
    assert e.value.argument == "method"


def _kwargs(entry, model):
    """Constructor and attribute arguments that let each registered method run on ``Net``."""
    ctor, call = {}, {}
    if entry.needs_references:
        ctor["representation"] = model.head
        call["references"] = np.random.default_rng(1).normal(size=(4, 2, 6)).astype(np.float32)
        call["n_steps"] = 4
    elif entry.name in ("integrated_gradients", "expected_gradients", "guided_integrated_gradients", "agi",
                        "mfaba"):
        call["n_steps"] = 4
    if entry.name == "expected_gradients":
        call = {"n_samples": 4, "baselines": torch.zeros(3, 6)}
    if entry.name == "blur_integrated_gradients":
        call = {"n_steps": 4}
    return ctor, call


@pytest.mark.parametrize("name", list(METHODS))
def test_quantus_explain_runs_every_registered_method_by_name(name):
    entry = METHODS[name]
    model = Net().eval()
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    if name == "blur_integrated_gradients":  # images only
        torch.manual_seed(1)
        model = SmallCNN().eval()
        x = np.random.default_rng(0).random(size=(4, 2, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    ctor, call = _kwargs(entry, model)
    out = pm.quantus_explain(model, x, y, method=name, method_kwargs=ctor, **call)
    assert isinstance(out, np.ndarray) and out.shape == x.shape and np.isfinite(out).all()
    direct = entry.cls(model, **ctor).attribute(
        torch.from_numpy(x), target=torch.from_numpy(y),
        **{k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in call.items()})
    np.testing.assert_allclose(out, direct.detach().numpy(), rtol=1e-5, atol=1e-6)
    if entry.needs_references:
        call.pop("references")
        with pytest.raises(InputValidationError, match="references") as e:
            pm.quantus_explain(model, x, y, method=name, method_kwargs=ctor, **call)
        assert e.value.argument == "references"


def test_every_registered_method_accepts_model():
    """`model=` (the modules behind a wrapped forward function) is accepted by every method's constructor;
    Guided IG and the IG2 family lacked it before they shared PathMethod's constructor."""
    import inspect

    from pathattr.methods.base import PathMethod
    from pathattr.methods.registry import METHODS

    net = torch.nn.Linear(3, 2)
    for name, entry in METHODS.items():
        assert "model" in inspect.signature(entry.cls.__init__).parameters, name
        args = (net, net) if entry.needs_references else (net,)  # IG2 family: representation = the module
        method = entry.cls(*args, model=net)
        assert method.model is net, name
        if issubclass(entry.cls, PathMethod):
            assert method.integrator is not None, name
