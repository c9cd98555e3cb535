"""A VAE pass shared by the ranks of one window (`--parallel guidance|sequence`, issue 21).

Each rank computes the tiles of the window's VAE plan it owns (tile i: rank i mod N), sends
their parts to rank 0, which adds them in the one-process order, and rank 0's result goes to
every rank: the latents and frames are the one-process ones bit for bit, since every part is
the same computation on the same kind of device, added in the same order. A plan of one tile is
computed by every rank itself, as before (`pipeline.vae_pass`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from vidrefine.pipeline.rank_link import Link
from vidrefine.runtime.distributed import peers_guard


class RankTileShare:
    """`pipeline.vae_pass.TileShare` over the ranks of `link`'s group; rank 0 assembles."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.assembles = link.rank == 0

    def owns(self, index: int) -> bool:
        """Tile `index` belongs to rank `index mod N`."""
        return index % self.link.size == self.link.rank

    def hand_in(self, part: torch.Tensor) -> None:
        """Send a part to rank 0 without waiting (`spread` waits)."""
        self.link.send(part, 0)

    def take(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """Rank 0: the next part of tile `index`, received from its owner."""
        link = self.link
        wire = torch.empty(like.shape, dtype=like.dtype, device=link.device)
        with peers_guard():
            dist.recv(wire, link.peer(index % link.size), group=link.group)
        return wire.to(like.device)

    def spread(self, out: torch.Tensor) -> torch.Tensor:
        """Rank 0's `out` on every rank, once every part sent has arrived."""
        self.link.drain()
        wire = out.to(self.link.device).contiguous()
        with peers_guard():
            dist.broadcast(wire, src=self.link.peer(0), group=self.link.group)
        return wire.to(out.device)


__all__ = ["RankTileShare"]
