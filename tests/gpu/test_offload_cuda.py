"""Layer streaming on CUDA: side-stream prefetch is exact and the DiT is never whole on the GPU."""

from __future__ import annotations

import copy

import pytest
import torch

from vidrefine.config import DiTConfig
from vidrefine.models.dit import VideoDiT
from vidrefine.runtime.offload import stream_blocks, stream_model
from vidrefine.runtime.placement import place_blocks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CFG = DiTConfig(hidden_size=256, num_layers=8, num_heads=4, text_dim=32, stage2_embeddings=True)
CUDA = torch.device("cuda")


def _inputs():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 8, 12, generator=gen)
    ctx = torch.randn(2, 226, 32, generator=gen)
    args = (x.cuda(), torch.tensor([904.0, 384.0]).cuda(), ctx.cuda())
    return args, {"ref_step": torch.tensor([676.0, 676.0]).cuda()}


def _bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@torch.no_grad()
def test_side_stream_prefetch_matches_the_resident_model_when_run_on_cuda() -> None:
    torch.manual_seed(0)
    host_model = VideoDiT(CFG).eval()
    resident = copy.deepcopy(host_model).to(CUDA)
    synced = copy.deepcopy(host_model)
    args, kwargs = _inputs()
    want = [resident(*args, **kwargs) for _ in range(2)]
    streamer = stream_blocks(host_model, CUDA)
    sync_streamer = stream_model(synced, synced.blocks, CUDA, prefetch=False)
    got = [host_model(*args, **kwargs) for _ in range(2)]
    got_sync = synced(*args, **kwargs)
    torch.cuda.synchronize()
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_sync, want[0], rtol=1e-5, atol=1e-5)
    assert streamer._copy_stream is not None
    assert streamer._copy_stream != torch.cuda.current_stream(CUDA)
    assert streamer.prefetched == 2 * CFG.num_layers - 1 and sync_streamer.prefetched == 0
    assert all(p.device.type == "cpu" and p.is_pinned() for p in host_model.blocks.parameters())


@torch.no_grad()
def test_streamed_dit_never_holds_its_blocks_on_the_gpu_at_once_when_prepared() -> None:
    torch.manual_seed(0)
    model = VideoDiT(CFG).eval()  # loaded on the host, as load_stage_two does with offload
    total, block = _bytes(model), _bytes(model.blocks[0])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    streamer = place_blocks(model, model.blocks, CUDA, offload="layer")
    weights_peak = torch.cuda.max_memory_allocated() - base
    assert streamer is not None
    resident = total - CFG.num_layers * block  # the non-block weights
    assert weights_peak <= resident + 64 * 1024  # + allocator rounding; blocks stayed on the host
    args, kwargs = _inputs()
    torch.cuda.reset_peak_memory_stats()
    model(*args, **kwargs)
    torch.cuda.synchronize()
    run_peak = torch.cuda.max_memory_allocated() - base
    assert run_peak < total  # two blocks in flight plus activations, never all eight
