"""One stage-II DiT block, piece by piece: attention kernel, qk prologue, whole block (issue 7).

    python3 benchmarks/dit_block.py               # GPU: width 1920, 30 heads, 1080p window, bf16
    python3 benchmarks/dit_block.py --compile     # adds torch.compile'd blocks
    python3 benchmarks/dit_block.py --cpu         # small sizes on the CPU, for CI

Rows, interleaved and best of `--repeats` after a warm-up:
* `matmul`: a dense 8192^3 bf16 matmul (512^3 fp32 on the CPU): the rate the others are held to;
* `attention`: scaled_dot_product_attention alone at the block's shape, with the kernel that ran;
  the issue's target is >= 50% of the matmul rate here;
* `prologue split` / `prologue joint`: qk-LN + RoPE + cast of q and k, as the original writes it
  (video tokens split off, rotated with a pair swap, concatenated back) and as vidrefine does
  (`dit_blocks.qk_prologue`: one table over all tokens, a complex product in eager mode);
* `block split` / `block joint` (and `block compiled`): the whole block forward.
FLOPs: linear layers counted by torch's FlopCounterMode, attention 4*B*heads*S^2*d.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks.refine_parts import matmul_rate, random_model  # noqa: E402
from vidrefine.config import STAGE2_DIT, DiTConfig  # noqa: E402
from vidrefine.models.dit_blocks import DiTBlock, JointAttention, qk_prologue  # noqa: E402
from vidrefine.models.rope import rope_rotation, rope_tables  # noqa: E402
from vidrefine.runtime.attention import attention_kernels, observe_attention_kernel  # noqa: E402
from vidrefine.runtime.device import autocast_for  # noqa: E402

GPU_GRID = (13, 68, 120)  # 49 frames at 1080p: latent 13 x 136 x 240, patches of 2
CPU_GRID = (3, 12, 16)
CPU_DIT = dataclasses.replace(STAGE2_DIT, hidden_size=256, num_heads=4, num_layers=1)


def split_prologue(x, norm, text_len: int, cos, sin, dtype) -> torch.Tensor:
    """The original's form: LN, then RoPE on the video tokens only (pair swap), cast, concat."""
    normed = norm(x)
    text, video = normed[:, :, :text_len], normed[:, :, text_len:].float()
    pairs = video.unflatten(-1, (-1, 2))
    swapped = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return torch.cat([text.to(dtype), (video * cos + swapped * sin).to(dtype)], dim=2)


class SplitAttention(JointAttention):
    """JointAttention with the split prologue (the baseline); same weights, same result."""

    text_len = 0
    tables: tuple[torch.Tensor, torch.Tensor] = ()

    def attend(self, qkv: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """As JointAttention.attend, with `split_prologue` (cos/sin set by the benchmark)."""
        q, k, v = rearrange(qkv, "b s (three n d) -> three b n s d", three=3, n=self.num_heads)
        cos, sin = self.tables
        q = split_prologue(q, self.q_norm, self.text_len, cos, sin, v.dtype)
        k = split_prologue(k, self.k_norm, self.text_len, cos, sin, v.dtype)
        return rearrange(F.scaled_dot_product_attention(q, k, v), "b n s d -> b s (n d)")


@dataclasses.dataclass
class Case:
    """Inputs of one block call at a token grid."""

    cfg: DiTConfig
    grid: tuple[int, int, int]
    device: torch.device
    dtype: torch.dtype
    batch: int = 2

    @property
    def tokens(self) -> int:
        """Text plus video tokens of one sample."""
        t, h, w = self.grid
        return self.cfg.text_length + t * h * w


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


def build_calls(case: Case, compile_: bool) -> dict[str, tuple[Callable[[], object], int]]:
    """Name -> (zero-argument call, FLOPs) for every row but `matmul`."""
    cfg, dev, dtype, b = case.cfg, case.device, case.dtype, case.batch
    s, text_len = case.tokens, cfg.text_length
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(b, s - text_len, cfg.hidden_size, generator=gen).to(dev, dtype)
    text = torch.randn(b, text_len, cfg.hidden_size, generator=gen).to(dev, dtype)
    emb = torch.randn(b, cfg.time_embed_dim, generator=gen).to(dev, dtype)
    rotation = rope_rotation(case.grid, cfg.head_dim, text_len=text_len, device=dev)
    cos, sin = rope_tables(case.grid, cfg.head_dim, device=dev)
    block = random_model(lambda: DiTBlock(cfg), dev, dtype, seed=1)
    split = random_model(lambda: DiTBlock(cfg), dev, dtype, seed=1)
    split.attn.__class__ = SplitAttention  # same parameters, the baseline prologue
    split.attn.text_len, split.attn.tables = text_len, (cos, sin)
    q = torch.randn(b, cfg.num_heads, s, cfg.head_dim, generator=gen).to(dev, dtype)
    norm = block.attn.q_norm
    attn_flops = 4 * b * cfg.num_heads * s * s * cfg.head_dim
    block_flops = attn_flops + _linear_flops(cfg, b, s)
    calls = {
        "attention": (lambda: F.scaled_dot_product_attention(q, q, q), attn_flops),
        "prologue split": (
            lambda: [split_prologue(q, norm, text_len, cos, sin, dtype) for _ in "qk"],
            0,
        ),
        "prologue joint": (lambda: [qk_prologue(q, norm, rotation, dtype) for _ in "qk"], 0),
        "block split": (lambda: split(video, text, emb, rotation), block_flops),
        "block joint": (lambda: block(video, text, emb, rotation), block_flops),
    }
    if compile_:
        compiled = random_model(lambda: DiTBlock(cfg), dev, dtype, seed=1)
        compiled.compile()
        calls["block compiled"] = (lambda: compiled(video, text, emb, rotation), block_flops)
    return calls


def _linear_flops(cfg: DiTConfig, batch: int, tokens: int) -> int:
    """qkv, out and MLP matmuls of one block: 2 FLOPs per MAC, (3 + 1 + 2 * 4) D^2 per token."""
    d = cfg.hidden_size
    return 2 * batch * tokens * (3 * d * d + d * d + 2 * cfg.mlp_ratio * d * d)


def measure(case: Case, attention: str, compile_: bool, repeats: int) -> tuple[list[dict], str]:
    """Best-of-`repeats` seconds and peak memory of every call, interleaved; and the kernel."""
    dev = case.device
    calls = build_calls(case, compile_)
    best = dict.fromkeys(calls, float("inf"))
    peaks = dict.fromkeys(calls, 0)
    with torch.no_grad(), autocast_for(dev, case.dtype), attention_kernels(dev, attention):
        kernel, _ = observe_attention_kernel(calls["attention"][0])
        for call, _ in calls.values():
            call()  # warm-up (and compilation)
        for _ in range(repeats):
            for name, (call, _) in calls.items():
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                best[name] = min(best[name], _timed(call, dev))
                if dev.type == "cuda":
                    peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(dev))
    rows = [
        {"name": n, "seconds": best[n], "flops": f, "peak_gb": peaks[n] / 1024**3}
        for n, (_, f) in calls.items()
    ]
    return rows, kernel


def main(argv: list[str] | None = None) -> int:
    """Measure and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="small sizes on the CPU")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile'd block")
    parser.add_argument("--attention", default="cudnn", help="SDPA kernel preference (CUDA)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: use --cpu for the reduced-size run")
    dev = torch.device("cpu" if args.cpu else "cuda")
    case = Case(
        CPU_DIT if args.cpu else STAGE2_DIT,
        CPU_GRID if args.cpu else GPU_GRID,
        dev,
        torch.float32 if args.cpu else torch.bfloat16,
    )
    rate, rate_what = matmul_rate(dev)
    rows, kernel = measure(case, args.attention, args.compile, args.repeats)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(
        f"# {name}, torch {torch.__version__}, width {case.cfg.hidden_size}, "
        f"{case.cfg.num_heads} heads, {case.tokens:,} tokens x batch {case.batch}, "
        f"{case.dtype}, best of {args.repeats}; attention kernel: {kernel}"
    )
    print("| row | ms | TFLOP | TFLOP/s | % of matmul | peak GB |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| matmul ({rate_what}) | | | {rate / 1e12:.3g} | 100% | |")
    for row in rows:
        flops, sec = row["flops"], row["seconds"]
        achieved = f"{flops / sec / 1e12:.3g}" if flops else ""
        share = f"{flops / sec / rate:.0%}" if flops else ""
        tflop = f"{flops / 1e12:.3g}" if flops else ""
        peak = f"{row['peak_gb']:.2f}" if dev.type == "cuda" else "-"
        print(f"| {row['name']} | {sec * 1e3:.2f} | {tflop} | {achieved} | {share} | {peak} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
