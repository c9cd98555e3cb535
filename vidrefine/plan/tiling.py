"""Spatial tile plans in latent coordinates (pure; the blend weights are `pipeline.blending`).

A plan is a grid: `rows` (height) x `cols` (width) of `AxisTile`s. Along one axis each tile reads a
latent window and owns positions through a weight that rises over its `fade_in` span and falls over
its `fade_out` span; neighbouring tiles share a span with complementary ramps, so the weights of all
tiles sum to 1 at every position. A zero-width span is a hard seam (the original's decode, spec
§6.5 and pitfall 24). Weights can be taken at any scale: 1 for latents, 8 for decoded pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RAMPS = ("linear", "cosine", "hard")


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis, in latent units: window [start, stop), fades as [a, b) spans."""

    start: int
    stop: int
    fade_in: tuple[int, int]  # empty (start, start) for the first tile
    fade_out: tuple[int, int]  # empty (stop, stop) for the last tile


@dataclass(frozen=True)
class Tile:
    """One tile of the grid: its row span and its column span."""

    y: AxisTile
    x: AxisTile

    def window(self, scale: int = 1) -> tuple[slice, slice]:
        """(rows, cols) slices of this tile's window at `scale` (8 = decoded pixels)."""
        return (
            slice(self.y.start * scale, self.y.stop * scale),
            slice(self.x.start * scale, self.x.stop * scale),
        )


@dataclass(frozen=True)
class TilePlan:
    """A grid of tiles covering a latent of `size_hw` with `ramp` feathering."""

    size_hw: tuple[int, int]
    rows: tuple[AxisTile, ...]
    cols: tuple[AxisTile, ...]
    ramp: str = "cosine"

    @property
    def tiles(self) -> list[Tile]:
        """All tiles, row-major."""
        return [Tile(y, x) for y in self.rows for x in self.cols]

    @property
    def tile_hw(self) -> tuple[int, int]:
        """The largest window (latent height, width) any tile reads."""
        return (
            max(t.stop - t.start for t in self.rows),
            max(t.stop - t.start for t in self.cols),
        )


def _axis_from_windows(windows: list[tuple[int, int]], fades: list[tuple[int, int]]) -> tuple:
    tiles = []
    for i, (start, stop) in enumerate(windows):
        fade_in = fades[i - 1] if i > 0 else (start, start)
        fade_out = fades[i] if i < len(windows) - 1 else (stop, stop)
        tiles.append(AxisTile(start, stop, fade_in, fade_out))
    return tuple(tiles)


def plan_axis(length: int, tile: int, overlap: int) -> tuple[AxisTile, ...]:
    """Cover [0, length) with windows of `tile` stepping by tile - overlap, the last flush with
    the end; each seam fades over `overlap` positions centred in the shared span.

    The overlap is capped at tile // 3, which keeps every position inside at most two fades.
    """
    if tile <= 0 or tile >= length:
        return _axis_from_windows([(0, length)], [])
    overlap = max(0, min(overlap, tile // 3))
    stride = tile - overlap
    count = math.ceil((length - overlap) / stride)
    starts = [min(i * stride, length - tile) for i in range(count)]
    windows = [(s, s + tile) for s in starts]
    fades = []
    for (_, stop), (next_start, _) in zip(windows, windows[1:], strict=False):
        shared = stop - next_start
        width = min(overlap, shared)
        a = next_start + (shared - width) // 2
        fades.append((a, a + width))
    return _axis_from_windows(windows, fades)


def plan_tiles(
    size_hw: tuple[int, int], tile_hw: tuple[int, int], overlap: int, ramp: str = "cosine"
) -> TilePlan:
    """Feathered grid over a latent of `size_hw`; tile sizes 0 or >= the size mean one tile."""
    rows = plan_axis(size_hw[0], tile_hw[0], overlap)
    cols = plan_axis(size_hw[1], tile_hw[1], overlap)
    return TilePlan(size_hw, rows, cols, ramp)


def split_axis(length: int, parts: int, margin: int) -> tuple[AxisTile, ...]:
    """The original's split: cores at i * (length // parts), each window widened by `margin` on
    inner sides, hard seams at the core boundaries (spec §6.5: 240 -> [0,136) + [104,240)).

    As the original's `save_mem_decode`, a side is widened only when the whole margin fits
    inside [0, length); where it does not, that side gets no margin at all (12 -> [0,6) + [6,12)).
    """
    parts = max(1, min(parts, length))
    cuts = [i * (length // parts) for i in range(parts)] + [length]
    windows = []
    for start, stop in zip(cuts, cuts[1:], strict=False):
        low = start - margin if start - margin >= 0 else start
        high = stop + margin if stop + margin <= length else stop
        windows.append((low, high))
    fades = [(c, c) for c in cuts[1:-1]]
    return _axis_from_windows(windows, fades)


def plan_split(size_hw: tuple[int, int], splits_hw: tuple[int, int], margin: int) -> TilePlan:
    """Hard-seam grid reproducing the original's spatial decode split (faithful mode)."""
    rows = split_axis(size_hw[0], splits_hw[0], margin)
    cols = split_axis(size_hw[1], splits_hw[1], margin)
    return TilePlan(size_hw, rows, cols, "hard")
