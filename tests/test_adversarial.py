"""AGI and MFABA: closed-form cases, the unbatched oracles, batching invariance, errors and hygiene."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathattr.paths.adversarial import (
    agi_step,
    draw_false_classes,
    mfaba_step,
    spaced_false_classes,
)
from pathattr.testing.adversarial_oracles import agi_oracle, agi_spaced_classes, mfaba_oracle

D = torch.float64


def linear(weight: list[list[float]], bias: list[float]) -> nn.Module:
    """Logits ``W x + b`` (float64)."""
    layer = nn.Linear(len(weight[0]), len(weight)).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=D))
        layer.bias.copy_(torch.tensor(bias, dtype=D))
    return layer.eval()


# Closed-form AGI case (logits of a linear model, x = 0, explained class 0, epsilon = 0.1). Along the path of false
# class t every point is z_i = i eps sign(w_t), so the logits are linear in i:
#   t = 1 (sign [-1, 1]): class 0: 0.5 + 0.1 i, class 1: 0.3 i       -> class 1 wins first at i = 3 (0.8 < 0.9)
#   t = 2 (sign [1, -1]): class 0: 0.5 - 0.1 i, class 2: 0.2 + 0.3 i -> class 2 wins first at i = 1 (0.4 < 0.5)
# A_t = -n_t eps w_0 * sign(w_t): A_1 = [0.3, -0.6], A_2 = [-0.1, 0.2]; AGI = [0.2, -0.4].
# reference_compat (every step from x): t = 1 never flips (z = [-0.1, 0.1]: 0.6 > 0.3), so with max_iter = 5
# A_1 = 5 * [0.1, -0.2]; t = 2 flips after one step (z = [0.1, -0.1]: 0.4 < 0.5): A_2 = [-0.1, 0.2].
AGI_W, AGI_B = [[1.0, 2.0], [-1.0, 2.0], [2.0, -1.0]], [0.5, 0.0, 0.2]
AGI_PATHS = {1: (3, [0.3, -0.6]), 2: (1, [-0.1, 0.2])}  # false class: (steps, attribution)
AGI_TOTAL, AGI_COMPAT_TOTAL = [0.2, -0.4], [0.4, -0.8]

# Closed-form MFABA case (logits, x = 0, class 0, w_0 = [3, -4, 0] with |w_0| = 5, class 1 constant 0):
# sharp steps move z by -0.1 w_0 / 5, lowering the logit margin 1.2 by 0.5 per step: 0.7, 0.2, -0.3 -> the
# prediction changes after 3 steps; A = 3 * 0.1 * w_0^2 / 5 = [0.54, 0.96, 0] (sum 1.5 = f(x) - f(z_3)).
MFABA_W, MFABA_B = [[3.0, -4.0, 0.0], [0.0, 0.0, 0.0]], [1.2, 0.0]
MFABA_SHARP = [0.54, 0.96, 0.0]


# ----------------------------------------------------------------------------------------------- step functions
def test_agi_step_moves_by_signed_gradient_and_clips():
    z = torch.tensor([[0.5, 0.98, 0.0]], dtype=D)
    x = torch.tensor([[0.4, 0.9, 0.1]], dtype=D)
    a = torch.tensor([[2.0, 3.0, -1.0]], dtype=D)
    new, disp = agi_step(z, x, a, 0.05, bounds=(0.0, 1.0))
    torch.testing.assert_close(new, torch.tensor([[0.55, 1.0, 0.0]], dtype=D), rtol=0, atol=1e-15)
    torch.testing.assert_close(disp, torch.tensor([[0.05, 0.02, 0.0]], dtype=D), rtol=0, atol=1e-15)
    new, disp = agi_step(z, x, a, 0.05, reference_compat=True)  # from x, not from z
    torch.testing.assert_close(new, torch.tensor([[0.45, 0.95, 0.05]], dtype=D), rtol=0, atol=1e-15)
    torch.testing.assert_close(disp, torch.tensor([[0.05, 0.05, -0.05]], dtype=D), rtol=0, atol=1e-15)


def test_mfaba_step_sharp_and_smooth():
    z = torch.tensor([[0.0, 0.0, 0.5], [1.0, 1.0, 1.0]], dtype=D)
    x = torch.zeros_like(z)
    g = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 0.0]], dtype=D)
    new = mfaba_step(z, x, g, "sharp", 0.5)
    # row 0: z - 0.5 g / 5; row 1: zero gradient -> no move (the reference would give NaN)
    torch.testing.assert_close(new, torch.tensor([[-0.3, 0.4, 0.5], [1.0, 1.0, 1.0]], dtype=D), rtol=0, atol=1e-15)
    new = mfaba_step(z, x, g, "sharp", 0.5, bounds=(0.0, 1.0))
    torch.testing.assert_close(new[0], torch.tensor([0.0, 0.4, 0.5], dtype=D), rtol=0, atol=1e-15)
    # smooth: z - 0.2 sign(g), kept within 0.3 of x (the third feature sits at 0.5 > 0.3 and is pulled back)
    new = mfaba_step(z[:1], x[:1], g[:1], "smooth", 0.2, epsilon=0.3)
    torch.testing.assert_close(new, torch.tensor([[-0.2, 0.2, 0.3]], dtype=D), rtol=0, atol=1e-15)
    assert mfaba_step(z[:1], x[:1], g[:1], "smooth")[0, 0].item() == pytest.approx(-0.001, abs=1e-15)


def test_false_classes_distinct_never_the_target_and_seeded():
    target = torch.tensor([0, 3, 3, 9])
    picks = draw_false_classes(target, 10, 9, torch.Generator().manual_seed(5))
    assert picks.shape == (4, 9)
    for row, t in zip(picks.tolist(), target.tolist()):
        assert sorted(row) == [c for c in range(10) if c != t]  # k = C - 1: every other class exactly once
    a = draw_false_classes(target, 10, 3, torch.Generator().manual_seed(5))
    b = draw_false_classes(target, 10, 3, torch.Generator().manual_seed(5))
    c = draw_false_classes(target, 10, 3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not bool((a == target[:, None]).any())
    assert spaced_false_classes(1000, 20).tolist() == list(range(0, 999, 50)) == agi_spaced_classes(1000, 20)


# ----------------------------------------------------------------------------------------------- oracles: closed form
def test_agi_oracle_closed_form():
    model = linear(AGI_W, AGI_B)
    x = torch.zeros(1, 2, dtype=D)
    for t, (steps, expected) in AGI_PATHS.items():
        attr, ends = agi_oracle(model, x, 0, [t], epsilon=0.1, max_iter=10, bounds=None, use_softmax=False)
        torch.testing.assert_close(attr[0], torch.tensor(expected, dtype=D), rtol=0, atol=1e-12)
        sign = torch.tensor(AGI_W[t], dtype=D).sign()
        torch.testing.assert_close(ends[0][0], steps * 0.1 * sign, rtol=0, atol=1e-12)
    attr, _ = agi_oracle(model, x, 0, [0, 1, 2], epsilon=0.1, max_iter=10, bounds=None, use_softmax=False)
    torch.testing.assert_close(attr[0], torch.tensor(AGI_TOTAL, dtype=D), rtol=0, atol=1e-12)  # class 0 skipped
    attr, _ = agi_oracle(model, x, 0, [1, 2], epsilon=0.1, max_iter=5, bounds=None, reference_compat=True,
                         use_softmax=False)
    torch.testing.assert_close(attr[0], torch.tensor(AGI_COMPAT_TOTAL, dtype=D), rtol=0, atol=1e-12)


def test_agi_oracle_one_softmax_step_closed_form():
    # one iteration: A = -grad p_y(x) * (clip(x + eps sign(grad p_t(x))) - x), grad p_j = p_j (w_j - sum_m p_m w_m)
    model = linear(AGI_W, AGI_B)
    x = torch.tensor([[0.98, 0.3]], dtype=D)
    w, b = torch.tensor(AGI_W, dtype=D), torch.tensor(AGI_B, dtype=D)
    p = torch.softmax(w @ x[0] + b, 0)
    mean_w = p @ w
    grad = p[:, None] * (w - mean_w)
    step = (x[0] + 0.05 * grad[2].sign()).clamp(0, 1) - x[0]
    attr, _ = agi_oracle(model, x, 0, [2], epsilon=0.05, max_iter=1)
    torch.testing.assert_close(attr[0], -grad[0] * step, rtol=0, atol=1e-15)
    torch.testing.assert_close(step, torch.tensor([0.02, -0.05], dtype=D), rtol=0, atol=1e-15)  # clipped at 1


def test_mfaba_oracle_closed_form():
    model = linear(MFABA_W, MFABA_B)
    x = torch.zeros(1, 3, dtype=D)
    attr, hats, grads = mfaba_oracle(model, x, 0, num_steps=50, use_softmax=False, bounds=None)
    torch.testing.assert_close(attr[0], torch.tensor(MFABA_SHARP, dtype=D), rtol=0, atol=1e-12)
    assert hats.shape[0] == 4 and grads.shape[0] == 4  # 3 steps + the start; the final gradient is unused
    attr, hats, _ = mfaba_oracle(model, x, 0, num_steps=2, use_softmax=False, bounds=None)
    torch.testing.assert_close(attr[0], torch.tensor(MFABA_SHARP, dtype=D) * 2 / 3, rtol=0, atol=1e-12)
    # smooth, no early stop: every moving feature travels min(n alpha, epsilon) = 0.25 against sign(w)
    attr, _, _ = mfaba_oracle(model, x, 0, num_steps=5, alpha=0.1, epsilon=0.25, use_sign=True, use_softmax=False,
                              early_stop=False, bounds=None)
    torch.testing.assert_close(attr[0], torch.tensor([0.75, 1.0, 0.0], dtype=D), rtol=0, atol=1e-12)
