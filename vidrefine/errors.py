"""Typed errors with exit codes; the CLI turns each into one line on stderr."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the `vidrefine` command."""

    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    MISSING_WEIGHTS = 3
    OUTPUT_EXISTS = 4
    BAD_CHECKPOINT = 5
    OUT_OF_MEMORY = 6
    INTERRUPTED = 130
    TERMINATED = 143  # SIGTERM: cleaned up as for Ctrl-C (128 + 15, as shells report it)


class VidrefineError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code: ExitCode = ExitCode.ERROR


class BadInput(VidrefineError):
    """The input file, argument or setting cannot be used."""

    exit_code = ExitCode.BAD_INPUT


class OutputExists(VidrefineError):
    """The output exists and --overwrite was not given."""

    exit_code = ExitCode.OUTPUT_EXISTS


class OutputNotWritable(VidrefineError):
    """The output location cannot be written."""

    exit_code = ExitCode.BAD_INPUT


class MissingWeights(VidrefineError):
    """A weight file the command needs is not on disk (and could not be fetched)."""

    exit_code = ExitCode.MISSING_WEIGHTS


class BadCheckpoint(VidrefineError):
    """A weight file exists but is not what was expected (wrong keys, truncated, wrong model)."""

    exit_code = ExitCode.BAD_CHECKPOINT


class DoesNotFit(VidrefineError):
    """No plan fits the memory budget."""

    exit_code = ExitCode.OUT_OF_MEMORY


class Interrupted(VidrefineError):
    """The user pressed Ctrl-C; finished work was kept for resuming."""

    exit_code = ExitCode.INTERRUPTED


class DiskFull(VidrefineError):
    """A disk (the output's, the resume cache's) ran out of space or quota; nothing is a bug."""

    exit_code = ExitCode.ERROR


def first_line(exc: BaseException, empty: str | None = None) -> str:
    """The first line of `exc`'s message; `empty` (default: the exception's type name) when the
    message is blank.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else (empty or type(exc).__name__)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means the disk is full or the user's quota is spent."""
    import errno

    codes = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    return isinstance(exc, OSError) and exc.errno in codes
