"""Decode one latent clip whole vs tiled, side by side: peak memory and time.

CPU (default): each variant runs in a fresh subprocess (glibc mmap threshold fixed at 64 KiB);
peak = VmHWM - VmRSS before decoding
(activations only, weights excluded), time = wall seconds of decode_latents.
    python3 benchmarks/vae.py                      # half-width config, 17 frames at 128x96
    python3 benchmarks/vae.py --config official --size 64x96
GPU: full-size VAE, 13 latent frames -> 49 frames at 1088x1920, max_memory_allocated.
    python3 benchmarks/vae.py --gpu [--weights 3d-vae.pt]
Layout (issue 7): `--layout both` runs every variant with contiguous (NCDHW) and channels-last-3d
(NDHWC) conv weights and input, side by side, so a layout change is kept only if it pays.
    python3 benchmarks/vae.py --gpu --layout both
Kernels (issue 21): `--kernels` encodes and decodes one clip with the pre-issue-21 operators
("old", benchmarks/legacy_vae.py) and each kernel variant, interleaved in one process, best of
`--repeats`: seconds (wall on CUDA, process CPU time on the CPU: steadier on a shared box), the
ratio to old, the live-tensor peak (CPU) or allocated peak (GPU) and the largest difference.
    python3 benchmarks/vae.py --kernels --config tiny --size 96x64 --frames 9
    python3 benchmarks/vae.py --gpu --kernels      # official VAE, 49 frames 1088x1920, bf16
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.legacy_vae import legacy_vae  # noqa: E402
from vidrefine.config import OFFICIAL_VAE, VAEConfig  # noqa: E402
from vidrefine.models.vae import CausalVideoVAE  # noqa: E402
from vidrefine.pipeline.vae_pass import decode_latents, encode_video  # noqa: E402
from vidrefine.plan.vae import VAEKernelPlan, VAEPlan, plan_vae  # noqa: E402
from vidrefine.plan.vae_memory import decode_peak_bytes  # noqa: E402
from vidrefine.runtime.live_memory import LiveTensorMemory  # noqa: E402

CONFIGS = {
    "official": OFFICIAL_VAE,
    "half": VAEConfig(block_out_channels=(64, 128, 128, 256)),
    "tiny": VAEConfig(block_out_channels=(32, 64, 64, 128)),
}
_MB = 1024**2


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build(config: VAEConfig, weights: str | None, device: str, dtype: torch.dtype):
    if weights:
        from vidrefine.checkpoints import load_vae

        return load_vae(weights, dtype=dtype, device=device)
    torch.manual_seed(0)
    return CausalVideoVAE(config).eval().to(device=device, dtype=dtype)


def _plan(args: argparse.Namespace, variant: str):
    """CPU: whole / chunked (2-latent chunks) / tiled (chunks + square tiles); GPU adds the
    faithful plan and a blend plan sized to a 24 GB budget.
    """
    size_hw, frames = args.size_hw, args.frames
    if variant == "whole":
        return plan_vae(size_hw, frames, mode="whole")
    if variant == "faithful":
        return plan_vae(size_hw, frames, mode="faithful")
    if variant == "chunked":
        return plan_vae(size_hw, frames, mode="blend", tile_latent=10**6, chunk_latent=2)
    if variant == "blend-24GB":
        return plan_vae(size_hw, frames, mode="blend", budget_gb=24)
    return plan_vae(size_hw, frames, mode="blend", tile_latent=args.tile, overlap_latent=4)


def channels_last(vae: torch.nn.Module) -> torch.nn.Module:
    """Store every Conv3d weight channels-last-3d (NDHWC); activations follow the conv outputs."""
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.contiguous(memory_format=LAYOUTS["ndhwc"])
    return vae


LAYOUTS = {"ncdhw": torch.contiguous_format, "ndhwc": torch.channels_last_3d}


def child(args: argparse.Namespace) -> dict:
    """Run one variant in this process and return its figures."""
    device = "cuda" if args.gpu else "cpu"
    dtype = torch.float16 if args.gpu else getattr(torch, args.cpu_dtype)
    variant, layout = args.child.split(":")
    vae = _build(CONFIGS[args.config], args.weights, device, dtype)
    if layout == "ndhwc":
        vae = channels_last(vae)
    plan = _plan(args, variant)
    z = torch.randn(1, vae.config.latent_channels, plan.latent_frames, *plan.latent_hw)
    z = z.to(device=device, dtype=dtype).contiguous(memory_format=LAYOUTS[layout])
    decode_latents(vae, z[:, :, :1, :1, :1], plan_vae((8, 8), 1, mode="whole"))  # warm-up
    if args.gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_kb("VmRSS") * 1024
    start = time.perf_counter()
    decode_latents(vae, z, plan)
    if args.gpu:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_kb("VmHWM") * 1024 - base
    seconds = time.perf_counter() - start
    tile_hw = plan.decode_tiles.tile_hw
    frames = 1 + 4 * plan.decode_chunk_latent
    scale = vae.config.block_out_channels[0] / 128
    estimate = scale * decode_peak_bytes(
        frames, (8 * tile_hw[0], 8 * tile_hw[1]), dtype_bytes=dtype.itemsize
    )
    return {
        "variant": variant,
        "layout": layout,
        "tiles": len(plan.decode_tiles.tiles),
        "tile_latent": f"{tile_hw[0]}x{tile_hw[1]}",
        "chunks": len(plan.decode_chunks()),
        "seconds": round(seconds, 2),
        "peak_mb": round(peak / _MB, 1),
        "estimate_mb": round(estimate / _MB, 1),
    }


# name -> (run the pre-issue-21 operators, kernel plan); the plan's device is set per run
KERNEL_VARIANTS = {
    "old": (True, VAEKernelPlan(conv="conv3d")),
    "new": (False, VAEKernelPlan()),
    "conv3d": (False, VAEKernelPlan(conv="conv3d")),
    "conv2d_sum": (False, VAEKernelPlan(conv="conv2d_sum")),
    "capped": (False, VAEKernelPlan(conv="conv3d", cap_mi=1)),
    "ndhwc conv2d_sum": (False, VAEKernelPlan(conv="conv2d_sum", layout="ndhwc")),
    "ndhwc": (False, VAEKernelPlan(layout="ndhwc")),
    "compiled": (False, VAEKernelPlan(compile=True)),
    "ndhwc compiled": (False, VAEKernelPlan(layout="ndhwc", compile=True)),
}
CPU_VARIANTS = ("old", "new", "conv2d_sum", "capped", "ndhwc conv2d_sum")
GPU_VARIANTS = ("new", "old", "ndhwc", "compiled")  # new first: a short lease gets it


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_pass(vae, video: torch.Tensor, plan: VAEPlan, variant: str) -> tuple:
    """(encode s, decode s, (latents, decoded), (encode, decode) peak bytes) of one encode and
    decode under `variant`; the peaks are allocated bytes above each pass's start on CUDA, 0 on
    the CPU.
    """
    legacy, kernels = KERNEL_VARIANTS[variant]
    device = video.device
    kernels = dataclasses.replace(kernels, device=device.type)
    plan = dataclasses.replace(plan, kernels=kernels)
    operators = legacy_vae(vae) if legacy else contextlib.nullcontext()
    with operators, torch.no_grad():
        began, base = _start(device)
        z = encode_video(vae, video, plan, sample=False)
        encoded, encode_peak, base = *_stop(device, base), _start(device)[1]
        out = decode_latents(vae, z, plan)
        done, decode_peak = _stop(device, base)
    return encoded - began, done - encoded, (z, out), (encode_peak, decode_peak)


def _clock(device: torch.device) -> float:
    """CUDA: wall seconds. CPU: this process's CPU seconds, steadier than wall time on a box
    other jobs share (the work of both threads, so about 2x the wall time when idle).
    """
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def _start(device: torch.device) -> tuple[float, int]:
    _sync(device)
    if device.type != "cuda":
        return _clock(device), 0
    torch.cuda.reset_peak_memory_stats(device)
    return _clock(device), torch.cuda.memory_allocated(device)


def _stop(device: torch.device, base: int) -> tuple[float, int]:
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else 0
    return _clock(device), peak


def _timed_pass(vae, video, plan, variant) -> tuple[float, float, tuple, tuple[int, int]]:
    """run_pass; on the CPU the peaks are the live tensors of a second, untimed run (the
    counting slows the CPU), the larger pass for both.
    """
    enc, dec, outputs, peaks = run_pass(vae, video, plan, variant)
    if video.device.type == "cuda":
        return enc, dec, outputs, peaks
    with LiveTensorMemory() as memory:
        run_pass(vae, video, plan, variant)
    return enc, dec, outputs, (memory.peak, memory.peak)


def compare_kernels(
    vae, video, plan, variants, repeats: int, *, warm_video=None, on_rows=None
) -> list[dict]:
    """Rows for each variant: best-of-`repeats` seconds, peak bytes, difference to the first.

    In the first round each variant gets one untimed pass right before its timed one (on
    `warm_video` if given: a shorter clip of the same frame size warms cuDNN, the measured conv
    choices and compilation for less); later rounds interleave timed passes. `on_rows(rows)`
    runs after every pass, so partial results survive a kill.
    """
    best = {v: [float("inf"), float("inf")] for v in variants}
    peaks, outputs, rows = {}, {}, []
    for round_ in range(max(1, repeats)):
        for v in variants:
            if round_ == 0:
                warm = video if warm_video is None else warm_video
                run_pass(vae, warm, plan_for(plan, warm_video), v)
            enc, dec, outputs[v], peaks[v] = _timed_pass(vae, video, plan, v)
            best[v] = [min(best[v][0], enc), min(best[v][1], dec)]
            reference = outputs[variants[0]]
            rows = [_row(u, best, outputs[u], reference, best[variants[0]]) for u in outputs]
            for row in rows:
                row["peak_mb"] = round(max(peaks[row["variant"]]) / _MB, 1)
                if video.device.type == "cuda":
                    row["encode_peak_gb"] = peaks[row["variant"]][0] / 1e9
                    row["decode_peak_gb"] = peaks[row["variant"]][1] / 1e9
            if on_rows:
                on_rows(rows)
    return rows


def plan_for(plan: VAEPlan, video) -> VAEPlan:
    """`plan` for another clip length (the warm-up clip), same tiles and chunking; or `plan`."""
    if video is None or video.shape[2] == plan.frames:
        return plan
    return dataclasses.replace(plan, frames=video.shape[2])


def _row(variant, best, output, reference, first) -> dict:
    diffs = [
        ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
        for a, b in zip(output, reference, strict=True)
    ]
    enc, dec = best[variant]
    return {
        "variant": variant,
        "encode_s": round(enc, 4),
        "decode_s": round(dec, 4),
        "speedup": round(sum(first) / (enc + dec), 3),
        "max_rel_diff": f"{max(diffs):.1e}",
    }


def print_kernel_table(rows: list[dict], header: str) -> None:
    """The --kernels table, markdown."""
    print(header)
    print("| variant | encode s | decode s | speed-up vs first | peak MB | max rel. diff |")
    # seconds: wall on CUDA, process CPU seconds on the CPU (see _clock)
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['encode_s']} | {r['decode_s']} | {r['speedup']} | "
            f"{r.get('peak_mb', '')} | {r['max_rel_diff']} |"
        )


def kernels_main(args: argparse.Namespace) -> None:
    """Old vs new VAE operators on one clip, in this process."""
    device = torch.device("cuda" if args.gpu else "cpu")
    dtype = torch.bfloat16 if args.gpu else getattr(torch, args.cpu_dtype)
    vae = _build(CONFIGS[args.config], args.weights, device, dtype)
    if args.gpu:  # the tiles a run's plan gives: the card less the DiT's weights and runtime
        total = torch.cuda.get_device_properties(device).total_memory / 1024**3
        plan = plan_vae(args.size_hw, args.frames, budget_gb=total - 4.2)
    else:  # the original's chunks, whole frames
        plan = plan_vae(args.size_hw, args.frames, tile_latent=10**6, chunk_latent=2)
    gen = torch.Generator(device=device).manual_seed(0)
    video = torch.rand(1, 3, args.frames, *args.size_hw, generator=gen, device=device)
    video = video.mul_(2).sub_(1).to(dtype)
    variants = args.variants or (GPU_VARIANTS if args.gpu else CPU_VARIANTS)
    warm = video[:, :, :9] if args.frames > 9 else None
    rows = compare_kernels(vae, video, plan, list(variants), args.repeats, warm_video=warm)
    print_kernel_table(
        rows,
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {date.today()}, config {args.config}, {args.frames} frames "
        f"at {args.size_hw[1]}x{args.size_hw[0]}, {dtype}, chunked (the original's chunks), "
        f"best of {args.repeats}; peak = {'allocated' if args.gpu else 'live tensors'}; "
        f"seconds = {'wall' if args.gpu else 'process CPU time'}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="full-size decode on CUDA")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="half")
    parser.add_argument("--weights", help="a VAE weight file instead of random weights")
    parser.add_argument("--size", default="128x96", help="WIDTHxHEIGHT of the decoded clip")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--tile", type=int, default=8, help="tile size in latents (tiled run)")
    parser.add_argument(
        "--layout", choices=[*LAYOUTS, "both"], default="ncdhw", help="conv memory layout"
    )
    parser.add_argument(
        "--cpu-dtype", choices=["float32", "bfloat16"], default="float32", help="CPU runs only"
    )
    parser.add_argument("--kernels", action="store_true", help="old vs new operators (issue 21)")
    parser.add_argument("--variants", nargs="+", choices=sorted(KERNEL_VARIANTS))
    parser.add_argument("--repeats", type=int, default=3, help="--kernels rounds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpu and args.size == "128x96":
        args.config, args.size, args.frames, args.tile = "official", "1920x1088", 49, 64
    width, height = (int(v) for v in args.size.split("x"))
    args.size_hw = (height, width)
    if args.kernels:
        kernels_main(args)
        return
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    # A fixed mmap threshold makes glibc return every freed tensor to the OS at once, so the
    # resident high-water mark tracks live tensors instead of heap fragmentation.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    variants = ("whole", "faithful", "blend-24GB") if args.gpu else ("whole", "chunked", "tiled")
    layouts = list(LAYOUTS) if args.layout == "both" else [args.layout]
    for variant in variants:
        for layout in layouts:  # side by side: the layouts of one variant run back to back
            cmd = [sys.executable, __file__, *sys.argv[1:], "--child", f"{variant}:{layout}"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {date.today()}, config {args.config}, "
        f"{args.frames} frames at {width}x{height}, {'cuda fp16' if args.gpu else args.cpu_dtype}"
    )
    print("| variant | layout | tiles | tile (latent) | chunks | seconds | peak MB | estimate MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['layout']} | {r['tiles']} | {r['tile_latent']} | "
            f"{r['chunks']} | "
            f"{r['seconds']} | {r['peak_mb']} | {r['estimate_mb']} |"
        )


if __name__ == "__main__":
    main()
