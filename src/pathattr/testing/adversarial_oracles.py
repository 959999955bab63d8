"""Straightforward, unbatched transcriptions of the two adversarial-path attribution methods, used as oracles by
the tests (like :mod:`torch.testing`, public but not part of the attribution API).

* :func:`agi_oracle`: AGI (Pan, Li & Zhu, "Explaining Deep Neural Network Models with Adversarial Gradient
  Integration", IJCAI 2021) as ``pd90506/AGI`` (``AGI_main.py``: ``pgd_step`` / ``fgsm_step`` / ``test``) reads,
  one explicand and one false class at a time, plus the accumulating path (spec other_methods.md section 9).
* :func:`mfaba_oracle`: MFABA (Zhu et al., AAAI 2024, arXiv 2312.13630) as ``LMBTough/MFABA``
  (``saliency/core/mfaba.py``: ``FGSMGrad`` + ``MFABA``; ``saliency_zoo.mfaba_sharp`` / ``mfaba_smooth``) reads,
  one explicand at a time.

Both take a model returning logits ``[n, C]`` and a single explicand ``[1, *S]``; everything is a plain Python
loop over classes and steps with one model call per gradient, exactly as the reference code is written. The
model is put in eval mode with frozen parameters for the call and restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    saved = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    try:
        model.eval()
        for p, _ in saved:
            p.requires_grad_(False)
        yield
    finally:
        model.train(training)
        for p, flag in saved:
            p.requires_grad_(flag)


def _clip(z: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    return z if bounds is None else torch.clamp(z, min=bounds[0], max=bounds[1])


def agi_oracle(
    model: nn.Module,
    x: Tensor,
    target: int,
    false_classes: Sequence[int],
    epsilon: float = 0.05,
    max_iter: int = 20,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    reference_compat: bool = False,
    use_softmax: bool = True,
) -> tuple[Tensor, list[Tensor]]:
    """AGI for one explicand, one false class after the other.

    For every false class ``t != target`` (a class equal to ``target`` is skipped, as the reference skips the
    predicted class): ``z = x``; up to ``max_iter`` times: stop if ``argmax F(z) == t``; ``a = grad o_t(z)``,
    ``g = grad o_target(z)`` (``o`` = softmax of the logits, or the logits); then

    * ``reference_compat=False`` (the accumulating path): ``z' = clip(z + epsilon sign(a))``,
      ``delta_t += -g * (z' - z)``;
    * ``reference_compat=True`` (``AGI_main.py`` verbatim: ``fgsm_step(image, ...)`` steps from the original
      ``x``): ``z' = clip(x + epsilon sign(a))``, ``delta_t += -g * (z' - x)``;

    and ``z = z'``. ``AGI = sum_t delta_t`` (the reference does not divide by the number of classes).

    Args:
        model: returns logits ``[n, C]``.
        x: ``[1, *S]`` the explicand.
        target: the explained class (the reference uses the predicted class).
        false_classes: the adversarial target classes.
        epsilon, max_iter: step size and maximum iterations per class.
        bounds: the clip box (the reference clips to [0, 1]), or None.
        reference_compat: step from the original input (the reference code) instead of from the current point.
        use_softmax: differentiate softmax probabilities (the reference) instead of logits.

    Returns:
        the attribution ``[1, *S]`` and the last point of every non-skipped class's path (``[1, *S]`` each).
    """
    ends = []
    with _frozen(model):
        total = torch.zeros_like(x)
        for t in false_classes:
            if int(t) == int(target):
                continue
            image = x.clone().detach()
            z = image.clone()
            c_delta = torch.zeros_like(x)
            for _ in range(max_iter):
                z.requires_grad = True
                output = model(z)
                if output.max(1)[1].item() == int(t):
                    break
                if use_softmax:
                    output = torch.softmax(output, dim=1)
                (grad_adv,) = torch.autograd.grad(output[0, int(t)], z, retain_graph=True)
                (grad_lab,) = torch.autograd.grad(output[0, int(target)], z)
                start = image if reference_compat else z.detach()
                new = _clip(start + epsilon * grad_adv.sign(), bounds)
                c_delta = c_delta + (-grad_lab * (new - start))
                z = new.detach()
            total = total + c_delta
            ends.append(z.detach())
    return total, ends


def agi_spaced_classes(n_classes: int, k: int) -> list[int]:
    """``AGI_main.py``'s false classes: every ``n_classes // k``-th index below ``n_classes - 1``
    (``range(0, 999, 1000 // k)`` for ImageNet)."""
    return list(range(0, n_classes - 1, n_classes // k))


def mfaba_oracle(
    model: nn.Module,
    x: Tensor,
    target: int,
    num_steps: int = 50,
    alpha: float = 0.001,
    epsilon: float = 0.3,
    use_sign: bool = False,
    use_softmax: bool = True,
    early_stop: bool = True,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> tuple[Tensor, Tensor, Tensor]:
    """MFABA for one explicand, as ``FGSMGrad`` + ``MFABA`` compute it.

    ``z_0 = x``; for ``t = 0 .. num_steps - 1``: ``g_t = grad o_target(z_t)`` (softmax or logits), then

    * sharp (``use_sign=False``): ``z_{t+1} = clip(z_t - 100 alpha g_t / |g_t|_2)``;
    * smooth (``use_sign=True``): ``z_{t+1} = clip(x + clip(z_t - alpha sign(g_t) - x, -epsilon, epsilon))``
      (the reference passes ``epsilon`` in 1/255 units and divides; here it is in input units);

    and, with ``early_stop``, stop once ``argmax F(z_{t+1}) != target``. ``MFABA = -sum_t (z_{t+1} - z_t) g_t``
    (the reference also appends the gradient at the last point and drops it again).

    Returns:
        the attribution ``[1, *S]``, the points ``[n + 1, *S]`` and the gradients ``[n + 1, *S]`` (``n`` steps
        taken; the last gradient is the one at the last point, unused).
    """
    with _frozen(model):
        data = x.clone().detach()
        dt = data.clone().requires_grad_(True)
        hats, grads = [data.clone()], []

        def target_output(z: Tensor) -> Tensor:
            out = model(z)
            return (torch.softmax(out, dim=-1) if use_softmax else out)[0, int(target)]

        for _ in range(num_steps):
            (grad,) = torch.autograd.grad(target_output(dt), dt)
            grads.append(grad.clone())
            if use_sign:
                adv = dt.detach() - alpha * grad.sign()
                total_grad = torch.clamp(adv - data, -epsilon, epsilon)
                new = _clip(data + total_grad, bounds)
            else:
                new = _clip(dt.detach() - alpha * 100 * grad / grad.norm(), bounds)
            dt = new.detach().requires_grad_(True)
            hats.append(new.clone())
            if early_stop:
                with torch.no_grad():
                    if model(dt).argmax(-1).item() != int(target):
                        break
        (grad,) = torch.autograd.grad(target_output(dt), dt)
        grads.append(grad.clone())
        hats_t, grads_t = torch.cat(hats, 0), torch.cat(grads, 0)
        attribution = -torch.sum((hats_t[1:] - hats_t[:-1]) * grads_t[:-1], dim=0, keepdim=True)
    return attribution, hats_t, grads_t


__all__ = ["agi_oracle", "agi_spaced_classes", "mfaba_oracle"]
