"""Feathered blend weights of a `TilePlan` and the weighted accumulation the VAE pass uses.

Along one axis a tile's weight rises over its `fade_in` span and falls over its `fade_out` span;
neighbours share a span with complementary ramps, so all weights sum to 1 everywhere. A
zero-width span is a hard seam (the original's decode, spec §6.5 and pitfall 24).
"""

from __future__ import annotations

import math

import torch

from vidrefine.plan.tiling import RAMPS, AxisTile, Tile, TilePlan


def tile_weights(plan: TilePlan, tile: Tile, scale: int = 1) -> torch.Tensor:
    """Blend weights (h, w) float32 over `tile`'s window at `scale` (8 = decoded pixels)."""
    wy = axis_weights(tile.y, scale, plan.ramp)
    wx = axis_weights(tile.x, scale, plan.ramp)
    return wy[:, None] * wx[None, :]


def _rise(span: tuple[int, int], positions: torch.Tensor, scale: int, ramp: str) -> torch.Tensor:
    """0 before the span, ramp inside it, 1 after; positions are pixel centres at `scale`."""
    a, b = span[0] * scale, span[1] * scale
    if b <= a:
        return (positions >= a).to(torch.float32)
    u = ((positions + 0.5 - a) / (b - a)).clamp(0.0, 1.0)
    if ramp == "cosine":
        return 0.5 - 0.5 * torch.cos(math.pi * u)
    return u


def axis_weights(tile: AxisTile, scale: int, ramp: str) -> torch.Tensor:
    """Weights (length (stop - start) * scale,) of one axis tile: rise over fade_in, fall over
    fade_out. Neighbours use the same span, so their weights add to exactly 1.
    """
    if ramp not in RAMPS:
        raise ValueError(f"unknown ramp {ramp!r}; one of {', '.join(RAMPS)}")
    positions = torch.arange(tile.start * scale, tile.stop * scale, dtype=torch.float64)
    rise = _rise(tile.fade_in, positions, scale, ramp) if tile.fade_in[1] > tile.start else 1.0
    if tile.fade_out[0] < tile.stop:
        fall = 1.0 - _rise(tile.fade_out, positions, scale, ramp)
    else:
        fall = torch.ones_like(positions)
    return (rise * fall).to(torch.float32)


def coverage(plan: TilePlan, scale: int = 1) -> torch.Tensor:
    """Sum of all tiles' weights on the full (H, W) grid at `scale`; 1 everywhere if sound."""
    total = torch.zeros(plan.size_hw[0] * scale, plan.size_hw[1] * scale)
    for tile in plan.tiles:
        total[tile.window(scale)] += tile_weights(plan, tile, scale)
    return total


def add_weighted(out: torch.Tensor, part: torch.Tensor, plan: TilePlan, tile: Tile, scale: int):
    """out[..., window] += part * weights, in out's dtype; part is (..., h, w) for `tile`."""
    weights = tile_weights(plan, tile, scale).to(device=part.device, dtype=out.dtype)
    out[(..., *tile.window(scale))] += part.to(out.dtype) * weights
