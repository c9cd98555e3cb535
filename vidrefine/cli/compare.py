"""`vidrefine compare INPUT OUTPUT`: fidelity, colour drift, temporal stability and detail of a
refined clip against its input, as a table, JSON, or an HTML report (docs/quality.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vidrefine.cli.environment import Environment

if TYPE_CHECKING:  # scikit-image, OpenCV and PyAV load when the command runs
    from vidrefine.quality.compare import CompareResult

F = TypeVar("F", bound=Callable[..., Any])


def report_option(help_text: str) -> Callable[[F], F]:
    """`--report DIR` (a folder that must not exist yet), shared with `upscale`."""
    return click.option("--report", type=click.Path(path_type=Path), metavar="DIR", help=help_text)


@click.command("compare")
@click.argument("input_path", type=click.Path(path_type=Path), metavar="INPUT")
@click.argument("output_path", type=click.Path(path_type=Path), metavar="OUTPUT")
@click.option("--json", "as_json", is_flag=True, help="Print every number (per frame too) as JSON.")
@report_option("Write an HTML report (plots, contact sheets, side-by-side video) into DIR.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report folder.")
@click.option(
    "--align", is_flag=True, help="Match frames by timestamp when the frame counts differ."
)
@click.pass_obj
def command(
    env: Environment,
    input_path: Path,
    output_path: Path,
    as_json: bool,
    report: Path | None,
    overwrite: bool,
    align: bool,
) -> None:
    """Measure OUTPUT (e.g. a refined clip) against INPUT, frame by frame.

    \b
    vidrefine compare clip.mp4 clip_1080p.mp4
    vidrefine compare clip.mp4 clip_1080p.mp4 --report clip_report/
    """
    from vidrefine.io.folders import check_report_folder
    from vidrefine.quality.compare import compare_clips

    if report is not None:  # before minutes of work
        check_report_folder(report, overwrite=overwrite, keep=[input_path, output_path])
    result = compare_clips(input_path, output_path, align=align, progress=env.progress())
    for warning in result.warnings:
        env.warn(warning)
    if as_json:
        env.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        print_result(result, env)
    if report is not None:
        write_report_for(result, report, overwrite=overwrite, env=env)


def write_report_for(
    result: CompareResult, folder: Path, *, overwrite: bool, env: Environment
) -> None:
    """Write the HTML report of `result` and say where it is."""
    from vidrefine.quality.report import write_report

    page = write_report(result, folder, overwrite=overwrite, progress=env.progress())
    env.note(f"report: {page}")


def report_folders(folder: Path, outputs: list[Path]) -> list[Path]:
    """Where `upscale --report DIR` writes: DIR for one clip, DIR/<output name> for several."""
    return [folder] if len(outputs) == 1 else [folder / output.stem for output in outputs]


def check_upscale_report(
    folder: Path, outputs: list[Path], *, inputs: list[Path], overwrite: bool
) -> None:
    """Refuse, before the run, report folders that cannot be written or replaced.

    None may hold an input or an output of the run (`check_report_folder`'s `keep`).
    """
    from vidrefine.errors import OutputNotWritable
    from vidrefine.io.folders import check_report_folder

    keep = [*inputs, *outputs]
    if len(outputs) > 1 and not folder.is_dir():
        if folder.exists() or not folder.parent.is_dir():
            raise OutputNotWritable(f"{folder}: cannot hold the reports; give a folder name")
        check_report_folder(folder, overwrite=False, keep=keep)  # made to hold one per clip
        return
    for target in report_folders(folder, outputs):
        check_report_folder(target, overwrite=overwrite, keep=keep)


def report_after_upscale(
    pairs: list[tuple[Path, Path]], folder: Path, *, overwrite: bool, env: Environment
) -> None:
    """`upscale --report DIR`: a report per refined clip (`report_folders`), its table on stderr.

    Under torchrun only rank 0 writes them.
    """
    from vidrefine.quality.compare import compare_clips
    from vidrefine.runtime.distributed import environment_rank

    if not environment_rank().is_main:
        return
    targets = report_folders(folder, [output for _, output in pairs])
    if len(pairs) > 1:
        folder.mkdir(exist_ok=True)
    for (source, output), target in zip(pairs, targets, strict=True):
        result = compare_clips(source, output, progress=env.progress())
        print_result(result, env, stream="err")
        write_report_for(result, target, overwrite=overwrite, env=env)


def print_result(result: CompareResult, env: Environment, *, stream: str = "out") -> None:
    """The summary as a rich table: measure, value and what it means."""
    from rich.table import Table

    from vidrefine.quality.report import summary_rows

    (ih, iw), (oh, ow) = result.input_hw, result.output_hw
    title = f"{result.output.name} against {result.input.name}: {result.frames} frames, "
    table = Table(title=title + f"{iw}x{ih} -> {ow}x{oh}")
    for column in ("measure", "value", "meaning"):
        table.add_column(column)
    for row in summary_rows(result):
        table.add_row(*row)
    console = env.console if stream == "out" else env.err_console
    console.print(table)
    for line in flagged_lines(result):
        console.print(line, soft_wrap=True)


def flagged_lines(result: CompareResult) -> list[str]:
    """The frames worth a look, one line per measure that flagged any."""
    from vidrefine.quality.compare import DRIFT_NOTICEABLE, FLICKER_RATIO

    lines = []
    for metric, limit, what in (
        ("delta_e", DRIFT_NOTICEABLE, "colour drift above"),
        ("warp_ratio", FLICKER_RATIO, "warping ratio above"),
    ):
        frames = result.flagged(metric, limit)
        if frames:
            shown = ", ".join(map(str, frames[:20])) + (" ..." if len(frames) > 20 else "")
            lines.append(f"{what} {limit} at {len(frames)} frame(s): {shown}")
    return lines
