"""The process environment as one injected object: streams, TTY facts, colour, progress.

Commands print only through an `Environment`, so click's `CliRunner` tests see exactly what a
user sees (the idea of httpie's `context.Environment`). Under torchrun, ranks other than 0
(`rank`) print only warnings and errors, each line starting with `[rank N]`; progress, notes,
tables and results are rank 0's alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from vidrefine.progress import Progress

if TYPE_CHECKING:
    import click
    from rich.console import Console

PIPE_WIDTH = 120  # rich's width when output is not a terminal (tables would wrap at 80)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class Environment:
    """Where output goes and how it may look."""

    stdout: TextIO
    stderr: TextIO
    stdout_isatty: bool = False
    stderr_isatty: bool = False
    color: bool = False
    progress_factory: Callable[[Environment], Progress] | None = None
    rank: int = 0  # this process's rank under torchrun; 0 alone
    _consoles: dict[str, Console] = field(default_factory=dict, repr=False)

    @classmethod
    def from_system(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """The real process: sys.stdout/sys.stderr as they are now; NO_COLOR honoured."""
        env = os.environ if environ is None else environ
        out_tty, err_tty = _isatty(sys.stdout), _isatty(sys.stderr)
        color = err_tty and "NO_COLOR" not in env and env.get("TERM") != "dumb"
        return cls(sys.stdout, sys.stderr, out_tty, err_tty, color, rank=_torchrun_rank(env))

    @classmethod
    def of(cls, ctx: click.Context | None = None) -> Environment:
        """The Environment the `vidrefine` group made for `ctx` (default: the current click
        context), or the real process's when a command runs on its own.
        """
        import click

        ctx = ctx or click.get_current_context(silent=True)
        env = ctx.find_object(cls) if ctx is not None else None
        return env if env is not None else cls.from_system()

    def _console(self, which: str) -> Console:
        if which not in self._consoles:
            from rich.console import Console

            stream, tty = (
                (self.stdout, self.stdout_isatty)
                if which == "out"
                else (self.stderr, self.stderr_isatty)
            )
            self._consoles[which] = Console(
                file=stream,
                force_terminal=tty,
                no_color=not self.color,
                highlight=False,
                soft_wrap=False,
                width=None if tty else PIPE_WIDTH,
            )
        return self._consoles[which]

    @property
    def console(self) -> Console:
        """Rich console on stdout: results (tables, JSON)."""
        return self._console("out")

    @property
    def err_console(self) -> Console:
        """Rich console on stderr: progress, notes and warnings."""
        return self._console("err")

    def progress(self) -> Progress:
        """A Progress for one command: bars on a terminal, plain lines otherwise."""
        if self.progress_factory is not None:
            return self.progress_factory(self)
        from vidrefine.cli.display import LineProgress, RankProgress, RichProgress

        if self.rank:
            return RankProgress(self)
        return RichProgress(self) if self.stderr_isatty else LineProgress(self)

    def note(self, message: str) -> None:
        """One plain line on stderr, prefixed with the program name (rank 0 only)."""
        if self.rank:
            return
        print(f"vidrefine: {message}", file=self.stderr, flush=True)

    def warn(self, message: str) -> None:
        """One warning line on stderr; on a terminal it goes above any live progress bars."""
        line = f"{self._tag}vidrefine: warning: " + " ".join(message.split())
        if self.stderr_isatty:
            from rich.text import Text

            self.err_console.print(Text(line, style="yellow"), soft_wrap=True)
        else:
            print(line, file=self.stderr, flush=True)

    def error(self, message: str) -> None:
        """The one error line of a failed command."""
        print(f"{self._tag}vidrefine: error: {message}", file=self.stderr, flush=True)

    @property
    def _tag(self) -> str:
        """'[rank 2] ' on the ranks other than 0, which prefix their lines with it."""
        return f"[rank {self.rank}] " if self.rank else ""


def _torchrun_rank(environ: Mapping[str, str]) -> int:
    """The RANK torchrun gave this process (0 without torchrun, or with a bad value)."""
    value = environ.get("RANK", "0") if "WORLD_SIZE" in environ else "0"
    return int(value) if value.isdigit() else 0
