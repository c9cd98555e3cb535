"""VideoDiT on CUDA in the original's precision (bf16 weights under bf16 autocast)."""

from __future__ import annotations

import pytest
import torch

from vidrefine.config import DiTConfig
from vidrefine.models.dit import VideoDiT
from vidrefine.models.rope import rope_tables

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CFG = DiTConfig(hidden_size=128, num_layers=2, num_heads=2, text_dim=32, stage2_embeddings=True)


def test_rope_tables_on_cuda_match_cpu_when_computed_for_a_1080p_grid() -> None:
    grid = (13, 67, 120)  # 1072x1920 -> 134x240 latents -> 67x120 tokens
    cos_cpu, sin_cpu = rope_tables(grid, 64)
    cos_gpu, sin_gpu = rope_tables(grid, 64, device="cuda")
    torch.testing.assert_close(cos_gpu.cpu(), cos_cpu, rtol=0, atol=2e-5)
    torch.testing.assert_close(sin_gpu.cpu(), sin_cpu, rtol=0, atol=2e-5)


def test_bf16_autocast_output_tracks_fp32_when_run_on_cuda() -> None:
    torch.manual_seed(0)
    model = VideoDiT(CFG).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 8, 12, generator=gen)
    context = torch.randn(2, 226, 32, generator=gen)
    ts, ref = torch.tensor([904.0, 384.0]), torch.tensor([676.0, 676.0])
    with torch.no_grad():
        ref_out = model(x, ts, context, ref_step=ref)
        fast = model.to("cuda", torch.bfloat16)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = fast(x.cuda(), ts.cuda(), context.cuda(), ref_step=ref.cuda())
    assert out.dtype == torch.bfloat16
    err = (out.float().cpu() - ref_out).abs().max().item()
    assert err < 0.05 * ref_out.abs().max().item()
