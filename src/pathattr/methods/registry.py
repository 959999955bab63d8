"""The one registry of attribution methods: a decorator on each method class.

The harness (``pathattr_bench``), the ``pathattr`` command and the Quantus adapter read :data:`METHODS`; a new
method appears in all three by declaring itself::

    @register("my_method", paper="Author et al., Venue 2024", functional=my_method)
    class MyMethod(AttributionMethod): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputValidationError


@dataclass(frozen=True)
class MethodEntry:
    """One registered method.

    Attributes:
        name: registry key (``"integrated_gradients"``, ``"ig2"``, ...); also the class's ``name``.
        cls: the :class:`~pathattr.methods.base.AttributionMethod` subclass.
        paper: the publication the method comes from (short citation).
        needs_references: ``explain`` takes a second positional argument ``references`` (IG2 family).
        sequential: the path depends on gradients along the way (one model call per step).
    """

    name: str
    cls: type
    paper: str
    needs_references: bool = False
    sequential: bool = False


#: every registered method, in registration order
METHODS: dict[str, MethodEntry] = {}


def register(name: str, paper: str, needs_references: bool = False, sequential: bool = False) -> Callable[[type], type]:
    """Class decorator: add the method to :data:`METHODS` under ``name`` (and set ``cls.name``)."""

    def decorate(cls: type) -> type:
        if name in METHODS and METHODS[name].cls is not cls:
            raise ValueError(f"method name {name!r} is already registered by {METHODS[name].cls.__name__}")
        cls.name = name
        METHODS[name] = MethodEntry(name, cls, paper, needs_references, sequential)
        return cls

    return decorate


def get_method_class(name: str) -> Any:
    """The method class registered under ``name`` (raises :class:`InputValidationError` listing the choices)."""
    try:
        return METHODS[name].cls
    except KeyError:
        raise InputValidationError(
            f"`method` {name!r} is not a registered method; choose from {', '.join(METHODS)}.", "method"
        ) from None


__all__ = ["METHODS", "MethodEntry", "get_method_class", "register"]
