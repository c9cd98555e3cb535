"""An exported diffusers folder: `vidrefine.io.folders`' rule (built whole or not at all, a
marker listing every file vidrefine wrote, replaced only when it holds nothing else) for the kind
"diffusers export".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from vidrefine.io.folders import FolderKind, atomic_folder, check_output_folder

EXPORT = FolderKind("diffusers export", "a folder vidrefine exported", "the export")


def check_export_folder(folder: str | Path, *, overwrite: bool) -> Path:
    """Refuse a folder that cannot be written or replaced; returns it, absolute."""
    return check_output_folder(folder, EXPORT, overwrite=overwrite)


@contextlib.contextmanager
def exported_folder(folder: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; it becomes `folder` only on success."""
    with atomic_folder(folder, overwrite=overwrite, kind=EXPORT) as temp:
        yield temp


__all__ = ["EXPORT", "check_export_folder", "exported_folder"]
