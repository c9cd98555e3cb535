"""The stages of benchmarks/gpu_quick.sh (issue 21), one process each, results as JSON under OUT.

    python3 benchmarks/gpu_quick.py STAGE --out OUT [--cpu --tiny]
    python3 benchmarks/gpu_quick.py table --out OUT      # the one table, from OUT/*.json

Stages: env (versions, the kernels one decoder conv runs, the matmul rate), conv (one
full-resolution decoder conv per variant: layout, conv3d vs conv2d_sum, capped vs whole, cuDNN
benchmark mode), norm (GroupNorm and SpatialNorm3D with SiLU: old, one call, latent resolution,
compiled), vae (a 49-frame 1088x1920 encode and decode, new then old), dit (one stage-II DiT
pass per attention kernel), e2e (benchmarks/refine_gpu.py, 4 steps, new; old with --e2e-old),
tests (pytest -m gpu tests/gpu).
Every stage rewrites OUT/<stage>.json after each measurement, so a stage killed at its time
limit keeps what it measured. `--cpu --tiny` runs every stage at toy sizes on the CPU (fp32):
tests/test_gpu_quick.py does, so the device run cannot fail for a silly reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks import gpu_quick_table  # noqa: E402
from benchmarks.legacy_vae import legacy_vae  # noqa: E402
from benchmarks.refine_parts import matmul_rate  # noqa: E402
from vidrefine.config import OFFICIAL_VAE, STAGE2_DIT, DiTConfig, VAEConfig  # noqa: E402
from vidrefine.errors import VidrefineError  # noqa: E402
from vidrefine.models.vae_blocks import (  # noqa: E402  # noqa: E402
    CausalStep,
    GroupNorm,
    SpatialNorm3D,
    group_norm_silu,
    nonlinearity_,
    norm_silu,
)
from vidrefine.models.vae_conv import METHODS, VAEKernels, causal_conv  # noqa: E402
from vidrefine.runtime.kernel_choice import compiled  # noqa: E402

STAGES = ("env", "conv", "vae", "e2e", "norm", "dit", "tests")
NDHWC = torch.channels_last_3d
CAP = 2**31


@dataclass(frozen=True)
class Sizes:
    """Shapes of one mode: the full job or toy sizes for the CPU dry run."""

    conv_channels: int
    frames: int  # decoder frames at full resolution in one chunk (the first: 9)
    size_hw: tuple[int, int]
    vae: VAEConfig
    clip_frames: int
    dit: DiTConfig
    dit_latent: tuple[int, int, int]  # (T, h, w) of the DiT's latent
    cap: int


FULL = Sizes(128, 9, (1088, 1920), OFFICIAL_VAE, 49, STAGE2_DIT, (13, 136, 240), CAP)
TINY = Sizes(
    32,
    3,
    (16, 24),
    VAEConfig(block_out_channels=(8, 8, 8, 8), norm_groups=4, layers_per_block=1),
    5,
    DiTConfig(hidden_size=64, num_layers=2, num_heads=2, text_dim=32, stage2_embeddings=True),
    (3, 4, 6),
    32 * 3 * 16 * 24,  # three frames a call: the capped path splits here too
)


class Recorder:
    """Rows of one stage, rewritten to OUT/<stage>.json (atomically) after every `add`."""

    def __init__(self, out: Path, stage: str) -> None:
        self.path, self.rows = out / f"{stage}.json", []

    def add(self, **row) -> None:
        self.rows.append(row)
        self._write()
        print(json.dumps(row, default=str), flush=True)

    def replace(self, rows: list[dict]) -> None:
        """Keep the rows recorded before the first `replace`, then these (a stage's table)."""
        self._kept = getattr(self, "_kept", list(self.rows))
        self.rows = [*self._kept, *rows]
        self._write()
        print(json.dumps(rows[-1], default=str), flush=True)

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.rows, indent=1, default=str))
        os.replace(tmp, self.path)


class Context:
    """What every stage gets: device, dtype, sizes and the stage's recorder."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = torch.device("cpu" if args.cpu else "cuda")
        self.dtype = torch.float32 if args.cpu else torch.bfloat16
        self.sizes = TINY if args.tiny else FULL
        self.args = args
        self.record = Recorder(args.out, args.stage)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
        """(median seconds of `repeats` runs after one warm-up, peak GB allocated or 0)."""
        fn()
        self.sync()
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        seconds = []
        for _ in range(repeats):
            began = time.perf_counter()
            fn()
            self.sync()
            seconds.append(time.perf_counter() - began)
        peak = (torch.cuda.max_memory_allocated(self.device) - base) / 1e9 if cuda else 0.0
        return sorted(seconds)[len(seconds) // 2], peak

    def randn(self, *shape: int, layout=torch.contiguous_format) -> torch.Tensor:
        gen = torch.Generator(device=self.device).manual_seed(len(shape) + sum(shape))
        x = torch.randn(shape, generator=gen, device=self.device, dtype=torch.float32)
        return x.to(self.dtype).contiguous(memory_format=layout)

    def attempt(self, name: str, fn: Callable[[], dict]) -> None:
        """Record fn()'s row under `name`, or the error that stopped it (then carry on)."""
        try:
            self.record.add(variant=name, **fn())
        except (RuntimeError, ValueError, ImportError, VidrefineError) as exc:  # OOM: Runtime
            self.record.add(variant=name, error=str(exc).splitlines()[0][:200])
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def stage_env(ctx: Context) -> None:
    """Versions, what one decoder conv's kernels are called, the matmul ceiling."""
    rec, cuda = ctx.record, ctx.device.type == "cuda"
    rec.add(variant="torch", value=torch.__version__, cuda=torch.version.cuda)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    rec.add(variant="cuDNN", value=cudnn, enabled=torch.backends.cudnn.enabled)
    if cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        rec.add(variant="GPU", value=props.name, memory_gb=round(props.total_memory / 1e9, 1))
        rec.add(variant="driver", value=_nvidia_smi("driver_version"))
    else:
        rec.add(variant="CPU", value=platform.processor() or platform.machine())
    for package in ("flash_attn", "flash_attn_interface", "sageattention"):
        rec.add(variant=f"package {package}", value=_version(package))
    rate, what = matmul_rate(ctx.device)
    rec.add(variant="matmul", value=f"{rate / 1e12:.1f} TFLOP/s", what=what, flops=rate)
    for method in METHODS:
        ctx.attempt(f"kernels of {method}", lambda m=method: {"value": _kernel_names(ctx, m)})


def _nvidia_smi(field: str) -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package.replace("_interface", "").replace("_", "-"))
    except metadata.PackageNotFoundError:
        try:
            __import__(package)
            return "importable"
        except ImportError:
            return "not installed"


def _conv_inputs(ctx: Context, layout=torch.contiguous_format, frames: int | None = None):
    c, (h, w) = ctx.sizes.conv_channels, ctx.sizes.size_hw
    torch.manual_seed(0)  # the same weights in every layout
    conv = torch.nn.Conv3d(c, c, 3, padding=(0, 1, 1)).to(ctx.device, ctx.dtype)
    x = ctx.randn(1, c, frames or ctx.sizes.frames, h, w, layout=layout)
    return conv, x, ctx.randn(1, c, 2, h, w, layout=layout)


def _kernel_names(ctx: Context, method: str) -> str:
    """The three device kernels one small decoder conv spends most time in (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    conv, x, head = _conv_inputs(ctx, frames=1)
    activity = ProfilerActivity.CUDA if ctx.device.type == "cuda" else ProfilerActivity.CPU
    with torch.no_grad():
        causal_conv(conv, x, head, method, 0)
        ctx.sync()
        with profile(activities=[activity]) as prof:
            causal_conv(conv, x, head, method, 0)
            ctx.sync()
    cost = _device_time if ctx.device.type == "cuda" else _cpu_time
    events = sorted((e for e in prof.key_averages() if cost(e) > 0), key=cost, reverse=True)
    return "; ".join(f"{e.key[:70]} ({cost(e) / 1e3:.1f} ms)" for e in events[:3])


def _device_time(event) -> float:
    """Self device time (µs) of a profiler event: > 0 for the kernels themselves."""
    return getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0)


def _cpu_time(event) -> float:
    return getattr(event, "cpu_time_total", 0)


def stage_conv(ctx: Context) -> None:
    """One full-resolution decoder conv (up.0: 128 -> 128 channels, a 9-frame chunk) per variant."""
    s = ctx.sizes
    flops = 2 * s.conv_channels**2 * 27 * s.frames * s.size_hw[0] * s.size_hw[1]
    reference = None
    for layout_name, layout in (("ncdhw", torch.contiguous_format), ("ndhwc", NDHWC)):
        reference = _conv_variants(ctx, layout_name, layout, flops, reference)


def _conv_variants(ctx: Context, layout_name: str, layout, flops: int, reference):
    """Every method and cap in one layout; returns the conv3d output (the reference)."""
    conv, x, head = _conv_inputs(ctx, layout)
    for method in METHODS:
        for cap_name, cap in (("whole", 0), ("capped", ctx.sizes.cap)):
            run = _conv_run(conv, x, head, method, cap)
            ctx.attempt(
                f"{layout_name} {method} {cap_name}", lambda r=run: _conv_row(ctx, r, flops)
            )
    with torch.no_grad():
        out = causal_conv(conv, x, head, "conv3d", 0)
    reference = out if reference is None else reference
    ctx.record.add(variant=f"{layout_name} vs ncdhw conv3d", rel_diff=relative(out, reference))
    if ctx.device.type == "cuda":
        run = _conv_run(conv, x, head, "conv3d", 0)
        with torch.backends.cudnn.flags(enabled=True, benchmark=True):
            name = f"{layout_name} conv3d whole, cudnn.benchmark"
            ctx.attempt(name, lambda: _conv_row(ctx, run, flops))
    return reference


def _conv_run(conv, x, head, method: str, cap: int) -> Callable[[], torch.Tensor]:
    return lambda: causal_conv(conv, x, head, method, cap)


def _conv_row(ctx: Context, run: Callable[[], torch.Tensor], flops: int) -> dict:
    with torch.no_grad():
        seconds, peak = ctx.timed(run)
    return {
        "ms": round(1e3 * seconds, 2),
        "tflops": flops / seconds / 1e12,
        "peak_gb": peak,
    }


def stage_norm(ctx: Context) -> None:
    """GroupNorm and SpatialNorm3D, each followed by SiLU, at the decoder's full resolution;
    the eager variants of both layouts first, then the compiled ones (compiling takes longest).
    """
    layouts = (("ncdhw", torch.contiguous_format), ("ndhwc", NDHWC))
    for compiled_ones in (False, True):
        for layout_name, layout in layouts:
            _norm_variants(ctx, layout_name, layout, compiled_ones)


def _norm_variants(ctx: Context, layout_name: str, layout, compiled_ones: bool) -> None:
    s = ctx.sizes
    c, (h, w) = s.conv_channels, s.size_hw
    gn = GroupNorm(32, c, eps=1e-6).to(ctx.device, ctx.dtype)
    spatial = SpatialNorm3D(c, 16, 32, 1e-6).to(ctx.device, ctx.dtype)
    zq = ctx.randn(1, 16, 1 + (s.frames - 1) // 4, h // 8, w // 8)
    step = CausalStep({}, True)
    fused = CausalStep({}, True, kernels=VAEKernels(fuse=compiled))
    bytes_moved = 2 * c * s.frames * h * w * ctx.dtype.itemsize  # read f, write the result
    f = ctx.randn(1, c, s.frames, h, w, layout=layout)
    runs = {
        "GroupNorm+SiLU old (fp32 slices)": lambda: nonlinearity_(gn.sliced(f)),
        "GroupNorm+SiLU new (one call on CUDA)": lambda: nonlinearity_(gn(f)),
        "SpatialNorm3D+SiLU old (full-res convs)": lambda: _legacy_spatial(spatial, f, zq),
        "SpatialNorm3D+SiLU new (latent res)": lambda: norm_silu(spatial, f, zq, step),
    }
    if compiled_ones:  # compared with the new eager result
        runs = {
            "GroupNorm+SiLU new (one call on CUDA)": runs["GroupNorm+SiLU new (one call on CUDA)"],
            "GroupNorm+SiLU compiled": lambda: compiled(group_norm_silu)(
                f, 32, gn.weight, gn.bias, 1e-6
            ),
            "SpatialNorm3D+SiLU new (latent res)": runs["SpatialNorm3D+SiLU new (latent res)"],
            "SpatialNorm3D+SiLU compiled": lambda: norm_silu(spatial, f, zq, fused),
        }
    references: dict[str, torch.Tensor] = {}
    for name, run in runs.items():
        kind = name.split("+")[0]
        if compiled_ones and "compiled" not in name:  # the reference only, not a row again
            with torch.no_grad():
                references[kind] = run()
            continue
        row = _norm_row_maker(ctx, run, kind, references, bytes_moved)
        ctx.attempt(f"{layout_name} {name}", row)


def _norm_row_maker(ctx, run, kind, references, bytes_moved) -> Callable[[], dict]:
    return lambda: _norm_row(ctx, run, kind, references, bytes_moved)


def _legacy_spatial(spatial, f, zq):
    with legacy_vae(spatial):
        return nonlinearity_(spatial(f, zq, CausalStep({}, True)))


def _norm_row(ctx, run, kind, references, bytes_moved) -> dict:
    with torch.no_grad():
        seconds, peak = ctx.timed(run)
        out = run()
    diff = relative(out, references[kind]) if kind in references else 0.0
    references.setdefault(kind, out)
    return {
        "ms": round(1e3 * seconds, 2),
        "gb_per_s": bytes_moved / seconds / 1e9,
        "peak_gb": peak,
        "rel_diff_vs_first": diff,
    }


def stage_tests(ctx: Context) -> None:
    """The CUDA tests (tests/gpu): exit status and pytest's last line."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/gpu"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    print(done.stdout[-4000:], done.stderr[-2000:], flush=True)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    ctx.record.add(variant="pytest -m gpu tests/gpu", exit=done.returncode, value=last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=[*STAGES, "table"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (fp32)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (the dry run)")
    parser.add_argument("--e2e-old", action="store_true", help="e2e: the old path too")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "table":
        gpu_quick_table.print_table(args.out)
        return 0
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: use --cpu --tiny for the dry run")
    ctx = Context(args)
    from benchmarks import gpu_quick_stages

    stages = {"env": stage_env, "conv": stage_conv, "norm": stage_norm, "tests": stage_tests}
    stages |= gpu_quick_stages.STAGES
    stages[args.stage](ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
