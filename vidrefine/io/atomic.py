"""Output safety: never clobber the input or an existing file, and never leave a half-written one.

Files are written under a temporary name in the target folder and renamed when complete. Every
way the output can turn out to exist meanwhile (a file, a link or a folder appearing while the
video is written) is `OutputExists`; a name the file system cannot hold is `OutputNotWritable`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from vidrefine.errors import BadInput, DiskFull, OutputExists, OutputNotWritable
from vidrefine.io.temps import (  # noqa: F401 (re-exported)
    TEMP_MARKER,
    is_temp_name,
    lock_writer,
    remove_stale_temps,
    stale_temp,
    writer_marker,
)

REPLACE_HINT = "pass --overwrite (overwrite=True in Python) to replace it"
_RANDOM_CHARS = 8  # what tempfile.mkstemp adds between prefix and suffix
DEFAULT_NAME_MAX = 255  # bytes in one name: Linux, macOS and Windows file systems alike


def check_output(
    input_path: str | Path | None, output_path: str | Path, *, overwrite: bool
) -> Path:
    """Refuse an output that is the input, exists (without overwrite), or cannot be written.

    Returns the output path. Symlinks are resolved, so a link to the input counts as the input.
    """
    out = _check_target(output_path, [] if input_path is None else [input_path], overwrite)
    folder = out.parent
    if not folder.exists():
        raise OutputNotWritable(f"{out}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise OutputNotWritable(f"{out}: {folder} is not a folder")
    check_writable_folder(folder, out.name)
    return out


def check_output_place(
    output_path: str | Path, *, inputs: Iterable[str | Path], overwrite: bool
) -> Path:
    """`check_output` for an output whose folders are made when it is written, of a command
    with several inputs (none may be the output): the nearest existing ancestor of its folder
    must be a writable folder.
    """
    out = _check_target(output_path, inputs, overwrite)
    folder = out.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputNotWritable(f"cannot write {out}: {folder} is not a folder")
    check_writable_folder(folder, out.name)
    return out


def _check_target(output_path: str | Path, inputs: Iterable[str | Path], overwrite: bool) -> Path:
    out = Path(output_path)
    check_name_length(out)
    for input_path in inputs:
        if _same_file(Path(input_path), out):
            raise BadInput(f"{out}: the output would overwrite the input; choose another name")
    if out.is_dir():
        raise OutputNotWritable(f"{out}: is a folder; give a file name such as {out / 'out.mp4'}")
    if os.path.lexists(out) and not overwrite:
        raise OutputExists(f"{out}: already exists; {REPLACE_HINT}")
    return out


def check_distinct_outputs(pairs: Iterable[tuple[str | Path, str | Path]]) -> None:
    """BadInput when two inputs of one command would be written to the same output.

    `pairs` are (input, output); outputs are compared as absolute paths with links resolved.
    """
    seen: dict[Path, str | Path] = {}
    for source, output in pairs:
        key = Path(os.path.abspath(output)).resolve()
        if key in seen:
            raise BadInput(
                f"{seen[key]} and {source} would both be written to {output}; give them "
                "different names or folders"
            )
        seen[key] = source


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through symlinks or hard links)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def name_max(folder: Path) -> int:
    """The longest file name (bytes) `folder` can hold; the common 255 when it cannot be asked."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, ValueError, OSError):  # no pathconf (Windows), or no such folder
        return DEFAULT_NAME_MAX


def _shown_name(name: str, keep: int = 40) -> str:
    """A long file name shortened for a message: its start, an ellipsis and its extension."""
    if len(name) <= keep:
        return name
    suffix = Path(name).suffix
    return name[: keep - len(suffix)] + "..." + suffix


def check_name_length(out: Path) -> None:
    """Refuse a file name longer than its folder's file system allows (ENAMETOOLONG).

    Callers that look at a path before `check_output` does (`Path.is_file`, `Path.is_dir`) call
    this first: before Python 3.13 those raise OSError for such a name instead of answering.
    """
    size, limit = len(os.fsencode(out.name)), name_max(_nearest_folder(out.parent))
    if size > limit:
        raise _name_too_long(out, f"{size} bytes; the limit is {limit}")


def _name_too_long(out: Path, detail: str) -> OutputNotWritable:
    return OutputNotWritable(
        f"{out.parent / _shown_name(out.name)}: the file name is too long ({detail}); "
        "choose a shorter name"
    )


def _nearest_folder(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists (whose file system will hold it)."""
    while not os.path.isdir(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _temp_file(final: Path, suffix: str) -> tuple[int, str]:
    """A file made by mkstemp beside `final` (`.<stem>.vidrefine-tmp-<pid>@<host>-XXXXXXXX<suffix>`)
    and locked by this process: how a later run tells a dead writer's file from a live one's.

    The stem is shortened so that the temporary name fits wherever `final` fits: a name near the
    limit must not fail because of its temporary twin. Failures are `OutputNotWritable`.
    """
    folder, stem = final.parent, final.name if not suffix else final.stem
    marker = writer_marker()
    fixed = len(os.fsencode(f".{marker}{suffix}")) + _RANDOM_CHARS
    budget = max(0, name_max(folder) - fixed)
    short = os.fsencode(stem)[:budget].decode(errors="ignore")  # never half a character
    try:
        fd, name = tempfile.mkstemp(prefix=f".{short}{marker}", suffix=suffix, dir=folder)
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise _name_too_long(final, "the file system refused it") from err
        raise OutputNotWritable(
            f"{final}: cannot write in {folder} ({err.strerror}); choose another folder"
        ) from err
    lock_writer(fd)
    return fd, name


def check_writable_folder(folder: Path, name: str = "probe") -> None:
    """OutputNotWritable unless a file (named after `name`) can be made and removed in `folder`.

    A probe file, because os.access cannot see read-only mounts or ACLs reliably.
    """
    fd, probe_path = _temp_file(folder / name, suffix="")
    os.close(fd)
    os.unlink(probe_path)


@contextlib.contextmanager
def atomic_output(final_path: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; rename it into place only on success.

    The caller checked the output once (`check_output`) when it planned the job; here only what
    can have changed since is refused: a file that appeared (without `overwrite`) or a folder
    that cannot take the temporary file. The temporary name keeps the extension
    (`.clip.vidrefine-tmp-XXXX.mp4`) so muxers pick the same container. On any exception,
    KeyboardInterrupt included, the temporary file is removed and `final_path` is left as it was.
    """
    final = Path(final_path)
    check_name_length(final)
    if final.is_dir():
        raise OutputExists(f"{final}: a folder of that name exists now; remove it or rename")
    if os.path.lexists(final) and not overwrite:
        raise OutputExists(f"{final}: already exists; {REPLACE_HINT}")
    fd, temp_name = _temp_file(final, suffix=final.suffix)
    temp = Path(temp_name)
    try:
        yield temp
        _publish(temp, final, overwrite=overwrite)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # the writer's lock goes with it, once the file is in place or gone


def user_mode(mode: int) -> int:
    """`mode` less the process umask: what a file or folder made the ordinary way would get."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _publish(temp: Path, final: Path, *, overwrite: bool) -> None:
    """Rename temp to final with normal permissions; without overwrite, never replace a file."""
    os.chmod(temp, user_mode(0o666))  # mkstemp made it 0600
    if overwrite:
        try:
            os.replace(temp, final)
        except OSError as err:
            if final.is_dir():  # a folder appeared: --overwrite replaces files, never folders
                raise OutputExists(
                    f"{final}: a folder of that name appeared while writing; "
                    "it was left alone: remove it or rename"
                ) from err
            raise
        return
    try:
        os.link(temp, final)  # fails if final appeared meanwhile: no silent clobbering
    except FileExistsError as err:
        raise OutputExists(f"{final}: appeared while writing; {REPLACE_HINT}") from err
    except OSError:
        if os.path.lexists(final):
            raise OutputExists(f"{final}: appeared while writing; {REPLACE_HINT}") from None
        os.replace(temp, final)  # a file system without hard links
        return
    temp.unlink()


def temp_bytes(output: Path) -> int:
    """Size of this process's temporary file(s) of `output` (0 when none can be seen)."""
    ours = f".*{writer_marker()}*{output.suffix}"  # names carry the writer's PID and host
    stem = output.stem[:8]
    try:
        temps = list(output.parent.glob(ours)) or list(
            output.parent.glob(f".{stem}*{TEMP_MARKER}*{output.suffix}")
        )
        return max((p.stat().st_size for p in temps), default=0)
    except OSError:
        return 0


def output_disk_full(output: Path, written: int, exc: OSError) -> DiskFull:
    """One line for a full disk (or quota) under the output: the folder and the space needed."""
    folder = output.parent.resolve()
    need_mb = max(1, math.ceil(written / 1e6))
    reason = "disk quota exceeded" if exc.errno != errno.ENOSPC else "no space left"
    return DiskFull(
        f"{reason} in {folder} while writing {output.name} (it had reached {written / 1e6:.1f} "
        f"MB): make at least {need_mb} MB free there, more for a longer clip, or write elsewhere "
        "with -o; finished windows are kept, run the same command again to resume"
    )
