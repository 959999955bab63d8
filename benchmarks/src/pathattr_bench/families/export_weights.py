"""Maintenance entry point: retrain the default text, wafer and faces models (seed 0) and write their committed
weights (``python -m pathattr_bench.families.export_weights``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import _seeded_training as st
from . import faces, text, wafer


def export_defaults() -> None:
    """Retrain the default text, wafer and faces models (seed 0) and write their committed weights."""
    with tempfile.TemporaryDirectory() as tmp:
        for module, name in ((text, text._COMMITTED), (wafer, wafer._COMMITTED), (faces, faces._COMMITTED)):
            fam = module.load_family(quick=True, seed=0, cache_dir=tmp, retrain=True)
            path = st.export_committed(Path(fam.info["cache_file"]), name)
            print(f"{fam.name}: accuracy {fam.accuracy:.4f}, trained in {fam.info['train_seconds']:.1f} s -> {path} "
                  f"({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":  # pragma: no cover
    export_defaults()
