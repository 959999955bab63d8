"""The Quantus adapter: pathattr methods as Quantus ``explain_func``, run inside real Quantus (v0.6) metrics.

Quantus 0.6 imports ``pandas`` (only for ``quantus.evaluate``) and ``cv2`` (only for its rotation/translation
perturbations) at import time; neither is installed here, so when they are missing the import runs with empty
stand-in modules that exist only during the import (none of the code paths used below touches them).
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

import pathattr
import pathattr.metrics as pm
from conftest import SmallCNN
from pathattr.errors import InputValidationError


@pytest.fixture(scope="module")
def quantus():
    stubs = []
    for name in ("pandas", "cv2"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
            stubs.append(name)
    try:
        module = importlib.import_module("quantus")
    except ImportError as e:  # pragma: no cover - environment without quantus
        pytest.skip(f"quantus not importable: {e}")
    finally:
        for name in stubs:  # the stand-ins live only during the import
            del sys.modules[name]
    return module


@pytest.fixture
def cnn32():
    torch.manual_seed(1)
    return SmallCNN().float().eval()


def test_adapter_returns_numpy_like_the_method(cnn32):
    x = np.random.default_rng(0).normal(size=(3, 2, 8, 8)).astype(np.float32)
    y = np.array([0, 2, 1])
    out = pm.quantus_explain(cnn32, x, y, method="IntegratedGradients", n_steps=16)
    ref = pathattr.IntegratedGradients(cnn32).attribute(torch.from_numpy(x), target=torch.from_numpy(y), n_steps=16)
    assert isinstance(out, np.ndarray) and out.shape == x.shape
    np.testing.assert_allclose(out, ref.numpy(), rtol=0, atol=1e-6)
    bound = pm.as_quantus_explain_func("saliency", channel_reduction="sum", method_kwargs={"abs": False})
    grad = bound(model=cnn32, inputs=x, targets=y)
    ref = pathattr.Saliency(cnn32, abs=False).attribute(torch.from_numpy(x), target=torch.from_numpy(y))
    np.testing.assert_allclose(grad, ref.sum(1, keepdim=True).numpy(), rtol=0, atol=1e-6)
    with pytest.raises(InputValidationError) as e:
        pm.quantus_explain(cnn32, x, y, method="NoSuchMethod")
    assert e.value.argument == "method"


def test_quantus_sparseness_on_our_explain_func_matches_ours(quantus, cnn32):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 2, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    metric = quantus.Sparseness(abs=True, normalise=False, disable_warnings=True, display_progressbar=False)
    scores = metric(model=cnn32, x_batch=x, y_batch=y, a_batch=None, explain_func=pm.quantus_explain,
                    explain_func_kwargs={"method": "InputXGradient"}, device="cpu")
    attr = pathattr.InputXGradient(cnn32).attribute(torch.from_numpy(x), target=torch.from_numpy(y))
    ours = pm.sparseness(attr).scores
    # Quantus adds 1e-7 to every |a| before the Gini index; ours does not
    np.testing.assert_allclose(np.asarray(scores), ours.numpy(), rtol=0, atol=1e-4)


def test_quantus_max_sensitivity_runs_our_methods(quantus, cnn32):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2])
    kwargs = dict(nr_samples=3, lower_bound=0.1, normalise=False, abs=False, disable_warnings=True,
                  display_progressbar=False, return_nan_when_prediction_changes=False)
    # a linear model's gradient does not depend on the input: Quantus' max-sensitivity is 0
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 3)).eval()
    lin = quantus.MaxSensitivity(**kwargs)(model=linear, x_batch=x, y_batch=y, explain_func=pm.quantus_explain,
                                           explain_func_kwargs={"method": "Saliency", "method_kwargs": {"abs": False}},
                                           device="cpu")
    assert np.abs(np.asarray(lin)).max() < 1e-5
    ig = quantus.MaxSensitivity(**kwargs)(model=cnn32, x_batch=x, y_batch=y, explain_func=pm.quantus_explain,
                                          explain_func_kwargs={"method": "integrated_gradients", "n_steps": 8},
                                          device="cpu")
    ig = np.asarray(ig)
    assert ig.shape == (3,) and np.isfinite(ig).all() and (ig > 0).all()
