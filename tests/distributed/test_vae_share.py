"""Issue 21, several GPUs: one window's VAE passes shared by the ranks (gloo, CPU, 2 and 3 ranks).

Each rank computes the tiles it owns, rank 0 adds them in order and hands the result to all:
every rank's latents and decoded frames equal the one-process pass bit for bit (the reference
is computed in each rank's own process, at its thread count, so no cross-machine rounding can
enter). Plans: feathered tiles over rows and columns (6 tiles) and columns (2: one rank idle of
3), the
faithful 1x2 hard-seam decode, and a one-tile plan (not shared).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.distributed.harness import fork_ranks, free_port
from vidrefine.config import VAEConfig
from vidrefine.plan.vae import plan_vae

SIZE_HW, FRAMES = (40, 64), 9
PLANS = {  # name -> plan_vae keywords for SIZE_HW x FRAMES
    "blend 6 tiles": {"tile_latent": 4, "overlap_latent": 2, "chunk_latent": 1},
    "blend 2 tiles": {"tile_latent": 5, "overlap_latent": 2},
    "faithful 1x2": {"mode": "faithful"},
    "whole": {"mode": "whole"},
}


def tiny_vae() -> torch.nn.Module:
    """Every code path of the official VAE at widths 8-16, one resnet a level, seeded."""
    from vidrefine.models.vae import CausalVideoVAE

    torch.manual_seed(7)
    config = VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_groups=4)
    vae = CausalVideoVAE(config).eval()
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))  # norms off their identity too
    return vae


def passes(vae, video, plan, share) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean latents, sampled latents, decoded frames) of one plan."""
    from vidrefine.pipeline.vae_pass import decode_latents, encode_video

    mean = encode_video(vae, video, plan, sample=False, share=share)
    generator = torch.Generator().manual_seed(3)
    sampled = encode_video(vae, video, plan, sample=True, generator=generator, share=share)
    return mean, sampled, decode_latents(vae, sampled, plan, share=share)


def worker(rank: int, world: int, port: int, out: str) -> None:
    """Per plan: the tile count and whether this rank's shared passes equal its own one-process."""
    from vidrefine.pipeline.rank_link import Link
    from vidrefine.pipeline.tile_share import RankTileShare

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    vae = tiny_vae()
    gen = torch.Generator().manual_seed(11)
    video = torch.rand(1, 3, FRAMES, *SIZE_HW, generator=gen) * 2 - 1
    share = RankTileShare(Link(None))
    report = {}
    for name, keywords in PLANS.items():
        plan = plan_vae(SIZE_HW, FRAMES, **keywords)
        shared = passes(vae, video, plan, share)
        alone = passes(vae, video, plan, None)
        report[name] = {
            "tiles": [len(plan.encode_tiles.tiles), len(plan.decode_tiles.tiles)],
            "equal": [torch.equal(a, b) for a, b in zip(shared, alone, strict=True)],
            "finite": all(bool(torch.isfinite(t).all()) for t in shared),
        }
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_shared_vae_passes_equal_one_process_on_every_rank_when_tiles_go_round(
    world: int, tmp_path: Path
) -> None:
    fork_ranks(worker, (world, free_port(), str(tmp_path)), world)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    tiles = reports[0]
    assert tiles["blend 6 tiles"]["tiles"] == [6, 6] and tiles["blend 2 tiles"]["tiles"] == [2, 2]
    assert tiles["faithful 1x2"]["tiles"] == [1, 2] and tiles["whole"]["tiles"] == [1, 1]
    for rank, report in enumerate(reports):
        for name, row in report.items():
            assert row["equal"] == [True, True, True], (rank, name)
            assert row["finite"], (rank, name)
