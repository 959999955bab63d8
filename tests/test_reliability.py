"""Regression tests of issue 14 (reliability): wrapped models are guarded, valid inputs do not crash, memory
follows ``internal_batch_size``, bad settings are rejected naming the argument."""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pathattr
from pathattr import (
    BlurIntegratedGradients,
    ExpectedGradients,
    InputValidationError,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from pathattr.errors import PathattrError
from pathattr.forward import ModelNotFoundWarning, find_modules
from pathattr.paths import blur as blur_module


def _train_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    with torch.no_grad():  # non-trivial running statistics
        net(torch.randn(32, 4, dtype=torch.float64) * 3 + 1)
    return net.train()


def _state(net: nn.Module):
    return (
        [m.training for m in net.modules()],
        [p.requires_grad for p in net.parameters()],
        {k: v.clone() for k, v in net.state_dict().items()},
        [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in net.modules()],
    )


def _same_state(a, b) -> bool:
    return a[0] == b[0] and a[1] == b[1] and a[3] == b[3] and a[2].keys() == b[2].keys() and all(
        torch.equal(a[2][k], b[2][k]) for k in a[2]
    )


class _Predictor:
    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.scale = 2.0

    def __call__(self, x):
        return self.net(x / self.scale)

    def predict(self, x):
        return self.net(x * self.scale)


class _Normalise(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.full((4,), 0.5, dtype=torch.float64))

    def forward(self, x):
        return self.net(x - self.mean)


def _closure(net):
    mean = 0.25

    def forward(x):
        return net(x - mean)

    return forward


def _wrapped(net):
    @functools.wraps(net.forward)
    def forward(x):
        return net(x)

    forward.__wrapped__ = net
    return forward


_GLOBAL_NET = _train_net(3)


def _uses_global(x):
    return _GLOBAL_NET(x + 1)


WRAPPERS = {
    "lambda": lambda net: (lambda x: net((x - 0.5) / 2)),
    "closure": _closure,
    "partial": lambda net: functools.partial(lambda m, x: m(x), net),
    "bound_method": lambda net: _Predictor(net).predict,
    "callable_object": _Predictor,
    "__wrapped__": _wrapped,
    "normalising_module": _Normalise,
}


def _explainers(fn):
    return {
        "ig": lambda x: IntegratedGradients(fn).attribute(x, target=0, n_steps=6),
        "saliency": lambda x: Saliency(fn).attribute(x, target=1),
        "eg": lambda x: ExpectedGradients(fn).attribute(x, torch.zeros(3, 4, dtype=x.dtype), target=0, n_samples=4),
        "noise_tunnel": lambda x: NoiseTunnel(IntegratedGradients(fn)).attribute(x, target=0, n_steps=4,
                                                                                   nt_samples=3),
        "functional": lambda x: pathattr.integrated_gradients(fn, x, target=2, n_steps=5),
    }


# ------------------------------------------------------------------------------------------- item 2: state
@pytest.mark.parametrize("kind", sorted(WRAPPERS))
@pytest.mark.parametrize("method", ["ig", "saliency", "eg", "noise_tunnel", "functional"])
def test_wrapped_models_are_found_guarded_and_restored(kind, method):
    net = _train_net()
    fn = WRAPPERS[kind](net)
    assert any(m is net for root in find_modules(fn) for m in root.modules())
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before, rng = _state(net), torch.get_rng_state()
    run = _explainers(fn)[method]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelNotFoundWarning)
        first, second = run(x), run(x)
    assert torch.equal(first, second)  # dropout off: identical repeated calls
    assert _same_state(before, _state(net))  # modes, flags, running statistics, hooks
    assert torch.equal(rng, torch.get_rng_state())
    net.eval()  # the attributions are those of the model in eval mode
    with torch.no_grad():
        expected = run(x)
    assert torch.allclose(first, expected, rtol=1e-10, atol=1e-12)


def test_module_named_by_a_global_is_found():
    x = torch.randn(2, 4, dtype=torch.float64)
    before, rng = _state(_GLOBAL_NET), torch.get_rng_state()
    a = IntegratedGradients(_uses_global).attribute(x, target=0, n_steps=4)
    assert torch.equal(a, IntegratedGradients(_uses_global).attribute(x, target=0, n_steps=4))
    assert _same_state(before, _state(_GLOBAL_NET)) and torch.equal(rng, torch.get_rng_state())


HIDDEN = _train_net(5)


def _hidden_forward(x):
    return getattr(sys.modules[__name__], "HID" + "DEN")(x)


def test_unfindable_model_warns_once_naming_model_and_explicit_model_fixes_it():
    x = torch.randn(2, 4, dtype=torch.float64)
    fn = functools.partial(_hidden_forward)
    with pytest.warns(ModelNotFoundWarning, match="model="):
        IntegratedGradients(fn).attribute(x, target=0, n_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelNotFoundWarning)
        IntegratedGradients(fn).attribute(x, target=0, n_steps=4)  # once per forward function
        before, rng = _state(HIDDEN), torch.get_rng_state()
        for make in (
            lambda: IntegratedGradients(_hidden_forward, model=HIDDEN).attribute(x, target=0, n_steps=4),
            lambda: pathattr.integrated_gradients(_hidden_forward, x, target=0, n_steps=4, model=HIDDEN),
            lambda: Saliency(_hidden_forward, model=[HIDDEN]).attribute(x, target=0),
            lambda: NoiseTunnel(Saliency(_hidden_forward, model=HIDDEN)).attribute(x, target=0, nt_samples=2),
        ):
            assert torch.equal(make(), make())
        assert _same_state(before, _state(HIDDEN)) and torch.equal(rng, torch.get_rng_state())
        IntegratedGradients(lambda t: (t**2).sum(1), model=()).attribute(x, n_steps=4)  # declared: no module
    with pytest.raises(InputValidationError) as err:
        IntegratedGradients(_hidden_forward, model="HIDDEN")
    assert err.value.argument == "model"


def test_train_mode_restores_buffers_and_rng_and_repeats_exactly():
    net = _train_net()
    x = torch.randn(4, 4, dtype=torch.float64)
    before, rng = _state(net), torch.get_rng_state()
    ig = IntegratedGradients(net, eval_mode=False)
    a = ig.attribute(x, target=0, n_steps=6)
    b = ig.attribute(x, target=0, n_steps=6)
    assert torch.equal(a, b)  # dropout in train mode draws from a fixed, forked stream
    assert _same_state(before, _state(net))  # batch-norm statistics not overwritten by path points
    assert torch.equal(rng, torch.get_rng_state())


def test_hooks_and_flags_restored_for_a_wrapped_model_after_an_exception():
    net = _train_net()
    net[0].bias.requires_grad_(False)
    calls = []
    net[0].register_forward_hook(lambda m, i, o: calls.append(1))
    before = _state(net)

    def failing(x):
        net[4].register_forward_hook(lambda m, i, o: None)
        if calls:  # the first call (f at the inputs and baselines) runs; the gradient call fails
            raise RuntimeError("boom")
        return net(x)

    with pytest.raises(RuntimeError, match="boom"):
        # explain: the rich result evaluates f at the inputs and baselines first (attribute() would not)
        IntegratedGradients(failing).explain(torch.randn(2, 4, dtype=torch.float64), target=0, n_steps=4)
    assert _same_state(before, _state(net))


# -------------------------------------------------------------------------------- item 4: crashes on valid input
@pytest.mark.parametrize("cls", [Saliency, InputXGradient, IntegratedGradients])
def test_inference_mode_tensors(cls, mlp):
    with torch.inference_mode():
        x = torch.randn(3, 6, dtype=torch.float64)
    a = cls(mlp).attribute(x, target=1)
    b = cls(mlp).attribute(x.clone(), target=1)
    assert torch.equal(a, b)
    with torch.inference_mode():  # called inside inference mode: gradients are still available
        c = cls(mlp).attribute(x, target=1)
    assert torch.equal(a, c)


@pytest.mark.parametrize("target", [np.array([0, 2, 1]), np.array([[0], [2], [1]]), np.int64(2), np.array(1)])
def test_numpy_targets_are_accepted_like_lists(target, mlp):
    x = torch.randn(3, 6, dtype=torch.float64)
    as_list = torch.as_tensor(np.asarray(target)).reshape(-1).tolist()
    for run in (
        lambda t: Saliency(mlp).attribute(x, target=t),
        lambda t: IntegratedGradients(mlp).attribute(x, target=t, n_steps=4),
        lambda t: ExpectedGradients(mlp).attribute(x, torch.zeros(2, 6, dtype=torch.float64), target=t,
                                                   n_samples=3),
        lambda t: NoiseTunnel(Saliency(mlp)).attribute(x, target=t, nt_samples=2),
    ):
        assert torch.equal(run(target), run(as_list))


@pytest.mark.parametrize("target", [np.array([0.0, 1.0, 2.0]), np.array([True, False, True]), np.float64(1.0)])
def test_numpy_non_integer_targets_are_rejected_naming_target(target, mlp):
    with pytest.raises(PathattrError) as err:
        Saliency(mlp).attribute(torch.randn(3, 6, dtype=torch.float64), target=target)
    assert err.value.argument == "target"


@pytest.mark.parametrize("cls", [Saliency, InputXGradient, IntegratedGradients])
def test_missing_batch_dimension_names_inputs(cls, mlp):
    with pytest.raises(InputValidationError) as err:
        cls(mlp).attribute(torch.randn(6, dtype=torch.float64), target=0)
    assert err.value.argument == "inputs" and "batch" in str(err.value)
    conv = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    with pytest.raises(InputValidationError) as err:  # [C, H, W] without the batch axis
        cls(conv).attribute(torch.randn(3, 6, 6, dtype=torch.float64), target=0)
    assert err.value.argument == "inputs"


# --------------------------------------------------------------------------------- item 6: bounded memory
def test_blur_ig_builds_node_matrices_per_chunk_not_per_path(monkeypatch):
    built = []
    original = blur_module.gaussian_blur_matrices

    def recording(size, sigmas, *args, **kwargs):
        built.append(int(sigmas.numel()))
        return original(size, sigmas, *args, **kwargs)

    monkeypatch.setattr(blur_module, "gaussian_blur_matrices", recording)
    blur_module._node_matrix_cache.clear()
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 7, 3)).double()
    x = torch.rand(2, 2, 9, 7, dtype=torch.float64)
    a = BlurIntegratedGradients(model).attribute(x, target=0, n_steps=300, max_sigma=3.0, internal_batch_size=8)
    assert built and max(built) <= 8  # never all 301 nodes at once
    cached = sum(t.numel() * t.element_size() for e in blur_module._node_matrix_cache.values() for t in e)
    assert cached <= blur_module.NODE_MATRIX_CACHE_BYTES
    b = BlurIntegratedGradients(model).attribute(x, target=0, n_steps=300, max_sigma=3.0, internal_batch_size=61)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_blur_ig_node_cache_keeps_results_exact_when_disabled(monkeypatch):
    model = nn.Sequential(nn.Flatten(), nn.Linear(1 * 8 * 8, 2)).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    a = BlurIntegratedGradients(model).attribute(x, target=0, n_steps=20, max_sigma=4.0, internal_batch_size=7)
    monkeypatch.setattr(blur_module, "NODE_MATRIX_CACHE_BYTES", 0)
    blur_module._node_matrix_cache.clear()
    b = BlurIntegratedGradients(model).attribute(x, target=0, n_steps=20, max_sigma=4.0, internal_batch_size=7)
    assert torch.equal(a, b) and not blur_module._node_matrix_cache


def test_noise_tunnel_chunks_noisy_copies_within_internal_batch_size(mlp):
    seen = []
    inner = Saliency(mlp)
    original = inner.explain

    def recording(inputs, **kwargs):
        seen.append(inputs.shape[0])
        return original(inputs, **kwargs)

    inner.explain = recording
    x = torch.randn(2, 6, dtype=torch.float64)
    a = NoiseTunnel(inner).attribute(x, target=0, nt_samples=20, internal_batch_size=8, generator=1)
    assert max(seen) <= 8 and sum(seen) == 40
    b = NoiseTunnel(Saliency(mlp)).attribute(x, target=0, nt_samples=20, nt_samples_batch_size=3, generator=1)
    c = NoiseTunnel(Saliency(mlp)).attribute(x, target=0, nt_samples=20, generator=1)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)


def test_noise_tunnel_tiles_per_example_ig2_references(mlp):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, dtype=torch.float64, generator=g)
    refs = torch.randn(3, 2, 6, dtype=torch.float64, generator=g)  # [B, R, *S]
    ig2 = pathattr.IG2(mlp, mlp[2])
    kw = {"references": refs, "n_steps": 6}
    plain = ig2.attribute(x, target=0, **kw)
    for chunk in (1, 2, None):
        tunnel = NoiseTunnel(ig2).attribute(x, target=0, nt_samples=2, stdevs=0.0, nt_samples_batch_size=chunk, **kw)
        torch.testing.assert_close(tunnel, plain, rtol=1e-9, atol=1e-12)
    noisy = NoiseTunnel(ig2).attribute(x, target=0, nt_samples=3, stdevs=0.05, internal_batch_size=4, **kw)
    assert noisy.shape == x.shape and bool(torch.isfinite(noisy).all())
    shared = NoiseTunnel(ig2).attribute(x, target=0, nt_samples=2, stdevs=0.0, references=refs[0], n_steps=6)
    torch.testing.assert_close(shared, ig2.attribute(x, refs[0], target=0, n_steps=6), rtol=1e-9, atol=1e-12)


def test_noise_tunnel_does_not_tile_an_expected_gradients_reference_set(mlp):
    x = torch.randn(3, 6, dtype=torch.float64)
    pool = torch.randn(3, 6, dtype=torch.float64)  # N == B: still a pool, not one baseline per example
    out = NoiseTunnel(ExpectedGradients(mlp)).attribute(x, baselines=pool, target=0, nt_samples=2, n_samples=3)
    assert out.shape == x.shape


# ------------------------------------------------------------------------------------- item 7: bad settings
def _cnn():
    return nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).double()


@pytest.mark.parametrize("dims", [(2, 4), (2, -5), (2, 2), (2, -2), (0, 2), (), (2.0, 3), 2])
def test_blur_ig_rejects_bad_spatial_dims(dims):
    with pytest.raises(InputValidationError) as err:
        BlurIntegratedGradients(_cnn()).attribute(torch.rand(2, 2, 5, 5, dtype=torch.float64), target=0,
                                                  spatial_dims=dims, n_steps=4)
    assert err.value.argument == "spatial_dims"


def test_blur_ig_accepts_explicit_axes_including_channels_last():
    model = _cnn()
    x = torch.rand(2, 2, 5, 5, dtype=torch.float64)
    a = BlurIntegratedGradients(model).attribute(x, target=0, n_steps=4, max_sigma=2.0)
    b = BlurIntegratedGradients(model).attribute(x, target=0, n_steps=4, max_sigma=2.0, spatial_dims=(-2, -1))
    assert torch.equal(a, b)
    last = BlurIntegratedGradients(lambda t: model(t.permute(0, 3, 1, 2)), model=model).attribute(
        x.permute(0, 2, 3, 1), target=0, n_steps=4, max_sigma=2.0, spatial_dims=(1, 2))
    torch.testing.assert_close(last.permute(0, 3, 1, 2), a, rtol=1e-10, atol=1e-12)


BAD_SETTINGS = [
    ("stratified", lambda m, x: ExpectedGradients(m).attribute(x, x, target=0, stratified="no")),
    ("stratified", lambda m, x: ExpectedGradients(m).attribute(x, x, target=0, stratified=1)),
    ("n_samples", lambda m, x: ExpectedGradients(m).attribute(x, x, target=0, n_samples=4.0)),
    ("n_samples", lambda m, x: ExpectedGradients(m).attribute(x, x, target=0, n_samples=True)),
    ("n_steps", lambda m, x: IntegratedGradients(m).attribute(x, target=0, n_steps=8.0)),
    ("n_steps", lambda m, x: IntegratedGradients(m).attribute(x, target=0, n_steps=True)),
    ("internal_batch_size", lambda m, x: IntegratedGradients(m).attribute(x, target=0, internal_batch_size=4.0)),
    ("internal_batch_size", lambda m, x: Saliency(m).attribute(x, target=0, internal_batch_size=False)),
    ("nt_samples", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, target=0, nt_samples=2.0)),
    ("nt_samples", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, target=0, nt_samples=True)),
    ("nt_samples_batch_size", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, nt_samples_batch_size=1.5)),
    ("nt_samples_batch_size", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, nt_samples_batch_size=0)),
    ("stdevs", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, target=0, stdevs=float("nan"))),
    ("stdevs", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, target=0, stdevs=float("inf"))),
    ("stdevs", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, target=0, stdevs=-0.1)),
    ("stdevs", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, target=0, stdevs="0.1")),
    ("stdev_spread", lambda m, x: NoiseTunnel(Saliency(m)).attribute(x, target=0, stdev_spread=float("nan"))),
    ("n_steps", lambda m, x: BlurIntegratedGradients(m).attribute(x[:, None, :], target=0, n_steps=4.0)),
    ("n_steps", lambda m, x: BlurIntegratedGradients(m).attribute(x[:, None, :], target=0, n_steps=True)),
    ("sqrt", lambda m, x: BlurIntegratedGradients(m).attribute(x[:, None, :], target=0, sqrt="yes")),
    ("max_sigma", lambda m, x: BlurIntegratedGradients(m).attribute(x[:, None, :], target=0, max_sigma=True)),
    ("abs", lambda m, x: Saliency(m, abs="no").attribute(x, target=0)),
    ("multiply_by_inputs", lambda m, x: IntegratedGradients(m, multiply_by_inputs="no").attribute(x, target=0)),
    ("eval_mode", lambda m, x: IntegratedGradients(m, eval_mode="no").attribute(x, target=0)),
]


@pytest.mark.parametrize("argument,call", BAD_SETTINGS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD_SETTINGS)])
def test_bad_settings_are_rejected_naming_the_argument(argument, call, mlp):
    model = nn.Sequential(nn.Flatten(), mlp) if "Blur" in call.__code__.co_names else mlp
    with pytest.raises(PathattrError) as err:
        call(model, torch.randn(3, 6, dtype=torch.float64))
    assert err.value.argument == argument, str(err.value)


def test_short_stdevs_tuple_names_stdevs(two_input_model):
    a, b = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    scale = torch.ones(2, dtype=torch.float64)
    nt = NoiseTunnel(Saliency(two_input_model))
    with pytest.raises(InputValidationError) as err:
        nt.attribute((a, b), target=0, additional_forward_args=(scale,), stdevs=(0.1,))
    assert err.value.argument == "stdevs" and "2 inputs" in str(err.value)
    out = nt.attribute((a, b), target=0, additional_forward_args=(scale,), stdevs=(0.1, 0.0), nt_samples=2)
    assert out[0].shape == a.shape and out[1].shape == b.shape
