"""An exported diffusers folder, built whole or not at all, replaced only when vidrefine made it.

The rule of `vidrefine.io.folders` (a marker file listing what vidrefine put in a folder; an
`--overwrite` replaces only a folder that holds nothing else) for a folder with subfolders: the
marker lists every file by its relative path, and a subfolder is vidrefine's only when every
file under it is listed. The folder is built under a temporary name beside its final place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vidrefine.errors import BadInput, OutputExists, OutputNotWritable
from vidrefine.io.atomic import REPLACE_HINT, check_writable_folder, user_mode
from vidrefine.io.folders import MARKER
from vidrefine.io.temps import writer_marker

_MADE_BY = "vidrefine"
_KIND = "diffusers export"


def _entries(folder: Path) -> tuple[list[str], list[str]]:
    """(plain files, anything else: links, devices) under `folder`, as relative POSIX paths."""
    files, odd = [], []
    for root, dirs, names in os.walk(folder):
        base = Path(root)
        for name in [*names, *dirs]:
            path = base / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                odd.append(relative)
            elif path.is_file():
                files.append(relative)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
    return sorted(files), sorted(odd)


def _listed(folder: Path) -> set[str]:
    """The files a marker of ours in `folder` lists (the marker included); else nothing."""
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(record, dict) or record.get("made_by") != _MADE_BY:
        return set()
    files = record.get("files")
    if record.get("kind") != _KIND or not isinstance(files, list):
        return set()
    return {f for f in files if isinstance(f, str)} | {MARKER}


def strangers(folder: Path) -> list[str] | None:
    """None for an empty folder; else what is in it that a marker of ours does not list."""
    try:
        files, odd = _entries(folder)
    except OSError as err:
        raise OutputNotWritable(f"{folder}: cannot be read ({err.strerror})") from err
    if not files and not odd:
        return None
    ours = _listed(folder)
    return sorted(odd + [f for f in files if f not in ours])


def check_export_folder(folder: str | Path, *, overwrite: bool) -> Path:
    """Refuse a folder that cannot be written or replaced; returns it, absolute."""
    final = Path(os.path.abspath(folder))
    if final.exists() and not final.is_dir():
        raise OutputNotWritable(f"{folder}: is a file; give a folder name for the export")
    if final.is_dir():
        if Path.cwd().resolve().is_relative_to(final.resolve()):
            raise BadInput(f"{folder}: is the current folder (or holds it); export elsewhere")
        _check_replaceable(final, folder, overwrite=overwrite)
    if not final.parent.is_dir():
        raise OutputNotWritable(f"{folder}: folder {final.parent} does not exist; create it first")
    check_writable_folder(final.parent, final.name)
    return final


def _check_replaceable(final: Path, shown: str | Path, *, overwrite: bool) -> None:
    found = strangers(final)
    if found is None:
        return
    if found:
        listed = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise OutputExists(
            f"{shown}: exists and holds files vidrefine did not export there ({listed}); it is "
            "never replaced: choose a new folder"
        )
    if not overwrite:
        raise OutputExists(f"{shown}: already exists (a folder vidrefine exported); {REPLACE_HINT}")


@contextlib.contextmanager
def exported_folder(folder: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; it becomes `folder` only on success.

    What the block leaves in it is listed in its marker. With `overwrite`, an existing folder
    that vidrefine exported (holding only what it wrote) is replaced. On any exception,
    KeyboardInterrupt included, the temporary folder is removed and `folder` is left as it was.
    """
    final = check_export_folder(folder, overwrite=overwrite)
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{final.name}{writer_marker()}", dir=final.parent))
    except OSError as err:
        raise OutputNotWritable(
            f"{folder}: cannot write in {final.parent} ({err.strerror})"
        ) from err
    try:
        yield temp
        files, _ = _entries(temp)
        record = {"made_by": _MADE_BY, "kind": _KIND, "files": files}
        (temp / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.chmod(temp, user_mode(0o777))  # mkdtemp made it 0700
        _publish(temp, final, folder, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _publish(temp: Path, final: Path, shown: str | Path, *, overwrite: bool) -> None:
    """Rename `temp` to `final`; an existing `final` of ours is moved aside, then removed."""
    aside = None
    if final.exists():
        _check_replaceable(final, shown, overwrite=overwrite)
        if strangers(final) is not None:
            aside = _move_aside(final, shown)
    try:
        os.rename(temp, final)
    except OSError as err:
        if aside is not None:
            os.rename(aside / final.name, final)
            aside.rmdir()
        raise OutputExists(
            f"{shown}: appeared while the export was written; {REPLACE_HINT}"
        ) from err
    if aside is not None:
        _remove_ours(aside / final.name)
        with contextlib.suppress(OSError):
            aside.rmdir()


def _move_aside(final: Path, shown: str | Path) -> Path:
    """Rename `final` into a temporary folder; put it back and refuse if it is no longer ours."""
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}{writer_marker()}old-", dir=final.parent))
    os.rename(final, aside / final.name)
    if strangers(aside / final.name):  # something of someone else's arrived since the check
        os.rename(aside / final.name, final)
        aside.rmdir()
        _check_replaceable(final, shown, overwrite=True)  # raises, naming what arrived
    return aside


def _remove_ours(folder: Path) -> None:
    """Remove the files found in `folder` that our marker lists, then the emptied folders."""
    files, _ = _entries(folder)
    for name in sorted(set(files) & _listed(folder) - {MARKER}) + [MARKER]:
        with contextlib.suppress(OSError):
            (folder / name).unlink()
    for root, _, _ in sorted(os.walk(folder, topdown=False), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            Path(root).rmdir()


__all__ = ["check_export_folder", "exported_folder", "strangers"]
