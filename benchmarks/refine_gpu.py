"""Stage II end to end, phase by phase, on the full-size architectures with random weights.

    python3 benchmarks/refine_gpu.py                  # GPU: 49 frames 256x480 -> 1920x1080
    python3 benchmarks/refine_gpu.py --compile        # fast path with torch.compile'd blocks
    python3 benchmarks/refine_gpu.py --cpu            # tiny models and frames, for CI

Each run refines one synthetic clip through `Refiner.refine_stream` (the real code path) with
timing wrappers around the DiT and the VAE. Two execution paths run side by side: "fast" (the
default preset plus the issue-7 fast paths) and "faithful" (the faithful preset's execution:
its VAE mode and dtypes, no background I/O, torch's default attention order). A warm-up run
(1 step) precedes each path and is not timed. FLOPs are counted on fake tensors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks import refine_parts as parts  # noqa: E402
from vidrefine.config import OFFICIAL_VAE, STAGE2_DIT, DiTConfig, VAEConfig  # noqa: E402
from vidrefine.device import resolve_dtype  # noqa: E402
from vidrefine.errors import DoesNotFit  # noqa: E402
from vidrefine.geometry import plan_geometry  # noqa: E402
from vidrefine.io.probe import probe  # noqa: E402
from vidrefine.io.reader import read_chunks  # noqa: E402
from vidrefine.io.writer import VideoWriter  # noqa: E402
from vidrefine.live_memory import LiveTensorMemory  # noqa: E402
from vidrefine.models.dit import VideoDiT  # noqa: E402
from vidrefine.models.vae import CausalVideoVAE  # noqa: E402
from vidrefine.offload import stream_model  # noqa: E402
from vidrefine.planner import apply_plan, plan_memory  # noqa: E402
from vidrefine.presets import load_config  # noqa: E402
from vidrefine.refine import ClipSource, RefineJob, Refiner, StageTwoModels  # noqa: E402
from vidrefine.speed import device_budget_gb, prepare_dit  # noqa: E402
from vidrefine.windows import WindowPlan  # noqa: E402


@dataclass(frozen=True)
class Scale:
    """Model shapes and clip size of one benchmark mode."""

    dit: DiTConfig
    vae: VAEConfig
    t5: dict
    frames: int
    input_hw: tuple[int, int]
    size: str
    window_latent: int


FULL = Scale(STAGE2_DIT, OFFICIAL_VAE, parts.T5_XXL, 49, (256, 480), "1920x1080", 13)
TINY = Scale(
    DiTConfig(hidden_size=64, num_layers=2, num_heads=2, text_dim=32, stage2_embeddings=True),
    VAEConfig(block_out_channels=(32, 32, 32, 32)),
    parts.T5_TINY,
    9,
    (32, 48),
    "96x64",
    3,
)
PATHS = {
    # the faithful preset's execution; size, steps and window are the benchmark's
    "faithful": ("faithful", {"background_io": False, "attention": "auto", "compile": False}),
    "fast": ("default", {"background_io": True, "attention": "cudnn"}),
    # guidance's two passes one after the other: less activation memory, more launches
    "fast-sequential": (
        "default",
        {"background_io": True, "attention": "cudnn", "cfg_batched": False},
    ),
    # the low-vram preset as it ships: streamed blocks, small VAE tiles, a 16 GB plan
    "low-vram": ("low-vram", {"background_io": True, "attention": "cudnn"}),
}


@dataclass
class RunResult:
    """One timed run: seconds, peaks and FLOPs per phase."""

    path: str
    steps: int
    seconds: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0


def write_clip(path: Path, frames: int, size_hw: tuple[int, int]) -> None:
    """A smooth moving gradient (compresses like real footage, unlike noise)."""
    h, w = size_hw
    yy, xx = np.mgrid[0:h, 0:w]
    with VideoWriter(path, size_hw=size_hw, time_base=Fraction(1, 24), fps=Fraction(24)) as out:
        for i in range(frames):
            r = (xx * 255 // w + 3 * i) % 256
            g = (yy * 255 // h + 5 * i) % 256
            b = ((xx + yy) * 2 + 7 * i) % 256
            frame = np.stack([r, g, b], axis=-1).astype(np.uint8)
            out.write(frame[None], np.array([i], dtype=np.int64))


def run_config(path: str, scale: Scale, steps: int, compile_: bool, device: torch.device):
    """RunConfig of `path` at the benchmark's size, steps and window."""
    preset, knobs = PATHS[path]
    knobs = dict(knobs)
    if path.startswith("fast"):
        knobs["compile"] = compile_
    overlap = min(4, scale.window_latent - 1)
    flags = {"size": scale.size, "steps": steps, "window_latent": scale.window_latent}
    flags |= {"window_overlap_latent": overlap, "audio": False}
    if device.type != "cuda":
        flags |= {"dtype": "fp32", "vae_dtype": "fp32"}  # bf16 on the CPU measures nothing useful
        return load_config(preset, {**flags, **knobs})
    # as a user's run: the memory planner fits the preset to this GPU (or the preset's --vram);
    # a path it refuses runs as configured, so its real peak is measured (see `planned`)
    config = load_config(preset, {**flags, **knobs})
    try:
        return apply_plan(config, plan_for(config, scale, device))
    except DoesNotFit:
        return config


def plan_for(config, scale: Scale, device: torch.device):
    """The planner's choice for `config` on `device` (full-size models only)."""
    return plan_memory(config, scale.input_hw, vram_gb=device_budget_gb(config, device))


def build_models(scale: Scale, config, device: torch.device) -> StageTwoModels:
    """Random-weight DiT and VAE in the config's dtypes, with its fast paths applied."""
    dtype = resolve_dtype(config.dtype, device)
    vae_dtype = resolve_dtype(config.vae_dtype, device)
    # streamed as in load_stage_two: built on the host, never whole on the GPU
    home = torch.device("cpu") if config.offload == "layer" else device
    dit = parts.random_model(lambda: VideoDiT(scale.dit), home, dtype, seed=1)
    dit, _, _ = prepare_dit(dit, config, device)
    vae = parts.random_model(lambda: CausalVideoVAE(scale.vae), device, vae_dtype, seed=2)
    return StageTwoModels(vae=vae, dit=dit, device=device, dtype=dtype, vae_dtype=vae_dtype)


def refine_once(models, config, clip: Path, out: Path, context, clock: parts.Clock) -> float:
    """One end-to-end refine of `clip` with timing wrappers; returns wall seconds."""
    timed = StageTwoModels(
        vae=parts.TimedVAE(models.vae, clock),
        dit=parts.TimedDiT(models.dit, clock),
        device=models.device,
        dtype=models.dtype,
        vae_dtype=models.vae_dtype,
    )
    info = probe(clip)
    source = ClipSource(info.display_hw, info.frame_count, info.time_base, info.fps)

    def chunks():
        reader = iter(read_chunks(clip, 16))
        while True:
            with clock.phase("I/O read"):
                chunk = next(reader, None)
            if chunk is None:
                return
            yield chunk.frames, chunk.pts

    refiner = Refiner(timed, config, lambda _text: context)
    job = RefineJob(clip, out, "benchmark")
    _sync(models.device)
    began = time.perf_counter()
    result = refiner.refine_stream(chunks(), source, job, key="bench", overwrite=True, resume=False)
    _sync(models.device)
    wall = time.perf_counter() - began
    clock._seconds["I/O write"] += result.seconds.get("write", 0.0)
    return wall


def note_refusals(paths: list[str], scale: Scale, device: torch.device, notes: list[str]) -> None:
    """Note each path the planner would refuse on `device` (it still runs, unplanned)."""
    if device.type != "cuda":
        return
    for path in paths:
        config = run_config(path, scale, 1, False, device)
        try:
            plan_for(config, scale, device)
        except DoesNotFit as exc:
            notes.append(f"{path}: the planner refuses it ({exc}); run as configured to measure")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_t5(
    scale: Scale, device: torch.device, dtype: torch.dtype, *, stream: bool = False
) -> tuple[float, int]:
    """Seconds (second of two calls) and peak bytes of encoding one caption; T5 then freed.

    `stream`: built on the host with its blocks streamed to `device` (offload "layer").
    """
    t5 = parts.t5_encoder(scale.t5, torch.device("cpu") if stream else device, dtype)
    if stream:
        stream_model(t5, t5.encoder.block, device)
    ids = torch.randint(0, scale.t5["vocab_size"], (1, parts.TEXT_TOKENS), device=device)
    memory = LiveTensorMemory() if device.type != "cuda" else None
    clock = parts.Clock(device, memory)
    with torch.no_grad():
        t5(input_ids=ids)  # warm-up
        if memory is not None:
            memory.__enter__()
        with clock.phase("T5"):
            t5(input_ids=ids)
        if memory is not None:
            memory.__exit__(None, None, None)
    seconds = clock.seconds()["T5"]
    del t5
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return seconds, clock.peaks["T5"]


def count_flops(scale: Scale, config, models, notes: list[str]) -> dict[str, float]:
    """FLOPs of one DiT pass, one window's VAE encode and decode (fake tensors)."""
    geometry = plan_geometry(scale.input_hw, config.size, aspect=config.aspect)
    window = WindowPlan(config.window_latent, config.window_overlap_latent)
    refiner = Refiner(models, config, lambda _t: None)
    vae_plan = refiner._vae_plan(geometry, window)
    h, w = vae_plan.latent_hw
    batch = 2 if config.cfg_batched else 1
    dit, how = parts.count_dit_flops(scale.dit, (batch, vae_plan.latent_frames, 16, h, w))
    notes.append(f"DiT FLOPs: {how} (batch {batch}, {vae_plan.latent_frames}x{h}x{w} latents)")
    encode, decode = parts.count_vae_flops(scale.vae, vae_plan)
    tokens = vae_plan.latent_frames * (h // 2) * (w // 2) + scale.dit.text_length
    shape = (batch, scale.dit.num_heads, tokens, scale.dit.head_dim)
    kernel = parts.probe_attention(shape, models.dtype, models.device, config.attention)
    notes.append(
        f"{config.attention!r} attention ran the {kernel} kernel at {shape} {models.dtype}"
    )
    return {"DiT pass": dit, "VAE encode": encode, "VAE decode": decode}


def bench_path(path, scale, steps_list, args, device, clip, tmp, notes) -> list[RunResult]:
    """Warm up once (1 step), then time each step count on the same models."""
    config = run_config(path, scale, steps_list[0], args.compile, device)
    if device.type == "cuda":  # predicted next to measured: the table's peaks check the planner
        with contextlib.suppress(DoesNotFit):
            notes.append(f"{path}: {plan_for(config, scale, device).line()}")
    models = build_models(scale, config, device)
    gen = torch.Generator().manual_seed(3)
    context = torch.randn(1, parts.TEXT_TOKENS, scale.dit.text_dim, generator=gen)
    flops = count_flops(scale, config, models, notes)
    memory = LiveTensorMemory() if device.type != "cuda" else None
    warm = parts.Clock(device, memory)
    warm_config = run_config(path, scale, 1, args.compile, device)
    if memory is not None:
        memory.__enter__()
    refine_once(models, warm_config, clip, tmp / f"{path}-warm.mp4", context, warm)
    if memory is not None:
        memory.__exit__(None, None, None)
    results = []
    for steps in steps_list:
        config = run_config(path, scale, steps, args.compile, device)
        clock = parts.Clock(device)
        wall = refine_once(models, config, clip, tmp / f"{path}-{steps}.mp4", context, clock)
        peaks = dict(clock.peaks) if device.type == "cuda" else _cpu_peaks(warm.peaks, steps)
        result = RunResult(path, steps, clock.seconds(), peaks, total_s=wall)
        result.flops = {"VAE encode": flops["VAE encode"], "VAE decode": flops["VAE decode"]}
        for name in result.seconds:
            if name.startswith("DiT pass"):  # one call: batch 2 (cond + uncond) when batched
                result.flops[name] = flops["DiT pass"]
        results.append(result)
    return results


def _cpu_peaks(warm_peaks: dict[str, int], steps: int) -> dict[str, int]:
    """On the CPU, peaks come from the warm-up run; every DiT pass has the same shape."""
    peaks = {k: v for k, v in warm_peaks.items() if not k.startswith("DiT pass")}
    dit_peak = max((v for k, v in warm_peaks.items() if k.startswith("DiT pass")), default=0)
    return peaks | {f"DiT pass {i + 1}": dit_peak for i in range(2 * steps)}


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run every path and step count, print the table (and JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny models and frames on the CPU")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 5])
    parser.add_argument("--paths", nargs="+", choices=sorted(PATHS), default=["fast", "faithful"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: use --cpu for the reduced-size run")
    device = torch.device("cpu" if args.cpu else "cuda")
    scale = TINY if args.cpu else FULL
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["VIDREFINE_CACHE"] = str(tmp / "jobs")
        clip = tmp / "input.mp4"
        write_clip(clip, scale.frames, scale.input_hw)
        t5_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        notes: list[str] = []
        paths = list(args.paths)
        note_refusals(paths, scale, device, notes)
        offloads = {p: run_config(p, scale, 1, False, device).offload for p in paths}
        streamed = {p: offload == "layer" for p, offload in offloads.items()}
        t5 = {s: time_t5(scale, device, t5_dtype, stream=s) for s in set(streamed.values())}
        results = []
        for path in paths:
            try:
                results += bench_path(path, scale, args.steps, args, device, clip, tmp, notes)
            except torch.cuda.OutOfMemoryError as exc:  # report it, keep the other paths
                notes.append(f"{path}: out of GPU memory ({str(exc).splitlines()[0]})")
                torch.cuda.empty_cache()
    rate, rate_what = parts.matmul_rate(device)
    t5_flops = parts.count_t5_flops(scale.t5)
    for r in results:
        t5_s, t5_peak = t5[streamed[r.path]]
        r.seconds["T5"], r.peaks["T5"], r.flops["T5"] = t5_s, t5_peak, t5_flops
        r.total_s += t5_s
    from benchmarks.refine_table import print_tables

    print_tables(results, device, rate, rate_what, notes)
    if args.json:
        rows = [r.__dict__ for r in results]
        args.json.write_text(json.dumps({"matmul_flops": rate, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
