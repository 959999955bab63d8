"""Layer attribution (pathattr.layer): Captum LayerIG parity, every method at a layer, hygiene and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pathattr
from pathattr.errors import InputValidationError
from pathattr.layer import (
    LayerAttribution,
    LayerBlurIntegratedGradients,
    LayerGuidedIntegratedGradients,
    LayerIG2,
    LayerIntegratedGradients,
    layer_activations,
)
from pathattr.methods.registry import METHODS


class TokenModel(nn.Module):
    """Embedding -> masked tanh MLP -> mean over tokens -> 3 classes; float64."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(30, 8)
        self.lin = nn.Linear(8, 16)
        self.cls = nn.Linear(16, 3)

    def body(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.lin(e * mask.unsqueeze(-1)))
        return self.cls((h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.body(self.emb(ids), mask)


@pytest.fixture(scope="module")
def setup():
    model = TokenModel().double().eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 30, (4, 7), generator=g)
    mask = torch.ones(4, 7, dtype=torch.float64)
    mask[1, 5:] = 0
    mask[3, 3:] = 0
    return model, ids, mask


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_layer_ig_equals_captum(setup, method):
    captum = pytest.importorskip("captum.attr")
    model, ids, mask = setup
    base = torch.zeros_like(ids)
    ours, delta = LayerIntegratedGradients(model, model.emb).attribute(
        ids, baselines=base, target=[0, 1, 2, 0], additional_forward_args=(mask,), n_steps=24, method=method,
        return_convergence_delta=True)
    ref, ref_delta = captum.LayerIntegratedGradients(model, model.emb).attribute(
        ids, baselines=base, target=[0, 1, 2, 0], additional_forward_args=(mask,), n_steps=24, method=method,
        return_convergence_delta=True)
    assert ours.shape == (4, 7, 8)
    assert (ours - ref).abs().max() <= 1e-5
    assert (delta - ref_delta).abs().max() <= 1e-5


def test_layer_ig_to_layer_input_equals_captum(setup):
    captum = pytest.importorskip("captum.attr")
    model, ids, mask = setup
    ours = LayerIntegratedGradients(model, model.lin).attribute(
        ids, target=1, additional_forward_args=(mask,), n_steps=16, attribute_to_layer_input=True)
    ref = captum.LayerIntegratedGradients(model, model.lin).attribute(
        ids, target=1, additional_forward_args=(mask,), n_steps=16, attribute_to_layer_input=True)
    assert (ours - ref).abs().max() <= 1e-5


def test_layer_ig_equals_ig_on_the_activation(setup):
    """Attributing the embedding layer = IG on a model that takes embeddings, baselines = embedded ids."""
    model, ids, mask = setup
    base = torch.full_like(ids, 3)
    layer = LayerIntegratedGradients(model, model.emb).explain(
        ids, baselines=base, target=2, additional_forward_args=(mask,), n_steps=32, internal_batch_size=37)
    direct = pathattr.IntegratedGradients(model.body).explain(
        model.emb(ids).detach(), baselines=model.emb(base).detach(), target=2, additional_forward_args=(mask,),
        n_steps=32)
    assert torch.allclose(layer.attributions, direct.attributions, atol=1e-12)
    assert torch.allclose(layer.convergence_delta, direct.convergence_delta, atol=1e-12)
    assert float(layer.relative_delta.max()) < 1e-3
    assert layer.method == "layer_integrated_gradients" and layer.extras["layer"] == "Embedding.output"


def test_layer_baselines_in_activation_space(setup):
    model, ids, mask = setup
    lig = LayerIntegratedGradients(model, model.emb)
    zeros = lig.explain(ids, layer_baselines="zeros", target=0, additional_forward_args=(mask,), n_steps=16)
    explicit = lig.explain(ids, layer_baselines=torch.zeros(4, 7, 8, dtype=torch.float64), target=0,
                           additional_forward_args=(mask,), n_steps=16)
    assert torch.equal(zeros.attributions, explicit.attributions)
    acts = layer_activations(model, model.emb, ids, (mask,))
    assert torch.equal(acts, model.emb(ids))
    # K baselines per example in input space: [1, K, T]
    k = torch.stack([torch.zeros(7, dtype=torch.long), torch.full((7,), 5)])[None]
    multi = lig.explain(ids, baselines=k, target=0, additional_forward_args=(mask,), n_steps=16)
    one = [lig.explain(ids, baselines=k[0, j], target=0, additional_forward_args=(mask,), n_steps=16).attributions
           for j in range(2)]
    assert torch.allclose(multi.attributions, (one[0] + one[1]) / 2, atol=1e-12)


def test_ig2_guided_and_blur_at_a_layer(setup):
    model, ids, mask = setup
    refs = torch.randint(1, 30, (3, 7), generator=torch.Generator().manual_seed(2))
    e = LayerIG2(model, model.emb, model.cls).explain(ids, refs, target=1, additional_forward_args=(mask,),
                                                       n_steps=24)
    assert e.attributions.shape == (4, 7, 8) and e.method == "layer_ig2"
    emb_refs = model.emb(refs).detach()
    direct = pathattr.IG2(model.body, model.cls).explain(model.emb(ids).detach(), emb_refs, target=1,
                                                        additional_forward_args=(mask,), n_steps=24)
    assert torch.allclose(e.attributions, direct.attributions, atol=1e-10)
    # per-example references [B, R, T] and a module name for the representation
    per = LayerAttribution("ig2", model, model.emb, representation="cls").explain(
        ids, refs[None].expand(4, 3, 7), target=1, additional_forward_args=(mask,), n_steps=24)
    assert torch.allclose(per.attributions, e.attributions, atol=1e-10)
    g = LayerGuidedIntegratedGradients(model, model.emb).explain(ids, target=1, additional_forward_args=(mask,),
                                                                  n_steps=24)
    assert g.attributions.shape == (4, 7, 8) and float(g.relative_delta.max()) < 0.2
    b = LayerBlurIntegratedGradients(model, model.emb).explain(ids, target=1, additional_forward_args=(mask,),
                                                                n_steps=16, max_sigma=2.0, spatial_dims=(1,))
    assert b.attributions.shape == (4, 7, 8)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_runs_at_a_layer(setup, name):
    model, ids, mask = setup
    kwargs: dict = {}
    options: dict = {}
    entry = METHODS[name]
    if entry.needs_references:
        options["representation"] = model.cls
        kwargs["references"] = torch.randint(1, 30, (2, 7), generator=torch.Generator().manual_seed(3))
    if name == "expected_gradients":
        kwargs["baselines"] = torch.randint(1, 30, (5, 7), generator=torch.Generator().manual_seed(4))
    if name == "noise_tunnel":
        pytest.skip("NoiseTunnel wraps a method instance; noise on token ids is undefined")
    if "n_steps" in __import__("inspect").signature(entry.cls.explain).parameters:
        kwargs["n_steps"] = 8
    e = LayerAttribution(name, model, model.emb, **options).explain(
        ids, target=0, additional_forward_args=(mask,), **kwargs)
    assert e.attribution_tuple[0].shape == (4, 7, 8)
    assert torch.isfinite(e.attribution_tuple[0]).all()


def test_hooks_and_state_restored_also_after_errors(setup):
    model, ids, mask = setup
    model.train()
    try:
        lig = LayerIntegratedGradients(model, model.emb)
        lig.attribute(ids, target=0, additional_forward_args=(mask,), n_steps=4)
        with pytest.raises(pathattr.TargetError):
            lig.attribute(ids, target=7, additional_forward_args=(mask,), n_steps=4)
        assert model.training and all(p.requires_grad for p in model.parameters())
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    finally:
        model.eval()


def test_errors_name_the_argument(setup):
    model, ids, mask = setup
    lig = LayerIntegratedGradients(model, model.emb)
    with pytest.raises(InputValidationError, match="layer_baselines"):
        lig.attribute(ids, baselines=0, layer_baselines="zeros", additional_forward_args=(mask,))
    with pytest.raises(InputValidationError, match="did not run"):
        LayerIntegratedGradients(model, nn.Linear(2, 2)).attribute(ids, additional_forward_args=(mask,))
    with pytest.raises(InputValidationError, match="attribute to the layer's output"):
        lig.attribute(ids, additional_forward_args=(mask,), attribute_to_layer_input=True)
    with pytest.raises(InputValidationError, match="list of layers"):
        LayerIntegratedGradients(model, [model.emb, model.lin])

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(self.lin(x))

    twice = Twice().double()
    with pytest.raises(InputValidationError, match="more than once"):
        LayerIntegratedGradients(twice, twice.lin).attribute(torch.randn(2, 3, dtype=torch.float64), target=0)


def test_progress_counts_the_model_rows(setup, capsys):
    model, ids, mask = setup
    lig = LayerIntegratedGradients(model, model.emb)
    quiet = lig.attribute(ids, target=0, additional_forward_args=(mask,), n_steps=8)
    loud = lig.attribute(ids, target=0, additional_forward_args=(mask,), n_steps=8, progress=True)
    assert torch.equal(quiet, loud)
    err = capsys.readouterr().err
    assert "layer_integrated_gradients" in err and "row" in err
    assert not any(m._forward_hooks for m in model.modules())
