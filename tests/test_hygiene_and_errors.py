"""Model state is restored exactly; every documented bad input raises a clear, named exception."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pathattr import (
    ExpectedGradients,
    InputValidationError,
    InputXGradient,
    IntegratedGradients,
    NoGradientError,
    NoiseTunnel,
    NonFiniteError,
    Saliency,
    TargetError,
)
from pathattr.forward import ModelFunction


class Flaky(nn.Module):
    """Dropout + batch norm model that can be told to fail inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.drop = nn.Dropout(0.5)
        self.fail_after = None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("boom inside forward")
        return self.drop(self.bn(self.lin(x)))


def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    )


@pytest.mark.parametrize("fail_after", [None, 1, 3])
def test_model_state_restored_after_success_and_exception(fail_after):
    torch.manual_seed(0)
    model = Flaky().double().train()
    model.lin.bias.requires_grad_(False)
    hook = model.lin.register_forward_hook(lambda m, i, o: None)
    before = _state(model)
    model.fail_after = fail_after
    x = torch.randn(4, 4, dtype=torch.float64)
    if fail_after is None:
        ig = IntegratedGradients(model)
        a = ig.attribute(x, target=0, n_steps=8, internal_batch_size=4)
        b = ig.attribute(x, target=0, n_steps=8, internal_batch_size=32)
        # eval mode inside: dropout off and batch norm uses running stats, so chunking does not matter
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    else:
        with pytest.raises(RuntimeError, match="boom"):
            IntegratedGradients(model).attribute(x, target=0, n_steps=8, internal_batch_size=4)
    assert _state(model) == before
    assert model.training and not model.lin.bias.requires_grad and model.lin.weight.requires_grad
    hook.remove()


def test_hook_added_during_attribution_is_removed():
    model = nn.Linear(3, 2).double()

    def leaky_forward(x):
        model.register_forward_hook(lambda m, i, o: None)  # a method that forgets to remove its hook
        return model(x)

    class Owner(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return leaky_forward(x)

    owner = Owner()
    IntegratedGradients(owner).attribute(torch.randn(2, 3, dtype=torch.float64), target=1, n_steps=3)
    assert len(model._forward_hooks) == 0


def test_bound_method_forward_is_guarded():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.3)).double().train()
    Saliency(model.forward).attribute(torch.randn(2, 3, dtype=torch.float64), target=0)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_shape_mismatch_between_inputs_and_baselines(mlp):
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(InputValidationError) as err:
        IntegratedGradients(mlp).attribute(x, baselines=torch.zeros(2, 5, dtype=torch.float64))
    assert err.value.argument == "baselines" and "(2, 5)" in str(err.value)
    with pytest.raises(InputValidationError, match="baselines"):
        ExpectedGradients(mlp).attribute(x, torch.zeros(4, 7, dtype=torch.float64))


@pytest.mark.parametrize("target", [3, -1, [0, 5], [0, 1, 2]])
def test_target_out_of_range(mlp, target):
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(TargetError) as err:
        IntegratedGradients(mlp).attribute(x, target=target)
    assert err.value.argument == "target"
    assert isinstance(err.value, IndexError)


def test_non_floating_inputs(mlp):
    with pytest.raises(InputValidationError, match="floating-point") as err:
        Saliency(mlp).attribute(torch.ones(2, 6, dtype=torch.long))
    assert err.value.argument == "inputs"


def test_nan_in_inputs_and_baselines(mlp):
    x = torch.randn(2, 6, dtype=torch.float64)
    x[1, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="inputs"):
        IntegratedGradients(mlp).attribute(x)
    with pytest.raises(NonFiniteError, match="baselines"):
        IntegratedGradients(mlp).attribute(torch.zeros(2, 6, dtype=torch.float64), baselines=float("inf"))


def test_nan_gradient_raises():
    def sqrt_model(v):
        return torch.sqrt(v).sum(-1)  # infinite gradient at 0, which the zero baseline reaches

    with pytest.raises(NonFiniteError, match="gradient"):
        IntegratedGradients(sqrt_model).attribute(torch.ones(1, 3, dtype=torch.float64), n_steps=4,
                                                  method="riemann_left")


def test_nan_output_on_the_path_names_the_outputs_and_overflowing_sums_are_not_errors():
    def nan_inside(v):  # finite at both ends, NaN strictly inside the path
        t = v.sum(-1)
        return torch.where((t > 0.5) & (t < 2.5), t * float("nan"), t)

    with pytest.raises(NonFiniteError, match="outputs"):
        IntegratedGradients(nan_inside, model=()).attribute(torch.ones(1, 3, dtype=torch.float64), n_steps=8)

    def huge(v):  # every output and gradient finite in float32, their sum over a chunk is not
        return 3e38 * torch.sigmoid(v.sum(-1))

    x = torch.ones(2, 3)
    grads, values = ModelFunction(huge, 2).gradients((x,), torch.arange(2))
    assert bool(torch.isfinite(values).all()) and bool(torch.isfinite(grads[0]).all())
    assert not math.isfinite(float(values.sum() + grads[0].sum()))


def test_output_not_depending_on_input():
    const = nn.Linear(3, 2).double()

    def detached(v):
        return const(v.detach())

    with pytest.raises(NoGradientError) as err:
        IntegratedGradients(detached).attribute(torch.ones(2, 3, dtype=torch.float64), target=0)
    assert err.value.argument == "inputs"
    with pytest.raises(NoGradientError):
        Saliency(lambda v: torch.zeros(v.shape[0], 2)).attribute(torch.ones(2, 3))


def test_other_bad_arguments(mlp):
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(InputValidationError, match="internal_batch_size"):
        IntegratedGradients(mlp).attribute(x, internal_batch_size=0)
    with pytest.raises(InputValidationError, match="n_steps"):
        IntegratedGradients(mlp).attribute(x, n_steps=0)
    with pytest.raises(InputValidationError, match="method"):
        IntegratedGradients(mlp).attribute(x, method="simpson")
    with pytest.raises(InputValidationError, match="batch size"):
        IntegratedGradients(lambda a, b: mlp(a)).attribute((x, x[:1]))
    with pytest.raises(InputValidationError, match="forward_func"):
        IntegratedGradients(lambda v: v).attribute(torch.ones(2, 3, 4))
    with pytest.raises(InputValidationError, match="generator"):
        ExpectedGradients(mlp).attribute(x, x, generator="seed")
    with pytest.raises(TypeError):
        InputXGradient(mlp).attribute(x, baselines=0)  # not an argument of Input x Gradient


def test_not_implemented_delta_for_saliency(mlp):
    with pytest.raises(NotImplementedError):
        Saliency(mlp).attribute(torch.ones(1, 6, dtype=torch.float64), return_convergence_delta=True)
    assert not Saliency(mlp).has_convergence_delta() and IntegratedGradients(mlp).has_convergence_delta()
    assert NoiseTunnel(Saliency(mlp)).name == "noise_tunnel(saliency)"


def test_all_finite_of_several_tensors_is_the_elementwise_test():
    """One summed test over several tensors: equal to ``isfinite(...).all()`` on every tensor, also when only the
    sum overflows (finite elements), and for empty and integer tensors."""
    from pathattr.errors import all_finite

    big = torch.full((3,), 3e38)  # finite float32 elements whose sum overflows
    cases = [
        ((torch.ones(2), torch.zeros(3, 2)), True),
        ((big, big), True),
        ((torch.ones(2), torch.tensor([1.0, float("nan")])), False),
        ((torch.tensor([float("-inf")]), torch.ones(1)), False),
        ((torch.empty(0), torch.arange(3)), True),
        ((torch.tensor([1.0 + 2.0j]), torch.tensor([float("inf")])), False),
        ((), True),
    ]
    for tensors, expected in cases:
        assert all_finite(*tensors) is expected
        assert expected == all(bool(torch.isfinite(t).all()) for t in tensors)
