"""Index files (CelebA's attribute list, an ImageNet label list) name files inside a data set folder; a crafted
index must not make a loader read anything outside that folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from pathattr.errors import InputValidationError


def member_path(root: str | Path, name: str, index_file: str | Path, argument: str = "data_path") -> Path:
    """``root / name`` for a file ``name`` listed in ``index_file``, refusing names that leave ``root``.

    ``name`` must be relative (no drive, no leading ``/`` or ``\\``), must not contain a ``..`` component, and
    the resolved path (symbolic links followed) must lie inside the resolved ``root``.

    Raises:
        InputValidationError: naming ``index_file`` and the offending entry (``argument`` is what the user passed).
    """
    base = Path(root)
    bad = (
        not name
        or "\x00" in name
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or bool(PureWindowsPath(name).drive)
        or name.startswith(("/", "\\"))
        or ".." in PurePosixPath(name.replace("\\", "/")).parts
    )
    if not bad:
        candidate = base / name
        try:
            candidate.resolve().relative_to(base.resolve())
        except (ValueError, OSError, RuntimeError):
            bad = True
        else:
            return candidate
    raise InputValidationError(
        f"{index_file}: entry {name!r} names a file outside the data set folder {base}; index files may only name "
        "files inside it (no absolute paths, no '..', no links that lead out).",
        argument,
    )


__all__ = ["member_path"]
