"""`write_report`: a folder with an HTML page, its pictures, a side-by-side video and the JSON.

The folder is built under a temporary name beside its final place and renamed when complete, so
it is either all there or not there. The page references only its own files: no scripts, fonts
or styles from the network.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vidrefine.io.folders import atomic_folder
from vidrefine.progress import NullProgress, Progress
from vidrefine.quality.compare import DRIFT_NOTICEABLE, FLICKER_RATIO, CompareResult, frame_pairs
from vidrefine.quality.pictures import (
    SHEET_WIDTH,
    contact_sheet,
    plot_metrics,
    side_by_side_hw,
    write_png,
    write_side_by_side,
)

PAGE = "index.html"
VIDEO = "side_by_side.mp4"


def write_report(
    result: CompareResult,
    folder: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write the report of `result` into `folder` (atomically); returns the page's path.

    Reads both clips once more (streamed) for the contact sheets and the side-by-side video.
    """
    progress = progress or NullProgress()
    wanted = sorted({result.worst("delta_e"), result.worst("warp_ratio")})
    with atomic_folder(folder, overwrite=overwrite) as temp:
        sheets = _write_pictures(result, temp, wanted, progress)
        plot_hw = plot_metrics(result, temp / "metrics.png")
        (temp / "metrics.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        (temp / PAGE).write_text(page(result, plot_hw, sheets))
    return Path(folder) / PAGE


def _write_pictures(
    result: CompareResult, temp: Path, wanted: list[int], progress: Progress
) -> dict[int, tuple[str, tuple[int, int]]]:
    """Stream both clips once: the side-by-side video, and a contact sheet per wanted frame."""
    source, output = result.probes
    sheets: dict[int, tuple[str, tuple[int, int]]] = {}

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with progress.task("report", total=result.frames, unit="frames") as bar:
            for index, pair in enumerate(frame_pairs(source, output, align=result.aligned)):
                if index in wanted:
                    name = f"frame_{index:05d}.png"
                    sheets[index] = (name, write_png(temp / name, contact_sheet(*pair)))
                yield pair
                bar.advance()

    write_side_by_side(temp / VIDEO, pairs(), output.fps or 25)
    return sheets


def _row(cells: list[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"


def summary_rows(result: CompareResult) -> list[tuple[str, str, str]]:
    """(measure, value, what it means) rows shared by the page and the CLI's table."""
    s = result.summary()
    drift = result.flagged("delta_e", DRIFT_NOTICEABLE)
    flicker = result.flagged("warp_ratio", FLICKER_RATIO)
    return [
        ("PSNR", f"{s['psnr']:.2f} dB", "fidelity of the scaled-back output to the input"),
        ("SSIM", f"{s['ssim']:.4f}", "structure kept (1 = identical)"),
        (
            "colour drift (CIEDE2000)",
            f"{s['delta_e']:.2f} mean, {s['delta_e_max']:.2f} max (frame {s['worst_drift_frame']})",
            f"{len(drift)} frame(s) above {DRIFT_NOTICEABLE}",
        ),
        (
            "shift of L*, a*, b*",
            f"{s['delta_l']:+.2f} {s['delta_a']:+.2f} {s['delta_b']:+.2f}",
            "mean output - input; L* is lightness, a* green-red, b* blue-yellow",
        ),
        (
            "warping ratio",
            f"{s['warp_ratio']:.2f} overall, {s['warp_ratio_max']:.2f} max "
            f"(frame {s['worst_flicker_frame']})",
            f"{len(flicker)} frame(s) above {FLICKER_RATIO}; 1 = as steady as the input",
        ),
        ("high-frequency energy", f"{s['hf_ratio']:.2f}x bicubic", "detail beyond a plain upscale"),
    ]


def page(
    result: CompareResult,
    plot_hw: tuple[int, int],
    sheets: dict[int, tuple[str, tuple[int, int]]],
) -> str:
    """The HTML page: summary table, plots, contact sheets and the video; no remote content."""
    s = result.summary()
    title = f"vidrefine compare: {result.output.name} against {result.input.name}"
    reasons: dict[int, str] = {}
    for frame, why in (
        (s["worst_drift_frame"], "largest colour drift"),
        (s["worst_flicker_frame"], "least steady step"),
    ):
        reasons[frame] = f"{reasons[frame]} and {why}" if frame in reasons else why
    figures = "".join(
        f"<figure><img src='{name}' width='{w}' height='{h}' alt='frame {i}'>"
        f"<figcaption>frame {i}: {html.escape(reasons.get(i, ''))}; left bicubic-upscaled "
        "input, right output; below, the region where they differ most, zoomed</figcaption>"
        "</figure>"
        for i, (name, (h, w)) in sorted(sheets.items())
    )
    return _TEMPLATE.format(
        title=html.escape(title),
        facts=html.escape(_facts(result)),
        rows="".join(_row(list(r)) for r in summary_rows(result)),
        notes="".join(f"<p class='warn'>{html.escape(w)}</p>" for w in result.warnings),
        plot_w=plot_hw[1],
        plot_h=plot_hw[0],
        marks=html.escape(_marks_text(result)),
        figures=figures,
        video=VIDEO,
        video_h=_video_hw(result)[0],
        video_w=_video_hw(result)[1],
    )


def _facts(result: CompareResult) -> str:
    (ih, iw), (oh, ow) = result.input_hw, result.output_hw
    matched = "by timestamp" if result.aligned else "by frame index"
    return f"{result.frames} frames, {iw}x{ih} -> {ow}x{oh}, matched {matched}"


def _marks_text(result: CompareResult) -> str:
    """What the plots mark: every window start (the first is frame 0) and every cut."""
    if result.marks is None:
        return "No window starts or cuts are marked: the output carries no vidrefine plan."
    windows, cuts = result.marks.windows, result.marks.cuts
    if not windows and not cuts:
        return "One window (starts at frame 0) and no cut: nothing to mark."
    starts = ", ".join(map(str, sorted({0, *windows, *cuts})))
    text = f"Windows start at frames {starts}: a dashed grey line marks each start after the first"
    if not cuts:
        return text + "; no cut."
    return text + f", a red line each cut (a new shot, frames {', '.join(map(str, cuts))})."


def _video_hw(result: CompareResult) -> tuple[int, int]:
    """The side-by-side video's size on the page: its own, enlarged to the contact sheets'
    width when smaller (a small clip's video would sit under its own controls); the page's
    style shrinks it to the page's width.
    """
    height, width = side_by_side_hw(result.output_hw)
    shown = max(width, SHEET_WIDTH)
    return round(height * shown / width), shown


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1000px; margin: 1em auto; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
.warn {{ color: #a40; }} figure {{ margin: 1em 0; }} img, video {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{title}</h1>
<p>{facts}</p>
{notes}
<table><tr><th>measure</th><th>value</th><th>meaning</th></tr>{rows}</table>
<h2>Per frame</h2>
<p>{marks}</p>
<img src="metrics.png" width="{plot_w}" height="{plot_h}" alt="per-frame metrics">
<h2>Worst frames</h2>
{figures}
<h2>Side by side</h2>
<p>Left: the input upscaled bicubically. Right: the output.</p>
<video src="{video}" width="{video_w}" height="{video_h}" controls loop muted></video>
<p>Every number per frame: <a href="metrics.json">metrics.json</a>.</p>
</body></html>
"""
