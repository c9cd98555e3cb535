"""What the commands share for torchrun runs: the `--parallel` option and the per-rank lines.

Under torchrun every rank runs the same command; only rank 0 prints progress, tables and
results (`Environment.rank`), the others print only their warnings and errors, each line
starting with `[rank N]`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from vidrefine.cli.environment import Environment

F = TypeVar("F", bound=Callable[..., Any])

# the same names as vidrefine.pipeline.scaleout.PARALLEL_MODES (which imports torch)
PARALLEL_CHOICES = ("auto", "files", "windows", "guidance", "sequence", "guidance+sequence")


def parallel_option(function: F) -> F:
    """`--parallel MODE`: how the ranks torchrun started share the work."""
    return click.option(
        "--parallel",
        type=click.Choice(PARALLEL_CHOICES),
        default="auto",
        show_default=True,
        help=(
            "Under torchrun: 'files' hands whole clips to the ranks; 'windows' spreads one "
            "clip's windows; 'guidance' and 'sequence' split each DiT pass; 'auto' is files "
            "when there are at least as many clips as ranks, else windows (docs/distributed.md)."
        ),
    )(function)


def print_rank_lines(reports: Sequence[Any], env: Environment) -> None:
    """One line per rank under the summary table (only when more than one rank took part)."""
    if len(reports) < 2:
        return
    for report in reports:
        env.err_console.print(report.line(), highlight=False)


def output_ranks(reports: Sequence[Any]) -> dict[str, int]:
    """The rank that wrote each output, by output path; empty when one rank did everything."""
    if len(reports) < 2:
        return {}
    return {output: report.rank for report in reports for output in report.outputs}
