"""Progress for people: rich bars (units, units/s, ETA) on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBars
from rich.text import Text

from vidrefine.progress import NullProgress

if TYPE_CHECKING:
    from vidrefine.cli.environment import Environment


class RateColumn(ProgressColumn):
    """Speed in the task's own unit: '23.5 frames/s'."""

    def render(self, task: Task) -> Text:
        """Render the rate, or nothing until one is known."""
        unit = task.fields.get("unit", "it")
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        return Text(f"{speed:.3g} {unit}/s", style="progress.data.speed")


class _RichTask:
    def __init__(self, bars: RichBars, task_id: TaskID) -> None:
        self._bars, self._id = bars, task_id

    def advance(self, n: int = 1) -> None:
        self._bars.advance(self._id, n)

    def set_total(self, total: int | None) -> None:
        self._bars.update(self._id, total=total)


class RichProgress:
    """Live bars on stderr; the display runs while at least one task is open."""

    def __init__(self, env: Environment) -> None:
        self._console = env.err_console
        self._bars = RichBars(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._open = 0

    @contextmanager
    def task(
        self, label: str, total: int | None = None, unit: str = "frames"
    ) -> Iterator[_RichTask]:
        """Show a bar for the duration of the `with` block."""
        if self._open == 0:
            self._bars.start()
        self._open += 1
        task_id = self._bars.add_task(label, total=total, unit=unit)
        try:
            yield _RichTask(self._bars, task_id)
        finally:
            self._bars.stop_task(task_id)
            self._open -= 1
            if self._open == 0:
                self._bars.stop()

    def info(self, message: str) -> None:
        """Print a note above the bars."""
        self._console.print(Text(message))

    def warn(self, message: str) -> None:
        """Print a warning above the bars."""
        self._console.print(Text(f"warning: {message}", style="yellow"))


class _LineTask:
    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None

    def advance(self, n: int = 1) -> None:
        self.done += n

    def set_total(self, total: int | None) -> None:
        self.total = total


class LineProgress:
    """For pipes and logs: one line per finished task, no redrawing."""

    def __init__(self, env: Environment) -> None:
        self._env = env

    @contextmanager
    def task(
        self, label: str, total: int | None = None, unit: str = "frames"
    ) -> Iterator[_LineTask]:
        """Count silently; print the count, time and rate when the block ends normally."""
        counter = _LineTask()
        counter.total = total
        start = time.perf_counter()
        yield counter
        seconds = time.perf_counter() - start
        rate = f", {counter.done / seconds:.3g} {unit}/s" if seconds > 0 else ""
        self._env.note(f"{label}: {counter.done} {unit} in {seconds:.1f} s{rate}")

    def info(self, message: str) -> None:
        """One line on stderr."""
        self._env.note(message)

    def warn(self, message: str) -> None:
        """One warning line on stderr."""
        self._env.note(f"warning: {message}")


class RankProgress(NullProgress):
    """For ranks other than 0 under torchrun: no bars or notes, warnings as `[rank N]` lines."""

    def __init__(self, env: Environment) -> None:
        self._env = env

    def warn(self, message: str) -> None:
        """One `[rank N] vidrefine: warning: ...` line on stderr (rank 0 speaks for the run)."""
        self._env.warn(message)
