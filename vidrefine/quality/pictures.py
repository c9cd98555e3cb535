"""The pictures of a quality report: per-frame plots, contact sheets, a side-by-side video.

Plots are drawn with matplotlib's Agg canvas (no pyplot, no global backend); images are
numpy arrays written as PNG by OpenCV; the video goes through `vidrefine.io.writer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from vidrefine.io.writer import VideoWriter
from vidrefine.quality.compare import DRIFT_NOTICEABLE, FLICKER_RATIO, CompareResult
from vidrefine.quality.metrics import scale_to

if TYPE_CHECKING:  # matplotlib loads when a report is drawn
    from matplotlib.figure import Figure

TILE_WIDTH = 480  # contact-sheet tiles: a full frame and a zoomed crop, side by side
GAP = 4  # pixels between tiles
SHEET_WIDTH = 2 * TILE_WIDTH + GAP
ZOOM = 4  # the crop shows 1/ZOOM of the frame's width and height
VIDEO_HEIGHT = 360  # each half of the side-by-side video
PLOT_DPI = 100
PLOT_INCHES = (SHEET_WIDTH / PLOT_DPI, 14.0)  # 964 x 1400 pixels: as wide as a contact sheet
TITLE_PT, LABEL_PT = 13, 11  # readable at the page's size (18 and 15 pixels)
THRESHOLD = {"color": "#e66100", "lw": 2.0, "ls": "--", "zorder": 1.5}  # under the data
# (key, title, threshold line or None): one panel each; the Lab shifts share one panel.
PANELS = (
    ("psnr", "PSNR of the scaled-back output (dB, higher is closer)", None),
    ("ssim", "SSIM of the scaled-back output (1 = identical)", None),
    (
        "delta_e",
        f"colour drift: mean CIEDE2000 (noticeable above the orange line, {DRIFT_NOTICEABLE:g})",
        DRIFT_NOTICEABLE,
    ),
    ("lab", "mean shift of L*, a*, b* (output - input)", None),
    (
        "warp_ratio",
        f"warping error / bicubic's (1 = as steady as the input; unsteady above {FLICKER_RATIO:g})",
        FLICKER_RATIO,
    ),
    ("hf_ratio", "high-frequency energy / bicubic's (detail gained)", None),
)
LAB_LINES = (("delta_l", "k", "L*"), ("delta_a", "m", "a*"), ("delta_b", "y", "b*"))


def write_png(path: Path, image: np.ndarray) -> tuple[int, int]:
    """Write (H, W, 3) uint8 RGB as PNG; returns (height, width)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the picture")
    return image.shape[0], image.shape[1]


def plot_metrics(result: CompareResult, path: Path) -> tuple[int, int]:
    """Draw `metrics_figure` as a PNG at `path`; returns its (height, width)."""
    figure = metrics_figure(result)
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return write_png(path, np.ascontiguousarray(rgba[..., :3]))


def metrics_figure(result: CompareResult) -> Figure:
    """Every per-frame metric against the frame index, window starts and cuts marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=PLOT_INCHES, dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    frames = np.arange(result.frames)
    for ax, (key, title, limit) in zip(axes, PANELS, strict=True):
        if key == "lab":
            for name, colour, label in LAB_LINES:
                ax.plot(frames, result.per_frame[name], colour, lw=1.5, label=label)
            # above the panel's top right corner, beside its title: over no data, whatever the clip
            ax.legend(
                loc="lower right",
                bbox_to_anchor=(1.0, 1.0),
                ncols=3,
                frameon=False,
                fontsize=LABEL_PT,
                borderaxespad=0.1,
                handlelength=1.5,
            )
        else:
            ax.plot(frames, result.per_frame[key], "b.-", lw=1.5, ms=5)
        if limit is not None:
            ax.axhline(limit, **THRESHOLD)
        _mark(ax, result)
        ax.set_title(title, fontsize=TITLE_PT, loc="left")
        ax.tick_params(labelsize=LABEL_PT)
        ax.grid(alpha=0.3)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))  # frames are whole (axes share it)
    axes[-1].set_xlabel("frame", fontsize=LABEL_PT)
    return figure


def _mark(ax: object, result: CompareResult) -> None:
    if result.marks is None:
        return
    for start in result.marks.windows:
        ax.axvline(start, color="grey", lw=1.2, ls="--")
    for cut in result.marks.cuts:
        ax.axvline(cut, color="red", lw=1.5)


def _fit(frame: np.ndarray, width: int) -> np.ndarray:
    height = max(2, round(frame.shape[0] * width / frame.shape[1]))
    return scale_to(frame, (height, width), antialias=True)


def _crop_box(bicubic: np.ndarray, output: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the 1/ZOOM region where output and bicubic differ most."""
    height, width = output.shape[:2]
    box_h, box_w = max(1, height // ZOOM), max(1, width // ZOOM)
    diff = np.abs(output.astype(np.float32) - bicubic.astype(np.float32)).mean(axis=-1)
    local = cv2.blur(diff, (box_w, box_h))
    y, x = np.unravel_index(int(np.argmax(local)), local.shape)
    top = int(np.clip(y - box_h // 2, 0, height - box_h))
    left = int(np.clip(x - box_w // 2, 0, width - box_w))
    return top, left, box_h, box_w


def contact_sheet(source: np.ndarray, output: np.ndarray) -> np.ndarray:
    """2 x 2 tiles: bicubic-upscaled input | output, then the same zoomed on their largest
    difference (the zoomed region is outlined on the full frames).
    """
    bicubic = scale_to(source, output.shape[:2], antialias=False)
    top, left, box_h, box_w = _crop_box(bicubic, output)
    tiles = []
    for frame in (bicubic, output):
        full = frame.copy()
        cv2.rectangle(full, (left, top), (left + box_w - 1, top + box_h - 1), (255, 64, 0), 2)
        full = _fit(full, TILE_WIDTH)
        crop = frame[top : top + box_h, left : left + box_w]
        zoomed = cv2.resize(crop, (full.shape[1], full.shape[0]), interpolation=cv2.INTER_NEAREST)
        tiles.append((full, zoomed))
    height = tiles[0][0].shape[0]
    sheet = np.full((2 * height + GAP, SHEET_WIDTH, 3), 255, dtype=np.uint8)
    for column, (full, zoomed) in enumerate(tiles):
        x = column * (TILE_WIDTH + GAP)
        sheet[:height, x : x + TILE_WIDTH] = full
        sheet[height + GAP :, x : x + TILE_WIDTH] = zoomed
    return sheet


def side_by_side_hw(output_hw: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the side-by-side video of an output of `output_hw` (even sizes)."""
    height = min(VIDEO_HEIGHT, output_hw[0]) // 2 * 2
    width = max(2, round(output_hw[1] * height / output_hw[0]) // 2 * 2)
    return height, 2 * width


def side_by_side(source: np.ndarray, output: np.ndarray) -> np.ndarray:
    """One video frame: bicubic-upscaled input on the left, output on the right (even sizes)."""
    height, double = side_by_side_hw(output.shape[:2])
    width = double // 2
    bicubic = scale_to(source, output.shape[:2], antialias=False)
    left = scale_to(bicubic, (height, width), antialias=True)
    right = scale_to(output, (height, width), antialias=True)
    return np.concatenate([left, right], axis=1)


def write_side_by_side(
    path: Path, pairs: Iterable[tuple[np.ndarray, np.ndarray]], fps: Fraction
) -> None:
    """Encode `side_by_side` of every pair at a constant `fps` (H.264, small)."""
    writer: VideoWriter | None = None
    try:
        for index, (source, output) in enumerate(pairs):
            frame = side_by_side(source, output)
            if writer is None:
                writer = VideoWriter(
                    path,
                    size_hw=frame.shape[:2],
                    time_base=1 / fps,
                    fps=fps,
                    crf=26,
                    preset="veryfast",
                )
            writer.write(frame[None], np.array([index], dtype=np.int64))
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
        raise
    if writer is not None:
        writer.close()
