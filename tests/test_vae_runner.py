"""plan_vae choices and the runner's tiled paths."""

from __future__ import annotations

import pytest
import torch
from vae_fixtures import TINY_WIDTHS, random_official_vae

from vidrefine.config import VAEConfig
from vidrefine.errors import BadInput, DoesNotFit
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.pipeline.vae_pass import decode_latents, encode_video
from vidrefine.plan.vae import plan_vae
from vidrefine.plan.vae_memory import decode_peak_bytes, encode_peak_bytes, fixed_bytes

GIB = 1024**3


@pytest.mark.parametrize("budget_gb", [12, 16, 24, 40, 80])
def test_planned_passes_fit_the_budget_when_decoding_1080p(budget_gb: float) -> None:
    plan = plan_vae((1072, 1920), 49, budget_gb=budget_gb)
    fixed = fixed_bytes(49, plan.padded_hw, dtype_bytes=2)
    dec_hw = tuple(8 * s for s in plan.decode_tiles.tile_hw)
    enc_hw = tuple(8 * s for s in plan.encode_tiles.tile_hw)
    cost = {"dtype_bytes": 2, **plan.kernels.memory_args()}
    assert decode_peak_bytes(9, dec_hw, **cost) + fixed <= budget_gb * GIB
    assert encode_peak_bytes(17, enc_hw, **cost) + fixed <= budget_gb * GIB
    assert plan.estimate_gb <= budget_gb
    bigger = plan.decode_tiles.tile_hw[1] + 8  # the next tile size up would not fit
    if bigger <= 240 and plan.decode_tiles.tile_hw[0] < 134:
        hw = (8 * min(bigger, 134), 8 * bigger)
        assert decode_peak_bytes(9, hw, **cost) + fixed > budget_gb * GIB


def test_planning_refuses_clearly_when_nothing_fits() -> None:
    with pytest.raises(DoesNotFit, match="vram"):
        plan_vae((1072, 1920), 49, budget_gb=1)
    with pytest.raises(BadInput, match="mode"):
        plan_vae((64, 64), 9, mode="tiles")


def test_faithful_plan_uses_the_original_cuts_when_asked() -> None:
    plan = plan_vae((1072, 1920), 49, mode="faithful")
    assert [c.stop - c.start for c in plan.encode_chunks()] == [17, 16, 16]
    assert [(c.start, c.stop) for c in plan.decode_chunks()][:2] == [(0, 3), (3, 5)]
    assert plan.decode_tiles.ramp == "hard" and len(plan.encode_tiles.tiles) == 1
    assert [(c.start, c.stop) for c in plan.decode_tiles.cols] == [(0, 136), (104, 240)]


def test_tiled_encode_stays_close_to_whole_when_tiles_overlap() -> None:
    """Tiles see their own GroupNorm statistics, so only closeness is expected (random weights:
    relative L2 well under 1); the plan must still place every latent."""
    vae = CausalVideoVAE(VAEConfig(block_out_channels=TINY_WIDTHS)).eval()
    vae.load_state_dict(random_official_vae(seed=4))
    video = torch.rand(1, 3, 1, 24, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = encode_video(vae, video, plan_vae((24, 64), 1, mode="whole"), sample=False)
    plan = plan_vae((24, 64), 1, tile_latent=6, overlap_latent=2)
    assert len(plan.encode_tiles.tiles) > 1
    tiled = encode_video(vae, video, plan, sample=False)
    assert ((tiled - whole).norm() / whole.norm()).item() < 0.5
    assert decode_latents(vae, tiled, plan).shape == video.shape


def test_the_plans_kernel_choices_reach_the_pass_when_decoding() -> None:
    from vidrefine.plan.vae import VAEKernelPlan

    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig(block_out_channels=(32, 32, 32, 32))).eval()
    z = torch.randn(1, 16, 2, 2, 3, generator=torch.Generator().manual_seed(1))
    plan = plan_vae((16, 24), 5, mode="whole")
    with torch.no_grad():
        direct, _ = vae.decode(z)
    default = decode_latents(vae, z, plan)
    assert torch.equal(default, direct)  # one tile: copied into the clip, not weighted
    kernels = VAEKernelPlan(conv="conv2d_sum", layout="ndhwc")
    other = decode_latents(vae, z, plan_vae((16, 24), 5, mode="whole", kernels=kernels))
    assert not torch.equal(other, default)  # another computation ran...
    torch.testing.assert_close(other, default, rtol=0, atol=1e-5 * default.abs().max().item())
