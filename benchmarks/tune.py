"""`vidrefine tune train` speed and memory per mode (issue 22).

    python3 benchmarks/tune.py             # CPU, tiny random models: measured table + planned table
    python3 benchmarks/tune.py --planned   # only the planned full-size table (no run)

Measured rows (CPU): each mode trains `--steps` steps of the self-test's tiny models
(`pipeline.selftest.write_tiny_weights`: DiT hidden 128, 2 blocks) on one cached 64x64 window of
9 frames, in a fresh process (`python -m vidrefine` or torchrun with gloo); steps/s is the
median (and best) over the steps after the first, with one thread a process (torchrun's
OMP_NUM_THREADS=1, for every mode, so rows compare); peak memory is the process's peak RSS
(per rank).
Planned rows: `train.memory.plan_training_memory` for the real stage II (1.70 B) at 540p and
1080p windows of 49 frames, bf16 on a GPU. GPU measured rows are "not measured" until a GPU
run fills them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

ROOT = Path(__file__).resolve().parents[1]
MODES = {  # name -> (extra flags, ranks)
    "LoRA, checkpointing": ([], 1),
    "LoRA, no checkpointing": (["--no-checkpointing"], 1),
    "full, checkpointing": (["--full"], 1),
    "full, no checkpointing": (["--full", "--no-checkpointing"], 1),
    "LoRA, 2 ranks (DDP)": ([], 2),
    "full, 2 ranks (FSDP2)": (["--full"], 2),
}
PLANNED = {"540p": (13, 68, 120), "1080p": (13, 134, 240)}  # latent (T, h, w) of 49 frames


def prepare(folder: Path) -> tuple[Path, Path]:
    """Tiny weights and a one-window cache in `folder`; returns (weights, cache)."""
    from vidrefine.pipeline.selftest import write_test_clip, write_tiny_weights

    weights = write_tiny_weights(folder / "weights")
    data = folder / "data"
    data.mkdir()
    write_test_clip(data / "clip.mp4", frames=9, size_hw=(64, 64))
    (data / "clip.txt").write_text("a moving gradient")
    cache = folder / "cache"
    run(
        [
            sys.executable,
            "-m",
            "vidrefine",
            "tune",
            "prepare",
            str(data),
            "-o",
            str(cache),
            "--size",
            "64x64",
            "--frames",
            "9",
            "--copies",
            "1",
            "--no-shots",
            "--weights",
            str(weights),
        ]
    )
    return weights, cache


# Runs argv[1:] and prints the peak RSS (KiB) of its process tree: a fresh wrapper per mode,
# because RUSAGE_CHILDREN keeps the largest child of all the caller ever waited for.
PEAK = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)"
)


def run(command: list[str]) -> int:
    """Run `command`; returns the peak RSS in bytes of its largest process (rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as torchrun sets it: every mode alike
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *command], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) * 1024


def measure(name: str, weights: Path, cache: Path, folder: Path, steps: int) -> dict:
    """Train one mode in a fresh process; steps/s and peak RSS."""
    flags, ranks = MODES[name]
    out = folder / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    args = [
        "tune",
        "train",
        str(cache),
        "-o",
        str(out),
        "--steps",
        str(steps),
        "--lora-rank",
        "16",
        "--weights",
        str(weights),
        "--checkpoint-every",
        str(steps),
        *flags,
    ]
    if ranks == 1:
        command = [sys.executable, "-m", "vidrefine", *args]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(ranks),
            "--master-port",
            "29517",
            "-m",
            "vidrefine",
            *args,
        ]
    peak = run(command)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_s"] for r in lines if "step_s" in r][1:]
    return {
        "mode": name,
        "ranks": ranks,
        "steps_per_s": 1 / statistics.median(times),
        "best_steps_per_s": 1 / min(times),
        "peak_rss_mib": peak / 2**20,
    }


def planned_rows() -> list[tuple[str, str, int, float]]:
    """(size, mode, ranks, GiB a rank) planned for the real stage II on a GPU."""
    from vidrefine.config import STAGE2_DIT
    from vidrefine.plan.memory import dit_tokens
    from vidrefine.train.memory import plan_training_memory
    from vidrefine.train.model import ModelSettings

    rows = []
    for size, (t, h, w) in PLANNED.items():
        tokens = dit_tokens(t, (h, w), STAGE2_DIT)
        for mode, settings, ranks in (
            ("LoRA r32, checkpointing", ModelSettings(), 1),
            ("LoRA r32, no checkpointing", ModelSettings(checkpointing=False), 1),
            ("full, checkpointing", ModelSettings(full=True), 1),
            ("full, checkpointing, FSDP2", ModelSettings(full=True), 8),
        ):
            plan = plan_training_memory(
                STAGE2_DIT, tokens, settings, device_kind="cuda", world_size=ranks
            )
            rows.append((size, mode, ranks, plan.total_gb))
    return rows


def main() -> None:
    """Print the tables (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--planned", action="store_true", help="Only the planned table.")
    args = parser.parse_args()
    if not args.planned:
        with tempfile.TemporaryDirectory(prefix="vidrefine-bench-tune-") as tmp:
            weights, cache = prepare(Path(tmp))
            print(
                "| mode (CPU, tiny DiT) | ranks | steps/s (median) | best | peak RSS MiB a rank |"
            )
            print("|---|---:|---:|---:|---:|")
            for name in MODES:
                row = measure(name, weights, cache, Path(tmp), args.steps)
                print(
                    f"| {name} | {row['ranks']} | {row['steps_per_s']:.2f} | "
                    f"{row['best_steps_per_s']:.2f} | {row['peak_rss_mib']:.0f} |",
                    flush=True,
                )
        print("| any mode, GPU, full size | - | not measured | - | not measured |\n")
    print("| window (49 frames) | mode (GPU, bf16) | ranks | planned GiB a rank |")
    print("|---|---|---:|---:|")
    for size, mode, ranks, gb in planned_rows():
        print(f"| {size} | {mode} | {ranks} | {gb:.1f} |")


if __name__ == "__main__":
    main()
