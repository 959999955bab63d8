"""The wheel is the library: no harness module, weight or data file under src/pathattr, and no import of the
harness from the library."""

from __future__ import annotations

import ast
from pathlib import Path

import pathattr

ROOT = Path(pathattr.__file__).resolve().parent


def test_library_tree_holds_only_code():
    files = [p for p in ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files, ROOT
    assert {p.suffix for p in files} <= {".py", ".typed"}, sorted({p.suffix for p in files})
    parts = {part for p in files for part in p.relative_to(ROOT).parts}
    assert not parts & {"bench", "benchmarks", "data", "families"}


def test_library_never_imports_the_harness_at_module_level():
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: the CLI may load the bundled model lazily if installed
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "pathattr_bench" for n in names), path
