"""The `vidrefine` command: a click group whose commands live in submodules exposing `command`.

Errors become one line on stderr and an exit code (`vidrefine.errors.ExitCode`); `--traceback`
shows the stack. Commands print only through the injected `Environment` (`ctx.obj`).
"""

from __future__ import annotations

import importlib
import traceback as tb
from pathlib import Path
from typing import Any

import click

from vidrefine import __version__
from vidrefine.cli.environment import Environment
from vidrefine.errors import ExitCode, VidrefineError

# Command name == module name under vidrefine/cli/; each module defines `command`.
COMMAND_MODULES = ("info", "upscale", "t2v", "doctor", "download", "convert", "presets")
_HERE = Path(__file__).resolve().parent


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

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn every failure into one line on stderr and its exit code."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            raise  # `vidrefine presets | head`: click's main exits quietly on EPIPE
        except VidrefineError as exc:
            _fail(ctx, exc, str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            _fail(ctx, exc, "interrupted", ExitCode.INTERRUPTED)
        except Exception as exc:
            message = (
                f"unexpected {type(exc).__name__}: {_first_line(exc)} "
                "(this is a bug in vidrefine; rerun with --traceback and report the output)"
            )
            _fail(ctx, exc, message, ExitCode.ERROR)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _fail(ctx: click.Context, exc: BaseException, message: str, code: int) -> None:
    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment.from_system()
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
    """Console-script entry point (`vidrefine = vidrefine.cli:main`)."""
    cli.main(args=argv, prog_name="vidrefine")


__all__ = ["COMMAND_MODULES", "CommandGroup", "Environment", "cli", "main"]
