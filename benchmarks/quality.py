"""Quality table (issue 15): `vidrefine compare`'s measures for a bicubic baseline, a synthetic
colour drift with each colour fix, and vidrefine on tiny random weights with each colour fix.

Run from the repository root:
    python3 benchmarks/quality.py [--frames 25] [--input-short 90] [--size 180p] [--json OUT]

Each clip of ../shared/footage (its first --frames frames, scaled to a --input-short low-res
input) or, when that folder is absent, a synthetic panning clip. The tiny random models paint
noise, so their rows show what the colour fixes do to an output that drifted everywhere, not
the real model's quality: re-run with real weights (--weights DIR) for that. Also prints the
cost of each colour fix per 1080p frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.media import FOOTAGE  # noqa: E402
from tests.quality.clips import panning_frames  # noqa: E402
from vidrefine.io.reader import read_chunks  # noqa: E402
from vidrefine.io.writer import VideoWriter  # noqa: E402
from vidrefine.quality.colorfix import apply_color_fix  # noqa: E402
from vidrefine.quality.compare import DRIFT_NOTICEABLE, compare_clips  # noqa: E402

FIXES = ("none", "adain", "wavelet")
DRIFT_RGB = (14, 0, -12)  # a warm cast: what a drifting model might add
TINY_KNOBS = {"steps": 2, "window_latent": 4, "window_overlap_latent": 2, "vae_mode": "whole"}
COLUMNS = ("clip", "output", "PSNR", "SSIM", "dE00", "dL* da* db*", "warp ratio", "HF", "drift>2")


def write(path: Path, frames: np.ndarray, fps: Fraction) -> Path:
    with VideoWriter(
        path, size_hw=frames.shape[1:3], time_base=1 / fps, fps=fps, crf=4, overwrite=True
    ) as writer:
        writer.write(frames, np.arange(len(frames)))
    return path


def resized(frames: np.ndarray, size_hw: tuple[int, int], method: int) -> np.ndarray:
    return np.stack([cv2.resize(f, size_hw[::-1], interpolation=method) for f in frames])


def low_res_input(source: Path | None, frames: int, short: int) -> tuple[np.ndarray, Fraction]:
    """The first `frames` frames of `source` (area-scaled to a `short` short side), or synthetic."""
    if source is None:
        return panning_frames(frames, (short, short * 4 // 3 // 2 * 2)), Fraction(25)
    reader = read_chunks(source, frames)
    first = next(reader).frames
    reader.close()
    height, width = first.shape[1:3]
    scale = short / min(height, width)
    size_hw = (round(height * scale / 2) * 2, round(width * scale / 2) * 2)
    return resized(first, size_hw, cv2.INTER_AREA), reader.info.fps


def row(name: str, output: str, result) -> dict:
    s = result.summary()
    return {
        "clip": name,
        "output": output,
        **{k: round(float(v), 3) for k, v in s.items()},
        "drift_frames": len(result.flagged("delta_e", DRIFT_NOTICEABLE)),
        "frames": result.frames,
    }


def synthetic_rows(name: str, source: Path, frames: np.ndarray, up_hw, fps, folder: Path):
    """Bicubic, bicubic with a colour cast, and the cast with each fix (timed per frame)."""
    bicubic = resized(frames, up_hw, cv2.INTER_CUBIC)
    rows = [row(name, "bicubic", compare_clips(source, write(folder / "b.mp4", bicubic, fps)))]
    cast = np.clip(bicubic.astype(int) + DRIFT_RGB, 0, 255).astype(np.uint8)
    for fix in FIXES:
        start = time.perf_counter()
        fixed = apply_color_fix(fix, cast, frames)
        per_frame = (time.perf_counter() - start) / len(frames)
        result = compare_clips(source, write(folder / f"cast_{fix}.mp4", fixed, fps))
        rows.append({**row(name, f"bicubic + cast, fix {fix}", result), "fix_s": per_frame})
    return rows


def tiny_rows(name: str, source: Path, size: str, weights: Path, folder: Path):
    """vidrefine on tiny random weights, once per colour fix."""
    from vidrefine import Refiner

    rows = []
    for fix in FIXES:
        refiner = Refiner.from_pretrained(
            weights, offline=True, size=size, color_fix=fix, **TINY_KNOBS
        )
        out = folder / f"tiny_{fix}.mp4"
        job = refiner.upscale(source, out, caption="a short clip", overwrite=True)
        result = compare_clips(source, out)
        rows.append({**row(name, f"vidrefine tiny, fix {fix}", result), **_phases(job)})
    return rows


def _phases(job) -> dict:
    return {"refine_s": round(sum(job.seconds.values()), 2)}


def fix_costs(repeats: int = 3) -> dict[str, float]:
    """Seconds per 1920x1080 frame of each fix, a 49-frame window measured on 4 frames."""
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (4, 270, 480, 3), dtype=np.uint8)
    frames = resized(reference, (1080, 1920), cv2.INTER_CUBIC)
    costs = {}
    for fix in FIXES[1:]:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            apply_color_fix(fix, frames, reference)
            best = min(best, (time.perf_counter() - start) / len(frames))
        costs[fix] = best
    return costs


def first_frames(path: Path, stop: int) -> np.ndarray:
    reader = read_chunks(path, stop)
    frames = next(reader).frames
    reader.close()
    return frames


def example_report(folder: Path) -> None:
    """docs/quality.md's example: Megamind frames 20-60 against its damaged copy, upscaled 2x
    with a warm cast from frame 25 on, tagged with the marks of 13-frame windows.
    """
    from PIL import Image

    from vidrefine.config import RunConfig
    from vidrefine.plan.clip import SourceFacts, plan_clip
    from vidrefine.plan.hardware import DeviceFacts
    from vidrefine.quality import write_report
    from vidrefine.quality.marks import plan_tags

    clean = first_frames(FOOTAGE / "Megamind.avi", 61)[20:]
    damaged = first_frames(FOOTAGE / "Megamind_bugy.avi", 61)[20:]
    low_hw, up_hw = (180, 246), (360, 492)
    output = resized(resized(damaged, low_hw, cv2.INTER_AREA), up_hw, cv2.INTER_CUBIC)
    output[25:] = np.clip(output[25:].astype(int) + (10, 0, -8), 0, 255).astype(np.uint8)
    fps = Fraction(2997, 125)
    config = RunConfig(window_latent=4, window_overlap_latent=2, shots=False)
    source = SourceFacts(low_hw, len(clean), fps, 1 / fps)
    tags = plan_tags(plan_clip(source, config, DeviceFacts("cpu", "cpu", None, 16.0)))
    with tempfile.TemporaryDirectory() as tmp:
        low = write(Path(tmp) / "input.mp4", resized(clean, low_hw, cv2.INTER_AREA), fps)
        out = Path(tmp) / "output.mp4"
        with VideoWriter(out, size_hw=up_hw, time_base=1 / fps, fps=fps, crf=4, metadata=tags) as w:
            w.write(output, np.arange(len(output)))
        page = write_report(compare_clips(low, out), Path(tmp) / "report")
        plot = Image.open(page.parent / "metrics.png").convert("RGB")
        plot.quantize(colors=64).save(folder / "quality_metrics.png", optimize=True)
        sheet = Image.open(sorted(page.parent.glob("frame_*.png"))[0]).convert("RGB")
        sheet = sheet.resize((640, round(sheet.height * 640 / sheet.width)), Image.LANCZOS)
        sheet.save(folder / "quality_sheet.jpg", quality=70, optimize=True)


def print_rows(rows: list[dict], console: Console) -> None:
    table = Table(title="quality (issue 15): each output against its low-res input")
    for column in COLUMNS:
        table.add_column(column)
    for r in rows:
        shifts = f"{r['delta_l']:+.2f} {r['delta_a']:+.2f} {r['delta_b']:+.2f}"
        table.add_row(
            r["clip"],
            r["output"],
            f"{r['psnr']:.2f}",
            f"{r['ssim']:.3f}",
            f"{r['delta_e']:.2f}",
            shifts,
            f"{r['warp_ratio']:.2f}",
            f"{r['hf_ratio']:.2f}",
            f"{r['drift_frames']}/{r['frames']}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--input-short", type=int, default=90, help="short side of the input")
    parser.add_argument("--size", default="180p", help="output size (vidrefine --size)")
    parser.add_argument("--weights", type=Path, help="real weights (default: tiny random ones)")
    parser.add_argument("--no-tiny", action="store_true", help="skip the vidrefine rows")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--example", type=Path, metavar="DIR", help="write the docs' pictures")
    args = parser.parse_args()
    if args.example:
        example_report(args.example)
        return
    clips = sorted(FOOTAGE.glob("*.avi")) if FOOTAGE.is_dir() else [None]
    console, rows = Console(width=150), []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = args.weights
        if weights is None and not args.no_tiny:
            from vidrefine import write_tiny_weights

            weights = write_tiny_weights(folder / "weights")
        for clip in clips:
            name = clip.stem if clip is not None else "synthetic"
            frames, fps = low_res_input(clip, args.frames, args.input_short)
            source = write(folder / f"{name}.mp4", frames, fps)
            short = int(args.size.rstrip("p"))
            scale = short / min(frames.shape[1:3])
            up_hw = tuple(round(n * scale / 2) * 2 for n in frames.shape[1:3])
            rows += synthetic_rows(name, source, frames, up_hw, fps, folder)
            if not args.no_tiny:
                rows += tiny_rows(name, source, args.size, weights, folder)
    print_rows(rows, console)
    costs = fix_costs()
    console.print(
        "colour fix cost per 1920x1080 frame: "
        + ", ".join(f"{fix} {seconds * 1000:.0f} ms" for fix, seconds in costs.items())
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fix_s_1080p": costs}, indent=1))


if __name__ == "__main__":
    main()
