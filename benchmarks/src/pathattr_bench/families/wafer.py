"""Wafer-map failure patterns: the IG2 paper's WM-811K family.

Default (offline): a seeded generator of realistic wafer maps for the eight WM-811K defect patterns (Center,
Donut, Edge-Loc, Edge-Ring, Loc, Near-full, Random, Scratch) plus normal wafers (``none``), with a ground-truth
mask of the defect region of every map. Maps are 3-state die grids (0 = off-wafer, 1 = pass, 2 = fail) on a
disc, with random background failures; the model input is their one-hot encoding ``[N, 3, H, W]`` in [0, 1]
(channel k = state k), as in the IG2 reference notebook (there channel-last). A small CNN (three conv blocks,
a hidden fully-connected layer, a linear classifier; the reference uses 32/64/128 channels and a 1250-unit
hidden layer, scaled down here for CPU) is trained deterministically and cached; weights trained with the
default settings ship with the package.

User data: :func:`read_wm811k` reads the public WM-811K pickle ``LSWMD.pkl`` (a pandas DataFrame written by an
old pandas under Python 2, with columns ``waferMap``, ``failureType``, ``trianTestLabel``) through a restricted
unpickler that admits only NumPy / pandas data classes (a crafted pickle cannot run code), converts it once to a
pickle-free ``.npz`` (:func:`convert_wm811k`) and reads that on later runs; pandas is needed only for the
conversion and imported lazily.

IG2 (Zhuo & Ge, TPAMI 2024, arXiv 2406.10852; reference notebook ``example_wafer``): references are normal
wafers (class ``none``, :attr:`Family.normal_class`), the representation is the hidden layer's output
(fc1 + ReLU, the reference's ``layer4``) which is exactly the input of the final linear layer ``model.fc``,
bounds [0, 1], K = 1001 steps of η = 0.05 in the reference.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import hashlib
import io
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pathattr.errors import InputValidationError

from . import _seeded_training as st
from ._fit import default_cache_dir
from .base import Family

#: WM-811K class names in the order used by the IG2 reference (fault classes 0..7, ``none`` = 8)
CLASSES: tuple[str, ...] = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none")
NONE_CLASS = CLASSES.index("none")
GRID = 32
MIN_ACCURACY = 0.90
OFF, PASS, FAIL = 0, 1, 2

#: default synthetic data set: maps per class in the training / held-out split
TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 60
_EPOCHS = 10
_COMMITTED = "wafer_synthetic_cnn.pt"


# ----------------------------------------------------------------------------------------------- generator
def _coords(grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    c = (grid - 1) / 2.0
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float64)
    radius = grid / 2.0 - 0.5
    disc = np.hypot(yy - c, xx - c) <= radius + 1e-9
    return yy - c, xx - c, disc, radius


def _blob(y: np.ndarray, x: np.ndarray, cy: float, cx: float, r: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular disc of mean radius ``r`` centred at (cy, cx): radius wobbles with the angle."""
    ang = np.arctan2(y - cy, x - cx)
    k, phase, amp = int(rng.integers(2, 5)), rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.2)
    return np.hypot(y - cy, x - cx) <= r * (1.0 + amp * np.sin(k * ang + phase))


def _pattern_region(kind: str, y: np.ndarray, x: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean defect region of one pattern (before intersecting with the wafer disc)."""
    rho = np.hypot(y, x) / radius
    theta = np.arctan2(y, x)
    if kind == "none":
        return np.zeros_like(rho, dtype=bool)
    if kind == "Center":
        cy, cx = rng.normal(0, 0.05 * radius, 2)
        return _blob(y, x, cy, cx, rng.uniform(0.2, 0.4) * radius, rng)
    if kind == "Donut":
        cy, cx = rng.normal(0, 0.04 * radius, 2)
        inner = rng.uniform(0.25, 0.45) * radius
        d = np.hypot(y - cy, x - cx)
        return (d >= inner) & (d <= inner + rng.uniform(0.15, 0.3) * radius)
    if kind == "Edge-Loc":
        t0, r0 = rng.uniform(-np.pi, np.pi), rng.uniform(0.88, 1.0) * radius
        return _blob(y, x, r0 * np.sin(t0), r0 * np.cos(t0), rng.uniform(0.18, 0.32) * radius, rng)
    if kind == "Edge-Ring":
        width = rng.uniform(0.08, 0.16)
        span, start = rng.uniform(1.4 * np.pi, 2 * np.pi), rng.uniform(-np.pi, np.pi)
        in_arc = np.mod(theta - start, 2 * np.pi) <= span
        return (rho >= 1.0 - width) & in_arc
    if kind == "Loc":
        t0, r0 = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 0.65) * radius
        return _blob(y, x, r0 * np.sin(t0), r0 * np.cos(t0), rng.uniform(0.1, 0.2) * radius, rng)
    if kind in ("Near-full", "Random"):
        return rho <= 1.0 + 1e-9
    if kind == "Scratch":
        region = np.zeros_like(rho, dtype=bool)
        grid = rho.shape[0]
        c = (grid - 1) / 2.0
        r0, t0 = rng.uniform(0, 0.7) * radius, rng.uniform(-np.pi, np.pi)
        py, px = r0 * np.sin(t0), r0 * np.cos(t0)
        heading, length = rng.uniform(-np.pi, np.pi), rng.uniform(0.6, 1.3) * radius
        bend = rng.normal(0, 0.03)
        for _ in range(int(length / 0.5)):
            iy, ix = int(round(py + c)), int(round(px + c))
            if 0 <= iy < grid and 0 <= ix < grid:
                region[iy, ix] = True
            heading += bend
            py, px = py + 0.5 * np.sin(heading), px + 0.5 * np.cos(heading)
        return region
    raise InputValidationError(f"unknown wafer pattern {kind!r}; choose one of {list(CLASSES)}.", "kind")


_DENSITY = {  # fail probability inside the defect region
    "Center": (0.7, 0.95),
    "Donut": (0.7, 0.95),
    "Edge-Loc": (0.7, 0.95),
    "Edge-Ring": (0.75, 0.98),
    "Loc": (0.75, 0.98),
    "Near-full": (0.8, 0.97),
    "Random": (0.15, 0.35),
    "Scratch": (0.8, 1.0),
    "none": (0.0, 0.0),
}


def generate_wafer_maps(
    labels: np.ndarray | list[int], grid: int = GRID, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Generate synthetic WM-811K-like wafer maps, one per requested class.

    Every map is a disc of dies on a ``grid x grid`` square with a random background failure rate in
    [0, 5 %] (normal wafers have only this); a defect pattern fails a fraction of its region's dies (70-98 %,
    Random 15-35 %). Patterns: Center (irregular blob at the centre, radius 0.2-0.4 R), Donut (annulus, inner
    radius 0.25-0.45 R), Edge-Loc (blob centred on the rim), Edge-Ring (ring of width 0.08-0.16 R covering
    70-100 % of the rim), Loc (small blob at 0.3-0.65 R), Near-full (whole wafer), Random (whole wafer, lower
    density), Scratch (a thin, slightly curved line of length 0.6-1.3 R).

    Args:
        labels: class indices into :data:`CLASSES`, shape ``[N]``.
        grid: side of the square die grid.
        seed: seed of the ``numpy.random.Generator`` used for everything.

    Returns:
        ``(maps, masks)``: ``maps [N, grid, grid]`` uint8 with states 0 off-wafer / 1 pass / 2 fail, and
        ``masks [N, grid, grid]`` bool, the defect region intersected with the wafer (all False for ``none``;
        the whole wafer for Near-full and Random).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES))):
        raise InputValidationError(f"`labels` must be a 1-D array of class indices in [0, {len(CLASSES)}).", "labels")
    if grid < 8:
        raise InputValidationError("`grid` must be at least 8.", "grid")
    rng = np.random.default_rng(seed)
    y, x, disc, radius = _coords(grid)
    maps = np.zeros((len(labels), grid, grid), dtype=np.uint8)
    masks = np.zeros((len(labels), grid, grid), dtype=bool)
    for i, label in enumerate(labels):
        kind = CLASSES[label]
        region = _pattern_region(kind, y, x, radius, rng) & disc
        lo, hi = _DENSITY[kind]
        background = rng.random(disc.shape) < rng.uniform(0.0, 0.05)
        fails = background | (region & (rng.random(disc.shape) < rng.uniform(lo, hi)))
        maps[i] = np.where(disc, np.where(fails, FAIL, PASS), OFF)
        masks[i] = region
    return maps, masks


def one_hot(maps: np.ndarray | Tensor) -> Tensor:
    """3-state maps ``[N, H, W]`` (0 off / 1 pass / 2 fail) -> one-hot float32 ``[N, 3, H, W]`` in {0, 1}."""
    m = torch.as_tensor(np.asarray(maps), dtype=torch.long)
    if m.ndim != 3 or (m.numel() and (int(m.min()) < 0 or int(m.max()) > 2)):
        raise InputValidationError("`maps` must be [N, H, W] with states 0 (off), 1 (pass), 2 (fail).", "maps")
    return torch.nn.functional.one_hot(m, 3).permute(0, 3, 1, 2).float().contiguous()


# -------------------------------------------------------------------------------------------------- model
class WaferCNN(nn.Module):
    """Three conv blocks (conv 3x3 + ReLU + 2x2 max-pool) -> hidden fc + ReLU -> linear classifier.

    Input ``[N, 3, H, W]`` one-hot wafer maps (H, W divisible by 8), output ``[N, n_classes]`` logits. The
    reference (IG2 ``example_wafer``) uses 32/64/128 channels and 1250 hidden units; the defaults here
    (16/32/64, 128) train in seconds on a CPU. ``fc``'s input is the hidden layer's output: IG2's φ.
    """

    def __init__(self, grid: int = GRID, channels: tuple[int, int, int] = (16, 32, 64), hidden: int = 128,
                 n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c3 * (grid // 8) ** 2, hidden), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.hidden(self.features(x))))


# --------------------------------------------------------------------------------------------- WM-811K
class UnsafePickleError(InputValidationError):
    """A pickle asked for something other than the NumPy / pandas data classes a WM-811K table is made of."""


#: what a WM-811K pickle may name (after the legacy module remapping): NumPy arrays and dtypes, a few builtins,
#: and pandas' data classes. Anything else (``os.system``, ``builtins.eval``, ``pandas.eval``, ...) is refused
#: before it is imported, so a crafted file cannot run code.
_SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "builtins": frozenset({"slice", "object", "complex", "set", "frozenset", "bytearray", "bytes", "list", "dict",
                           "tuple", "range", "str", "int", "float", "bool"}),
    "copyreg": frozenset({"_reconstructor"}),
    "_codecs": frozenset({"encode"}),
}
_PANDAS_NAMES = frozenset({
    "DataFrame", "Series", "Index", "RangeIndex", "MultiIndex", "Int64Index", "UInt64Index", "Float64Index",
    "NumericIndex", "CategoricalIndex", "Categorical", "CategoricalDtype", "StringDtype", "StringArray",
    "NumpyExtensionArray", "PandasArray", "BlockManager", "SingleBlockManager", "Block", "ObjectBlock", "IntBlock",
    "FloatBlock", "BoolBlock", "NumericBlock", "NumpyBlock", "ExtensionBlock", "CategoricalBlock", "BlockPlacement",
    "_new_Index", "_unpickle_block", "new_block", "__pyx_unpickle_NDArrayBacked", "FrozenList",
})


def _safe_global(module: str, name: str) -> bool:
    if name in _SAFE_GLOBALS.get(module, ()):
        return True
    return (module == "pandas" or module.startswith("pandas.")) and name in _PANDAS_NAMES


class _LegacyPandasUnpickler(pickle.Unpickler):
    """Restricted unpickler for the WM-811K table: admits exactly the NumPy / pandas data classes of
    :data:`_SAFE_GLOBALS` (and refuses everything else with :class:`UnsafePickleError` naming the file), and
    remaps modules of pickles written by pandas < 0.20 (``pandas.indexes`` moved to ``pandas.core``)."""

    _MOVED = {"pandas.indexes": "pandas.core.indexes", "pandas.core.index": "pandas.core.indexes.base"}

    def __init__(self, file: Any, *, source: str = "<pickle>", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        for old, new in self._MOVED.items():
            if module == old or module.startswith(old + "."):
                module = new + module[len(old):]
                break
        module, name = _pandas_moved(module, name)
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names, as the base class maps them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if not _safe_global(module, name):
            raise UnsafePickleError(
                f"{self.source}: refusing to load `{module}.{name}` from the pickle: a WM-811K table holds only "
                "NumPy arrays and pandas data classes, and loading anything else could run code from the file. "
                "Use the original LSWMD.pkl, or a converted LSWMD.npz (pathattr_bench.families.wafer.convert_wm811k).",
                "data_path",
            )
        if module.startswith("pandas"):
            try:
                import pandas  # noqa: F401
            except ImportError as err:
                raise ImportError(
                    f"{self.source} is a pandas DataFrame: reading it needs pandas (pip install pandas) once, to "
                    "convert it to LSWMD.npz (convert_wm811k); the synthetic wafer family (data_path=None) does not."
                ) from err
        return super().find_class(module, name)


def _pandas_moved(module: str, name: str) -> tuple[str, str]:
    """pandas' own table of classes that moved between versions (old pickles), if pandas is installed."""
    try:
        from pandas.compat.pickle_compat import _class_locations_map
    except Exception:  # pandas absent or the table renamed: only the explicit remapping above applies
        return module, name
    return _class_locations_map.get((module, name), (module, name))


def _read_pickle_table(path: Path) -> Any:
    """Load the WM-811K pickle with the restricted unpickler (no ``pd.read_pickle``: it would run any code the
    file names). Pickles of old pandas that the plain protocol cannot rebuild go through pandas' compatibility
    unpickler, restricted the same way."""
    with open(path, "rb") as fh:
        try:
            return _LegacyPandasUnpickler(fh, source=str(path), encoding="latin1").load()
        except (UnsafePickleError, ImportError):
            raise
        except (AttributeError, TypeError, ValueError, UnicodeDecodeError, pickle.UnpicklingError, EOFError) as err:
            first = err
    try:
        from pandas.compat import pickle_compat
    except ImportError:
        raise InputValidationError(f"{path}: not a readable WM-811K pickle ({first}).", "data_path") from first

    class _Compat(pickle_compat.Unpickler):  # type: ignore[name-defined, misc]
        def find_class(self, module: str, name: str) -> Any:
            _LegacyPandasUnpickler.find_class(guard, module, name)  # raises for anything unsafe
            return super().find_class(module, name)

    guard = _LegacyPandasUnpickler(io.BytesIO(b""), source=str(path))
    with open(path, "rb") as fh:
        try:
            return _Compat(fh, encoding="latin1").load()
        except (UnsafePickleError, ImportError):
            raise
        except Exception as err:
            raise InputValidationError(f"{path}: not a readable WM-811K pickle ({err}).", "data_path") from err


# ------------------------------------------------------------------------------------- safe .npz format
_NPZ_KEYS = ("wafer_map_data", "wafer_map_shapes", "failure_type", "split")


def _text_column(cells: Any) -> np.ndarray:
    return np.asarray([_cell_text(c) or "" for c in cells], dtype=str)


def convert_wm811k(source: str | Path, destination: str | Path) -> Path:
    """Convert the WM-811K pickle ``LSWMD.pkl`` (read once with the restricted unpickler) to a safe ``.npz``
    without pickles: the die maps concatenated (``wafer_map_data`` uint8, ``wafer_map_shapes [N, 2]``) and the
    ``failureType`` / ``trianTestLabel`` cells as strings (empty = unlabelled). Later runs read it with
    ``allow_pickle=False`` (:func:`read_wm811k` picks it up). Written atomically; returns ``destination``."""
    src, dst = Path(source), Path(destination)
    table = _read_pickle_table(src)
    _check_columns(table, src)
    maps = [np.asarray(m) for m in table["waferMap"]]
    for i, m in enumerate(maps):
        if m.ndim != 2 or m.size == 0 or not np.issubdtype(m.dtype, np.number):
            raise InputValidationError(f"{src}: row {i}: a wafer map must be a non-empty 2-D numeric array.",
                                       "data_path")
        if m.min() < 0 or m.max() > 255:
            raise InputValidationError(f"{src}: row {i}: die states must be small non-negative integers.",
                                       "data_path")
    data = np.concatenate([m.astype(np.uint8).ravel() for m in maps]) if maps else np.zeros(0, np.uint8)
    shapes = np.asarray([m.shape for m in maps], dtype=np.int64).reshape(-1, 2)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.npz")
    np.savez(tmp, wafer_map_data=data, wafer_map_shapes=shapes, failure_type=_text_column(table["failureType"]),
             split=_text_column(table["trianTestLabel"]))
    tmp.replace(dst)
    return dst


def _read_npz(path: Path) -> dict[str, Any]:
    """The columns of a converted WM-811K ``.npz`` (read with ``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise InputValidationError(f"{path} lacks the array(s) {missing} of a converted WM-811K file.",
                                           "data_path")
            data, shapes = z["wafer_map_data"], z["wafer_map_shapes"]
            types_, splits = z["failure_type"], z["split"]
    except ValueError as err:  # object arrays would need pickles: refused
        raise InputValidationError(f"{path}: not a converted WM-811K .npz without pickles ({err}).",
                                   "data_path") from err
    if shapes.ndim != 2 or shapes.shape[1] != 2 or (shapes < 0).any() or int(shapes.prod(1).sum()) != data.size \
            or not len(shapes) == len(types_) == len(splits):
        raise InputValidationError(f"{path}: inconsistent WM-811K arrays (shapes, data and labels differ).",
                                   "data_path")
    ends = np.cumsum(shapes.prod(1))
    maps = [data[e - h * w:e].reshape(h, w) for e, (h, w) in zip(ends, shapes)]
    return {"waferMap": maps, "failureType": types_.tolist(), "trianTestLabel": splits.tolist()}


def _check_columns(table: Any, path: Path) -> None:
    try:
        missing = [c for c in ("waferMap", "failureType", "trianTestLabel") if c not in table]
    except TypeError:
        missing = ["waferMap", "failureType", "trianTestLabel"]
    if missing:
        raise InputValidationError(f"{path} lacks the WM-811K column(s) {missing}.", "data_path")


def converted_path(source: str | Path, cache_dir: str | None = None) -> Path:
    """Where :func:`read_wm811k` keeps the ``.npz`` converted from ``source`` (keyed by its path, size and
    modification time, in the cache folder)."""
    p = Path(source).resolve()
    st_ = p.stat()
    key = hashlib.sha256(f"{p}|{st_.st_size}|{st_.st_mtime_ns}".encode()).hexdigest()[:16]
    return default_cache_dir(cache_dir) / f"wm811k_{key}.npz"


def _cell_text(value: Any) -> str | None:
    """WM-811K label cells are nested arrays like ``[['Center']]`` or empty ``[]`` (unlabelled)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    arr = np.asarray(value, dtype=object).ravel()
    return str(arr[0]).strip() if arr.size else None


def resize_nearest(wafer_map: np.ndarray, grid: int) -> np.ndarray:
    """Nearest-neighbour resize of a ``[h, w]`` die map to ``[grid, grid]`` (keeps the discrete states)."""
    m = np.asarray(wafer_map)
    if m.ndim != 2 or m.size == 0:
        raise InputValidationError(f"a wafer map must be a non-empty 2-D array, got shape {m.shape}.", "wafer_map")
    rows = np.minimum((np.arange(grid) + 0.5) * m.shape[0] / grid, m.shape[0] - 1).astype(np.int64)
    cols = np.minimum((np.arange(grid) + 0.5) * m.shape[1] / grid, m.shape[1] - 1).astype(np.int64)
    return m[np.ix_(rows, cols)]


def wm811k_from_columns(
    wafer_maps: Any, failure_types: Any, splits: Any, grid: int = GRID,
    max_per_class: dict[str, int | None] | None = None, seed: int = 0,
) -> dict[str, np.ndarray]:
    """Turn WM-811K columns into fixed-size labelled arrays (unlabelled rows are dropped).

    Args:
        wafer_maps: sequence of ``[h, w]`` integer die maps (0 off-wafer, 1 pass, 2 fail).
        failure_types: sequence of label cells (``[['Center']]``, ``'none'``, or empty for unlabelled).
        splits: sequence of split cells (``[['Training']]`` / ``[['Test']]``; empty -> dropped).
        grid: output side; maps are resized with :func:`resize_nearest`.
        max_per_class: ``{"Training": cap, "Test": cap}``: at most ``cap`` seeded picks per class and split.
        seed: seed of the subsampling.

    Returns:
        ``{"train_maps" [N, grid, grid] uint8, "train_labels" [N], "test_maps", "test_labels"}``.
    """
    max_per_class = max_per_class or {}
    index = {name.lower(): i for i, name in enumerate(CLASSES)}
    rows: dict[str, list[tuple[int, int]]] = {"Training": [], "Test": []}
    for i, (ft, sp) in enumerate(zip(failure_types, splits, strict=True)):
        label, split = _cell_text(ft), _cell_text(sp)
        if label is None or split is None:
            continue
        if label.lower() not in index:
            raise InputValidationError(f"row {i}: unknown failureType {label!r}; expected one of {CLASSES}.",
                                       "failureType")
        split = "Training" if split.lower().startswith("train") else "Test"
        rows[split].append((i, index[label.lower()]))
    out: dict[str, np.ndarray] = {}
    maps_seq = list(wafer_maps)
    for split, prefix in (("Training", "train"), ("Test", "test")):
        idx = np.array([r[0] for r in rows[split]], dtype=np.int64)
        lab = np.array([r[1] for r in rows[split]], dtype=np.int64)
        cap = max_per_class.get(split)
        if cap is not None and len(idx):
            keep = st.per_class_pick(lab, cap, seed)
            idx, lab = idx[keep], lab[keep]
        maps = np.stack([resize_nearest(np.asarray(maps_seq[j]), grid) for j in idx]) if len(idx) else \
            np.zeros((0, grid, grid), np.uint8)
        if maps.size and (maps.min() < 0 or maps.max() > 2):
            raise InputValidationError("wafer maps must hold states 0 (off), 1 (pass), 2 (fail).", "waferMap")
        out[f"{prefix}_maps"], out[f"{prefix}_labels"] = maps.astype(np.uint8), lab
    return out


def read_wm811k(path: str | Path, grid: int = GRID, max_per_class: dict[str, int | None] | None = None,
                seed: int = 0, cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """Read WM-811K (``path`` = ``LSWMD.pkl``, a converted ``.npz``, or their folder); see
    :func:`wm811k_from_columns`.

    A ``.npz`` (or ``LSWMD.npz`` in the folder) is read with ``allow_pickle=False``. The pickle is read once with
    a restricted unpickler that admits only NumPy / pandas data classes (a crafted file cannot run code) and
    converted to a ``.npz`` in the cache folder (:func:`converted_path`); later runs read that.

    Raises:
        FileNotFoundError: naming ``LSWMD.pkl`` when it is absent (nothing is downloaded).
        UnsafePickleError: (an ``InputValidationError`` naming the file) if the pickle names anything else.
        ImportError: if the pickle is a pandas DataFrame and pandas is not installed.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "LSWMD.npz" if (p / "LSWMD.npz").is_file() else p / "LSWMD.pkl"
    if not p.is_file():
        raise FileNotFoundError(f"WM-811K pickle not found: {p} (expected the public LSWMD.pkl; pass its path or "
                                "folder as data_path).")
    if p.suffix == ".npz":
        table = _read_npz(p)
    else:
        npz = None
        with contextlib.suppress(OSError):
            npz = converted_path(p, cache_dir)
        if npz is not None and npz.is_file():
            table = _read_npz(npz)
        else:
            table = _read_pickle_table(p)
            _check_columns(table, p)
            if npz is not None:
                with contextlib.suppress(OSError):  # a read-only cache only costs the conversion next time
                    convert_wm811k(p, npz)
    _check_columns(table, p)
    return wm811k_from_columns(table["waferMap"], table["failureType"], table["trianTestLabel"], grid,
                               max_per_class, seed)


# ------------------------------------------------------------------------------------------------ family
def _synthetic_split(seed: int, grid: int) -> dict[str, np.ndarray]:
    train_labels = np.repeat(np.arange(len(CLASSES)), TRAIN_PER_CLASS)
    test_labels = np.repeat(np.arange(len(CLASSES)), TEST_PER_CLASS)
    train_maps, train_masks = generate_wafer_maps(train_labels, grid, seed=seed)
    test_maps, test_masks = generate_wafer_maps(test_labels, grid, seed=seed + 1_000_003)
    return {"train_maps": train_maps, "train_labels": train_labels, "train_masks": train_masks,
            "test_maps": test_maps, "test_labels": test_labels, "test_masks": test_masks}


def load_family(quick: bool = True, seed: int = 0, data_path: str | None = None, cache_dir: str | None = None,
                *, retrain: bool = False) -> Family:
    """The wafer-map family: data, a trained :class:`WaferCNN`, explicands, normal-wafer references.

    Args:
        quick: 8 explicands (one held-out map per fault class) and a 42-map reference pool (4 maps per fault
            class + the first 10 normal training wafers) instead of 80 explicands and 20 per fault class + 20
            normal wafers.
        seed: seeds data generation (synthetic), subsampling, initialisation and training.
        data_path: ``LSWMD.pkl`` or its folder to use the real WM-811K (labelled rows, up to 300/60 maps per class
            and split in quick mode, 2000/500 otherwise); None = the synthetic generator.
        cache_dir: where trained weights are cached (default ``$PATHATTR_CACHE`` or ``~/.cache/pathattr``).
        retrain: ignore committed/cached weights.

    Returns:
        :class:`Family` with ``inputs [N, 3, 32, 32]`` one-hot maps, ``ground_truth [N, 32, 32]`` defect masks
        (synthetic only; None for WM-811K), ``normal_class`` = ``none``; raises
        :class:`~pathattr_bench.families.base.AccuracyError` below 90 % held-out accuracy.
    """
    t0 = time.perf_counter()
    grid = GRID
    if data_path is None:
        data = _synthetic_split(seed, grid)
        source = (f"synthetic WM-811K-like wafer maps (seeded generator, seed {seed}; {TRAIN_PER_CLASS} train + "
                  f"{TEST_PER_CLASS} held-out maps per class)")
    else:
        caps = {"Training": 300, "Test": 60} if quick else {"Training": 2000, "Test": 500}
        data = read_wm811k(data_path, grid, caps, seed, cache_dir)
        if len(data["train_maps"]) == 0 or len(data["test_maps"]) == 0:
            raise InputValidationError(f"{data_path}: no labelled Training/Test wafer maps found.", "data_path")
        source = f"WM-811K {data_path} (labelled rows; per-class caps {caps})"
    x_train, y_train = one_hot(data["train_maps"]), torch.as_tensor(data["train_labels"])
    x_test, y_test = one_hot(data["test_maps"]), torch.as_tensor(data["test_labels"])
    recipe = {"epochs": _EPOCHS, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "arch": "16/32/64-128"}
    key = st.digest("wafer", data["train_maps"], data["train_labels"], grid, recipe, seed)

    def train(model: nn.Module) -> float:
        return st.train_classifier(model, x_train, y_train, epochs=_EPOCHS, seed=seed, batch_size=64, lr=2e-3,
                                   weight_decay=1e-4)

    model, how = st.obtain_model(lambda: WaferCNN(grid), train, key=key, seed=seed,
                                 cache_file=default_cache_dir(cache_dir) / f"wafer_cnn_{key}.pt",
                                 committed=_COMMITTED if data_path is None else None, retrain=retrain)
    acc = st.accuracy(model, x_test, y_test)
    per = 1 if quick else 10
    fault = list(range(len(CLASSES) - 1))
    explicand = st.per_class_pick(data["test_labels"], per, seed + 1, classes=fault)
    # reference pool: a few maps of every class (other-class recipes, EG baselines) plus the first n normal
    # wafers of the training split (the reference recipe: "the first 10 `none` samples")
    n_normal = 10 if quick else 20
    normal = np.flatnonzero(data["train_labels"] == NONE_CLASS)[:n_normal]
    others = st.per_class_pick(data["train_labels"], 4 if quick else 20, seed + 2, classes=fault)
    pool = np.concatenate([others, normal])
    masks = data.get("test_masks")
    fam = Family(
        name="wafer",
        model_name="wafer-cnn-16/32/64-fc128",
        model=model,
        inputs=x_test[explicand],
        labels=y_test[explicand],
        reference_pool=x_train[pool],
        reference_labels=y_train[pool],
        representation=model.fc,
        accuracy=acc,
        min_accuracy=MIN_ACCURACY,
        n_classes=len(CLASSES),
        bounds=(0.0, 1.0),
        ground_truth=torch.as_tensor(masks[explicand]) if masks is not None else None,
        spatial=True,
        baseline="zeros",
        normal_class=NONE_CLASS,
        ig2={
            "n_steps": 201 if quick else 1001,
            "step_size": 0.25 if quick else 0.05,
            "n_references": 10,
            "recipe": "class",
            "reference_class": NONE_CLASS,
            "representation_side": "input",
            "representation_note": "input of model.fc = output of the hidden fc+ReLU layer (the reference's "
                                   "layer4 output); equivalently representation_side='output' of model.hidden",
            "paper": {"n_steps": 1001, "step_size": 0.05, "bounds": [0, 1], "references": "first 10 `none` maps"},
            "quick_note": "quick keeps the reference path length K*eta ~= 50 with 5x fewer, 5x longer steps "
                          "(8 explicands x 10 normal references: 6 s; 79/80 GradCFs flip the class, mean "
                          "|relative completeness gap| 0.08)",
        },
        info={
            "dataset": source,
            "classes": list(CLASSES),
            "grid": grid,
            "encoding": "one-hot [N, 3, H, W]: channel 0 off-wafer, 1 pass, 2 fail",
            "n_train": int(len(y_train)),
            "n_test": int(len(y_test)),
            "n_explicands": int(len(explicand)),
            "explicand_indices_in_test": explicand.tolist(),
            "ground_truth": ("defect region of each map (Near-full, Random: whole wafer; none: empty)"
                             if masks is not None else "none (WM-811K has no defect masks)"),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "seed": seed,
            "load_seconds": time.perf_counter() - t0,
            **how,
        },
    )
    fam.check_accuracy()
    return fam
