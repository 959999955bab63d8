"""Explicit randomness: every random draw in pathattr goes through a ``torch.Generator``."""

from __future__ import annotations

import torch

from .errors import InputValidationError

DEFAULT_SEED = 0


def as_generator(generator: torch.Generator | int | None, argument: str = "generator") -> torch.Generator:
    """Return a CPU ``torch.Generator``.

    ``None`` gives a fresh generator seeded with :data:`DEFAULT_SEED` (results are reproducible by default and
    the global RNG is never touched); an ``int`` is used as the seed; a generator is used as is.
    """
    if generator is None:
        return torch.Generator().manual_seed(DEFAULT_SEED)
    if isinstance(generator, bool):
        raise InputValidationError(f"`{argument}` must be a torch.Generator or an int seed.", argument)
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    if isinstance(generator, torch.Generator):
        return generator
    raise InputValidationError(
        f"`{argument}` must be a torch.Generator, an int seed or None, got {type(generator).__name__}.", argument
    )


def rand(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) samples drawn on the generator's device, returned with ``like``'s dtype and device."""
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device).to(like)


def randn(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) samples drawn on the generator's device, returned with ``like``'s dtype and device."""
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device).to(like)


def randint(high: int, shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform integers in ``[0, high)``."""
    return torch.randint(high, shape, generator=generator, device=generator.device).to(device)
