"""The library's own ``pathattr`` command (the harness command ``pathattr-bench`` is tested in benchmarks/)."""

from __future__ import annotations

import pytest

from pathattr import __version__, cli
from pathattr.methods.registry import METHODS


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pathattr {__version__}"


def test_methods_lists_the_registry(capsys):
    assert cli.main(["methods"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(METHODS) >= 9
    assert any(line.startswith("ig2 ") and "Zhuo & Ge" in line for line in lines)


def test_bench_points_to_the_harness(capsys):
    assert cli.main(["bench", "run", "--quick"]) == 2
    assert "pathattr-bench run --quick" in capsys.readouterr().err


def test_registry_names_match_classes():
    for name, entry in METHODS.items():
        assert entry.cls.name == name
