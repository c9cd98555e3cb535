"""Output safety: never clobber the input or an existing file, and never leave a half-written one.

Files are written under a temporary name in the target folder and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vidrefine.errors import BadInput, OutputExists, OutputNotWritable

TEMP_MARKER = ".vidrefine-tmp-"
_REPLACE = "pass --overwrite (overwrite=True in Python) to replace it"


def check_output(
    input_path: str | Path | None, output_path: str | Path, *, overwrite: bool
) -> Path:
    """Refuse an output that is the input, exists (without overwrite), or cannot be written.

    Returns the output path. Symlinks are resolved, so a link to the input counts as the input.
    """
    out = Path(output_path)
    if input_path is not None and _same_file(Path(input_path), out):
        raise BadInput(f"{out}: the output would overwrite the input; choose another name")
    if out.is_dir():
        raise OutputNotWritable(f"{out}: is a folder; give a file name such as {out / 'out.mp4'}")
    if out.exists() and not overwrite:
        raise OutputExists(f"{out}: already exists; {_REPLACE}")
    folder = out.parent
    if not folder.exists():
        raise OutputNotWritable(f"{out}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise OutputNotWritable(f"{out}: {folder} is not a folder")
    _check_writable(folder, out)
    return out


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through symlinks or hard links)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_writable(folder: Path, out: Path) -> None:
    """Create and remove a probe file: os.access cannot see read-only mounts or ACLs reliably."""
    try:
        fd, probe_path = tempfile.mkstemp(prefix=f".{out.name}{TEMP_MARKER}", dir=folder)
    except OSError as err:
        raise OutputNotWritable(
            f"{out}: cannot write in {folder} ({err.strerror}); choose another folder"
        ) from err
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
    if final.exists() and not overwrite:
        raise OutputExists(f"{final}: already exists; {_REPLACE}")
    try:
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{final.stem}{TEMP_MARKER}", suffix=final.suffix, dir=final.parent
        )
    except OSError as err:
        where = f"{final}: cannot write in {final.parent}"
        raise OutputNotWritable(f"{where} ({err.strerror}); choose another folder") from err
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        _publish(temp, final, overwrite=overwrite)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _publish(temp: Path, final: Path, *, overwrite: bool) -> None:
    """Rename temp to final with normal permissions; without overwrite, never replace a file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)  # mkstemp made it 0600
    if overwrite:
        os.replace(temp, final)
        return
    try:
        os.link(temp, final)  # fails if final appeared meanwhile: no silent clobbering
    except FileExistsError as err:
        raise OutputExists(f"{final}: appeared while writing; {_REPLACE}") from err
    except OSError:
        if final.exists():
            raise OutputExists(f"{final}: already exists; {_REPLACE}") from None
        os.replace(temp, final)  # a file system without hard links
        return
    temp.unlink()
