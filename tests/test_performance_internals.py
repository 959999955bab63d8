"""The speed-motivated internals give exactly the results of the straightforward formulations they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathattr.errors import NonFiniteError
from pathattr.integrators import gauss_legendre
from pathattr.paths import blur as blur_module
from pathattr.paths import guided as guided_module
from pathattr.paths.blur import BlurPath, blur_rows, blur_sigmas, blur_with_derivative, gaussian_blur_matrices
from pathattr.paths.guided import GuidedPath, _select_into, guided_ig_step


@pytest.mark.parametrize("m", [1, 2, 3, 7, 16, 50, 64, 101, 200])
def test_gauss_legendre_equals_numpy_leggauss(m):
    nodes, weights = gauss_legendre(m)
    ref_nodes, ref_weights = np.polynomial.legendre.leggauss(m)
    np.testing.assert_allclose(nodes, ref_nodes, rtol=0, atol=2e-16)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-10, atol=0)
    assert abs(weights.sum() - 2.0) < 1e-14
    assert not nodes.flags.writeable  # the cache hands out read-only arrays


@pytest.mark.parametrize("width", [257, 8000])  # below / above BIT_SELECT_MIN_ELEMENTS (3 rows)
def test_bit_select_matches_putmask_including_signed_zero_and_inf(width):
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        out = rng.standard_normal((3, width)).astype(dtype)
        out[0, :5] = [-0.0, 0.0, np.inf, -np.inf, 1e-45]
        value = rng.standard_normal((3, width)).astype(dtype)
        value[1, :3] = [-0.0, np.inf, -np.inf]
        mask = rng.random((3, width)) < 0.4
        ref = out.copy()
        np.putmask(ref, mask, value)
        _select_into(out, value, mask)
        assert np.array_equal(out.view(np.uint8), ref.view(np.uint8))  # same bits
        ref2 = out.copy()
        np.putmask(ref2, ~mask, np.inf)
        _select_into(out, np.inf, ~mask)
        assert np.array_equal(out.view(np.uint8), ref2.view(np.uint8))


@pytest.mark.parametrize("width", [300, 5000])  # NumPy masked kernels / bit selections
def test_workspace_reuse_gives_the_same_path_as_fresh_steps(width):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, width, dtype=torch.float64, generator=g)
    b = torch.rand(4, width, dtype=torch.float64, generator=g) * 0.2
    b[:, :10] = x[:, :10]
    grads = [torch.randint(-3, 4, (4, width), generator=g).float() for _ in range(15)]  # many exact ties
    path = GuidedPath(x, b, 15, 0.25, 0.05)
    point = b.clone()
    for step, grad in enumerate(grads):
        before = point.clone()
        path.advance(grad, None, check_finite=False)
        point, _ = guided_ig_step(point, x, b, grad, path.l1_total, step, 15, 0.25, 0.05, backend="numpy")
        assert torch.equal(path.point, point)
        torch_point, _ = guided_ig_step(before, x, b, grad, path.l1_total, step, 15, 0.25, 0.05, backend="torch")
        torch.testing.assert_close(torch_point, point, rtol=0, atol=1e-12)


@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fraction", [0.25, 0.1])
def test_numpy_steps_path_by_path_give_the_batched_points(monkeypatch, grad_dtype, fraction):
    # 5 paths of 6000 features (bit selections), one of them at its input already, a block of features with
    # x == b (marked at every step), integer gradients (many exact ties) and random ones, one path's gradient zero
    width, steps = 6000, 15
    g = torch.Generator().manual_seed(int(fraction * 100))
    x = torch.rand(5, width, dtype=torch.float64, generator=g)
    b = torch.rand(5, width, dtype=torch.float64, generator=g) * 0.2
    b[:, :40] = x[:, :40]
    b[3] = x[3]
    grads = [(torch.randint(-3, 4, (5, width), generator=g) if t % 2 else torch.randn(5, width, generator=g))
             .to(grad_dtype) for t in range(steps)]
    for grad in grads:
        grad[1] = 0.0
    paths = {}
    for name, min_features in (("batched", 1 << 62), ("pathwise", width)):
        monkeypatch.setattr(guided_module, "NUMPY_PATHWISE_MIN_FEATURES", min_features)
        path = GuidedPath(x, b, steps, fraction, 0.05)
        disps = [path.advance(grad, None, check_finite=False)[0] for grad in grads]
        paths[name] = (path, disps)
    (batched, d_batched), (pathwise, d_pathwise) = paths["batched"], paths["pathwise"]
    for a, c in zip(d_batched, d_pathwise):
        torch.testing.assert_close(c, a, rtol=0, atol=1e-15)
    torch.testing.assert_close(pathwise.point, batched.point, rtol=0, atol=1e-12)
    torch.testing.assert_close(pathwise.point, x, rtol=0, atol=1e-12)  # every path reaches its input
    assert pathwise.max_inner_iterations == batched.max_inner_iterations
    assert "pathwise" in pathwise._workspace and "pathwise" not in batched._workspace  # each took its way


@pytest.mark.parametrize(("width", "fraction", "max_dist", "dtype"),
                         [(64, 0.25, 0.02, torch.float32), (300, 0.1, 1.0, torch.float64),
                          (40, 0.0, 0.3, torch.float32), (33, 1.0, 0.0, torch.float64), (9, 0.5, 0.05, torch.float32)])
def test_single_small_path_steps_give_the_general_steps_points(monkeypatch, width, fraction, max_dist, dtype):
    # one path, integer gradients (many exact ties) and random ones, a block of features with x == b
    g = torch.Generator().manual_seed(width)
    x = torch.rand(1, width, dtype=torch.float64, generator=g)
    b = torch.rand(1, width, dtype=torch.float64, generator=g) * 0.3
    b[:, : width // 5] = x[:, : width // 5]
    calls = []
    real = guided_module._single_path_step
    monkeypatch.setattr(guided_module, "_single_path_step", lambda *a: calls.append(1) or real(*a))
    path = GuidedPath(x, b, 20, fraction, max_dist)
    l1 = (x - b).abs().sum(1)
    general = {be: b.clone() for be in ("numpy", "torch")}
    for step in range(20):
        grad = (torch.randint(-3, 4, (1, width), generator=g) if step % 2 else torch.randn(1, width, generator=g))
        before = path.point.clone()
        (disp,) = path.advance(grad.to(dtype), None, check_finite=False)
        pure, _ = guided_ig_step(before, x, b, grad.to(dtype), l1, step, 20, fraction, max_dist)
        for be, point in general.items():
            general[be], _ = guided_ig_step(point, x, b, grad.to(dtype), l1, step, 20, fraction, max_dist, backend=be)
            torch.testing.assert_close(path.point, general[be], rtol=0, atol=1e-12)
        torch.testing.assert_close(pure, path.point, rtol=0, atol=1e-12)
        torch.testing.assert_close(disp, path.point - before, rtol=0, atol=1e-15)
    assert len(calls) == 40  # the path's steps and guided_ig_step's single-path case took it
    torch.testing.assert_close(path.point, x, rtol=0, atol=1e-12)
    with pytest.raises(NonFiniteError):
        GuidedPath(x, b, 20, fraction, max_dist).advance(torch.full((1, width), float("nan")), None)


def test_cached_blur_node_matrices_equal_per_chunk_construction(monkeypatch):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 20, 17, generator=g)
    sigmas = blur_sigmas(9.0, 7, sqrt=True)
    path = BlurPath((x,), sigmas, 0.01)
    p = torch.tensor([0, 0, 1, 1, 0])
    j = torch.tensor([0, 3, 6, 2, 5])
    points = path.points(p, j)
    disp = path.displacements(p, j, points)
    sig = torch.tensor(sigmas, dtype=torch.float64)[j]
    ref_points, ref_diff = blur_with_derivative(x[p], sig, 0.01)
    scale = -(torch.tensor([sigmas[i + 1] - sigmas[i] for i in j.tolist()], dtype=torch.float64) / 0.01)
    assert torch.equal(points[0], ref_points)
    torch.testing.assert_close(disp[0], (ref_diff * 0.01) * scale.float().view(-1, 1, 1, 1), rtol=1e-5, atol=1e-7)
    assert torch.equal(path.start_points(p)[0], blur_rows(x[p], torch.full((5,), sigmas[-1], dtype=torch.float64)))
    now = gaussian_blur_matrices(17, torch.tensor(sigmas, dtype=torch.float64))
    cpu = torch.device("cpu")
    cached = blur_module._cached_node_matrices(17, tuple(sigmas), 0.01, "zeros", 4.0, torch.float32, cpu)
    assert torch.equal(cached[0], now.float())
    monkeypatch.setattr(blur_module, "NODE_MATRIX_CACHE_BYTES", 0)  # too big to keep: still correct, not cached
    blur_module._node_matrix_cache.clear()
    again = BlurPath((x,), sigmas, 0.01).points(p, j)
    assert torch.equal(again[0], points[0]) and not blur_module._node_matrix_cache
