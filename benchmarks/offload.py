"""What layer streaming costs: one DiT pass resident vs streamed (synchronous vs prefetched).

    python3 benchmarks/offload.py                 # GPU: stage-II width, 6 blocks, 3 token counts
    python3 benchmarks/offload.py --layers 30     # the whole stage-II depth
    python3 benchmarks/offload.py --cpu           # tiny model on the CPU, for CI

Each variant runs the same random-weight DiT on the same latents, interleaved and best of
`--repeats` after a warm-up: "resident" (all weights on the device), "layer-sync" (each block
copied when it is about to run) and "layer-prefetch" (the next block copied on a side stream while
the current one computes; what `offload = "layer"` runs). On a GPU the table shows seconds per pass,
the overhead over resident, peak `max_memory_allocated` and the block bytes copied per pass. Fewer
tokens mean less compute to hide each copy behind, so the overhead grows as the clip shrinks.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks.refine_parts import random_model  # noqa: E402
from vidrefine.config import STAGE2_DIT, DiTConfig  # noqa: E402
from vidrefine.models.dit import VideoDiT  # noqa: E402
from vidrefine.runtime.device import autocast_for  # noqa: E402
from vidrefine.runtime.offload import BlockStreamer, stream_model  # noqa: E402

VARIANTS = ("resident", "layer-sync", "layer-prefetch")
# latent (T, H, W) of one 49-frame window: 1080p, 720p and 270p outputs
GPU_LATENTS = {"1080p": (13, 136, 240), "720p": (13, 90, 160), "270p": (13, 32, 60)}
CPU_LATENTS = {"96x64": (3, 8, 12), "48x32": (3, 4, 6)}
CPU_DIT = DiTConfig(hidden_size=64, num_layers=4, num_heads=2, text_dim=32, stage2_embeddings=True)


def build(cfg: DiTConfig, variant: str, device: torch.device, dtype: torch.dtype):
    """The DiT for `variant` and its streamer (None when resident)."""
    if variant == "resident":
        return random_model(lambda: VideoDiT(cfg), device, dtype, seed=1), None
    model = random_model(lambda: VideoDiT(cfg), torch.device("cpu"), dtype, seed=1)
    return model, stream_model(model, model.blocks, device, prefetch=variant == "layer-prefetch")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def one_pass(model, inputs, device: torch.device, dtype: torch.dtype) -> float:
    """Seconds of one DiT call (batch 2: guidance batched)."""
    x, t, ctx, ref = inputs
    _sync(device)
    began = time.perf_counter()
    with autocast_for(device, dtype):
        model(x, t, ctx, ref_step=ref)
    _sync(device)
    return time.perf_counter() - began


def measure(cfg, latents, device, dtype, repeats: int) -> list[dict]:
    """Rows for one token count: every variant, interleaved, best of `repeats`."""
    gen = torch.Generator().manual_seed(0)
    t_, h, w = latents
    x = torch.randn(2, t_, cfg.in_channels, h, w, generator=gen).to(device, dtype)
    ctx = torch.randn(2, cfg.text_length, cfg.text_dim, generator=gen).to(device, dtype)
    steps = torch.tensor([904.0, 904.0], device=device)
    inputs = (x, steps, ctx, torch.full((2,), 676.0, device=device))
    models = {v: build(cfg, v, device, dtype) for v in VARIANTS}
    best = dict.fromkeys(VARIANTS, float("inf"))
    peaks = dict.fromkeys(VARIANTS, 0)
    for model, _ in models.values():
        one_pass(model, inputs, device, dtype)  # warm-up: kernels chosen, host pages touched
    for _ in range(repeats):
        for v, (model, _) in models.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            best[v] = min(best[v], one_pass(model, inputs, device, dtype))
            if device.type == "cuda":
                peaks[v] = max(peaks[v], torch.cuda.max_memory_allocated(device))
    return [_row(v, models[v][1], best, peaks, latents, cfg) for v in VARIANTS]


def _row(variant, streamer: BlockStreamer | None, best, peaks, latents, cfg) -> dict:
    copied = streamer.host_bytes() if streamer is not None else 0
    t_, h, w = latents
    return {
        "variant": variant,
        "tokens": t_ * (h // cfg.patch_size) * (w // cfg.patch_size) + cfg.text_length,
        "seconds": best[variant],
        "overhead": best[variant] / best["resident"] - 1,
        "peak_gb": peaks[variant] / 1024**3,
        "copied_gb": copied / 1024**3,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every token count and variant; print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny model on the CPU")
    parser.add_argument("--layers", type=int, default=6, help="DiT blocks (GPU; 30 = stage II)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: use --cpu for the reduced-size run")
    device = torch.device("cpu" if args.cpu else "cuda")
    dtype = torch.float32 if args.cpu else torch.bfloat16
    cfg = CPU_DIT if args.cpu else dataclasses.replace(STAGE2_DIT, num_layers=args.layers)
    sizes = CPU_LATENTS if args.cpu else GPU_LATENTS
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# {name}, torch {torch.__version__}, {cfg.num_layers} blocks of width "
        f"{cfg.hidden_size}, {dtype}, batch 2, best of {args.repeats}"
    )
    print("| output | tokens | variant | s / pass | overhead | peak GB | block GB copied / pass |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for label, latents in sizes.items():
        for row in measure(cfg, latents, device, dtype, args.repeats):
            peak = f"{row['peak_gb']:.2f}" if device.type == "cuda" else "-"
            print(
                f"| {label} | {row['tokens']:,} | {row['variant']} | {row['seconds']:.4f} | "
                f"{row['overhead']:+.1%} | {peak} | {row['copied_gb']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
