"""Stage II end to end, phase by phase, on the full-size architectures with random weights.

    python3 benchmarks/refine_gpu.py                  # GPU: 49 frames 256x480 -> 1920x1080
    python3 benchmarks/refine_gpu.py --compile        # fast path with torch.compile'd blocks
    python3 benchmarks/refine_gpu.py --cpu            # tiny models and frames, for CI
    python3 benchmarks/refine_gpu.py --paths fast fast-old   # new vs pre-issue-21 VAE operators

Each run refines one synthetic clip through `ClipRefiner.refine_stream` (the real code path)
with timing wrappers around the DiT and the VAE, under the clip's plan (`plan_clip`, made once
per path; the models are placed as it says). Two execution paths run side by side: "fast" (the
default preset plus the issue-7 fast paths) and "faithful" (the faithful preset's execution:
its VAE mode and dtypes, no background I/O, torch's default attention order). A warm-up run
(1 step) precedes each path and is not timed. FLOPs are counted on fake tensors.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from benchmarks.legacy_vae import legacy_vae  # noqa: E402
from vidrefine.config import OFFICIAL_VAE, STAGE2_DIT, DiTConfig, VAEConfig  # noqa: E402
from vidrefine.errors import DoesNotFit  # noqa: E402
from vidrefine.io.probe import probe  # noqa: E402
from vidrefine.io.reader import read_chunks  # noqa: E402
from vidrefine.io.writer import VideoWriter  # noqa: E402
from vidrefine.models.dit import VideoDiT  # noqa: E402
from vidrefine.models.vae import CausalVideoVAE  # noqa: E402
from vidrefine.pipeline.devices import device_facts  # noqa: E402
from vidrefine.pipeline.loading import StageTwoModels  # noqa: E402
from vidrefine.pipeline.refine import ClipRefiner, RefineJob  # noqa: E402
from vidrefine.plan.clip import ClipPlan, SourceFacts, plan_clip  # noqa: E402
from vidrefine.presets import load_config  # noqa: E402
from vidrefine.runtime.device import torch_dtype  # noqa: E402
from vidrefine.runtime.live_memory import LiveTensorMemory  # noqa: E402
from vidrefine.runtime.placement import load_device, place_blocks  # noqa: E402


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
    # the VAE's full-resolution convs are most of a CPU run: narrow, one resnet a level
    VAEConfig(block_out_channels=(8, 8, 8, 8), norm_groups=4, layers_per_block=1),
    parts.T5_TINY,
    5,
    (32, 32),
    "64x64",
    2,
)
PATHS = {
    # the faithful preset's execution; size, steps and window are the benchmark's
    "faithful": ("faithful", {"background_io": False, "attention": "auto", "compile": False}),
    "fast": ("default", {"background_io": True, "attention": "cudnn"}),
    # as fast, with the VAE's operators as they ran before issue 21 (benchmarks/legacy_vae.py)
    "fast-old": ("default", {"background_io": True, "attention": "cudnn"}),
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
    """RunConfig of `path` at the benchmark's size, steps and window, as a user would set it.

    The config is never rewritten: its plan (`plan_path`) decides offload, guidance batching
    and VAE tiles.
    """
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


@dataclass(frozen=True)
class PathPlan:
    """The plan a path runs under, and why the planner refused the budget (None: it fitted)."""

    plan: ClipPlan
    refused: str | None = None


def plan_path(config, source: SourceFacts, device: torch.device) -> PathPlan:
    """As a user's run: the planner fits `config` to this device (or the preset's --vram); a
    path it refuses runs as configured (planned without a budget), so its real peak is measured.

    On the CPU there is no device budget, so nothing is fitted unless the preset sets --vram.
    """
    facts = device_facts(device)
    try:
        return PathPlan(plan_clip(source, config, facts))
    except DoesNotFit as exc:
        unbudgeted = dataclasses.replace(config, vram_gb=None)
        plan = plan_clip(source, unbudgeted, dataclasses.replace(facts, memory_gb=None))
        return PathPlan(plan, str(exc))


def build_models(scale: Scale, plan: ClipPlan, device: torch.device) -> StageTwoModels:
    """Random-weight DiT and VAE placed as the plan says (dtypes, layer streaming, compile)."""
    placement = plan.models
    dtype, vae_dtype = torch_dtype(placement.dtype), torch_dtype(placement.vae_dtype)
    # as load_stage_two: a streamed DiT is built on the host, never whole on the GPU
    home = load_device(placement.offload, device)
    dit = parts.random_model(lambda: VideoDiT(scale.dit), home, dtype, seed=1)
    place_blocks(dit, dit.blocks, device, offload=placement.offload, compile=placement.compile)
    vae = parts.random_model(lambda: CausalVideoVAE(scale.vae), device, vae_dtype, seed=2)
    return StageTwoModels(vae=vae, dit=dit, device=device, dtype=dtype, vae_dtype=vae_dtype)


def refine_once(
    models, config, plan: ClipPlan, clip: Path, out: Path, context, clock: parts.Clock
) -> float:
    """One end-to-end refine of `clip` under `plan` with timing wrappers; returns wall seconds."""
    timed = StageTwoModels(
        vae=parts.TimedVAE(models.vae, clock),
        dit=parts.TimedDiT(models.dit, clock),
        device=models.device,
        dtype=models.dtype,
        vae_dtype=models.vae_dtype,
    )

    def chunks():
        reader = iter(read_chunks(clip, 16))
        while True:
            with clock.phase("I/O read"):
                chunk = next(reader, None)
            if chunk is None:
                return
            yield chunk.frames, chunk.pts

    refiner = ClipRefiner(timed, config, lambda _text: context)
    job = RefineJob(clip, out, "benchmark")
    _sync(models.device)
    began = time.perf_counter()
    result = refiner.refine_stream(chunks(), plan, job, key="bench", overwrite=True, resume=False)
    _sync(models.device)
    wall = time.perf_counter() - began
    clock._seconds["I/O write"] += result.seconds.get("write", 0.0)
    return wall


def note_refusals(plans: dict[str, PathPlan], notes: list[str]) -> None:
    """Note each path the planner refuses on this device (it still runs, unplanned)."""
    for path, planned in plans.items():
        if planned.refused is not None:
            notes.append(
                f"{path}: the planner refuses it ({planned.refused}); run as configured to measure"
            )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_t5(scale: Scale, device: torch.device, dtype: str, offload: str) -> tuple[float, int]:
    """Seconds (second of two calls) and peak bytes of encoding one caption; T5 then freed.

    Placed as a plan places it: `dtype` is the plan's, and with offload "layer" it is built on
    the host with its blocks streamed to `device`.
    """
    t5 = parts.t5_encoder(scale.t5, load_device(offload, device), torch_dtype(dtype))
    place_blocks(t5, t5.encoder.block, device, offload=offload)
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


def count_flops(scale: Scale, config, plan: ClipPlan, models, notes) -> dict[str, float]:
    """FLOPs of one DiT pass, one window's VAE encode and decode (fake tensors), as planned."""
    vae_plan = plan.vae
    h, w = vae_plan.latent_hw
    batch = 2 if plan.memory.cfg_batched else 1
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


def bench_path(
    path, planned: PathPlan, scale, steps_list, args, device, clip, tmp, notes
) -> list[RunResult]:
    """Warm up once (1 step), then time each step count on the same models and plan."""
    plan = planned.plan
    config = run_config(path, scale, steps_list[0], args.compile, device)
    # predicted next to measured: the table's peaks check the planner (full-size models only)
    if device.type == "cuda" and planned.refused is None:
        notes.append(f"{path}: {plan.line()}")
    models = build_models(scale, plan, device)
    gen = torch.Generator().manual_seed(3)
    context = torch.randn(1, parts.TEXT_TOKENS, scale.dit.text_dim, generator=gen)
    flops = count_flops(scale, config, plan, models, notes)
    operators = legacy_vae(models.vae) if path.endswith("-old") else contextlib.nullcontext()
    with operators:
        return _timed_runs(path, plan, scale, steps_list, args, models, (clip, tmp), context, flops)


def _timed_runs(path, plan, scale, steps_list, args, models, files, context, flops):
    """The untimed 1-step warm-up (unless --no-warmup), then one timed run per step count."""
    device, (clip, tmp) = models.device, files
    memory = LiveTensorMemory() if device.type != "cuda" else None
    warm = parts.Clock(device, memory)
    if not args.no_warmup:
        warm_config = run_config(path, scale, 1, args.compile, device)
        if memory is not None:
            memory.__enter__()
        refine_once(models, warm_config, plan, clip, tmp / f"{path}-warm.mp4", context, warm)
        if memory is not None:
            memory.__exit__(None, None, None)
    results = []
    for steps in steps_list:
        config = run_config(path, scale, steps, args.compile, device)
        clock = parts.Clock(device)
        out = tmp / f"{path}-{steps}.mp4"
        wall = refine_once(models, config, plan, clip, out, context, clock)
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
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the untimed 1-step run (short leases)"
    )
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
        notes: list[str] = []
        paths = list(args.paths)
        # one plan per path (steps change no decision of the plan), made before any model loads;
        # from the probe: the muxer picks the stream's time base, and the pts read are in it
        source = SourceFacts.of_media(probe(clip))
        configs = {p: run_config(p, scale, args.steps[0], args.compile, device) for p in paths}
        plans = {p: plan_path(configs[p], source, device) for p in paths}
        note_refusals(plans, notes)
        shots_s = parts.time_shot_detection(clip, notes)  # once per clip, before any model
        # T5 as each path's plan places it: its precision and whether its blocks stream
        t5_keys = {p: (plans[p].plan.models.dtype, plans[p].plan.models.offload) for p in paths}
        t5 = {key: time_t5(scale, device, *key) for key in dict.fromkeys(t5_keys.values())}
        results = []
        for path in paths:
            try:
                planned = plans[path]
                results += bench_path(
                    path, planned, scale, args.steps, args, device, clip, tmp, notes
                )
            except torch.cuda.OutOfMemoryError as exc:  # report it, keep the other paths
                notes.append(f"{path}: out of GPU memory ({str(exc).splitlines()[0]})")
                torch.cuda.empty_cache()
    rate, rate_what = parts.matmul_rate(device)
    t5_flops = parts.count_t5_flops(scale.t5)
    for r in results:
        t5_s, t5_peak = t5[t5_keys[r.path]]
        r.seconds["T5"], r.peaks["T5"], r.flops["T5"] = t5_s, t5_peak, t5_flops
        r.seconds["shot detection"] = shots_s
        r.total_s += t5_s + shots_s
    from benchmarks.refine_table import print_tables

    print_tables(results, device, rate, rate_what, notes)
    if args.json:
        rows = [r.__dict__ for r in results]
        args.json.write_text(json.dumps({"matmul_flops": rate, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
