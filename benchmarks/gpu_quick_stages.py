"""The model-sized stages of benchmarks/gpu_quick.py: the VAE old vs new, one DiT pass per
attention kernel, and refine_gpu.py end to end (see gpu_quick.py for the whole run).
"""

from __future__ import annotations

import dataclasses

import torch

from benchmarks import vae as vae_bench
from benchmarks.refine_parts import count_dit_flops, count_vae_flops, random_model
from vidrefine.errors import VidrefineError
from vidrefine.models.dit import VideoDiT
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.plan.vae import VAEPlan, plan_vae
from vidrefine.plan.vae_memory import decode_peak_bytes, encode_peak_bytes
from vidrefine.runtime.attention import attention_kernels, observe_attention_kernel
from vidrefine.runtime.device import autocast_for

VAE_VARIANTS = ("new", "old", "ndhwc")  # new first: a stage cut at its limit keeps it
KERNELS = ("cudnn", "flash", "flash_attn", "int8")
RUN_GB = 4.2  # what a run's plan keeps beside the VAE: the DiT's weights and the runtime


def _vae_plan(ctx) -> VAEPlan:
    s = ctx.sizes
    if ctx.device.type != "cuda":
        return plan_vae(s.size_hw, s.clip_frames, tile_latent=10**6, chunk_latent=2)
    total = torch.cuda.get_device_properties(ctx.device).total_memory / 1024**3
    return plan_vae(s.size_hw, s.clip_frames, budget_gb=total - RUN_GB)


def estimate_gb(plan: VAEPlan, variant: str, ctx) -> tuple[float, float]:
    """The planner's (encode, decode) peaks for `variant` over `plan`'s tiles, the clip's
    output accumulator included (weights excluded: they were allocated before the measurement).
    """
    _, kernels = vae_bench.KERNEL_VARIANTS[variant]
    kernels = dataclasses.replace(kernels, device=ctx.device.type)
    cost = {"dtype_bytes": ctx.dtype.itemsize, **kernels.memory_args()}
    scale = ctx.sizes.vae.block_out_channels[0] / 128
    enc_hw = tuple(8 * t for t in plan.encode_tiles.tile_hw)
    dec_hw = tuple(8 * t for t in plan.decode_tiles.tile_hw)
    enc = encode_peak_bytes(1 + plan.encode_chunk_frames, enc_hw, **cost)
    dec = decode_peak_bytes(1 + 4 * plan.decode_chunk_latent, dec_hw, **cost)
    out = 3 * 4 * plan.padded_frames * plan.padded_hw[0] * plan.padded_hw[1]
    moments = 4 * 2 * 16 * plan.latent_frames * plan.latent_hw[0] * plan.latent_hw[1]  # fp32
    return (scale * enc + moments) / 1e9, (scale * dec + out) / 1e9


def stage_vae(ctx) -> None:
    """One 49-frame 1088x1920 encode and decode per variant (new, then old), as a run plans it."""
    s = ctx.sizes
    vae = random_model(lambda: CausalVideoVAE(s.vae), ctx.device, ctx.dtype, seed=2)
    plan = _vae_plan(ctx)
    encode_flops, decode_flops = count_vae_flops(s.vae, plan)
    gen = torch.Generator(device=ctx.device).manual_seed(0)
    video = torch.rand(1, 3, s.clip_frames, *s.size_hw, generator=gen, device=ctx.device)
    video = video.mul_(2).sub_(1).to(ctx.dtype)
    tiles = f"{len(plan.decode_tiles.tiles)} decode tiles {plan.decode_tiles.tile_hw}"
    ctx.record.add(variant="plan", value=f"{plan.mode}, {tiles}", flops=encode_flops + decode_flops)

    def publish(rows: list[dict]) -> None:
        for row in rows:
            total = row["encode_s"] + row["decode_s"]
            row["tflops"] = (encode_flops + decode_flops) / total / 1e12
            row["encode_estimate_gb"], row["decode_estimate_gb"] = estimate_gb(
                plan, row["variant"], ctx
            )
            row["peak_gb"] = row.pop("peak_mb") * 2**20 / 1e9
        ctx.record.replace(rows)

    # a shorter clip of the same frame size warms up (the dry run: one frame)
    warm = video[:, :, : 9 if s.clip_frames > 9 else 1]
    vae_bench.compare_kernels(
        vae, video, plan, list(VAE_VARIANTS), repeats=1, warm_video=warm, on_rows=publish
    )


def stage_dit(ctx) -> None:
    """One stage-II DiT pass (batch 2: guidance batched) per attention kernel."""
    s = ctx.sizes
    dit = random_model(lambda: VideoDiT(s.dit), ctx.device, ctx.dtype, seed=1)
    t, h, w = s.dit_latent
    flops, how = count_dit_flops(s.dit, (2, t, 16, h, w))
    inputs = _dit_inputs(ctx, (t, h, w))
    small = _dit_inputs(ctx, (1, h, w))
    for kernel in KERNELS:
        ctx.attempt(kernel, lambda k=kernel: _dit_row(ctx, dit, k, inputs, small, flops, how))


def _dit_inputs(ctx, grid) -> tuple:
    s, (t, h, w) = ctx.sizes, grid
    gen = torch.Generator(device=ctx.device).manual_seed(1)
    x = torch.randn(2, t, 16, h, w, generator=gen, device=ctx.device).to(ctx.dtype)
    text = torch.randn(2, s.dit.text_length, s.dit.text_dim, generator=gen, device=ctx.device)
    full = lambda value: torch.full((2,), value, device=ctx.device, dtype=ctx.dtype)  # noqa: E731
    return x, full(500.0), text.to(ctx.dtype), full(float(t)), full(676.0)


def _dit_row(ctx, dit, kernel, inputs, small, flops, how) -> dict:
    def run(args):
        x, index, text, frames, ref = args
        return dit(x, index, text, num_frames=frames, ref_step=ref)

    try:
        choice = attention_kernels(ctx.device, kernel)
    except VidrefineError as exc:  # not installed, or not on this device: say so, carry on
        return {"error": str(exc)[:200]}
    with torch.no_grad(), autocast_for(ctx.device, ctx.dtype), choice:
        seen, _ = observe_attention_kernel(lambda: run(small))  # warm-up at 1 latent frame
        seconds, peak = ctx.timed(lambda: run(inputs), repeats=1)
    return {
        "kernel_seen": seen,
        "s_per_pass": round(seconds, 3),
        "tflops": flops / seconds / 1e12,
        "peak_gb": peak,
        "flops_note": how,
    }


def stage_e2e(ctx) -> None:
    """benchmarks/refine_gpu.py: 4 steps with guidance, the new path (and the old if asked)."""
    from benchmarks import refine_gpu  # PyAV and PySceneDetect: only this stage needs them

    paths = ["fast", "fast-old"] if ctx.args.e2e_old else ["fast"]
    argv = ["--steps", "1" if ctx.args.tiny else "4", "--paths", *paths, "--no-warmup"]
    argv += ["--json", str(ctx.args.out / "e2e_runs.json")]
    if ctx.device.type == "cpu":
        argv.append("--cpu")
    refine_gpu.main(argv)
    ctx.record.add(variant="refine_gpu", value=" ".join(argv))


STAGES = {"vae": stage_vae, "dit": stage_dit, "e2e": stage_e2e}
