"""The parametric-path protocol used by :func:`pathattr.engine.integrate_parametric_path`."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor


class ParametricPath(ABC):
    """``n_paths`` paths with ``n_nodes`` evaluation nodes each, all known in advance.

    Rows are addressed by ``(path_index, step_index)``; nodes are ordered from the baseline end to the input
    end when ``direction == +1`` and from the input end when ``direction == -1``.
    """

    direction: int = 1
    #: if True the far end of each path (the baseline end when ``direction == -1``, else the input end) is not
    #: one of the nodes; the engine then appends it as an output-only row (step ``n_nodes``, zero gradient and
    #: displacement, output = ``f`` at that end) so output-based integrators (IDGI, Split IG) see the last segment
    closing_node: bool = False

    @property
    @abstractmethod
    def n_paths(self) -> int:
        """Number of paths (examples x baselines)."""

    @property
    @abstractmethod
    def n_nodes(self) -> int:
        """Evaluation nodes per path."""

    @abstractmethod
    def example_index(self, path_index: Tensor) -> Tensor:
        """Index of the example each path explains."""

    @abstractmethod
    def points(self, path_index: Tensor, step_index: Tensor) -> tuple[Tensor, ...]:
        """Model inputs at the given rows, one tensor per input."""

    @abstractmethod
    def displacements(
        self, path_index: Tensor, step_index: Tensor, points: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        """Weighted path elements (baseline -> input orientation) that the gradients are integrated against."""

    @abstractmethod
    def start_points(self, path_index: Tensor) -> tuple[Tensor, ...]:
        """Baseline end of the given paths, ``[n, *S]`` per input."""
