"""One `vidrefine serve` per work folder: a lock on `serve.lock` there, held for the server's life.

The lock is `flock` on an open file, so the kernel drops it when the process ends, kill -9
included: a dead server never blocks the next. On a network folder, Linux maps it to an NFS
lock, which NFSv4 keeps across machines; the file names the holder's PID and host for the
message a second server prints.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from vidrefine.errors import BadInput

try:
    import fcntl
except ImportError:  # Windows: no flock; one server per work folder is then not enforced
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "serve.lock"


class WorkLock:
    """The lock of one work folder; `release()` (or leaving the `with` block) gives it back."""

    def __init__(self, work: Path) -> None:
        self.path = work / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> WorkLock:
        """Take the lock; BadInput naming the holder when another server has it."""
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            if not _try_lock(fd):
                holder = _holder(fd)
                os.close(fd)
                raise BadInput(
                    f"the work folder {self.path.parent} is used by another vidrefine serve "
                    f"({holder}); give another --work"
                )
            if _same_file(fd, self.path):
                self.fd = fd
            else:  # the holder released it and removed the file meanwhile: take the new one
                os.close(fd)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return self

    def release(self) -> None:
        """Remove the lock file (still holding the lock, so no one can take a stale copy)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> WorkLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    """Whether the exclusive lock on `fd` was taken (False: another process holds it)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path` (not one removed meanwhile)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(fd: int) -> str:
    """'pid N on HOST' from the lock file of the server that holds it."""
    try:
        pid, host = os.pread(fd, 256, 0).decode().split()
    except (OSError, UnicodeDecodeError, ValueError):
        return "its PID not written yet"
    return f"pid {pid} on {host}"


__all__ = ["LOCK_NAME", "WorkLock"]
