"""Output folders (the report of `compare` and `upscale --report`), built whole or not at all.

A folder is built under a temporary name beside its final place and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vidrefine.errors import OutputExists, OutputNotWritable
from vidrefine.io.atomic import REPLACE_HINT, TEMP_MARKER, user_mode


def check_report_folder(folder: str | Path, *, overwrite: bool) -> Path:
    """Refuse a report folder that exists (without `overwrite`) or whose parent is missing."""
    final = Path(folder)
    if final.exists() and not final.is_dir():
        raise OutputNotWritable(f"{final}: is a file; give a folder name for the report")
    if final.exists() and not overwrite:
        raise OutputExists(f"{final}: already exists; {REPLACE_HINT}")
    if not final.parent.is_dir():
        raise OutputNotWritable(f"{final}: folder {final.parent} does not exist; create it first")
    return final


@contextlib.contextmanager
def atomic_folder(folder: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; it becomes `folder` only on success.

    With `overwrite`, an existing `folder` is replaced (moved aside, then removed). On any
    exception, KeyboardInterrupt included, the temporary folder is removed.
    """
    final = check_report_folder(folder, overwrite=overwrite)
    prefix = f".{final.name}{TEMP_MARKER}{os.getpid()}-"
    try:
        temp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    except OSError as err:
        raise OutputNotWritable(
            f"{final}: cannot write in {final.parent} ({err.strerror})"
        ) from err
    try:
        yield temp
        os.chmod(temp, user_mode(0o777))  # mkdtemp made it 0700
        _publish(temp, final, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _publish(temp: Path, final: Path, *, overwrite: bool) -> None:
    old = None
    if final.exists():
        if not overwrite:
            raise OutputExists(f"{final}: appeared while the report was written; {REPLACE_HINT}")
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}{TEMP_MARKER}old-", dir=final.parent))
        os.replace(final, old / final.name)
    try:
        os.rename(temp, final)
    except OSError as err:
        raise OutputExists(
            f"{final}: appeared while the report was written; {REPLACE_HINT}"
        ) from err
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
