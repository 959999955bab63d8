"""Straightforward, unbatched transcriptions of published algorithms, used as oracles by the tests and the
speed benchmark (like :mod:`torch.testing`, public but not part of the attribution API).

* :func:`two_pass_ig2`: IG2 (Zhuo & Ge, TPAMI 2024) as its authors' code runs it, one explicand at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..paths.gradpath import default_eps


def two_pass_ig2(
    model: nn.Module,
    representation: nn.Module,
    inputs: Tensor,
    references: Tensor,
    target: Tensor | int | None = None,
    n_steps: int = 201,
    step_size: float | None = None,
    bounds: tuple[float, float] | None = None,
    eps: float | None = None,
    side: str = "input",
) -> tuple[Tensor, Tensor, Tensor]:
    """The reference algorithm (spec ig2.md sections 2-3), straightforward: per explicand, path search for all
    ``R`` references keeping the path, then the gradients at the same points.

    Args:
        model: returns logits ``[n, C]``; ``representation``: a module of it (hooked on its ``side``).
        inputs: ``[B, *S]``; references: ``[R, *S]`` or ``[B, R, *S]``.
        target: class per example (None: predicted). Other arguments as :meth:`pathattr.IG2.explain`.

    Returns:
        attributions ``[B, *S]``, GradCF ``[B, R, *S]`` and the paths ``[B, R, K + 1, *S]``.
    """
    eps = default_eps(inputs.dtype) if eps is None else eps
    saved = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    store: list[Tensor] = []
    if side == "input":
        handle = representation.register_forward_pre_hook(lambda m, a: store.append(a[0]))
    else:
        handle = representation.register_forward_hook(lambda m, a, o: store.append(o))
    try:
        model.eval()
        for p, _ in saved:
            p.requires_grad_(False)
        with torch.no_grad():
            classes = model(inputs).argmax(1) if target is None else torch.as_tensor(target).expand(inputs.shape[0])
        attrs, gradcfs, paths = [], [], []
        for b in range(inputs.shape[0]):
            refs = references if references.ndim == inputs.ndim else references[b]
            r = refs.shape[0]
            with torch.no_grad():
                store.clear()
                model(refs)
                rho = store[-1].reshape(r, -1)
            x = inputs[b : b + 1].expand(r, *inputs.shape[1:])
            eta = (x - refs).reshape(r, -1).norm(dim=1) / n_steps if step_size is None else torch.full((r,), step_size)
            eta = eta.to(inputs.dtype).view(-1, *([1] * (inputs.ndim - 1)))
            z, path = x.clone(), [x.clone()]
            for _ in range(n_steps):  # pass 1: path search, whole path kept
                z = z.detach().requires_grad_(True)
                store.clear()
                model(z)
                dist = (store[-1].reshape(r, -1) - rho).pow(2).sum(1)
                (u,) = torch.autograd.grad(dist.sum(), z)
                w = u.reshape(r, -1).norm(dim=1).clamp_min(eps).view(eta.shape)
                z = z.detach() - eta * u / w
                if bounds is not None:
                    z = z.clamp(*bounds)
                path.append(z)
            total = torch.zeros_like(x, dtype=torch.float64)
            for j in range(n_steps):  # pass 2: target gradients at the same points
                p = path[j].detach().requires_grad_(True)
                (g,) = torch.autograd.grad(model(p)[:, classes[b]].sum(), p)
                total += (g * (path[j] - path[j + 1])).to(torch.float64)
            attrs.append(total.mean(0).to(inputs.dtype))
            gradcfs.append(path[-1])
            paths.append(torch.stack(path, 1))
        return torch.stack(attrs), torch.stack(gradcfs), torch.stack(paths)
    finally:
        handle.remove()
        model.train(training)
        for p, flag in saved:
            p.requires_grad_(flag)


__all__ = ["two_pass_ig2"]
