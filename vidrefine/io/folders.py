"""Output folders (a report, a diffusers export), built whole or not at all.

A folder is built under a temporary name beside its final place and renamed when complete. It
carries a marker file listing, by relative path, every file vidrefine put in it, so that a later
`--overwrite` replaces it only when it can show the folder is one vidrefine made of that kind and
holds nothing else: a folder with anyone else's file in it (at any depth), or one that is, or
holds, the current folder or an input or output of the same run, is never replaced or emptied,
whatever the flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vidrefine.errors import BadInput, OutputExists, OutputNotWritable
from vidrefine.io.atomic import REPLACE_HINT, check_writable_folder, user_mode
from vidrefine.io.temps import writer_marker

MARKER = ".vidrefine-folder.json"  # what a folder vidrefine made holds besides its files
_MADE_BY = "vidrefine"


@dataclass(frozen=True)
class FolderKind:
    """What a made folder is, for its marker and its messages."""

    name: str  # in the marker: "report", "diffusers export"
    made: str  # "a report vidrefine wrote"
    what: str  # "the report": a folder name for ..., a folder of its own for ...


REPORT = FolderKind("report", "a report vidrefine wrote", "the report")


def check_output_folder(
    folder: str | Path, kind: FolderKind, *, overwrite: bool, keep: Iterable[str | Path] = ()
) -> Path:
    """Refuse an output folder that cannot be written or replaced; returns it, absolute.

    `keep` are the run's inputs and outputs: a folder that is one of them, or holds one, is
    refused whatever `overwrite` says. An existing folder passes when it is empty, or when it
    is one vidrefine made (of `kind`), holding only its own files, and `overwrite` is given.
    """
    final = Path(os.path.abspath(folder))
    _refuse_holding(final, folder, kind, keep)
    if final.exists() and not final.is_dir():
        raise OutputNotWritable(f"{folder}: is a file; give a folder name for {kind.what}")
    if final.is_dir():
        _check_replaceable(final, folder, kind, overwrite=overwrite)
    if not final.parent.is_dir():
        raise OutputNotWritable(f"{folder}: folder {final.parent} does not exist; create it first")
    check_writable_folder(final.parent, final.name)
    return final


def check_report_folder(
    folder: str | Path, *, overwrite: bool, keep: Iterable[str | Path] = ()
) -> Path:
    """`check_output_folder` for a report (`compare --report`, `upscale --report`)."""
    return check_output_folder(folder, REPORT, overwrite=overwrite, keep=keep)


def _refuse_holding(
    final: Path, shown: str | Path, kind: FolderKind, keep: Iterable[str | Path]
) -> None:
    """BadInput when `final` is the current folder or holds a path of `keep`."""
    if Path.cwd().resolve().is_relative_to(final.resolve()):
        raise BadInput(
            f"{shown}: is the current folder (or holds it); give {kind.what} a folder of its "
            "own, e.g. a new one beside it"
        )
    for path in keep:
        if Path(os.path.abspath(path)).resolve().is_relative_to(final.resolve()):
            raise BadInput(
                f"{shown}: would hold {path}, a file of this run; give {kind.what} a folder "
                "of its own"
            )


def _check_replaceable(
    final: Path, shown: str | Path, kind: FolderKind, *, overwrite: bool
) -> None:
    """Pass an empty folder, or one of ours with `overwrite`; refuse anything else."""
    found = strangers(final, kind)
    if found is None:
        return  # empty
    if found:
        listed = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise OutputExists(
            f"{shown}: exists and holds files vidrefine did not write there ({listed}); it is "
            f"never replaced: choose a new folder for {kind.what}"
        )
    if not overwrite:
        raise OutputExists(f"{shown}: already exists ({kind.made}); {REPLACE_HINT}")


def _entries(folder: Path) -> tuple[list[str], list[str]]:
    """(plain files, anything else: links, devices, sockets) under `folder`, relative POSIX."""
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


def strangers(folder: Path, kind: FolderKind) -> list[str] | None:
    """None for an empty folder; else what is in it that a marker of ours (of `kind`) does not
    list. Without a readable marker of ours, everything in it is a stranger's.
    """
    try:
        files, odd = _entries(folder)
    except OSError as err:
        raise OutputNotWritable(f"{folder}: cannot be read ({err.strerror})") from err
    if not files and not odd and not os.listdir(folder):
        return None
    ours = _listed(folder, kind)
    return sorted(odd + [f for f in files if f not in ours]) or ([] if files else ["(folders)"])


def _listed(folder: Path, kind: FolderKind) -> set[str]:
    """The files a marker of ours (of `kind`) in `folder` lists, the marker included; else none."""
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        return set()
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(record, dict) or record.get("made_by") != _MADE_BY:
        return set()
    files = record.get("files")
    if record.get("kind") != kind.name or not isinstance(files, list):
        return set()
    return {f for f in files if isinstance(f, str) and _inside(f)} | {MARKER}


def _inside(relative: str) -> bool:
    """Whether a listed path stays inside its folder (no absolute path, no `..`)."""
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts


@contextlib.contextmanager
def atomic_folder(
    folder: str | Path,
    *,
    overwrite: bool,
    kind: FolderKind = REPORT,
    keep: Iterable[str | Path] = (),
) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; it becomes `folder` only on success.

    What the block leaves in it is listed in its marker. With `overwrite`, an existing folder
    that vidrefine made of this `kind` (holding only what it made) is replaced: moved aside, its
    listed files removed. On any exception, KeyboardInterrupt included, the temporary folder is
    removed and `folder` is left as it was.
    """
    final = check_output_folder(folder, kind, overwrite=overwrite, keep=keep)
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{final.name}{writer_marker()}", dir=final.parent))
    except OSError as err:
        raise OutputNotWritable(
            f"{folder}: cannot write in {final.parent} ({err.strerror})"
        ) from err
    try:
        yield temp
        _write_marker(temp, kind)
        os.chmod(temp, user_mode(0o777))  # mkdtemp made it 0700
        _publish(temp, final, folder, kind, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _write_marker(temp: Path, kind: FolderKind) -> None:
    files, _ = _entries(temp)
    record = {"made_by": _MADE_BY, "kind": kind.name, "files": files}
    (temp / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _publish(
    temp: Path, final: Path, shown: str | Path, kind: FolderKind, *, overwrite: bool
) -> None:
    """Rename `temp` to `final`; an existing `final` is checked again first, then replaced."""
    aside = None
    if final.exists():
        _check_replaceable(final, shown, kind, overwrite=overwrite)
        if strangers(final, kind) is not None:  # ours, with --overwrite: out of the way
            aside = _move_aside(final, shown, kind)
    try:
        os.rename(temp, final)  # onto an empty folder, or onto nothing
    except OSError as err:
        if aside is not None:  # put the old one back where it was
            os.rename(aside / final.name, final)
            aside.rmdir()
        raise OutputExists(f"{shown}: appeared while it was written; {REPLACE_HINT}") from err
    if aside is not None:
        _remove_ours(aside / final.name, kind)
        with contextlib.suppress(OSError):
            aside.rmdir()


def _move_aside(final: Path, shown: str | Path, kind: FolderKind) -> Path:
    """Rename `final` into a new temporary folder; put it back and refuse if no longer ours."""
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}{writer_marker()}old-", dir=final.parent))
    os.rename(final, aside / final.name)
    if strangers(aside / final.name, kind):  # someone else's file arrived since the check
        os.rename(aside / final.name, final)
        aside.rmdir()
        _check_replaceable(final, shown, kind, overwrite=True)  # raises, naming what arrived
    return aside


def _remove_ours(folder: Path, kind: FolderKind) -> None:
    """Remove the files found in `folder` that our marker lists, then the folders emptied."""
    files, _ = _entries(folder)
    for name in sorted(set(files) & _listed(folder, kind) - {MARKER}) + [MARKER]:
        with contextlib.suppress(OSError):
            (folder / name).unlink()
    for root, _, _ in sorted(os.walk(folder, topdown=False), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            Path(root).rmdir()


__all__ = [
    "MARKER",
    "REPORT",
    "FolderKind",
    "atomic_folder",
    "check_output_folder",
    "check_report_folder",
    "strangers",
]
