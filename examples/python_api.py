"""vidrefine from Python: upscale a file, many files, frames in memory, and text to video.

    python examples/python_api.py upscale IN.mp4 OUT.mp4 "A long, detailed caption ..."
    python examples/python_api.py many FOLDER OUT_FOLDER "one caption for all"
    python examples/python_api.py t2v PROMPTS.txt OUT_FOLDER
    python examples/python_api.py demo OUT_FOLDER     # tiny random weights, CPU, no download

Real weights are found on the usual search path (--weights DIR, $VIDREFINE_WEIGHTS, the user
cache) and fetched on first use (about 26 GB; a GPU is strongly advised). `demo` writes tiny
random weights and runs every call on the CPU in under a minute (its pictures are noise).
With tiny weights always pass a small `size`, as `demo` does: at the default 1080p even the
tiny models run for more than 19 minutes on a CPU.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

import vidrefine
from vidrefine import Refiner


def upscale(src: str, dst: str, caption: str, weights: str | None = None) -> None:
    """The three lines: load once, refine a file (audio and timing kept)."""
    refiner = Refiner.from_pretrained(weights=weights, preset="default")
    result = refiner.upscale(src, dst, caption=caption)
    print(f"{dst}: {result.frames} frames, {result.windows} windows")


def many(folder: str, out_folder: str, caption: str, weights: str | None = None) -> None:
    """Many files with the models loaded once; a failing file is reported, the rest go on."""
    refiner = Refiner.from_pretrained(weights=weights)
    Path(out_folder).mkdir(parents=True, exist_ok=True)
    clips = sorted(Path(folder).glob("*.mp4"))
    jobs = [(clip, Path(out_folder) / f"{clip.stem}_1080p.mp4", caption) for clip in clips]
    for outcome in refiner.upscale_many(jobs):
        failed = isinstance(outcome, vidrefine.JobFailure)
        print(outcome.job.output, outcome.error if failed else "done")


def t2v(prompt_file: str, out_folder: str, weights: str | None = None) -> None:
    """Stage-I previews for every prompt, then each refined to 1080p from its float frames."""
    prompts = [p for p in Path(prompt_file).read_text().splitlines() if p and p[0] != "#"]
    config = vidrefine.load_config("default", {})
    jobs = vidrefine.generate_videos(
        prompts, [0], config, output_dir=Path(out_folder), weights_dir=weights
    )
    for job in jobs:
        print("preview:", job.preview, "refined:", job.output)


def demo(out_folder: str) -> None:
    """Every call above on tiny random weights, plus frames streamed in and out of memory."""
    out = Path(out_folder)
    weights = vidrefine.write_tiny_weights(out / "tiny-weights")
    clip = out / "in.mp4"
    vidrefine.write_test_clip(clip, frames=20, size_hw=(48, 64))
    # A small size (not the default 1080p) and small windows: quick on a CPU.
    tiny = {"size": "96x64", "steps": 2, "window_latent": 3, "window_overlap_latent": 1}
    refiner = Refiner.from_pretrained(weights=weights, offline=True, **tiny)
    result = refiner.upscale(clip, out / "out.mp4", caption="a test clip", overwrite=True)
    print(f"file: {result.frames} frames at {result.output_hw}; {result.plan.line()}")

    rng = np.random.default_rng(0)
    frames = (rng.random((9, 48, 64, 3)) * 255).astype(np.uint8)  # any frames in memory
    refined = list(refiner.stream(frames, caption="noise", frame_count=len(frames), fps=12))
    print(f"stream: {len(refined)} frames of {refined[0].shape} out")
    print("plan as data:", sorted(refiner.plan(9, (48, 64), Fraction(12)).to_dict()))


COMMANDS = {"upscale": (upscale, 3), "many": (many, 3), "t2v": (t2v, 2), "demo": (demo, 1)}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS or len(argv) - 1 < COMMANDS[argv[0]][1]:
        print(__doc__)
        return 0 if not argv else 2
    function, _count = COMMANDS[argv[0]]
    function(*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
