"""pathattr.progress: True / False / "auto", tqdm or a plain text bar, and no cost when off."""

from __future__ import annotations

import builtins
import io
import sys
import time

import pytest

from pathattr import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_enabled_rules(monkeypatch):
    monkeypatch.delenv("PATHATTR_PROGRESS", raising=False)
    assert progress.is_enabled(True) and not progress.is_enabled(False) and not progress.is_enabled(None)
    assert not progress.is_enabled("auto", io.StringIO())  # not a terminal: off unless asked
    assert progress.is_enabled("auto", _Tty())
    monkeypatch.setenv("PATHATTR_PROGRESS", "0")
    assert not progress.is_enabled("auto", _Tty())
    monkeypatch.setenv("PATHATTR_PROGRESS", "1")
    assert progress.is_enabled("auto", io.StringIO())
    with pytest.raises(ValueError):
        progress.is_enabled("sometimes")


def test_off_costs_nothing(monkeypatch):
    monkeypatch.delenv("PATHATTR_PROGRESS", raising=False)
    bar = progress.progress_bar(total=10, enabled=False)
    assert bar is progress.NULL
    assert progress.progress_bar(total=10, enabled="auto", file=io.StringIO()) is progress.NULL
    items = [1, 2, 3]
    assert progress.track(items, enabled=False) is items
    t0 = time.perf_counter()
    with bar:
        for _ in range(100_000):
            bar.update(1)
    assert time.perf_counter() - t0 < 0.5


def test_tqdm_bar_writes_when_asked():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    with progress.progress_bar(total=4, desc="ig2", enabled=True, file=out, unit="step", leave=True) as bar:
        for _ in range(4):
            bar.update(1)
        bar.set_postfix_str("gap 0.01")
    text = out.getvalue()
    assert "ig2" in text and "4/4" in text
    out = io.StringIO()
    assert list(progress.track(range(3), desc="metric", enabled=True, file=out)) == [0, 1, 2]
    assert "metric" in out.getvalue()


def test_text_bar_without_tqdm(monkeypatch):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    monkeypatch.delitem(sys.modules, "tqdm.auto", raising=False)
    out = io.StringIO()
    with progress.progress_bar(total=2, desc="guided_ig", enabled=True, file=out) as bar:
        bar.update(1)
        bar.update(1)
    assert "guided_ig" in out.getvalue() and "2/2" in out.getvalue() and "100%" in out.getvalue()
    quiet = io.StringIO()
    with progress.progress_bar(total=2, desc="x", enabled=True, file=quiet, delay=60) as bar:
        bar.update(2)
    assert quiet.getvalue() == ""  # finished before the delay: nothing shown


def test_model_calls_counts_rows_and_removes_its_hook():
    import torch

    import pathattr

    model = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    out = io.StringIO()
    with progress.model_calls(model, desc="ig", enabled=True, file=out, delay=0) as bar:
        pathattr.IntegratedGradients(model).attribute(torch.randn(4, 3), target=0, n_steps=5,
                                                      internal_batch_size=8)
        rows = bar.n
    assert rows >= 4 * 5  # every path row went through the model
    assert "ig" in out.getvalue()
    assert not model._forward_hooks
    with progress.model_calls(model, enabled=False) as bar:
        assert bar is progress.NULL and not model._forward_hooks
    with pytest.raises(RuntimeError), progress.model_calls(model, enabled=True, file=io.StringIO()):
        raise RuntimeError("boom")
    assert not model._forward_hooks


def test_optional_dependencies_stay_lazy():
    """The core and these modules import with matplotlib, transformers and tqdm unavailable."""
    import subprocess

    code = (
        "import sys\n"
        "for name in ('matplotlib', 'transformers', 'tokenizers', 'tqdm'):\n"
        "    sys.modules[name] = None\n"
        "import pathattr, pathattr.layer, pathattr.nlp, pathattr.viz, pathattr.viz.text, pathattr.cli, "
        "pathattr.progress\n"
        "assert pathattr.progress.progress_bar(total=1, enabled=False) is pathattr.progress.NULL\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
