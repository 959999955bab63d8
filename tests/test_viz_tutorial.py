"""The tutorial docs/tutorials/own_model.py runs as published (own model, IG / Guided IG / IG2, metrics, picture)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "own_model.py"


def test_own_model_tutorial_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), str(tmp_path)])
    ns = runpy.run_path(str(SCRIPT), run_name="__main__")
    text = capsys.readouterr().out
    assert ns["accuracy"] > 0.8
    assert float(ns["ig"].relative_delta.max()) < 1e-3  # IG with 64 Gauss-Legendre nodes on a smooth CNN
    assert float(ns["ig2"].relative_delta.max()) < 0.1  # adaptive segments bound IG2's gap
    assert "deletion AUC" in text and "insertion AUC" in text
    assert (tmp_path / "own_model.png").stat().st_size > 10000
