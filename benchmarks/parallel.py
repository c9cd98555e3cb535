"""Scale-out under torchrun: the same job on 1..N ranks, per parallel mode, side by side.

    python3 benchmarks/parallel.py                      # files mode, 1 and 2 ranks, tiny models
    python3 benchmarks/parallel.py --ranks 1 2 4 --modes files windows --weights DIR
    python3 benchmarks/parallel.py --modes guidance guidance-vae-tiles   # the VAE shared too

Every measurement is a real `torchrun --nproc-per-node R -m vidrefine upscale ...` run (a fresh
output folder and resume cache each time), so it includes what a user pays: process start,
model loading and the hand-out. It prints one row per (mode, ranks): wall seconds of the whole
command, seconds of the refine loop on the slowest rank, speed-up and efficiency against the
same mode on one rank, and each rank's peak memory (GPU memory on CUDA, the process's RSS on
the CPU). Without --weights it writes tiny random-weight models and small clips (the numbers
then show overheads, not model speed). Every rank runs one thread (OMP_NUM_THREADS=1): on the
CPU a rank stands for one device, so 1..N ranks use 1..N cores.

A mode is one function registered with `@mode("name")`: it returns the job's input paths and
the extra `upscale` flags for that mode (`files` below; the lockstep modes add theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK_PEAK = re.compile(r"^rank (\d+): .*, peak ([\d.]+) GB$", re.M)  # rank 0's line per rank
sys.path.insert(0, str(ROOT))  # run from a checkout

from benchmarks.parallel_traffic import job_traffic  # noqa: E402

TINY_PRESET = (
    'crf = 0\nsteps = 2\nwindow_latent = 4\nwindow_overlap_latent = 2\nvae_mode = "whole"\n'
)
# the same with the VAE in tiles (2 at 64p), which the lockstep modes share over the ranks
TILED_PRESET = TINY_PRESET.replace('vae_mode = "whole"', 'vae_mode = "blend"\nvae_tile_latent = 8')


@dataclass(frozen=True)
class Job:
    """What every mode may use: the weights, a preset, a folder of uneven clips, one long clip."""

    weights: Path
    preset: Path
    clips: Path
    long_clip: Path
    size: str
    tiled_preset: Path  # TILED_PRESET


@dataclass
class Measurement:
    """One (mode, ranks) run: wall seconds; per rank, seconds refining and peak GB (from --json).

    A rank's seconds are the phases (encode, sample, decode, write) of the clips it made.
    """

    mode: str
    ranks: int
    wall: float
    loop: dict[int, float] = field(default_factory=dict)
    peaks: dict[int, float] = field(default_factory=dict)

    @property
    def slowest(self) -> float:
        """Refine-loop seconds of the slowest rank (the batch is done when it is)."""
        return max(self.loop.values(), default=self.wall)


ModeArgs = Callable[[Job], tuple[list[str], list[str]]]  # -> (inputs, extra upscale flags)
MODES: dict[str, ModeArgs] = {}


def mode(name: str) -> Callable[[ModeArgs], ModeArgs]:
    """Register a mode: a function of the Job returning (inputs, extra `upscale` flags)."""

    def register(function: ModeArgs) -> ModeArgs:
        MODES[name] = function
        return function

    return register


@mode("files")
def files_mode(job: Job) -> tuple[list[str], list[str]]:
    """The folder of uneven clips, handed out whole to the ranks, longest first."""
    return [str(job.clips)], ["--parallel", "files"]


def one_clip_mode(name: str) -> ModeArgs:
    """The long clip with every rank on it: windows (lockstep), guidance or sequence split."""

    def args(job: Job) -> tuple[list[str], list[str]]:
        return [str(job.long_clip)], ["--parallel", name]

    return args


for _name in ("windows", "guidance", "sequence"):  # guidance: 2 ranks only
    mode(_name)(one_clip_mode(_name))


@mode("guidance-vae-tiles")
def guidance_tiles_mode(job: Job) -> tuple[list[str], list[str]]:
    """Guidance split with the window's VAE in tiles, handed out to the ranks too."""
    return [str(job.long_clip)], ["--parallel", "guidance", "--preset", str(job.tiled_preset)]


def make_job(folder: Path, weights: Path | None, size: str) -> Job:
    """Tiny random weights and generated clips (unless real `weights` are given)."""
    from vidrefine.pipeline.selftest import write_test_clip, write_tiny_weights

    if weights is None:
        weights = write_tiny_weights(folder / "weights")
    preset, tiled = folder / "bench.toml", folder / "bench-tiled.toml"
    preset.write_text(TINY_PRESET)
    tiled.write_text(TILED_PRESET)
    clips = folder / "clips"
    clips.mkdir()
    for index, frames in enumerate((45, 29, 21, 13)):  # 5, 3, 2 and 1 windows
        write_test_clip(clips / f"c{index}.mp4", frames=frames)
        (clips / f"c{index}.txt").write_text(f"benchmark clip {index}: a moving gradient")
    long_clip = folder / "long.mp4"
    write_test_clip(long_clip, frames=53)
    long_clip.with_suffix(".txt").write_text("benchmark clip: a long moving gradient")
    return Job(weights, preset, clips, long_clip, size, tiled)


def measure(job: Job, name: str, ranks: int, scratch: Path) -> Measurement:
    """Run `name` on `ranks` ranks once, in a fresh output folder and resume cache."""
    inputs, extra = MODES[name](job)
    out, cache = scratch / f"{name}-{ranks}", scratch / f"{name}-{ranks}-cache"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)]
    command += ["--master-port", str(_free_port()), "-m", "vidrefine", "upscale", *inputs]
    command += ["-o", f"{out}/", "--weights", str(job.weights), "--preset", str(job.preset)]
    command += ["--size", job.size, "--offline", "--json", *extra]
    # one thread a rank, as torchrun sets for several: on the CPU a rank stands for one device,
    # and a lone rank with every core would measure torch's threading, not the scale-out
    threads = "1"
    env = {**os.environ, "VIDREFINE_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    env["OMP_NUM_THREADS"] = threads
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} on {ranks} ranks failed:\n{done.stderr[-3000:]}")
    result = Measurement(name, ranks, wall)
    for row in json.loads(done.stdout[done.stdout.index("[") :]):  # rank 0's --json results
        rank = row.get("rank", 0)
        result.loop[rank] = result.loop.get(rank, 0.0) + sum(row["seconds"].values())
        result.peaks[rank] = max(result.peaks.get(rank, 0.0), row["peak_memory_bytes"] / 1e9)
    for rank, peak in RANK_PEAK.findall(done.stderr):  # every rank's own peak (rank lines)
        result.peaks[int(rank)] = float(peak)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def table(results: list[Measurement]) -> str:
    """Markdown rows: mode, ranks, wall s, slowest rank's loop s, speed-up, efficiency, peaks."""
    head = ("mode", "ranks", "wall s", "refine s (slowest rank)", "speed-up", "efficiency")
    lines = ["| " + " | ".join((*head, "peak GB per rank")) + " |", "|---" * 7 + "|"]
    base = {r.mode: r.slowest for r in results if r.ranks == 1}
    for r in results:
        one = base.get(r.mode)
        speedup = f"{one / r.slowest:.2f}x" if one else "-"
        efficiency = f"{one / r.slowest / r.ranks:.0%}" if one else "-"
        peaks = " / ".join(f"{r.peaks[k]:.2f}" for k in sorted(r.peaks))
        lines.append(
            f"| {r.mode} | {r.ranks} | {r.wall:.1f} | {r.slowest:.1f} | {speedup} | "
            f"{efficiency} | {peaks} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """What ran the benchmark: GPUs, or the CPU and its core count."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.machine()}, {os.cpu_count()} cores (ranks are CPU processes, gloo)"


def main() -> None:
    """Parse the options, run every (mode, ranks) pair and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["files"], choices=sorted(MODES))
    parser.add_argument("--weights", type=Path, help="real weights (default: tiny random ones)")
    parser.add_argument("--size", default="64p", help="output size [64p]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidrefine-parallel-") as folder:
        job = make_job(Path(folder), args.weights, args.size)
        results = [
            measure(job, name, ranks, Path(folder))
            for name in args.modes
            for ranks in sorted(args.ranks)
        ]
        traffic = job_traffic(job.long_clip, job.preset, job.size)
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d')}")
    print(table(results))
    print("\nsent between ranks (stage-II DiT at this size, bf16 on a GPU):")
    print(traffic)


if __name__ == "__main__":
    main()
