"""The ``pathattr`` command line (the library's own; the experiment harness is ``pathattr-bench``).

::

    pathattr --version
    pathattr methods            # the registered attribution methods
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .methods.registry import METHODS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pathattr", description="Path-based feature attribution for PyTorch.")
    p.add_argument("--version", action="version", version=f"pathattr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list the registered attribution methods")
    sub.add_parser("bench", help="moved: the experiment harness is the `pathattr-bench` command", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pathattr`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        print("pathattr: the experiment harness is its own command now: `pathattr-bench "
              + " ".join(argv[1:]) + "` (package `benchmarks/`, installed by `make test`).", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    if args.command == "methods":
        for name, entry in METHODS.items():
            print(f"{name:30s} {entry.cls.__name__:32s} {entry.paper}")
        return 0
    return 2  # pragma: no cover - argparse enforces the sub-commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
