"""The straight-line path of Integrated Gradients (Sundararajan, Taly & Yan, ICML 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ParametricPath


class StraightLinePath(ParametricPath):
    """``gamma(alpha) = x' + alpha (x - x')`` for every example and each of its ``k`` baselines.

    Points are computed as :func:`torch.lerp` computes them, so that ``alpha = 0`` gives ``x'`` and ``alpha = 1``
    gives ``x`` exactly (``x' + 1 * (x - x')`` rounds): a rule whose nodes include both ends reads ``f(x)`` and
    ``f(x')`` from its own rows (:meth:`end_nodes`).

    Baselines are kept as a *pool* and gathered per chunk, so shared baselines or a reference set are never
    copied once per path.

    Args:
        inputs: per input ``[B, *S]``.
        pools: per input ``[M, *S]``, the distinct baselines.
        baseline_index: ``[B * k]`` long; path ``p`` joins ``pools[baseline_index[p]]`` to ``inputs[p // k]``.
        k: paths per example.
        alphas: nodes ``[J]`` shared by all paths, or ``[B * k, J]`` per path (Expected Gradients).
        weights: quadrature weights, same shape as ``alphas``.
        multiply_by_inputs: if False the displacement is the weight alone, so the integrator returns the
            weighted mean path gradient (Captum's "local" attributions).
    """

    takes_row_range = True

    def __init__(
        self,
        inputs: tuple[Tensor, ...],
        pools: tuple[Tensor, ...],
        baseline_index: Tensor,
        k: int,
        alphas: Tensor,
        weights: Tensor,
        multiply_by_inputs: bool = True,
    ) -> None:
        self.inputs = inputs
        self.pools = pools
        self.baseline_index = baseline_index
        self.k = k
        self.alphas = alphas
        self.weights = weights
        self.multiply_by_inputs = multiply_by_inputs
        self._baseline_list: list[int] | None = None
        #: of the last points(): (path_index, runs, then the ``x - x'`` of each run per input: either a list of
        #: [1, *S] tensors and None, or None and one [R, *S] tensor when the runs have one length)
        self._last: tuple | None = None

    @classmethod
    def from_baselines(
        cls,
        inputs: tuple[Tensor, ...],
        baselines: tuple[Tensor, ...],
        alphas: Tensor,
        weights: Tensor,
        multiply_by_inputs: bool = True,
    ) -> StraightLinePath:
        """Paths from resolved baselines ``[B or 1, K, *S]`` (see :func:`pathattr.baselines.resolve_baselines`)."""
        b = inputs[0].shape[0]
        k = baselines[0].shape[1]
        shared = all(t.shape[0] == 1 for t in baselines)
        pools = tuple(
            t.reshape(-1, *t.shape[2:]) if shared else t.expand(b, *t.shape[1:]).reshape(-1, *t.shape[2:])
            for t in baselines
        )
        paths = torch.arange(b * k, device=inputs[0].device)
        index = paths % k if shared else paths
        return cls(inputs, pools, index, k, alphas, weights, multiply_by_inputs)

    @property
    def n_paths(self) -> int:
        return self.baseline_index.shape[0]

    @property
    def n_nodes(self) -> int:
        return self.alphas.shape[-1]

    def example_index(self, path_index: Tensor) -> Tensor:
        return path_index // self.k

    def _node(self, table: Tensor, path_index: Tensor, step_index: Tensor) -> Tensor:
        return table[step_index] if table.ndim == 1 else table[path_index, step_index]

    def end_nodes(self) -> tuple[int | None, int | None]:
        """The nodes at ``alpha = 0`` and ``alpha = 1`` when the nodes are shared by all paths (None if absent)."""
        if self.alphas.ndim != 1:
            return None, None
        nodes = self.alphas.tolist()
        return (nodes.index(0.0) if 0.0 in nodes else None), (nodes.index(1.0) if 1.0 in nodes else None)

    def start_points(self, path_index: Tensor) -> tuple[Tensor, ...]:
        rows = self.baseline_index[path_index]
        return tuple(pool[rows] for pool in self.pools)

    def _runs(self, path_index: Tensor) -> list[tuple[int, int, int]] | None:
        """``(path, first row, end row)`` of each run of equal consecutive paths in ``path_index``, or None when
        the runs are short (fewer than 4 rows on average: per-row gathers are cheaper than a loop over runs)."""
        n = path_index.shape[0]
        if n == 0 or path_index.ndim != 1:
            return None
        if n == 1 or bool(path_index[0] == path_index[-1]):  # rows are path-major: one run
            first = int(path_index[0])
            if n == 1 or bool((path_index == first).all()):
                return [(first, 0, n)]
        change = (path_index[1:] != path_index[:-1]).nonzero().squeeze(1)
        if 4 * (change.numel() + 1) > n:
            return None
        bounds = [0, *(change + 1).tolist(), n]
        paths = path_index[bounds[:-1]].tolist()
        return [(paths[i], bounds[i], bounds[i + 1]) for i in range(len(paths))]

    def _range_runs(self, start: int, stop: int) -> list[tuple[int, int, int]] | None:
        """:meth:`_runs` of the rows ``start:stop`` of the path-major layout, by integer arithmetic (None for the
        same short runs)."""
        n = self.n_nodes
        if 4 * ((stop - 1) // n - start // n + 1) > stop - start:
            return None
        out = []
        row = start
        while row < stop:
            p = row // n
            end = min(stop, (p + 1) * n)
            out.append((p, row - start, end - start))
            row = end
        return out

    def _range_points(self, path_index: Tensor, start: int, stop: int) -> tuple[Tensor, ...] | None:
        """:meth:`points` of the rows ``start:stop`` when they are whole paths or lie in one path: one lerp of the
        ``R`` paths' ends against their nodes (a slice of the shared node table), the ends read as slices where the
        layout allows (one baseline per path, or one shared baseline); None for other row ranges."""
        n = self.n_nodes
        p0, p_last = start // n, (stop - 1) // n
        r = p_last - p0 + 1
        whole = start == p0 * n and stop == (p_last + 1) * n
        if not whole and r > 1:
            return None
        length = n if whole else stop - start  # rows per path
        nodes = self.alphas if whole else self.alphas[start - p0 * n : stop - p0 * n]
        k = self.k
        # the paths' examples: a slice of the inputs with one baseline per example, else gathered
        examples = None if k == 1 else torch.arange(p0, p0 + r, device=path_index.device) // k
        out, stacked = [], []
        for x, pool in zip(self.inputs, self.pools):
            dt = torch.result_type(x, pool)
            end = (x[p0 : p0 + r] if examples is None else x.index_select(0, examples)).detach()
            if pool.shape[0] == 1:
                begin = pool.detach()  # one baseline for every path: broadcast
            else:
                begin = pool.index_select(0, self.baseline_index[p0 : p0 + r]).detach()
            if end.dtype != dt:
                end = end.to(dt)
            if begin.dtype != dt:
                begin = begin.to(dt)
            diff = end - begin  # x - x' per path ([R, *S]), as :meth:`_run_differences` computes it
            stacked.append(diff)
            a = nodes.view(1, length, *([1] * (x.ndim - 1)))
            if a.dtype != dt:
                a = a.to(dt)
            pts = torch.lerp(begin.unsqueeze(1), end.unsqueeze(1), a)
            out.append(pts.view(r * length, *x.shape[1:]))
        runs = [(p0 + i, i * length, (i + 1) * length) for i in range(r)]
        self._last = (path_index, runs, None, stacked)
        return tuple(out)

    def _run_differences(self, path_index: Tensor, runs: list[tuple[int, int, int]]) -> list[list[Tensor]]:
        """Per input, ``x - x'`` of each run's path (``[1, *S]``), the same values as the per-row ``x[ex] - start``."""
        if self._baseline_list is None:
            self._baseline_list = self.baseline_index.tolist()
        out = []
        for x, pool in zip(self.inputs, self.pools):
            # detached: the points are leaves of the model call anyway, and ``out=`` kernels refuse inputs that
            # require grad (a baseline or input that requires grad)
            out.append([(x[p // self.k : p // self.k + 1] - pool[self._baseline_list[p]].unsqueeze(0)).detach()
                        for p, _, _ in runs])
        return out

    def points(self, path_index: Tensor, step_index: Tensor, *,
               rows: tuple[int, int] | None = None) -> tuple[Tensor, ...]:
        """Points at the rows ``(path_index, step_index)``. ``rows=(start, stop)``: they are the rows ``start:stop``
        of the engine's path-major layout (``n_nodes`` rows per path, see :attr:`takes_row_range`); the runs of one
        path and their nodes then come from integer arithmetic instead of tensor operations on the indices."""
        if rows is not None and self.alphas.ndim == 1:
            fast = self._range_points(path_index, *rows)
            if fast is not None:
                return fast
            runs = self._range_runs(*rows)
        else:
            runs = self._runs(path_index)
        alpha = self._node(self.alphas, path_index, step_index)
        if runs is None:
            self._last = None
            ex = self.example_index(path_index)
            out = []
            for x, start in zip(self.inputs, self.start_points(path_index)):
                dt = torch.result_type(x, start)
                a = alpha.view(-1, *([1] * (x.ndim - 1))).to(dt)
                out.append(torch.lerp(start.to(dt), x[ex].to(dt), a))
            return tuple(out)
        # long runs of one path (the engine's rows are path-major): the lerp broadcasts ``x'`` and ``x`` from one
        # row per run instead of gathering them per row (one pass over the chunk; the same kernel on the same
        # values, so the same bits as the gathered form)
        length = runs[0][2] - runs[0][1]
        if len(runs) > 1 and all(hi - lo == length for _, lo, hi in runs):
            return self._equal_runs(path_index, runs, alpha, length)
        self._last = (path_index, runs, self._run_differences(path_index, runs), None)  # sets _baseline_list
        out = []
        for x, pool in zip(self.inputs, self.pools):
            dt = torch.result_type(x, pool)
            a = alpha.view(-1, *([1] * (x.ndim - 1))).to(dt)
            pts = torch.empty((path_index.shape[0], *x.shape[1:]), dtype=dt, device=x.device)
            for p, lo, hi in runs:
                e = p // self.k
                # detached: the points are leaves of the model call anyway, and ``out=`` kernels refuse inputs
                # that require grad
                torch.lerp(pool[self._baseline_list[p]].detach().unsqueeze(0).to(dt), x[e:e + 1].detach().to(dt),
                           a[lo:hi], out=pts[lo:hi])
            out.append(pts)
        return tuple(out)

    def _equal_runs(self, path_index: Tensor, runs: list[tuple[int, int, int]], alpha: Tensor,
                    length: int) -> tuple[Tensor, ...]:
        """:meth:`points` for ``R`` runs of one length ``L`` (e.g. whole paths of several examples in one chunk):
        one lerp of ``[R, 1, *S]`` ends against ``[R, L]`` nodes instead of a lerp per run (the same elementwise
        kernel on the same values, so the same bits)."""
        r = len(runs)
        run_paths = path_index[::length]
        ex = self.example_index(run_paths)
        base_rows = self.baseline_index[run_paths]
        out, stacked = [], []
        for x, pool in zip(self.inputs, self.pools):
            dt = torch.result_type(x, pool)
            start = pool.index_select(0, base_rows).detach()
            end = x.index_select(0, ex).detach()
            stacked.append(end - start)  # x - x' per run, as :meth:`_run_differences` computes it
            a = alpha.view(r, length, *([1] * (x.ndim - 1))).to(dt)
            pts = torch.lerp(start.unsqueeze(1).to(dt), end.unsqueeze(1).to(dt), a)
            out.append(pts.view(r * length, *x.shape[1:]))
        self._last = (path_index, runs, None, stacked)
        return tuple(out)

    def summed_products(
        self, path_index: Tensor, step_index: Tensor, gradients: tuple[Tensor, ...], *,
        rows: tuple[int, int] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]] | None:
        """``(x - x') * sum_j w_j g_j`` per run of one path (Captum's factored form of the same sum): one
        matrix-vector product per run instead of a displacement per row and a row-wise product. ``rows``: as for
        :meth:`points` (the nodes' weights are then read as a slice of the shared table)."""
        last, self._last = self._last, None
        if not self.multiply_by_inputs or last is None or not (
            last[0] is path_index or torch.equal(last[0], path_index)
        ):
            return None
        runs, diffs, stacked = last[1], last[2], last[3]
        n_rows = path_index.shape[0]
        if rows is not None and self.weights.ndim == 1 and n_rows == self.n_nodes * len(runs):
            w = self.weights  # whole paths: the node table, shared by every run
        elif rows is not None and self.weights.ndim == 1 and len(runs) == 1:
            first = rows[0] % self.n_nodes
            w = self.weights[first : first + n_rows]
        else:
            w = self._node(self.weights, path_index, step_index)
        out = []
        if stacked is not None:  # runs of one length: one batched product for all of them
            r, length = len(runs), runs[0][2] - runs[0][1]
            w = w.view(1, 1, length).expand(r, 1, length) if w.shape[0] == length else w.view(r, 1, length)
            for g, d in zip(gradients, stacked):
                s = torch.bmm(w if w.dtype == g.dtype else w.to(g.dtype), g.reshape(r, length, -1)).view(d.shape)
                out.append(s.mul_(d) if s.dtype == torch.result_type(s, d) else s * d)
            return path_index[::length], tuple(out)
        for g, diff in zip(gradients, diffs):
            wg = w.to(g.dtype)
            parts = []
            for (_, lo, hi), d in zip(runs, diff):
                s = torch.matmul(wg[lo:hi], g[lo:hi].reshape(hi - lo, -1)).view(d.shape)
                parts.append(s.mul_(d) if s.dtype == torch.result_type(s, d) else s * d)
            out.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        if len(runs) == 1:
            paths = path_index[:1]  # the run's path, without a host-to-tensor copy
        else:
            paths = torch.tensor([p for p, _, _ in runs], dtype=torch.long, device=path_index.device)
        return paths, tuple(out)

    def displacements(
        self, path_index: Tensor, step_index: Tensor, points: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        w = self._node(self.weights, path_index, step_index)
        last, self._last = self._last, None
        if self.multiply_by_inputs:
            stacked = None
            if last is not None and (last[0] is path_index or torch.equal(last[0], path_index)):
                runs, diffs, stacked = last[1], last[2], last[3]
            else:
                runs = self._runs(path_index)
                diffs = None if runs is None else self._run_differences(path_index, runs)
            if stacked is not None:  # runs of one length: one product for all of them
                r, length = len(runs), runs[0][2] - runs[0][1]
                return tuple(
                    torch.mul(w.view(r, length, *([1] * (x.ndim - 1))).to(x.dtype), d.unsqueeze(1))
                    .view(path_index.shape[0], *x.shape[1:])
                    for x, d in zip(self.inputs, stacked)
                )
            if runs is not None and diffs is not None:
                out = []
                for x, diff in zip(self.inputs, diffs):
                    wv = w.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
                    disp = torch.empty((path_index.shape[0], *x.shape[1:]), dtype=torch.result_type(wv, diff[0]),
                                       device=x.device)
                    for (_, lo, hi), d in zip(runs, diff):
                        torch.mul(wv[lo:hi], d, out=disp[lo:hi])
                    out.append(disp)
                return tuple(out)
        ex = self.example_index(path_index)
        out = []
        for x, start in zip(self.inputs, self.start_points(path_index)):
            wv = w.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
            out.append(wv * (x[ex] - start) if self.multiply_by_inputs else wv.expand_as(start).clone())
        return tuple(out)
