"""The Python API's default progress: a bar per loop and a line per note on stderr, as
diffusers pipelines show theirs. tqdm (`tqdm.auto`: widgets in notebooks) is imported when the
first bar opens, never when vidrefine is imported; the CLI has its own display (rich).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TextIO

from vidrefine.progress import NullProgress, Progress, ProgressTask


class _BarTask:
    """One tqdm bar as a `ProgressTask`."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def advance(self, n: int = 1) -> None:
        """Move the bar on by `n` units."""
        self._bar.update(n)

    def set_total(self, total: int | None) -> None:
        """Correct the bar's total (None: unknown)."""
        self._bar.total = total
        self._bar.refresh()


class StderrProgress:
    """Progress on a text stream (None: whatever `sys.stderr` is at the time of each write)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        """Where the bars and lines go."""
        return self._stream or sys.stderr

    def task(
        self, label: str, total: int | None = None, unit: str = "frames"
    ) -> AbstractContextManager[ProgressTask]:
        """A bar for one loop, closed (and left on screen) when the block ends."""
        return self._bar(label, total, unit)

    @contextmanager
    def _bar(self, label: str, total: int | None, unit: str) -> Iterator[ProgressTask]:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"vidrefine: {label}", unit=f" {unit}", file=self.stream)
        try:
            yield _BarTask(bar)
        finally:
            bar.close()

    def info(self, message: str) -> None:
        """One line: `vidrefine: message`."""
        print(f"vidrefine: {message}", file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        """One line: `vidrefine: warning: message`."""
        print(f"vidrefine: warning: {message}", file=self.stream, flush=True)


def chosen_progress(progress: Progress | bool | None) -> Progress:
    """The progress a library call reports to: None or True shows it on stderr
    (`StderrProgress`), False is silent, and a `Progress` object is used as it is.
    """
    if progress is None or progress is True:
        return StderrProgress()
    if progress is False:
        return NullProgress()
    return progress


__all__ = ["StderrProgress", "chosen_progress"]
