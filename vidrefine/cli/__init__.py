"""The `vidrefine` command: a click group whose commands live in submodules exposing `command`.

Errors become one line on stderr and an exit code (`vidrefine.errors.ExitCode`); `--traceback`
shows the stack. Usage mistakes are one line too (exit 2), with a suggestion for a misspelled
command or option, and warnings vidrefine's code issues during a command are
`vidrefine: warning: ...` lines. Commands print only through the injected `Environment`
(`ctx.obj`). Nothing here imports torch: each command imports what it needs when it runs.
"""

from __future__ import annotations

import difflib
import importlib
import signal
import traceback as tb
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from vidrefine import __version__
from vidrefine.cli.environment import Environment
from vidrefine.errors import ExitCode, Interrupted, VidrefineError, first_line

# Command name == module name under vidrefine/cli/; each module defines `command`.
COMMAND_MODULES = (
    "info",
    "upscale",
    "caption",
    "compare",
    "t2v",
    "doctor",
    "download",
    "convert",
    "export",
    "presets",
    "serve",
    "tune",
)
_HERE = Path(__file__).resolve().parent
_PACKAGE = _HERE.parent  # vidrefine/: warnings issued from files under it are vidrefine's


class OneLineUsageError(click.UsageError):
    """A click usage error shown as `vidrefine: error: <what>` (no usage block), exit 2."""

    exit_code = int(ExitCode.BAD_INPUT)

    def show(self, file: IO[Any] | None = None) -> None:
        """Write the one line to `file`, else to the command's Environment's stderr."""
        if file is not None:
            print(f"vidrefine: error: {self.format_message()}", file=file, flush=True)
            return
        env = Environment.of(self.ctx) if self.ctx is not None else Environment.from_system()
        env.error(self.format_message())


def _closest(name: str, candidates: list[str]) -> str | None:
    """The candidate most like `name`, compared without leading dashes (difflib, cutoff 0.6)."""
    bare = {c.lstrip("-"): c for c in candidates}
    close = difflib.get_close_matches(name.lstrip("-"), list(bare), n=1, cutoff=0.6)
    return bare[close[0]] if close else None


def _suggestion(exc: click.UsageError) -> str | None:
    """The closest command or option name to a misspelled one, when there is a close one."""
    if isinstance(exc, click.exceptions.NoSuchOption):
        return _closest(exc.option_name, exc.possibilities or [])  # click's near names
    if isinstance(exc, click.exceptions.NoSuchCommand) and exc.ctx is not None:
        group = exc.ctx.command
        if isinstance(group, click.Group):
            return _closest(exc.command_name, group.list_commands(exc.ctx))
    return None


def one_line_usage_error(
    exc: click.UsageError, command_path: str | None = None
) -> click.UsageError:
    """`exc` as one line: 'upscale: no such option '--stpes'; did you mean '--steps'?'.

    `command_path` ('vidrefine upscale') names the command when click raised `exc` without a
    context. A bare `vidrefine` (click's help instead of an error) and errors already converted
    pass through.
    """
    if isinstance(exc, OneLineUsageError | click.exceptions.NoArgsIsHelpError):
        return exc
    suggestion = _suggestion(exc)
    # click's own message, without the 'Did you mean' it appends for misspelled names
    named = isinstance(exc, click.exceptions.NoSuchOption | click.exceptions.NoSuchCommand)
    text = " ".join((exc.message if named else exc.format_message()).split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    path = exc.ctx.command_path if exc.ctx is not None else command_path or "vidrefine"
    where = " ".join(path.split()[1:])  # the command under the group, as typed
    if where:
        text = f"{where}: {text}"
    if suggestion:
        text += f"; did you mean '{suggestion}'?"
    else:
        text += f" (see '{' '.join(filter(None, ('vidrefine', where)))} --help')"
    return OneLineUsageError(text, ctx=exc.ctx)


def _issued_by_vidrefine(category: type[Warning], filename: str) -> bool:
    if category.__module__.split(".")[0] == "vidrefine":
        return True
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


@contextmanager
def warnings_as_lines(environment: Callable[[], Environment]) -> Iterator[None]:
    """While a command runs, show vidrefine's Python warnings as `vidrefine: warning: ...`.

    Warnings from other packages keep Python's format; everything is restored afterwards.
    """
    with warnings.catch_warnings():
        shown_before = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if _issued_by_vidrefine(category, filename):
                environment().warn(str(message))
            else:
                shown_before(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _available(name: str) -> bool:
    """A command is listed only when its module file is in the package."""
    return (_HERE / f"{name}.py").is_file()


class CommandGroup(click.Group):
    """Loads each command's module on first use and maps exceptions to exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Commands in `COMMAND_MODULES` order (plus any added in code)."""
        listed = [n for n in COMMAND_MODULES if _available(n)]
        return listed + [n for n in super().list_commands(ctx) if n not in listed]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import `vidrefine.cli.<name>` and return its `command`; import errors propagate."""
        if cmd_name in COMMAND_MODULES and _available(cmd_name):
            module = importlib.import_module(f"vidrefine.cli.{cmd_name}")
            return module.command
        return super().get_command(ctx, cmd_name)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own options; a usage mistake there is one line too."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage_error(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn every failure into one line on stderr and its exit code."""
        try:
            with warnings_as_lines(lambda: Environment.of(ctx)):
                return super().invoke(ctx)
        except click.UsageError as exc:
            path = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            raise one_line_usage_error(exc, path) from exc
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            raise  # `vidrefine presets | head`: click's main exits quietly on EPIPE
        except Interrupted as exc:
            if _sigterm.received:
                _fail(ctx, exc, _terminated(str(exc)), ExitCode.TERMINATED)
            _fail(ctx, exc, str(exc), exc.exit_code)
        except VidrefineError as exc:
            _fail(ctx, exc, str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            if _sigterm.received:
                _fail(ctx, exc, "terminated (SIGTERM)", ExitCode.TERMINATED)
            _fail(ctx, exc, "interrupted", ExitCode.INTERRUPTED)
        except Exception as exc:
            first = first_line(exc, "(no message)")
            message = (
                f"unexpected {type(exc).__name__}: {first} "
                "(this is a bug in vidrefine; rerun with --traceback and report the output)"
            )
            _fail(ctx, exc, message, ExitCode.ERROR)


def _terminated(message: str) -> str:
    """An 'interrupted during ...' message as said for SIGTERM: 'terminated (SIGTERM) during'."""
    if message.startswith("interrupted"):
        return "terminated (SIGTERM)" + message[len("interrupted") :]
    return f"terminated (SIGTERM): {message}"


class _SigtermState:
    """Whether the SIGTERM handler `main` installs has fired during this command."""

    received = False


_sigterm = _SigtermState()


def _on_sigterm(signum: int, frame: Any) -> None:
    """Turn the first SIGTERM into KeyboardInterrupt: the clean-up path Ctrl-C takes.

    Later ones are ignored, so that a second SIGTERM cannot cut the clean-up short.
    """
    if _sigterm.received:
        return
    _sigterm.received = True
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM cleans up like Ctrl-C (exit 143); then the old handler.

    Only the main thread can install handlers: elsewhere the block runs unchanged.
    """
    _sigterm.received = False
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _sigterm.received = False


def _fail(ctx: click.Context, exc: BaseException, message: str, code: int) -> None:
    env = Environment.of(ctx)
    if ctx.params.get("traceback"):
        env.stderr.write("".join(tb.format_exception(type(exc), exc, exc.__traceback__)))
    env.error(" ".join(message.split("\n")))
    ctx.exit(int(code))


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--traceback", is_flag=True, help="Show the full stack when a command fails.")
@click.version_option(__version__, prog_name="vidrefine")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """Refine low-resolution video to 1080p with FlashVideo's stage-II flow model."""
    if not isinstance(ctx.obj, Environment):
        ctx.obj = Environment.from_system()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`vidrefine = vidrefine.cli:main`).

    SIGTERM (a service manager, `kill`, a container stopping) is handled like Ctrl-C: the
    temporary output is removed, finished windows are kept, and the exit code is 143.
    """
    with sigterm_as_interrupt():
        try:
            cli.main(args=argv, prog_name="vidrefine")
        except SystemExit as exc:
            if _sigterm.received and exc.code == 1:  # stopped before a command ran: "Aborted!"
                raise SystemExit(int(ExitCode.TERMINATED)) from None
            raise


__all__ = [
    "COMMAND_MODULES",
    "CommandGroup",
    "Environment",
    "OneLineUsageError",
    "cli",
    "main",
    "one_line_usage_error",
    "warnings_as_lines",
]
