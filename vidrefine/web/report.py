"""A finished job's compare report (`vidrefine compare INPUT OUTPUT --report`), in its folder.

The report (`report/`: HTML page, metrics plot, contact sheets, side-by-side video, JSON) and
its summary table (`summary.md`) live in the job's folder inside the work folder; once written
they are shown again without measuring anew.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from vidrefine.io.atomic import atomic_output

if TYPE_CHECKING:  # scikit-image, OpenCV and matplotlib load on the first compare
    from vidrefine.quality.compare import CompareResult

REPORT = "report"  # write_report's folder in a job's folder
SUMMARY = "summary.md"  # the summary table the page shows
PLOT = "metrics.png"
_WRITING = threading.Lock()  # two clicks must not write one report twice at once


def summary_markdown(result: CompareResult, page: Path) -> str:
    """The summary rows of `result` (as `vidrefine compare` prints them) as Markdown."""
    from vidrefine.quality.report import summary_rows

    (ih, iw), (oh, ow) = result.input_hw, result.output_hw
    head = (
        f"**{result.output.name}** against **{result.input.name}**: {result.frames} frames, "
        f"{iw}x{ih} -> {ow}x{oh}"
    )
    rows = ["| measure | value | meaning |", "|---|---|---|"]
    rows += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in summary_rows(result)]
    notes = [f"- {warning}" for warning in result.warnings]
    return "\n".join([head, "", *rows, "", *notes, "", f"The whole report: `{page}`"])


def job_report(source: Path, output: Path, folder: Path) -> tuple[str, list[str]]:
    """(summary, pictures) of the report of `output` against `source` in the job's `folder`,
    measured and written first when it is not there yet.

    Raises:
        BadInput: a clip cannot be read, or the frame counts differ (from `compare_clips`).
    """
    from vidrefine.quality.report import PAGE

    report, summary = folder / REPORT, folder / SUMMARY
    with _WRITING:
        if not (summary.is_file() and (report / PAGE).is_file()):
            _write(source, output, report, summary)
    pictures = [report / PLOT, *sorted(report.glob("frame_*.png"))]
    return summary.read_text(encoding="utf-8"), [str(p) for p in pictures if p.is_file()]


def _write(source: Path, output: Path, report: Path, summary: Path) -> None:
    """Measure, write the report (replacing a partial one), then its summary (atomically)."""
    from vidrefine.quality.compare import compare_clips
    from vidrefine.quality.report import write_report

    result = compare_clips(source, output)
    page = write_report(result, report, overwrite=True)
    with atomic_output(summary, overwrite=True) as temp:
        temp.write_text(summary_markdown(result, page), encoding="utf-8")


__all__ = ["job_report", "summary_markdown"]
