"""`compare_clips`: measure a refined clip against its input, streamed frame by frame.

Both clips are decoded in small chunks and matched by frame index (or, with `align`, by
timestamp); only per-frame numbers are kept, so memory does not grow with the clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidrefine.errors import BadInput
from vidrefine.io.probe import MediaInfo, probe
from vidrefine.io.reader import read_chunks
from vidrefine.progress import NullProgress, Progress
from vidrefine.quality.marks import Marks, read_marks
from vidrefine.quality.metrics import (
    InputFlow,
    color_drift,
    detail_ratio,
    fidelity,
    high_frequency_energy,
    psnr_db,
    scale_to,
    warp_ratio,
    warping_error,
)

CHUNK_FRAMES = 8
DRIFT_NOTICEABLE = 2.0  # mean CIEDE2000 a viewer notices at a glance (1 is a trained eye's limit)
FLICKER_RATIO = 1.5  # warping error half again the bicubic upscale's: unsteadier than the input
UNRELATED_CORRELATION = 0.5  # below this mean luma correlation the clips look unrelated
METRICS = (
    "psnr",
    "ssim",
    "mse",
    "delta_e",
    "delta_l",
    "delta_a",
    "delta_b",
    "warp_error",
    "warp_error_bicubic",
    "warp_ratio",
    "hf_ratio",
    "hf_output",
    "hf_bicubic",
    "correlation",
)


@dataclass
class CompareResult:
    """Per-frame metrics of OUTPUT against INPUT (arrays of one value per output frame).

    `warp_*` of frame t measure the step from frame t-1 to t (NaN for frame 0). `marks` are the
    window starts and cuts the output's metadata names (None: not made by vidrefine).
    """

    input: Path
    output: Path
    probes: tuple[MediaInfo, MediaInfo] = field(repr=False)  # of input and output
    per_frame: dict[str, np.ndarray]
    marks: Marks | None = None
    aligned: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def input_hw(self) -> tuple[int, int]:
        """The input's display size (height, width)."""
        return self.probes[0].display_hw

    @property
    def output_hw(self) -> tuple[int, int]:
        """The output's display size (height, width)."""
        return self.probes[1].display_hw

    @property
    def frames(self) -> int:
        """Frames compared."""
        return len(self.per_frame["psnr"])

    def worst(self, metric: str) -> int:
        """Index of the frame with the largest value of `metric` (0 when all are NaN)."""
        values = self.per_frame[metric]
        return 0 if np.all(np.isnan(values)) else int(np.nanargmax(values))

    def flagged(self, metric: str, limit: float) -> list[int]:
        """Frames whose `metric` exceeds `limit`."""
        values = np.nan_to_num(self.per_frame[metric], nan=-np.inf)
        return [int(i) for i in np.flatnonzero(values > limit)]

    @property
    def steps(self) -> int:
        """Frame-to-frame steps measured: what the temporal measures stand on (0 for one frame)."""
        return int(np.count_nonzero(~np.isnan(self.per_frame["warp_error"])))

    def summary(self) -> dict[str, float | int]:
        """One number per measure, over the whole clip; the temporal ones (`warp_ratio`,
        `warp_ratio_max`) are NaN, not applicable, without a frame-to-frame step (one frame).
        """
        pf = self.per_frame
        mse = float(np.mean(pf["mse"]))
        return {
            "psnr": psnr_db(mse),
            "ssim": float(np.mean(pf["ssim"])),
            "delta_e": float(np.mean(pf["delta_e"])),
            "delta_e_max": float(np.max(pf["delta_e"])),
            "delta_l": float(np.mean(pf["delta_l"])),
            "delta_a": float(np.mean(pf["delta_a"])),
            "delta_b": float(np.mean(pf["delta_b"])),
            **self._temporal_summary(),
            "hf_ratio": detail_ratio(
                float(np.mean(pf["hf_output"])), float(np.mean(pf["hf_bicubic"]))
            ),
            "worst_drift_frame": self.worst("delta_e"),
            "worst_flicker_frame": self.worst("warp_ratio"),
        }

    def _temporal_summary(self) -> dict[str, float]:
        """The warping ratio over the clip and its largest step; NaN when there is no step."""
        pf = self.per_frame
        if not self.steps:
            return {"warp_ratio": np.nan, "warp_ratio_max": np.nan}
        steps = ~np.isnan(pf["warp_error"])
        errors = (pf["warp_error"][steps].mean(), pf["warp_error_bicubic"][steps].mean())
        return {
            "warp_ratio": warp_ratio(*errors),
            "warp_ratio_max": float(np.nanmax(pf["warp_ratio"])),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: files, sizes, summary, flagged frames, marks and per-frame lists."""
        marks = self.marks and {"windows": self.marks.windows, "cuts": self.marks.cuts}
        return {
            "input": str(self.input),
            "output": str(self.output),
            "input_size": f"{self.input_hw[1]}x{self.input_hw[0]}",
            "output_size": f"{self.output_hw[1]}x{self.output_hw[0]}",
            "frames": self.frames,
            "aligned": self.aligned,
            "summary": {k: _rounded(v) for k, v in self.summary().items()},
            "drift_frames": self.flagged("delta_e", DRIFT_NOTICEABLE),
            "flicker_frames": self.flagged("warp_ratio", FLICKER_RATIO),
            "marks": marks,
            "warnings": self.warnings,
            "per_frame": {k: [_rounded(x) for x in v] for k, v in self.per_frame.items()},
        }


def _rounded(value: float | int) -> float | int | None:
    if isinstance(value, int | np.integer):
        return int(value)
    return None if np.isnan(value) else round(float(value), 4)


class _Meter:
    """Accumulates the metrics of consecutive (input, output) frame pairs."""

    def __init__(self, input_hw: tuple[int, int], output_hw: tuple[int, int]) -> None:
        self.input_hw, self.output_hw = input_hw, output_hw
        self.values: dict[str, list[float]] = {name: [] for name in METRICS}
        self.flow = InputFlow()
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # (output, bicubic)

    def add(self, source: np.ndarray, output: np.ndarray) -> None:
        source = scale_to(source, self.input_hw, antialias=True)
        output = scale_to(output, self.output_hw, antialias=True)
        bicubic = scale_to(source, self.output_hw, antialias=False)
        back = scale_to(output, self.input_hw, antialias=True)
        psnr, ssim, mse = fidelity(source, back)
        drift = color_drift(source, back)
        hf = high_frequency_energy(output), high_frequency_energy(bicubic)
        row = dict(zip(METRICS[:7], (psnr, ssim, mse, *drift), strict=True))
        row.update(hf_ratio=detail_ratio(*hf), hf_output=hf[0], hf_bicubic=hf[1])
        row.update(correlation=_correlation(source, back))
        row.update(self._temporal(source, output, bicubic))
        for name, value in row.items():
            self.values[name].append(value)

    def _temporal(self, source: np.ndarray, output: np.ndarray, bicubic: np.ndarray) -> dict:
        pair = self.flow.push(source, self.output_hw)
        previous, self.previous = self.previous, (output, bicubic)
        if pair is None or previous is None:
            return {"warp_error": np.nan, "warp_error_bicubic": np.nan, "warp_ratio": np.nan}
        error = warping_error(previous[0], output, pair.forward, pair.visible)
        baseline = warping_error(previous[1], bicubic, pair.forward, pair.visible)
        ratio = warp_ratio(error, baseline)
        return {"warp_error": error, "warp_error_bicubic": baseline, "warp_ratio": ratio}

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(v, dtype=np.float64) for name, v in self.values.items()}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the luma of two same-size frames (1 for two flat frames)."""
    x, y = a.astype(np.float64).mean(axis=-1).ravel(), b.astype(np.float64).mean(axis=-1).ravel()
    x, y = x - x.mean(), y - y.mean()
    norm = np.sqrt((x * x).sum() * (y * y).sum())
    return 1.0 if norm == 0 else float((x * y).sum() / norm)


def timed_frames(info: MediaInfo) -> Iterator[tuple[np.ndarray, float]]:
    """Every frame of a probed clip with its time in seconds from the first frame."""
    start = None
    for chunk in read_chunks(info.path, CHUNK_FRAMES, info=info):
        for frame, stamp in zip(chunk.frames, chunk.pts, strict=True):
            seconds = float(stamp * chunk.time_base)
            start = seconds if start is None else start
            yield frame, seconds - start


def frame_pairs(
    source: MediaInfo, output: MediaInfo, *, align: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(input frame, output frame) for every output frame: the same index, or with `align` the
    input frame nearest in time. Raises BadInput when, unaligned, one clip runs out first.
    """
    inputs, outputs = timed_frames(source), timed_frames(output)
    if align:
        yield from _nearest_in_time(inputs, outputs)
        return
    count = 0
    for out_frame, _ in outputs:
        pair = next(inputs, None)
        if pair is None:
            raise _count_error(source, output, count, "input")
        count += 1
        yield pair[0], out_frame
    if next(inputs, None) is not None:
        raise _count_error(source, output, count, "output")


def _nearest_in_time(
    inputs: Iterator[tuple[np.ndarray, float]], outputs: Iterator[tuple[np.ndarray, float]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    current = next(inputs, None)
    upcoming = next(inputs, None)
    if current is None:
        return
    for out_frame, when in outputs:
        while upcoming is not None and abs(upcoming[1] - when) <= abs(current[1] - when):
            current, upcoming = upcoming, next(inputs, None)
        yield current[0], out_frame


def _count_error(source: MediaInfo, output: MediaInfo, count: int, short: str) -> BadInput:
    return BadInput(
        f"{source.path} and {output.path} differ in frame count (the {short} ended after "
        f"{count} frames); compare clips of the same frames, or pass --align to match by time"
    )


def check_pairable(source: MediaInfo, output: MediaInfo, *, align: bool) -> None:
    """Refuse, before decoding, clips whose probed frame counts differ (unless `align`)."""
    if not align and source.frame_count != output.frame_count:
        raise BadInput(
            f"{source.path} has {source.frame_count} frames and {output.path} "
            f"{output.frame_count}; compare clips of the same frames, or pass --align to "
            "match frames by timestamp"
        )


def compare_clips(
    input_path: str | Path,
    output_path: str | Path,
    *,
    align: bool = False,
    progress: Progress | None = None,
) -> CompareResult:
    """Measure `output_path` (e.g. a refined clip) against `input_path`, frame by frame.

    Raises BadInput for a file that cannot be read or, without `align`, different frame counts.
    """
    source, output = probe(input_path), probe(output_path)
    check_pairable(source, output, align=align)
    meter = _Meter(source.display_hw, output.display_hw)
    progress = progress or NullProgress()
    with progress.task("compare", total=output.frame_count, unit="frames") as bar:
        for in_frame, out_frame in frame_pairs(source, output, align=align):
            meter.add(in_frame, out_frame)
            bar.advance()
    if not meter.values["psnr"]:
        raise BadInput(f"{output.path}: no frame could be decoded")
    result = CompareResult(
        Path(input_path),
        Path(output_path),
        (source, output),
        meter.arrays(),
        marks=read_marks(output_path),
        aligned=align,
    )
    result.warnings.extend(_content_warnings(result))
    return result


def _content_warnings(result: CompareResult) -> list[str]:
    correlation = float(np.mean(result.per_frame["correlation"]))
    if correlation >= UNRELATED_CORRELATION:
        return []
    return [
        f"the clips look unrelated (mean luma correlation {correlation:.2f}): are they the "
        "same footage? The numbers below compare them anyway"
    ]
