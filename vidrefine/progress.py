"""Progress reporting as a protocol: the library reports, the CLI decides how it looks.

The library never imports rich or tqdm (architecture.md rule 3): long loops receive a `Progress`
and open a `task` per loop. `NullProgress` is the silent default; the rich display lives in
`vidrefine.cli.display`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable


@runtime_checkable
class ProgressTask(Protocol):
    """One running loop: frames, windows, steps or bytes."""

    def advance(self, n: int = 1) -> None:
        """Count `n` more units as done."""

    def set_total(self, total: int | None) -> None:
        """Set or correct the number of units (None when unknown, e.g. a lying header)."""


@runtime_checkable
class Progress(Protocol):
    """What library code may tell the user while it works."""

    def task(
        self, label: str, total: int | None = None, unit: str = "frames"
    ) -> AbstractContextManager[ProgressTask]:
        """Open a task; leaving the `with` block ends it (also on error)."""

    def info(self, message: str) -> None:
        """A one-line note (what is being done, what was reused)."""

    def warn(self, message: str) -> None:
        """A one-line warning that does not stop the run."""


class _NullTask:
    """A task that counts nothing."""

    def advance(self, n: int = 1) -> None:
        """Ignore progress."""

    def set_total(self, total: int | None) -> None:
        """Ignore totals."""

    def __enter__(self) -> _NullTask:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class NullProgress:
    """Progress that shows nothing: the default for library calls and tests."""

    def task(
        self, label: str, total: int | None = None, unit: str = "frames"
    ) -> AbstractContextManager[ProgressTask]:
        """Return a task that ignores every update."""
        return _NullTask()

    def info(self, message: str) -> None:
        """Drop the message."""

    def warn(self, message: str) -> None:
        """Drop the warning."""


__all__ = ["NullProgress", "Progress", "ProgressTask"]
