"""Output folders (the report of `compare` and `upscale --report`), built whole or not at all.

A folder is built under a temporary name beside its final place and renamed when complete. It
carries a marker file listing what vidrefine put in it, so that a later `--overwrite` replaces it
only when it can show the folder is one vidrefine made and holds nothing else: a folder with
anyone else's file in it, or one that holds an input or an output of the same run, is never
replaced or emptied, whatever the flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from vidrefine.errors import BadInput, OutputExists, OutputNotWritable
from vidrefine.io.atomic import REPLACE_HINT, check_writable_folder, user_mode
from vidrefine.io.temps import writer_marker

MARKER = ".vidrefine-folder.json"  # what a folder vidrefine made holds besides its files
_MADE_BY = "vidrefine"


def check_report_folder(
    folder: str | Path, *, overwrite: bool, keep: Iterable[str | Path] = ()
) -> Path:
    """Refuse a report folder that cannot be written or replaced; returns it, absolute.

    `keep` are the run's inputs and outputs: a folder that is one of them, or holds one, is
    refused whatever `overwrite` says. An existing folder passes when it is empty, or when it
    is one vidrefine made, holding only its own files, and `overwrite` is given.
    """
    final = Path(os.path.abspath(folder))
    _refuse_holding(final, folder, keep)
    if final.exists() and not final.is_dir():
        raise OutputNotWritable(f"{folder}: is a file; give a folder name for the report")
    if final.is_dir():
        _check_replaceable(final, folder, overwrite=overwrite)
    if not final.parent.is_dir():
        raise OutputNotWritable(f"{folder}: folder {final.parent} does not exist; create it first")
    check_writable_folder(final.parent, final.name)
    return final


def _refuse_holding(final: Path, shown: str | Path, keep: Iterable[str | Path]) -> None:
    """BadInput when `final` is the current folder or holds a path of `keep`."""
    if Path.cwd().resolve().is_relative_to(final.resolve()):
        raise BadInput(
            f"report folder {shown}: is the current folder (or holds it); give the report a "
            "folder of its own, e.g. report/"
        )
    for path in keep:
        if Path(os.path.abspath(path)).resolve().is_relative_to(final.resolve()):
            raise BadInput(
                f"report folder {shown}: would hold {path}, a file of this run; give the "
                "report a folder of its own"
            )


def _check_replaceable(final: Path, shown: str | Path, *, overwrite: bool) -> None:
    """Pass an empty folder, or one of ours with `overwrite`; refuse anything else."""
    strangers = _strangers(final)
    if strangers is None:
        return  # empty
    if strangers:
        listed = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
        raise OutputExists(
            f"{shown}: exists and holds files vidrefine did not write there ({listed}); it is "
            "never replaced: choose a new folder for the report"
        )
    if not overwrite:
        raise OutputExists(f"{shown}: already exists (a report vidrefine wrote); {REPLACE_HINT}")


def _strangers(folder: Path) -> list[str] | None:
    """None for an empty folder; else the names in it that its marker does not list as ours.

    Without a readable marker of ours, everything in it is a stranger's.
    """
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        raise OutputNotWritable(f"{folder}: cannot be read ({err.strerror})") from err
    if not names:
        return None
    ours = _listed(folder)
    return [name for name in names if not (name in ours and _plain_file(folder / name))]


def _listed(folder: Path) -> set[str]:
    """The names a marker of ours in `folder` lists (the marker itself included); else empty."""
    marker = folder / MARKER
    if not _plain_file(marker):
        return set()
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(record, dict) or record.get("made_by") != _MADE_BY:
        return set()
    files = record.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return set()
    return {*files, MARKER} - {"", ".", ".."}


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


@contextlib.contextmanager
def atomic_folder(
    folder: str | Path, *, overwrite: bool, keep: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; it becomes `folder` only on success.

    What the block leaves in it is listed in its marker. With `overwrite`, an existing folder
    that vidrefine made (and that holds only what it made) is replaced: moved aside, its listed
    files removed. On any exception, KeyboardInterrupt included, the temporary folder is removed.
    """
    keep = list(keep)
    final = check_report_folder(folder, overwrite=overwrite, keep=keep)
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{final.name}{writer_marker()}", dir=final.parent))
    except OSError as err:
        raise OutputNotWritable(
            f"{folder}: cannot write in {final.parent} ({err.strerror})"
        ) from err
    try:
        yield temp
        _write_marker(temp)
        os.chmod(temp, user_mode(0o777))  # mkdtemp made it 0700
        _publish(temp, final, folder, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _write_marker(temp: Path) -> None:
    files = sorted(name for name in os.listdir(temp) if name != MARKER)
    record = {"made_by": _MADE_BY, "files": files}
    (temp / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _publish(temp: Path, final: Path, shown: str | Path, *, overwrite: bool) -> None:
    """Rename `temp` to `final`; an existing `final` is checked again first, then replaced."""
    aside = None
    if final.exists():
        _check_replaceable(final, shown, overwrite=overwrite)
        if _strangers(final) is not None:  # ours, with --overwrite: move it out of the way
            aside = _move_aside(final, shown)
    try:
        os.rename(temp, final)  # onto an empty folder, or onto nothing
    except OSError as err:
        if aside is not None:  # put the old report back where it was
            os.rename(aside, final)
            aside.parent.rmdir()
        raise OutputExists(
            f"{shown}: appeared while the report was written; {REPLACE_HINT}"
        ) from err
    if aside is not None:
        _remove_ours(aside)


def _move_aside(final: Path, shown: str | Path) -> Path:
    """Rename `final` to a temporary name; move it back and refuse if it is no longer all ours."""
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}{writer_marker()}old-", dir=final.parent))
    os.rename(final, aside / final.name)
    moved = aside / final.name
    if _strangers(moved):  # something of someone else's arrived since the check
        os.rename(moved, final)
        aside.rmdir()
        _check_replaceable(final, shown, overwrite=True)  # raises, naming what arrived
    return moved


def _remove_ours(folder: Path) -> None:
    """Remove the files our marker lists in `folder`, then the folder if that empties it."""
    for name in sorted(_listed(folder) - {MARKER}) + [MARKER]:
        with contextlib.suppress(OSError):
            (folder / name).unlink()
    for empty in (folder, folder.parent):
        with contextlib.suppress(OSError):
            empty.rmdir()


__all__ = ["MARKER", "atomic_folder", "check_report_folder"]
