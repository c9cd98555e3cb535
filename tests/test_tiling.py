"""Spatial tile plans: coverage, weights summing to 1, the original's split, and what seams cost."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from vae_fixtures import TINY_WIDTHS, random_official_vae

from vidrefine.config import VAEConfig
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.pipeline.blending import add_weighted, coverage, tile_weights
from vidrefine.pipeline.vae_pass import decode_latents
from vidrefine.plan.tiling import plan_split, plan_tiles
from vidrefine.plan.vae import plan_vae

SIZES = [(1, 1), (5, 7), (17, 40), (134, 240), (33, 97)]


@pytest.mark.parametrize("size_hw", SIZES)
@pytest.mark.parametrize(("tile", "overlap"), [(8, 2), (16, 8), (24, 8), (64, 8), (300, 8)])
@pytest.mark.parametrize("ramp", ["linear", "cosine"])
def test_blend_weights_sum_to_one_everywhere_when_tiles_overlap(
    size_hw: tuple[int, int], tile: int, overlap: int, ramp: str
) -> None:
    plan = plan_tiles(size_hw, (tile, tile), overlap, ramp)
    for scale in (1, 8):
        total = coverage(plan, scale)
        torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)
        for t in plan.tiles:
            w = tile_weights(plan, t, scale)
            assert w.min() >= 0 and w.max() <= 1 + 1e-7
    for axis in (plan.rows, plan.cols):
        assert axis[0].start == 0 and axis[-1].stop == max(t.stop for t in axis)
        assert all(a.stop > b.start for a, b in zip(axis, axis[1:], strict=False))  # no gaps


def test_faithful_split_reproduces_the_original_windows_when_decoding_1080p() -> None:
    """spec §6.5: 134 x 240 latents -> cols [0,136) and [104,240), pixels [0,960) | [960,1920)."""
    plan = plan_split((134, 240), (1, 2), 16)
    assert [(c.start, c.stop) for c in plan.cols] == [(0, 136), (104, 240)]
    assert [(r.start, r.stop) for r in plan.rows] == [(0, 134)]
    left, right = (tile_weights(plan, t, 8) for t in plan.tiles)
    assert left[0, :960].eq(1).all() and left[0, 960:].eq(0).all()  # hard seam at x = 960 px
    assert right[0, : 960 - 832].eq(0).all() and right[0, 960 - 832 :].eq(1).all()
    total = coverage(plan, 8)
    assert total.eq(1).all()


def _windows(length: int, parts: int, margin: int) -> list[tuple[int, int]]:
    return [(c.start, c.stop) for c in plan_split((4, length), (1, parts), margin).cols]


@pytest.mark.parametrize(
    ("length", "parts", "windows"),
    [
        (240, 2, [(0, 136), (104, 240)]),  # both margins fit (1080p)
        (12, 2, [(0, 6), (6, 12)]),  # 96 px wide: neither fits, so the tiles have no margin
        (30, 2, [(0, 15), (15, 30)]),  # 15 + 16 > 30 and 15 - 16 < 0
        (45, 3, [(0, 31), (15, 30), (14, 45)]),  # the middle tile fits neither side
        (40, 3, [(0, 29), (13, 26), (10, 40)]),  # the middle tile: 26 + 16 > 40, 13 - 16 < 0
        (60, 3, [(0, 36), (4, 56), (24, 60)]),  # every inner side fits
    ],
)
def test_faithful_split_drops_a_margin_that_does_not_fit_when_tiles_are_narrow(
    length: int, parts: int, windows: list[tuple[int, int]]
) -> None:
    """The original (flashvideo/utils.py `save_mem_decode`, spec §6.5) widens a core by the
    16-latent margin on a side only when the widened window stays inside the latent, and
    otherwise not at all on that side (it does not clamp the margin to the edge)."""
    assert _windows(length, parts, 16) == windows
    plan = plan_split((4, length), (1, parts), 16)
    cuts = [c.fade_out for c in plan.cols[:-1]]
    assert cuts == [(i * (length // parts),) * 2 for i in range(1, parts)]  # hard seams at cores
    assert coverage(plan, 8).eq(1).all()


def test_tiled_equals_untiled_when_the_model_is_pointwise() -> None:
    """A per-pixel function commutes with tiling, so blended tiles must rebuild it exactly."""
    x = torch.randn(2, 3, 4, 40, 56, generator=torch.Generator().manual_seed(0))
    plan = plan_tiles((5, 7), (3, 4), 1, "cosine")
    out = torch.zeros_like(x)
    for tile in plan.tiles:
        add_weighted(out, torch.tanh(x[(..., *tile.window(8))]) * 3, plan, tile, 8)
    torch.testing.assert_close(out, torch.tanh(x) * 3, rtol=0, atol=1e-5)


def _seam_steps(vae: CausalVideoVAE, plan_whole, tiles, z, whole) -> tuple[float, float, float]:
    """Column-to-column change of (tiled - whole), averaged over B, C, T, H: its maximum in the
    seam's fade (one column for a hard seam), and its median and maximum elsewhere (8 px away
    from the picture border and from the fade).
    """
    tiled = decode_latents(vae, z, dataclasses.replace(plan_whole, decode_tiles=tiles))
    diff = tiled - whole
    step = (diff[..., 1:] - diff[..., :-1]).abs().mean(dim=(0, 1, 2, 3))  # step[x-1]: x-1 -> x
    seam = tiles.cols[0].fade_out
    lo, hi = 8 * seam[0] - 1, max(8 * seam[1], 8 * seam[0])
    elsewhere = torch.zeros_like(step, dtype=torch.bool)
    elsewhere[8:-8] = True
    elsewhere[lo - 8 : hi + 8] = False
    return step[lo:hi].max().item(), step[elsewhere].median().item(), step[elsewhere].max().item()


def test_hard_seam_shows_and_blending_removes_it_when_tiles_have_their_own_statistics() -> None:
    """Random weights give each tile its own GroupNorm statistics, so tiles disagree with the
    whole picture everywhere; a seam is where that disagreement jumps. The latent is constant over
    space (away from the border the whole decode is flat), so a jump is not hidden by content.
    Same windows both ways ([0,12) and [4,16) latents): hard seam at 8 vs a cosine fade over 6..10.
    """
    vae = CausalVideoVAE(VAEConfig(block_out_channels=TINY_WIDTHS)).eval()
    vae.load_state_dict(random_official_vae(seed=2))
    z = torch.randn(1, 16, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    z = z.expand(1, 16, 1, 4, 16).contiguous()
    whole = plan_vae((32, 128), 1, mode="whole")
    hard = plan_split((4, 16), (1, 2), 4)
    blend = plan_tiles((4, 16), (4, 12), 4, "cosine")
    assert [(c.start, c.stop) for c in hard.cols] == [(c.start, c.stop) for c in blend.cols]
    reference = decode_latents(vae, z, whole)
    hard_seam, hard_median, hard_max = _seam_steps(vae, whole, hard, z, reference)
    blend_seam, _, blend_max = _seam_steps(vae, whole, blend, z, reference)
    report = (
        f"hard seam step {hard_seam:.4f} vs interior median {hard_median:.4f} / max {hard_max:.4f};"
        f" blended seam max step {blend_seam:.4f} vs interior max {blend_max:.4f}"
    )
    print(report)
    assert hard_seam > 3 * hard_median and hard_seam > 2 * hard_max, report
    assert blend_seam < hard_seam / 2 and blend_seam < 1.5 * blend_max, report
