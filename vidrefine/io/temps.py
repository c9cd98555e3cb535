"""Our temporary files: named for their writer, locked while written, removed only when dead.

A temporary output is `.<stem>.vidrefine-tmp-<pid>@<host>-XXXXXXXX<suffix>`. Its writer holds an
exclusive `flock` on it from the moment it exists until it is renamed into place or removed. The
kernel (or the NFSv4 server, for a network folder) drops that lock when the writer dies, however it
dies, so a later run tells a dead writer's file (lock free) from a live one's (lock held) without
seeing the writer's process: another container, another PID namespace or another machine on a
shared folder. The PID and host in the name say who wrote it; they decide nothing on their own.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so no temporary file can be proven dead but by age
    fcntl = None  # type: ignore[assignment]

TEMP_MARKER = ".vidrefine-tmp-"
# `<pid>@<host>-` since the lock; `<pid>-` before it (PID only); nothing before that (legacy).
_TEMP_NAME = re.compile(
    r"^\..*" + re.escape(TEMP_MARKER)
    + r"(?:(?P<pid>\d+)(?:@(?P<host>[a-z0-9-]{1,32}))?-)?[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)?$"
)  # fmt: skip
# A file of a writer that cannot have locked it (an older vidrefine, a file system without
# locks) is proven dead only by being untouched this long.
UNLOCKED_STALE_SECONDS = 24 * 3600
# A lock-free file of another machine: its writer is gone, or cut off from the file server for
# this long (an NFS server drops the locks of a client that stops renewing its lease).
FOREIGN_STALE_SECONDS = 3600
# Between creating its file and locking it, a writer holds no lock: a file this young is kept.
CREATION_GRACE_SECONDS = 2.0


def host_tag() -> str:
    """This machine's name as it goes into a temporary name: lower case, [a-z0-9-], <= 32."""
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")
    return name[:32].strip("-") or "host"


def writer_marker() -> str:
    """`.vidrefine-tmp-<pid>@<host>-`: what this process's temporary names carry."""
    return f"{TEMP_MARKER}{os.getpid()}@{host_tag()}-"


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of our temporary files (this format or an older one)."""
    return _TEMP_NAME.match(name) is not None


def lock_writer(fd: int) -> bool:
    """Take the writer's exclusive lock on its own new file; False where locks do not work."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # ENOLCK, EOPNOTSUPP: a file system without locks; the file stays unlocked
        return False
    return True


def _age_s(path: Path, now: float | None) -> float | None:
    try:
        return (time.time() if now is None else now) - path.lstat().st_mtime
    except OSError:
        return None


def _untouched(path: Path, seconds: float, now: float | None) -> bool:
    age = _age_s(path, now)
    return age is not None and age > seconds


def stale_temp(path: Path, *, now: float | None = None) -> bool:
    """Whether `path` is a temporary file of ours that no live writer can still own.

    Looks only (it takes the lock and lets it go); `remove_stale_temps` removes.
    """
    return _judge(path, now, remove=False)


def _judge(path: Path, now: float | None, *, remove: bool) -> bool:
    match = _TEMP_NAME.match(path.name)
    if match is None or path.is_symlink() or not path.is_file():
        return False
    if match["host"] is None:  # written by a vidrefine that did not lock
        return _untouched(path, UNLOCKED_STALE_SECONDS, now) and (not remove or _unlink(path))
    if not _untouched(path, CREATION_GRACE_SECONDS, now):
        return False
    foreign = match["host"] != host_tag()
    return _locked_judge(path, now, foreign=foreign, remove=remove)


def _locked_judge(path: Path, now: float | None, *, foreign: bool, remove: bool) -> bool:
    """Take the file's lock without waiting: held means alive; free (long enough) means dead."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # gone meanwhile, or not ours to open: keep it
    try:
        free = _try_lock(fd)
        if free is None:  # locks do not work here: only age can tell
            dead = _untouched(path, UNLOCKED_STALE_SECONDS, now)
        else:
            dead = free and (not foreign or _untouched(path, FOREIGN_STALE_SECONDS, now))
        if dead and remove:
            return _same_file(fd, path) and _unlink(path)
        return dead
    finally:
        os.close(fd)  # releases the lock we took


def _try_lock(fd: int) -> bool | None:
    """True when the lock was free (we hold it now), False when held, None when unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file `fd` has open (it was not renamed and replaced)."""
    try:
        mine, now = os.fstat(fd), path.lstat()
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True


def remove_stale_temps(
    folder: str | Path, *, now: float | None = None, settle: bool = False
) -> list[Path]:
    """Remove the temporary files that dead runs (kill -9, power loss) left in `folder`.

    Only names of our format whose writer is provably gone (`stale_temp`); returns what was
    removed. A folder that cannot be listed, or a file that cannot be removed, is left as it is.
    With `settle`, files kept only for being younger than the creation grace (a run killed a
    moment ago) are judged again once it has passed: at most `CREATION_GRACE_SECONDS` later.
    """
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    removed = [path for path in entries if _judge(path, now, remove=True)]
    young = [path for path in entries if path not in removed and _young(path, now)]
    if not settle or not young or now is not None:
        return removed
    time.sleep(CREATION_GRACE_SECONDS + 0.1)
    return removed + [path for path in young if _judge(path, None, remove=True)]


def _young(path: Path, now: float | None) -> bool:
    """Whether `path` is a locking writer's file kept only for being inside the grace."""
    match = _TEMP_NAME.match(path.name)
    if match is None or match["host"] is None or path.is_symlink() or not path.is_file():
        return False
    return not _untouched(path, CREATION_GRACE_SECONDS, now)


__all__ = [
    "FOREIGN_STALE_SECONDS",
    "TEMP_MARKER",
    "UNLOCKED_STALE_SECONDS",
    "host_tag",
    "is_temp_name",
    "lock_writer",
    "remove_stale_temps",
    "stale_temp",
    "writer_marker",
]
